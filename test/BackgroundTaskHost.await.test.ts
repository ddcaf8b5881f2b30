/**
 * `await` (a task's final record, on the host and the session
 * handle), the host's reason on a cooperative task that ends itself after a
 * cancel request, and messages that say what to do.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import { type BackgroundTaskRecord, TaskContext } from "../src/index.ts"
import { blocking, makeTestHost, spec, tags } from "./utils/host.ts"
import { sqliteBackend, startHost, taskRows } from "./utils/store.ts"

const summaryOf = (record: BackgroundTaskRecord) =>
  Option.getOrUndefined(Option.flatMap(record.state === "failed" ? record.failure : record.result, (o) => o.summary))

describe("await", () => {
  it.effect("returns the final record of a task whose body had not run when spawnManaged returned", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const spawned = yield* host.spawnManaged("s1", spec("m1"), Effect.succeed("done"))
      assert.strictEqual(spawned.state, "running")
      const record = yield* host.await("m1")
      assert.strictEqual(record.state, "completed")
      assert.strictEqual(summaryOf(record), "done")
      assert.deepStrictEqual(record, Option.getOrThrow(yield* host.get("m1")))
    }))

  it.effect("many concurrent waiters all get the same final record; a terminal task answers at once", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const gate = yield* Deferred.make<void>()
      yield* host.spawnManaged("s1", spec("m1"), Effect.as(Deferred.await(gate), "opened"))
      const waiters = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 20 }, (_, i) => host.await("m1", i % 2 === 0 ? { sessionId: "s1" } : {})), {
          concurrency: "unbounded"
        })
      )
      yield* Effect.yieldNow
      assert.isUndefined(waiters.pollUnsafe())
      yield* Deferred.succeed(gate, undefined)
      const records = yield* Fiber.join(waiters)
      assert.strictEqual(records.length, 20)
      for (const record of records) {
        assert.strictEqual(record.state, "completed")
        assert.strictEqual(record.revision, records[0]!.revision)
      }
      // already terminal: at once
      assert.strictEqual((yield* host.await("m1")).state, "completed")
    }))

  it.effect("an unknown id, or one not in the named session, fails with TaskNotFound", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      yield* host.registerExternal("s1", spec("x1"))
      const unknown = yield* Effect.flip(host.await("ghost"))
      assert.strictEqual(unknown._tag, "TaskNotFound")
      assert.strictEqual(unknown.message, `task "ghost" not found`)
      const elsewhere = yield* Effect.flip(host.await("x1", { sessionId: "s2" }))
      assert.strictEqual(elsewhere.message, `task "x1" not found in session "s2"`)
    }))

  it.effect("bad options fail with SessionError", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const empty = yield* Effect.flip(host.await("x1", { sessionId: "" }))
      assert.strictEqual(empty._tag, "SessionError")
      const notObject = yield* Effect.flip(host.await("x1", 5 as never))
      assert.strictEqual(notObject.message, "await: options must be an object, got number")
    }))

  it.effect("a task unregistered while awaited fails the wait with TaskNotFound", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      yield* host.registerExternal("s1", spec("x1"))
      const waiter = yield* Effect.forkChild(Effect.flip(host.await("x1")))
      yield* Effect.yieldNow
      assert.isUndefined(waiter.pollUnsafe())
      yield* host.unregisterExternal("s1", "x1")
      const error = yield* Fiber.join(waiter)
      assert.strictEqual(error._tag, "TaskNotFound")
    }))

  it.effect("a caller-owned task ends when its caller completes it; an external one when cancelled", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      yield* host.register({ ...spec("c1"), scope: { sessionId: "s1" } })
      yield* host.registerExternal("s1", spec("x1"))
      const waiters = yield* Effect.forkChild(Effect.all([host.await("c1"), host.await("x1")], { concurrency: 2 }))
      yield* Effect.yieldNow
      yield* host.complete("c1", { state: "failed", summary: "no" })
      yield* host.cancelManaged("s1", "x1")
      const [c1, x1] = yield* Fiber.join(waiters)
      assert.strictEqual(c1.state, "failed")
      assert.strictEqual(summaryOf(c1), "no")
      assert.strictEqual(x1.state, "cancelled")
    }))

  it.effect("at shutdown the waiter gets the cancelled record", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      const { started, task } = yield* blocking
      yield* host.spawnManaged("s1", spec("m1"), task)
      yield* Deferred.await(started)
      const waiter = yield* Effect.forkChild(host.await("m1"))
      yield* Effect.yieldNow
      yield* close
      const record = yield* Fiber.join(waiter)
      assert.strictEqual(record.state, "cancelled")
      // a closed host refuses new waits
      assert.strictEqual((yield* Effect.flip(host.await("m1")))._tag, "SessionError")
    }))

  it.effect("session.await waits for the session's task; a task's timeout ends it (TestClock)", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const s = yield* host.openSession("s1")
      yield* s.spawn(spec("slow", { timeout: "30 seconds" }), Effect.never)
      const waiter = yield* Effect.forkChild(s.await("slow"))
      yield* TestClock.adjust("30 seconds")
      const record = yield* Fiber.join(waiter)
      assert.strictEqual(record.state, "failed")
      assert.strictEqual(summaryOf(record), "timed out after 30s")
      assert.strictEqual((yield* Effect.flip(s.await("ghost"))).message, `task "ghost" not found in session "s1"`)
    }).pipe(Effect.scoped))

  it.effect("on a durable store it returns once the end is committed", () =>
    Effect.gen(function*() {
      const db = yield* sqliteBackend.fresh
      const { host } = yield* startHost(db.sql)
      yield* host.spawnManaged("s1", spec("m1"), Effect.succeed("stored"))
      const record = yield* host.await("m1")
      assert.strictEqual(record.state, "completed")
      const row = (yield* taskRows(db.sql)).find((row) => row.task_id === "m1")
      assert.strictEqual(row?.state, "completed")
    }).pipe(Effect.scoped))
})

describe("a cooperative task that ends itself after a cancel request", () => {
  it.effect("ends cancelled with the host's reason unless it gave its own summary", () =>
    Effect.gen(function*() {
      const { host, events } = yield* makeTestHost()
      const quiet = Effect.gen(function*() {
        yield* (yield* TaskContext).cancelRequested
      })
      const own = Effect.as(quiet, "stopped at a checkpoint")
      yield* host.spawnManaged("s1", spec("quiet"), quiet)
      yield* host.spawnManaged("s1", spec("own"), own)
      yield* host.spawnManaged("s1", spec("noReason"), quiet)
      yield* Effect.yieldNow
      yield* host.requestCancel("quiet", "user closed the panel")
      yield* host.requestCancel("own", "user closed the panel")
      yield* host.update("noReason", { state: "cancel_requested" })
      const quietEnd = yield* host.await("quiet")
      const ownEnd = yield* host.await("own")
      const noReasonEnd = yield* host.await("noReason")
      assert.strictEqual(quietEnd.state, "cancelled")
      assert.strictEqual(summaryOf(quietEnd), "user closed the panel")
      assert.strictEqual(ownEnd.state, "cancelled")
      assert.strictEqual(summaryOf(ownEnd), "stopped at a checkpoint")
      assert.strictEqual(noReasonEnd.state, "cancelled")
      assert.isUndefined(summaryOf(noReasonEnd))
      assert.includeMembers(tags(yield* events), ["Cancelled:quiet", "Cancelled:own", "Cancelled:noReason"])
    }))

  it.effect("a session close gives \"session closed\"", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      yield* Effect.scoped(Effect.gen(function*() {
        const s = yield* host.openSession("s1")
        yield* s.spawn(
          spec("t1", { closePolicy: "cancel" }),
          Effect.gen(function*() {
        yield* (yield* TaskContext).cancelRequested
      })
        )
        yield* Effect.yieldNow
      }))
      const record = yield* host.await("t1")
      assert.strictEqual(record.state, "cancelled")
      assert.strictEqual(summaryOf(record), "session closed")
    }))
})

describe("messages that say what to do", () => {
  it.effect("a negative timeout asks for a non-negative duration", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const error = yield* Effect.flip(host.spawnManaged("s1", spec("t1", { timeout: -5 }), Effect.void))
      assert.strictEqual(error._tag, "RegistrationError")
      assert.include(error.message, "Expected a non-negative duration")
      assert.include(error.message, `at ["timeout"]`)
      assert.notInclude(error.message, "<Declaration>")
      const grace = yield* Effect.flip(host.registerExternal("s1", spec("t2", { cancelGracePeriod: "-1 second" })))
      assert.include(grace.message, `Expected a non-negative duration (a Duration, milliseconds >= 0, or text such as "30 seconds")`)
    }))

  it.effect("complete with a live state says complete takes a terminal one, and what to use instead", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      yield* host.register({ ...spec("t1"), scope: { sessionId: "s1" } })
      yield* host.update("t1", { state: "running" })
      const error = yield* Effect.flip(host.complete("t1", { state: "running" }))
      assert.strictEqual(error._tag, "InvalidTransition")
      assert.strictEqual(
        error.message,
        `task "t1" cannot move from running to running: complete takes a terminal state (completed, failed or cancelled); use update to move a live task to running`
      )
      const bogus = yield* Effect.flip(host.complete("t1", { state: "done" as never }))
      assert.include(bogus.message, "not a task state")
      assert.include(bogus.message, "complete takes a terminal state")
    }))
})

describe("the latest progress message on the record", () => {
  it.effect("a view that re-syncs with list after Lagged still has each task's latest message", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const gate = yield* Deferred.make<void>()
      const lagging = yield* host.subscribe({ buffer: 1 })
      yield* host.spawnManaged(
        "s1",
        spec("m1"),
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          for (let i = 1; i <= 5; i++) yield* ctx.progress(`step ${i} of 5`)
          yield* Deferred.await(gate)
        })
      )
      yield* host.register({ ...spec("c1"), scope: { sessionId: "s1" } })
      yield* host.update("c1", { progress: "queued behind m1" })
      // the subscriber falls behind: a view would re-sync now
      const reader = yield* Effect.forkChild(
        lagging.pipe(
          Stream.filter((event) => event._tag === "Lagged"),
          Stream.take(1),
          Stream.runDrain
        )
      )
      yield* Fiber.join(reader)
      const listed = yield* host.list()
      const progressOf = (id: string) => Option.getOrUndefined(listed.find((r) => r.id === id)!.progress)
      assert.strictEqual(progressOf("c1"), "queued behind m1")
      yield* Deferred.succeed(gate, undefined)
      const ended = yield* host.await("m1")
      assert.deepStrictEqual(ended.progress, Option.some("step 5 of 5"))
    }))

  it.effect("on a durable store the latest message survives a restart", () =>
    Effect.gen(function*() {
      const db = yield* sqliteBackend.fresh
      const first = yield* startHost(db.sql)
      yield* first.host.register({ ...spec("c1"), scope: { sessionId: "s1" } })
      yield* first.host.update("c1", { state: "running", progress: "half way" })
      yield* first.close
      const second = yield* startHost(db.sql)
      const record = Option.getOrThrow(yield* second.host.get("c1"))
      assert.deepStrictEqual(record.progress, Option.some("half way"))
    }).pipe(Effect.scoped))
})

describe("await on a durable host that stops (its lease taken over)", () => {
  it.effect("every waiter fails with the host's SessionError, whoever owns the task", () =>
    Effect.gen(function*() {
      const db = yield* sqliteBackend.fresh
      const t0 = yield* Clock.currentTimeMillis
      const a = yield* startHost(db.sql, { lease: { owner: "host-a" } })
      yield* a.host.register({ ...spec("caller"), scope: { sessionId: "s1" } })
      yield* a.host.registerExternal("s1", spec("external"))
      const { started, task } = yield* blocking
      yield* a.host.spawnManaged("s1", spec("worker"), task)
      yield* Deferred.await(started)
      const waiters = yield* Effect.forkChild(
        Effect.all(["caller", "external", "worker"].map((id) => Effect.flip(a.host.await(id))), { concurrency: 3 })
      )
      yield* Effect.yieldNow
      yield* db.sql`UPDATE task_host_lease SET owner = 'host-x', expires_at = ${t0 + 60_000}`.pipe(Effect.orDie)
      // the next durable call finds the lease gone: the host stops
      yield* Effect.exit(a.host.register({ ...spec("after"), scope: { sessionId: "s1" } }))
      const errors = yield* Fiber.join(waiters)
      for (const error of errors) {
        assert.strictEqual(error._tag, "SessionError")
        assert.include(error.message, "host-a stopped: another host has taken its store's lease")
      }
    }).pipe(Effect.scoped))
})
