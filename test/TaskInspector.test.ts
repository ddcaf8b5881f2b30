/**
 * the inspector over HTTP: the JSON API answers what the host's
 * methods answer; the feed (Server-Sent Events) is a snapshot and every event
 * after it, resumes from a `Last-Event-ID`, and re-snapshots after a `lagged`;
 * cancelling is refused without the option and without its token; the server
 * listens on loopback only and answers only to loopback names. The page
 * itself, in a browser: test/TaskInspector.browser.long.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Option, References, Stream } from "effect"
import { readFileSync } from "node:fs"
import * as Net from "node:net"
import { BackgroundTaskHost, TaskContext } from "../src/index.ts"
import { TaskInspector, TaskInspectorError } from "../src/TaskInspector.ts"
import { FeedView, recordsSummary, sqliteFile, startInspector, withStoredHost } from "./utils/inspector.ts"
import { openFeed } from "./utils/sse.ts"

const spec = (id: string, extra: Record<string, unknown> = {}) => ({ id, kind: "other" as const, producer: "test", ...extra })

const token = "inspector-test-token-0123456789"

/** Whether a TCP connection to host:port is accepted. */
const connects = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect({ host, port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/** The local addresses of the listening TCP sockets on a port, from /proc/net/tcp{,6} (hex as the kernel writes them). */
const listeningAddresses = (port: number) => {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0")
  return ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((file) =>
    readFileSync(file, "utf8").split("\n").slice(1).map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields[3] === "0A" && fields[1]?.endsWith(`:${hexPort}`))
      .map((fields) => fields[1]!.split(":")[0]!)
  )
}

const json = async (response: Response) => ({ status: response.status, body: await response.json() as any })

describe("TaskInspector", () => {
  describe("cancelling", () => {
    it("is refused without the cancel option (403, even with a token), and the page is told it is read-only", async () => {
      const app = await startInspector()
      try {
        await app.run(app.host.spawnManaged("s1", spec("t1"), Effect.never))
        assert.isFalse(app.inspector.cancel)
        assert.strictEqual(app.inspector.pageUrl, app.inspector.url)
        for (const headers of [{}, { authorization: `Bearer ${token}` }]) {
          const answer = await json(await app.fetch("/api/tasks/t1/cancel", { method: "POST", headers }))
          assert.strictEqual(answer.status, 403)
          assert.strictEqual(answer.body.error, "CancelDisabled")
        }
        const record = await app.run(app.host.get("t1"))
        assert.strictEqual(Option.getOrThrow(record).state, "running")
        const feed = await openFeed(new URL("/api/events", app.inspector.url).href)
        const hello = await feed.next()
        assert.strictEqual(hello.data.type, "hello")
        assert.isFalse(hello.data.cancel)
        feed.close()
      } finally {
        await app.close()
      }
    })

    it("with the option, needs the token: none or a wrong one is refused (401), the right one cancels", async () => {
      const app = await startInspector({ inspector: { cancel: { token } } })
      try {
        await app.run(app.host.spawnManaged("s1", spec("t1", { cancelPolicy: "abort_local" }), Effect.never))
        assert.isTrue(app.inspector.cancel)
        assert.strictEqual(app.inspector.pageUrl, `${app.inspector.url}#token=${token}`)
        const attempts: ReadonlyArray<Record<string, string>> = [
          {},
          { authorization: "Bearer wrong-token-0123456789" },
          { authorization: `Bearer ${token}x` },
          { authorization: token },
          { authorization: `Basic ${token}` }
        ]
        for (const headers of attempts) {
          const answer = await json(await app.fetch("/api/tasks/t1/cancel", { method: "POST", headers }))
          assert.strictEqual(answer.status, 401, JSON.stringify(headers))
          assert.strictEqual(answer.body.error, "Unauthorized")
        }
        assert.strictEqual(Option.getOrThrow(await app.run(app.host.get("t1"))).state, "running")

        const answer = await json(await app.fetch("/api/tasks/t1/cancel", {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ session_id: "s1", reason: "from the test" })
        }))
        assert.strictEqual(answer.status, 202)
        const record = Option.getOrThrow(await app.run(app.host.get("t1")))
        assert.strictEqual(record.state, "cancelled")
        // an ended task, an unknown one, a bad body
        const again = await app.fetch("/api/tasks/t1/cancel", { method: "POST", headers: { authorization: `Bearer ${token}` } })
        assert.strictEqual(again.status, 409)
        const unknown = await app.fetch("/api/tasks/nope/cancel", { method: "POST", headers: { authorization: `Bearer ${token}` } })
        assert.strictEqual(unknown.status, 404)
        const bad = await json(await app.fetch("/api/tasks/t1/cancel", {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ reason: 42 })
        }))
        assert.strictEqual(bad.status, 400)
        // no CORS: another site's page cannot send the header
        const preflight = await app.fetch("/api/tasks/t1/cancel", {
          method: "OPTIONS",
          headers: { origin: "https://evil.example", "access-control-request-headers": "authorization" }
        })
        assert.isNull(preflight.headers.get("access-control-allow-origin"))
      } finally {
        await app.close()
      }
    })

    it("a random token is made when none is given, and only it is accepted", async () => {
      const app = await startInspector({ inspector: { cancel: true } })
      try {
        const made = /#token=(.+)$/.exec(app.inspector.pageUrl)?.[1]
        assert.isDefined(made)
        assert.isAtLeast(decodeURIComponent(made!).length, 16)
        await app.run(app.host.spawnManaged("s1", spec("t1", { cancelPolicy: "abort_local" }), Effect.never))
        const wrong = await app.fetch("/api/tasks/t1/cancel", { method: "POST", headers: { authorization: `Bearer ${token}` } })
        assert.strictEqual(wrong.status, 401)
        const right = await app.fetch("/api/tasks/t1/cancel", {
          method: "POST",
          headers: { authorization: `Bearer ${decodeURIComponent(made!)}` }
        })
        assert.strictEqual(right.status, 202)
      } finally {
        await app.close()
      }
    })
  })

  describe("network", () => {
    it("listens on 127.0.0.1 only by default: no socket on another address, and another address is refused", async () => {
      const app = await startInspector()
      try {
        assert.strictEqual(app.inspector.hostname, "127.0.0.1")
        assert.match(app.inspector.url, /^http:\/\/127\.0\.0\.1:\d+\/$/)
        // the kernel's own table: one listening socket on the port, bound to 127.0.0.1 (0100007F), not 0.0.0.0 or ::
        assert.deepStrictEqual(listeningAddresses(app.inspector.port), ["0100007F"])
        assert.isTrue(await connects("127.0.0.1", app.inspector.port))
        // another address of this machine (in the loopback range, so no traffic leaves it) finds no server
        assert.isFalse(await connects("127.0.0.2", app.inspector.port))
      } finally {
        await app.close()
      }
    })

    it("answers only to loopback Host names (a DNS name pointed at 127.0.0.1 by another site is refused)", async () => {
      const app = await startInspector({ inspector: { allowedHosts: ["inspector.test"] } })
      try {
        const port = app.inspector.port
        for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `inspector.test:${port}`]) {
          const ok = await rawStatus(port, "/api/stats", host)
          assert.strictEqual(ok, 200, host)
        }
        for (const host of [`evil.example:${port}`, "evil.example", `127.0.0.1.evil.example:${port}`]) {
          const refused = await rawStatus(port, "/api/stats", host)
          assert.strictEqual(refused, 403, host)
        }
      } finally {
        await app.close()
      }
    })

    it("fails with TaskInspectorError for an invalid option or a port in use", async () => {
      const build = (options: Parameters<typeof TaskInspector.layer>[0]) =>
        Effect.runPromise(
          Effect.flip(Effect.scoped(Layer.build(TaskInspector.layer(options).pipe(Layer.provide(BackgroundTaskHost.layer)))))
        )
      const invalid = [
        { port: -1 },
        { port: 70_000 },
        { port: 1.5 },
        { hostname: "" },
        { cancel: { token: "short" } },
        { cancel: { token: "has spaces in it, which a header cannot carry" } },
        { eventsPerTask: 1 },
        { history: -1 },
        { heartbeat: "forever" as never }
      ]
      for (const options of invalid) {
        const error = await build(options)
        assert.instanceOf(error, TaskInspectorError, JSON.stringify(options))
      }
      const app = await startInspector()
      try {
        const error = await build({ port: app.inspector.port })
        assert.instanceOf(error, TaskInspectorError)
        assert.include(error.message, "EADDRINUSE")
      } finally {
        await app.close()
      }
    })
  })

  describe("JSON API", () => {
    it("/api/tasks takes list's filters and answers what list answers, with each task's latest progress", async () => {
      const app = await startInspector()
      try {
        const release = Effect.runSync(Deferred.make<void>())
        await app.run(Effect.gen(function*() {
          const { host } = app
          yield* host.spawnManaged("s1", { ...spec("m1"), kind: "monitor" }, Effect.gen(function*() {
            yield* (yield* TaskContext).progress("checking (1/4)")
            yield* Deferred.await(release)
          }))
          yield* host.spawnManaged("s1", spec("o1"), Effect.succeed("done"))
          yield* host.spawnManaged("s2", { ...spec("m2"), kind: "monitor" }, Deferred.await(release))
          yield* host.registerExternal("s2", { ...spec("x1"), kind: "subagent" })
        }))
        await waitFor(async () => (await app.run(app.host.get("o1"))).pipe(Option.exists((r) => r.state === "completed")))
        await waitFor(async () => (await json(await app.fetch("/api/tasks?kind=monitor"))).body.tasks[0]?.progress !== null)
        const filters = [
          ["", {}],
          ["?include_terminal=true", { includeTerminal: true }],
          ["?session_id=s1", { sessionId: "s1" }],
          ["?session_id=s1&include_terminal=true", { sessionId: "s1", includeTerminal: true }],
          ["?kind=monitor", { kind: "monitor" }],
          ["?kind=monitor&session_id=s2&include_terminal=false", { kind: "monitor", sessionId: "s2", includeTerminal: false }]
        ] as const
        for (const [query, filter] of filters) {
          const answer = await json(await app.fetch(`/api/tasks${query}`))
          assert.strictEqual(answer.status, 200)
          const expected = await app.run(app.host.list(filter))
          assert.deepStrictEqual(answer.body.tasks.map((t: any) => `${t.record.scope.session_id}/${t.record.id}/${t.record.state}`),
            expected.map((r) => `${r.scope.sessionId}/${r.id}/${r.state}`), query)
        }
        const monitors = (await json(await app.fetch("/api/tasks?kind=monitor&session_id=s1"))).body.tasks
        assert.strictEqual(monitors[0].progress, "checking (1/4)")
        Effect.runSync(Deferred.succeed(release, undefined))
      } finally {
        await app.close()
      }
    })

    it("/api/tasks/:id is the task with its events in seq order; /api/sessions, /api/stats and the tree agree with the host", async () => {
      const app = await startInspector()
      try {
        const release = Effect.runSync(Deferred.make<void>())
        await app.run(Effect.gen(function*() {
          const { host } = app
          yield* host.spawnManaged("s1", spec("root"), Deferred.await(release))
          yield* host.spawnManaged("s1", spec("kid", { parentTaskId: "root" }), Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* ctx.progress("one")
            yield* ctx.progress("two")
            return "kid done"
          }))
          yield* host.spawnManaged("s2", spec("other"), Deferred.await(release))
        }))
        await waitFor(async () => (await app.run(app.host.get("kid"))).pipe(Option.exists((r) => r.state === "completed")))
        await waitFor(async () => (await json(await app.fetch("/api/tasks/kid"))).body.events?.length === 4)
        const kid = await json(await app.fetch("/api/tasks/kid?session_id=s1"))
        assert.strictEqual(kid.status, 200)
        assert.deepStrictEqual(kid.body.events.map((e: any) => e.type), ["registered", "progress", "progress", "completed"])
        assert.deepStrictEqual(kid.body.events.map((e: any) => e.message).filter(Boolean), ["one", "two"])
        const seqs = kid.body.events.map((e: any) => e.seq)
        assert.deepStrictEqual(seqs, [...seqs].sort((a: number, b: number) => a - b))
        assert.isTrue(kid.body.events_complete)
        assert.strictEqual(kid.body.task.record.result.summary, "kid done")
        assert.strictEqual(kid.body.task.progress, "two")

        const sessions = (await json(await app.fetch("/api/sessions"))).body.sessions
        assert.deepStrictEqual(sessions.map((s: any) => [s.session_id, s.tasks, s.live]), [["s1", 2, 1], ["s2", 1, 1]])
        const stats = (await json(await app.fetch("/api/stats"))).body
        const hostStats = await app.run(app.host.stats)
        assert.strictEqual(stats.completed, hostStats.completed)
        assert.strictEqual(stats.live, hostStats.live)
        const tree = (await json(await app.fetch("/api/tasks/root/tree"))).body
        assert.strictEqual(tree.record.id, "root")
        assert.deepStrictEqual(tree.children.map((c: any) => c.record.id), ["kid"])
        Effect.runSync(Deferred.succeed(release, undefined))
      } finally {
        await app.close()
      }
    })

    it("bad input gets a 400 naming it, an unknown task or route a 404; task ids are read as they were encoded", async () => {
      const app = await startInspector()
      try {
        await app.run(app.host.spawnManaged("s 1", spec("a/b <c>"), Effect.never))
        const odd = await json(await app.fetch(`/api/tasks/${encodeURIComponent("a/b <c>")}?session_id=${encodeURIComponent("s 1")}`))
        assert.strictEqual(odd.status, 200)
        assert.strictEqual(odd.body.task.record.id, "a/b <c>")
        const cases: ReadonlyArray<readonly [string, number, string]> = [
          ["/api/tasks?kind=job", 400, "kind"],
          ["/api/tasks?include_terminal=yes", 400, "include_terminal"],
          ["/api/tasks?session_id=", 400, "session_id"],
          ["/api/tasks?sessionId=s1", 400, "sessionId"],
          ["/api/tasks?kind=other&kind=monitor", 400, "twice"],
          ["/api/tasks/nope", 404, "nope"],
          ["/api/tasks/nope/tree", 404, "nope"],
          ["/api/sessions?x=1", 400, "query"],
          ["/api/events?kind=job", 400, "kind"],
          ["/api/nothing", 404, "route"]
        ]
        for (const [path, status, mention] of cases) {
          const answer = await json(await app.fetch(path))
          assert.strictEqual(answer.status, status, path)
          assert.include(answer.body.message, mention, path)
        }
        const badId = await json(await app.fetch("/api/events", { headers: { "last-event-id": "12abc" } }))
        assert.strictEqual(badId.status, 400)
      } finally {
        await app.close()
      }
    })

    it("the page, its script and style are served with a Content-Security-Policy that forbids inline script", async () => {
      const app = await startInspector()
      try {
        for (const [path, type] of [["/", "text/html"], ["/inspector.js", "text/javascript"], ["/inspector.css", "text/css"]]) {
          const response = await app.fetch(path!)
          assert.strictEqual(response.status, 200)
          assert.include(response.headers.get("content-type"), type!)
          assert.include(response.headers.get("content-security-policy"), "script-src 'self'")
          assert.strictEqual(response.headers.get("x-content-type-options"), "nosniff")
        }
        const page = await (await app.fetch("/")).text()
        assert.notMatch(page, /<script>/, "no inline script")
        assert.notMatch(page, /https?:\/\//, "nothing loaded from elsewhere")
        const script = await (await app.fetch("/inspector.js")).text()
        assert.notInclude(script, "innerHTML", "task text is never parsed as markup")
        assert.notInclude(script, "insertAdjacentHTML")
      } finally {
        await app.close()
      }
    })
  })

  describe("feed", () => {
    it("is a snapshot, then every event in seq order with its seq as the id: folded, it equals list, under concurrent work", async () => {
      const app = await startInspector()
      try {
        await app.run(app.host.spawnManaged("s0", spec("before"), Effect.never))
        const feed = await openFeed(new URL("/api/events", app.inspector.url).href)
        assert.strictEqual(feed.status, 200)
        assert.include(feed.headers.get("content-type"), "text/event-stream")
        const view = new FeedView()
        const hello = await feed.next()
        assert.strictEqual(hello.data.type, "hello")
        view.apply(await feed.next())
        assert.strictEqual(view.snapshots, 1)
        assert.deepStrictEqual([...view.tasks.values()].map((t) => t.record.id), ["before"])
        // 40 tasks in 4 sessions, concurrently: progress, completions, failures, cancellations, a transfer
        await app.run(Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            const session = `s${i % 4}`
            yield* app.host.spawnManaged(session, spec(`t${i}`), Effect.gen(function*() {
              yield* (yield* TaskContext).progress(`step ${i}`)
              if (i % 5 === 0) return yield* Effect.fail(new Error(`boom ${i}`))
              if (i % 7 === 0) return yield* Effect.never
              return `done ${i}`
            }))
            if (i % 7 === 0) yield* app.host.cancelManaged(session, `t${i}`)
          }), { concurrency: "unbounded", discard: true }))
        await app.run(app.host.transferManaged("s0", "s9", ["before"]))
        // every task but "before" ends by itself (or was cancelled)
        await waitFor(async () => (await app.run(app.host.list())).length === 1)
        const seq = (await app.run(app.host.stats)).seq
        for (const frame of await feed.until((frame) => frame.data.seq === seq)) view.apply(frame)
        assert.deepStrictEqual(view.summary(), recordsSummary(await app.run(app.host.list({ includeTerminal: true }))))
        assert.strictEqual(view.tasks.get(FeedView.key("s1", "t1"))?.progress, "step 1")
        feed.close()
      } finally {
        await app.close()
      }
    })

    it("resumes after Last-Event-ID when the host can (no snapshot); from a seq an in-memory host cannot replay, says resync and sends a snapshot", async () => {
      const app = await startInspector()
      try {
        await app.run(app.host.spawnManaged("s1", spec("t1"), Effect.never))
        const url = new URL("/api/events", app.inspector.url).href
        const now = (await app.run(app.host.stats)).seq
        // from the current seq: events only
        const resumed = await openFeed(url, { "last-event-id": String(now) })
        assert.strictEqual((await resumed.next()).data.type, "hello")
        await app.run(app.host.spawnManaged("s1", spec("t2"), Effect.never))
        const next = await resumed.next()
        assert.strictEqual(next.data.type, "registered")
        assert.strictEqual(next.id, String(now + 1))
        resumed.close()
        // from an older seq: resync, then a snapshot that holds everything
        const old = await openFeed(url, { "last-event-id": "1" })
        assert.strictEqual((await old.next()).data.type, "hello")
        const resync = await old.next()
        assert.strictEqual(resync.data.type, "resync")
        assert.include(resync.data.reason, "durable store")
        const snapshot = await old.next()
        assert.strictEqual(snapshot.data.type, "snapshot")
        assert.deepStrictEqual(snapshot.data.tasks.map((t: any) => t.record.id), ["t1", "t2"])
        old.close()
        // beyond the last seq (a page from another process): the same
        const ahead = await openFeed(`${url}?last_event_id=999`)
        await ahead.next()
        assert.strictEqual((await ahead.next()).data.type, "resync")
        assert.strictEqual((await ahead.next()).data.type, "snapshot")
        ahead.close()
      } finally {
        await app.close()
      }
    })

    it("a reader that falls behind gets lagged (the host's count), then a fresh snapshot; folded, it is right again", async () => {
      const app = await startInspector({ host: { subscriberBuffer: 8 } })
      try {
        // the task reports 100 progress events in one synchronous burst once `go` is done (a burst of
        // host calls would not do: the host lets readers run between its calls)
        const go = await app.run(Deferred.make<void>())
        const burstDone = await app.run(Deferred.make<void>())
        const busy = Effect.gen(function*() {
          const ctx = yield* TaskContext
          yield* Deferred.await(go)
          yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), (i) => ctx.progress(`burst ${i}`), {
            discard: true
          }).pipe(Effect.provideService(References.PreventSchedulerYield, true))
          yield* Deferred.succeed(burstDone, undefined)
          return yield* Effect.never
        })
        await app.run(app.host.spawnManaged("s1", spec("busy"), busy))
        const feed = await openFeed(new URL("/api/events", app.inspector.url).href)
        const view = new FeedView()
        view.apply(await feed.next())
        view.apply(await feed.next())
        assert.strictEqual(view.snapshots, 1)
        // 100 events in one synchronous burst: the feed cannot read between them, so the host drops 92 for it
        await app.run(Deferred.succeed(go, undefined))
        await app.run(Deferred.await(burstDone))
        await app.run(app.host.complete("busy", { state: "completed", summary: "after the burst" }))
        const seq = (await app.run(app.host.stats)).seq
        const frames = await feed.until((frame) => frame.data.seq === seq || (frame.data.type === "snapshot" && frame.data.seq === seq))
        for (const frame of frames) view.apply(frame)
        assert.deepStrictEqual(view.lagged, [92])
        assert.strictEqual(view.snapshots, 2, "a fresh snapshot follows the lagged")
        const types = frames.map((f) => f.data.type)
        assert.strictEqual(types[types.indexOf("lagged") + 1], "snapshot")
        assert.deepStrictEqual(view.summary(), recordsSummary(await app.run(app.host.list({ includeTerminal: true }))))
        feed.close()
      } finally {
        await app.close()
      }
    })

    it("closing the inspector ends every open feed at once, and the port is free again", async () => {
      const app = await startInspector({ inspector: { heartbeat: "1 hour" } })
      const feeds = await Promise.all([1, 2, 3].map(() => openFeed(new URL("/api/events", app.inspector.url).href)))
      for (const feed of feeds) assert.strictEqual((await feed.next()).data.type, "hello")
      await app.close()
      await Promise.all(feeds.map((feed) => feed.ended))
      assert.isFalse(await connects("127.0.0.1", app.inspector.port))
    })
  })

  describe("durable store", () => {
    it("shows an earlier run's tasks with their events, and resumes a feed from an old seq by replay", async () => {
      const file = sqliteFile()
      await withStoredHost(file, (host) =>
        Effect.gen(function*() {
          const events = yield* host.subscribe({ sessionId: "run-1" })
          yield* host.spawnManaged("run-1", spec("old"), Effect.gen(function*() {
            yield* (yield* TaskContext).progress("working")
            return "old result"
          }))
          yield* Stream.runHead(Stream.filter(events, (event) => event._tag === "Completed"))
        }).pipe(Effect.scoped))
      const app = await startInspector({ sqlite: file })
      try {
        const tasks = (await json(await app.fetch("/api/tasks?include_terminal=true"))).body.tasks
        assert.deepStrictEqual(tasks.map((t: any) => [t.record.id, t.record.state]), [["old", "completed"]])
        assert.strictEqual(tasks[0].progress, "working", "progress replayed from the store")
        const old = (await json(await app.fetch("/api/tasks/old"))).body
        assert.deepStrictEqual(old.events.map((e: any) => e.type), ["registered", "progress", "completed"])
        assert.isTrue(old.events_complete)
        // a reader that had seen seq 1 gets the stored events after it, then live ones, and no snapshot
        const feed = await openFeed(new URL("/api/events", app.inspector.url).href, { "last-event-id": "1" })
        assert.strictEqual((await feed.next()).data.type, "hello")
        const replayed = [await feed.next(), await feed.next()]
        assert.deepStrictEqual(replayed.map((f) => [f.id, f.data.type]), [["2", "progress"], ["3", "completed"]])
        await app.run(app.host.spawnManaged("run-2", spec("new"), Effect.never))
        const live = await feed.next()
        assert.deepStrictEqual([live.data.type, live.data.task_id], ["registered", "new"])
        feed.close()
      } finally {
        await app.close()
      }
    })
  })
})

/** Polls `test` (an observation of another process or of I/O) until it holds; fails after 10 seconds. */
const waitFor = async (test: () => Promise<boolean>) => {
  for (let i = 0; i < 500; i++) {
    if (await test()) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error("condition not reached within 10 seconds")
}

/** The status of a GET with a given Host header (fetch cannot set Host). */
const rawStatus = (port: number, path: string, host: string) =>
  new Promise<number>((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      socket.write(`GET ${path} HTTP/1.1\r\n${host === "" ? "" : `Host: ${host}\r\n`}Connection: close\r\n\r\n`)
    })
    let text = ""
    socket.on("data", (chunk) => (text += chunk.toString("utf8")))
    socket.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)))
    socket.on("error", reject)
  })
