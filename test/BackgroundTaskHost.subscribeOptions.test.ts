/**
 * a subscription's own buffer size and event types (`subscribe`,
 * `watch`, and the session handle's): the type filter applies before the
 * buffer, so a busy task's progress cannot push a lifecycle subscriber's
 * events out, and `Lagged.skipped` counts only events of the asked types.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import type { BackgroundTaskEventTag, SubscriptionEvent } from "../src/index.ts"
import { makeTestHost, spec, tags } from "./utils/host.ts"
import { sqliteBackend, startHost } from "./utils/store.ts"

const lifecycle: ReadonlyArray<BackgroundTaskEventTag> = ["Registered", "Completed", "Failed", "Cancelled"]

/** A caller-owned task that reports `n` progress messages, then completes. */
const chatty = (host: Effect.Success<ReturnType<typeof makeTestHost>>["host"], id: string, n: number) =>
  Effect.gen(function*() {
    yield* host.register({ ...spec(id), scope: { sessionId: "s1" } })
    yield* host.update(id, { state: "running" })
    for (let i = 0; i < n; i++) yield* host.update(id, { progress: `step ${i}` })
    yield* host.complete(id, { state: "completed", summary: "done" })
  })

const lagged = (events: ReadonlyArray<SubscriptionEvent>) =>
  events.flatMap((event) => event._tag === "Lagged" ? [event.skipped] : [])

describe("subscribe: buffer and types", () => {
  it.effect("a lifecycle subscriber with a small buffer loses nothing to a task's progress; a plain one lags", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      const progressCount = 40
      const buffer = 4
      const audit = yield* host.subscribe({ buffer, types: lifecycle })
      const plain = yield* host.subscribe({ buffer })
      // nobody reads while the task runs
      yield* chatty(host, "t1", progressCount)
      yield* close
      const auditEvents = yield* Stream.runCollect(audit)
      const plainEvents = yield* Stream.runCollect(plain)
      assert.deepStrictEqual(tags(auditEvents), ["Registered:t1", "Completed:t1"])
      // registered, running, the progress, completed: all but the last `buffer` dropped, counted exactly
      const published = 1 + 1 + progressCount + 1
      assert.deepStrictEqual(lagged(plainEvents), [published - buffer])
      assert.strictEqual(plainEvents.length, buffer + 1)
    }))

  it.effect("Lagged.skipped counts only events of the asked types", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      const progressCount = 40
      const buffer = 5
      const progress = yield* host.subscribe({ buffer, types: ["Progress"] })
      yield* chatty(host, "t1", progressCount)
      yield* close
      const events = yield* Stream.runCollect(progress)
      assert.deepStrictEqual(lagged(events), [progressCount - buffer])
      const messages = events.flatMap((event) => event._tag === "Progress" ? [event.message] : [])
      assert.deepStrictEqual(
        messages,
        Array.from({ length: buffer }, (_, i) => `step ${progressCount - buffer + i}`)
      )
    }))

  it.effect("a subscription's buffer overrides the host's subscriberBuffer", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost({ subscriberBuffer: 2 })
      const roomy = yield* host.subscribe({ buffer: 1_000 })
      const tight = yield* host.subscribe()
      yield* chatty(host, "t1", 10)
      yield* close
      const roomyEvents = yield* Stream.runCollect(roomy)
      const tightEvents = yield* Stream.runCollect(tight)
      assert.deepStrictEqual(lagged(roomyEvents), [])
      assert.strictEqual(roomyEvents.length, 1 + 1 + 10 + 1)
      assert.deepStrictEqual(lagged(tightEvents), [roomyEvents.length - 2])
    }))

  it.effect("concurrent tasks: a terminal-only subscriber with a buffer of one per task gets every end", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      const ids = Array.from({ length: 25 }, (_, i) => `t${i}`)
      const ends = yield* host.subscribe({ buffer: ids.length, types: ["Completed"] })
      yield* Effect.forEach(ids, (id) => chatty(host, id, 8), { concurrency: "unbounded", discard: true })
      yield* close
      const events = yield* Stream.runCollect(ends)
      assert.deepStrictEqual(lagged(events), [])
      assert.sameMembers(tags(events), ids.map((id) => `Completed:${id}`))
    }))

  it.effect("bad buffer or types fail with SnapshotError saying what is expected", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ buffer: 0 }, "subscribe: buffer must be an integer >= 1 (events the subscriber may have unread), got 0"],
        [{ buffer: 1.5 }, "got 1.5"],
        [{ buffer: "10" }, "got string"],
        [{ buffer: Number.POSITIVE_INFINITY }, "got Infinity"],
        [{ types: [] }, "subscribe: types must name at least one event type"],
        [{ types: "Registered" }, "got string"],
        [{ types: ["Registered", "Lagged"] }, `subscribe: unknown event type "Lagged" in types`],
        [{ types: [7] }, "unknown event type 7"]
      ]
      for (const [options, message] of cases) {
        const error = yield* Effect.flip(host.subscribe(options as never))
        assert.strictEqual(error._tag, "SnapshotError")
        assert.include(error.message, message)
      }
      const watchError = yield* Effect.flip(host.watch({ types: ["Nope" as never] }))
      assert.include(watchError.message, `watch: unknown event type "Nope" in types, expected a non-empty array of event types (Registered,`)
      // the filter is still checked
      const filterError = yield* Effect.flip(host.subscribe({ buffer: 3, kind: "bogus" as never }))
      assert.include(filterError.message, "invalid task filter")
    }).pipe(Effect.scoped))

  it.effect("watch and the session handle take buffer and types too", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      yield* host.register({ ...spec("before"), scope: { sessionId: "s1" } })
      const s = yield* host.openSession("s1")
      const watched = yield* s.watch({ types: ["Completed"], buffer: 2 })
      assert.deepStrictEqual(watched.snapshot.map((record) => record.id), ["before"])
      assert.deepStrictEqual(watched.filter, { sessionId: "s1" })
      const sub = yield* s.subscribe({ types: ["Registered"] })
      const reader = yield* Effect.forkChild(Stream.runCollect(watched.events))
      yield* chatty(host, "t1", 3)
      yield* host.complete("before", { state: "completed" })
      yield* close
      assert.deepStrictEqual(tags(yield* Fiber.join(reader)), ["Completed:t1", "Completed:before"])
      assert.deepStrictEqual(tags(yield* Stream.runCollect(sub)), ["Registered:t1"])
    }).pipe(Effect.scoped))

  it.effect("watch({ fromSeq, types }) replays only those types from a durable store", () =>
    Effect.gen(function*() {
      const db = yield* sqliteBackend.fresh
      const { host, close } = yield* startHost(db.sql)
      yield* chatty(host as never, "t1", 3)
      const watched = yield* host.watch({ fromSeq: 0, types: ["Progress", "Completed"] })
      yield* close
      const events = yield* Stream.runCollect(watched.events)
      assert.deepStrictEqual(
        events.map((event) => event._tag === "Progress" ? event.message : event._tag),
        ["step 0", "step 1", "step 2", "Completed"]
      )
    }).pipe(Effect.scoped))
})
