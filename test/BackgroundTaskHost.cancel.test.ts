/**
 * Cancellation and shutdown: rule 4 (cancel policies act), rule 5 (no
 * orphans), `cancelManaged`, `cancelAllManaged` and the fine points on
 * requestCancel and cancel effects (docs/contract.md §4.4, §4.5, §6).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import { TaskContext } from "../src/index.ts"
import { blocking, makeTestHost, spec, tags, taskEvents, terminalEvents } from "./utils/host.ts"


describe("BackgroundTaskHost cancellation", () => {
  describe("cancelManaged", () => {
    it.effect("interrupts a managed fiber and returns after its finalizers ran", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const { started, finalized, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1"), task)
        yield* Deferred.await(started)
        yield* host.cancelManaged("s1", "m1")
        assert.isTrue(yield* Deferred.isDone(finalized))
        assert.strictEqual(Option.getOrThrow(yield* host.get("m1")).state, "cancelled")
        // the fix: no bogus event for a finished task, nor for an unknown one
        yield* host.cancelManaged("s1", "m1")
        yield* host.cancelManaged("s1", "ghost")
        assert.deepStrictEqual(tags(yield* events), ["Registered:m1", "Cancelled:m1"])
      }))

    it.effect("cancels a managed task that has not started yet; it never runs", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const ran = yield* Ref.make(false)
        yield* host.spawnManaged("s1", spec("m1"), Ref.set(ran, true))
        yield* host.cancelManaged("s1", "m1")
        yield* Effect.yieldNow
        assert.isFalse(yield* Ref.get(ran))
        assert.strictEqual(Option.getOrThrow(yield* host.get("m1")).state, "cancelled")
      }))

    it.effect("runs an external task's cancel effect once and marks it cancelled", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const runs = yield* Ref.make(0)
        yield* host.registerExternal("s1", spec("x1", { kind: "subagent" }), Ref.update(runs, (n) => n + 1))
        yield* Effect.all([host.cancelManaged("s1", "x1"), host.cancelManaged("s1", "x1")], { concurrency: "unbounded" })
        assert.strictEqual(yield* Ref.get(runs), 1)
        assert.strictEqual(Option.getOrThrow(yield* host.get("x1")).state, "cancelled")
        yield* host.cancelManaged("s1", "x1")
        assert.strictEqual(yield* Ref.get(runs), 1)
        assert.deepStrictEqual(tags(yield* events), ["Registered:x1", "Cancelled:x1"])
      }))

    it.effect("a cancel effect that dies still leaves the task cancelled, and runs only once", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const runs = yield* Ref.make(0)
        yield* host.registerExternal("s1", spec("x1"), Ref.update(runs, (n) => n + 1).pipe(Effect.andThen(Effect.die("cancel broke"))))
        yield* host.cancelManaged("s1", "x1")
        yield* host.cancelManaged("s1", "x1")
        assert.strictEqual(Option.getOrThrow(yield* host.get("x1")).state, "cancelled")
        assert.strictEqual(yield* Ref.get(runs), 1)
      }))

    it.effect("a second canceller waits until the first one's cancel effect has run", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const release = yield* Deferred.make<void>()
        yield* host.registerExternal("s1", spec("x1"), Deferred.await(release))
        const first = yield* Effect.forkChild(host.cancelManaged("s1", "x1"))
        yield* Effect.yieldNow
        const second = yield* Effect.forkChild(host.cancelManaged("s1", "x1"))
        yield* Effect.yieldNow
        assert.isUndefined(second.pollUnsafe())
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(second)
        yield* Fiber.join(first)
        assert.strictEqual(Option.getOrThrow(yield* host.get("x1")).state, "cancelled")
      }))

    it.effect("a task may cancel itself", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const after = yield* Ref.make(false)
        yield* host.spawnManaged(
          "s1",
          spec("self"),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* host.cancelManaged(yield* ctx.sessionId, ctx.taskId)
            yield* Ref.set(after, true)
          })
        )
        const [event] = yield* terminalEvents(watch, ["self"])
        assert.strictEqual(event?._tag, "Cancelled")
        assert.isFalse(yield* Ref.get(after))
      }))

    it.effect("natural completion racing cancelManaged yields exactly one terminal state and event, 200 times", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const ids = Array.from({ length: 200 }, (_, i) => `race-${i}`)
        yield* Effect.forEach(ids, (id, i) =>
          Effect.gen(function*() {
            // vary which side gets ahead: some tasks finish at once, some after a few yields
            const body = Effect.repeat(Effect.yieldNow, { times: i % 4 })
            yield* host.spawnManaged("s1", spec(id), body)
            yield* Effect.repeat(Effect.yieldNow, { times: i % 3 })
            yield* host.cancelManaged("s1", id)
          }), { concurrency: "unbounded", discard: true })
        const terminal = yield* terminalEvents(watch, ids)
        const records = yield* host.listManaged("s1")
        assert.strictEqual(records.length, 200)
        for (const record of records) assert.include(["completed", "cancelled"], record.state)
        const all = taskEvents(yield* events)
        for (const id of ids) {
          const ends = all.filter((e) => e.taskId === id && ["Completed", "Failed", "Cancelled"].includes(e._tag))
          assert.strictEqual(ends.length, 1, `one terminal event for ${id}`)
          const record = records.find((r) => r.id === id)
          assert.strictEqual(ends[0]?._tag, record?.state === "completed" ? "Completed" : "Cancelled")
        }
        assert.strictEqual(terminal.length, 200)
      }))
  })

  describe("rule 4: cancel policies act", () => {
    it.effect("abort_local interrupts the fiber; requestCancel returns the cancelled record", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const { started, finalized, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1", { cancelPolicy: "abort_local" }), task)
        yield* Deferred.await(started)
        const record = yield* host.requestCancel("m1", "user pressed stop")
        assert.strictEqual(record.state, "cancelled")
        assert.isTrue(yield* Deferred.isDone(finalized))
        const all = yield* events
        assert.deepStrictEqual(tags(all), ["Registered:m1", "CancelRequested:m1", "Cancelled:m1"])
        const requested = all[1]
        assert.deepStrictEqual(
          requested?._tag === "CancelRequested" ? requested.reason : Option.none(),
          Option.some("user pressed stop")
        )
      }))

    it.effect("external runs the cancel effect; requestCancel returns the cancelled record", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const ran = yield* Ref.make(0)
        yield* host.registerExternal("s1", spec("x1", { cancelPolicy: "external" }), Ref.update(ran, (n) => n + 1))
        const record = yield* host.requestCancel("x1")
        assert.strictEqual(record.state, "cancelled")
        assert.strictEqual(yield* Ref.get(ran), 1)
        assert.deepStrictEqual(tags(yield* events), ["Registered:x1", "CancelRequested:x1", "Cancelled:x1"])
      }))

    it.effect("cooperative: the task sees the request, ends itself and is cancelled", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const started = yield* Deferred.make<void>()
        const seen = yield* Deferred.make<Option.Option<string>>()
        yield* host.spawnManaged(
          "s1",
          spec("m1"),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            assert.isFalse(yield* ctx.isCancelRequested)
            yield* Deferred.succeed(started, undefined)
            const reason = yield* ctx.cancelRequested
            assert.isTrue(yield* ctx.isCancelRequested)
            yield* Deferred.succeed(seen, reason)
            return "stopped cleanly"
          })
        )
        yield* Deferred.await(started)
        const record = yield* host.requestCancel("m1", "wrap up")
        assert.strictEqual(record.state, "cancel_requested")
        assert.deepStrictEqual(yield* Deferred.await(seen), Option.some("wrap up"))
        const [end] = yield* terminalEvents(watch, ["m1"])
        assert.strictEqual(end?._tag, "Cancelled")
        const final = Option.getOrThrow(yield* host.get("m1"))
        assert.strictEqual(final.state, "cancelled")
        assert.deepStrictEqual(final.result, Option.some({ summary: Option.some("stopped cleanly") }))
      }))

    it.effect("cooperative: a task that fails after the request ends failed", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        yield* host.spawnManaged(
          "s1",
          spec("m1"),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* ctx.cancelRequested
            return yield* Effect.fail(new Error("cleanup failed"))
          })
        )
        yield* host.requestCancel("m1")
        const [end] = yield* terminalEvents(watch, ["m1"])
        assert.strictEqual(end?._tag, "Failed")
      }))

    it.effect("cooperative: a task that ignores the request is interrupted after the grace period", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "10 seconds" })
        const watch = yield* host.subscribe()
        const { started, finalized, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1"), task)
        yield* Deferred.await(started)
        yield* host.requestCancel("m1")
        yield* TestClock.adjust("9 seconds")
        assert.strictEqual(Option.getOrThrow(yield* host.get("m1")).state, "cancel_requested")
        assert.isFalse(yield* Deferred.isDone(finalized))
        yield* TestClock.adjust("1 second")
        const [end] = yield* terminalEvents(watch, ["m1"])
        assert.strictEqual(end?._tag, "Cancelled")
        assert.isTrue(yield* Deferred.isDone(finalized))
      }))

    it.effect("a zero grace period interrupts a cooperative task at once", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: 0 })
        const watch = yield* host.subscribe()
        const { started, finalized, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1"), task)
        yield* Deferred.await(started)
        const record = yield* host.requestCancel("m1")
        assert.strictEqual(record.state, "cancel_requested")
        const [end] = yield* terminalEvents(watch, ["m1"])
        assert.strictEqual(end?._tag, "Cancelled")
        assert.isTrue(yield* Deferred.isDone(finalized))
      }))

    it.effect("the default grace period is 5 seconds", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { started, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1"), task)
        yield* Deferred.await(started)
        yield* host.requestCancel("m1")
        yield* TestClock.adjust("4999 millis")
        assert.strictEqual(Option.getOrThrow(yield* host.get("m1")).state, "cancel_requested")
        yield* TestClock.adjust("1 millis")
        const [end] = yield* terminalEvents(watch, ["m1"])
        assert.strictEqual(end?._tag, "Cancelled")
      }))

    it.effect("cooperative on an external task: the owner gets the grace period, then the cancel effect runs", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const ran = yield* Ref.make(0)
        yield* host.registerExternal("s1", spec("x1"), Ref.update(ran, (n) => n + 1))
        const record = yield* host.requestCancel("x1")
        assert.strictEqual(record.state, "cancel_requested")
        yield* TestClock.adjust("4 seconds")
        assert.strictEqual(yield* Ref.get(ran), 0)
        yield* TestClock.adjust("1 second")
        const [end] = yield* terminalEvents(watch, ["x1"])
        assert.strictEqual(end?._tag, "Cancelled")
        assert.strictEqual(yield* Ref.get(ran), 1)
      }))

    it.effect("cooperative on an external task: an owner that finishes in time stops the grace timer", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const ran = yield* Ref.make(0)
        yield* host.registerExternal("s1", spec("x1"), Ref.update(ran, (n) => n + 1))
        yield* host.requestCancel("x1")
        yield* host.markTerminal("s1", "x1", "cancelled")
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(yield* Ref.get(ran), 0)
        assert.strictEqual(Option.getOrThrow(yield* host.get("x1")).state, "cancelled")
      }))

    it.effect("a repeated request is a no-op without a second event; a record with nothing to act on stays cancel_requested", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.register({ scope: { sessionId: "s1" }, id: "r1", kind: "other", producer: "p", cancelPolicy: "abort_local" })
        const first = yield* host.requestCancel("r1", "one")
        const second = yield* host.requestCancel("r1", "two")
        assert.strictEqual(first.state, "cancel_requested")
        assert.strictEqual(second.state, "cancel_requested")
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(Option.getOrThrow(yield* host.get("r1")).state, "cancel_requested")
        yield* host.complete("r1", { state: "cancelled", summary: "owner stopped it" })
        assert.deepStrictEqual(tags(yield* events), ["Registered:r1", "CancelRequested:r1", "Cancelled:r1"])
      }))

    it.effect("requestCancel of a finished task is InvalidTransition", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register({ scope: { sessionId: "s1" }, id: "r1", kind: "other", producer: "p" })
        yield* host.complete("r1", { state: "completed" })
        const error = yield* Effect.flip(host.requestCancel("r1"))
        assert.strictEqual(error._tag, "InvalidTransition")
      }))

    it.effect("update to cancel_requested is a cancel request: the policy acts", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { started, finalized, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1", { cancelPolicy: "abort_local" }), task)
        yield* Deferred.await(started)
        const record = yield* host.update("m1", { state: "cancel_requested", progress: "stopping" })
        assert.strictEqual(record.state, "cancelled")
        assert.isTrue(yield* Deferred.isDone(finalized))
      }))
  })

  describe("rule 5: no orphans", () => {
    it.effect("complete interrupts a running managed fiber and keeps the state it was given", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const { started, finalized, task } = yield* blocking
        yield* host.spawnManaged("s1", spec("m1"), task)
        yield* Deferred.await(started)
        const record = yield* host.complete("m1", { state: "completed", summary: "done from outside" })
        assert.strictEqual(record.state, "completed")
        assert.isTrue(yield* Deferred.isDone(finalized))
        assert.deepStrictEqual(tags(yield* events), ["Registered:m1", "Completed:m1"])
      }))

    it.effect("cancelAllManaged cancels every live task of the session concurrently and returns them", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const finalizers = yield* Ref.make(0)
        const ready = yield* Deferred.make<void>()
        const startedCount = yield* Ref.make(0)
        for (let i = 0; i < 5; i++) {
          yield* host.spawnManaged(
            "s1",
            spec(`m${i}`),
            Ref.updateAndGet(startedCount, (n) => n + 1).pipe(
              Effect.flatMap((n) => n === 5 ? Deferred.succeed(ready, undefined) : Effect.void),
              Effect.andThen(Effect.never),
              Effect.ensuring(Ref.update(finalizers, (n) => n + 1))
            )
          )
        }
        const cancelRan = yield* Ref.make(false)
        yield* host.registerExternal("s1", spec("x1"), Ref.set(cancelRan, true))
        yield* host.register({ scope: { sessionId: "s1" }, id: "r1", kind: "other", producer: "p" })
        yield* host.register({ scope: { sessionId: "s2" }, id: "other", kind: "other", producer: "p" })
        yield* Deferred.await(ready)
        const cancelled = yield* host.cancelAllManaged("s1")
        assert.deepStrictEqual(cancelled.map((r) => r.id), ["m0", "m1", "m2", "m3", "m4", "x1", "r1"])
        for (const record of cancelled) assert.strictEqual(record.state, "cancelled")
        assert.strictEqual(yield* Ref.get(finalizers), 5)
        assert.isTrue(yield* Ref.get(cancelRan))
        assert.strictEqual(Option.getOrThrow(yield* host.get("other")).state, "pending")
        const all = yield* events
        assert.strictEqual(all.filter((e) => e._tag === "Cancelled" && e.sessionId === "s1").length, 7)
      }))

    it.effect("a task may cancel every task of its own session, itself included", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const sibling = yield* blocking
        yield* host.spawnManaged("s1", spec("sibling"), sibling.task)
        yield* Deferred.await(sibling.started)
        yield* host.spawnManaged(
          "s1",
          spec("leader"),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* host.cancelAllManaged(yield* ctx.sessionId)
          })
        )
        const ends = yield* terminalEvents(watch, ["sibling", "leader"])
        assert.deepStrictEqual(ends.map((e) => e._tag), ["Cancelled", "Cancelled"])
        assert.isTrue(yield* Deferred.isDone(sibling.finalized))
      }))

    it.effect("cancelAllManaged returns only after slow finalizers ran, in the task's scope and in its body; a second cancel meanwhile does not cut them short", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const gate = yield* Deferred.make<void>()
        const log = yield* Ref.make<ReadonlyArray<string>>([])
        const started = yield* Ref.make(0)
        // a finalizer in the task's own scope (run by its exit) and one around its body, both waiting for the gate
        yield* host.spawnManaged(
          "s1",
          spec("scoped"),
          Effect.addFinalizer(() => Deferred.await(gate).pipe(Effect.andThen(Ref.update(log, (l) => [...l, "scoped"])))).pipe(
            Effect.andThen(Ref.update(started, (n) => n + 1)),
            Effect.andThen(Effect.never)
          )
        )
        yield* host.spawnManaged(
          "s1",
          spec("ensuring"),
          Ref.update(started, (n) => n + 1).pipe(
            Effect.andThen(Effect.never),
            Effect.ensuring(Deferred.await(gate).pipe(Effect.andThen(Ref.update(log, (l) => [...l, "ensuring"]))))
          )
        )
        yield* host.spawnManaged("s1", spec("plain"), Ref.update(started, (n) => n + 1).pipe(Effect.andThen(Effect.never)))
        while ((yield* Ref.get(started)) < 3) yield* Effect.yieldNow
        const cancel = yield* Effect.forkChild(host.cancelAllManaged("s1"))
        const again = yield* Effect.forkChild(host.cancelManaged("s1", "scoped"))
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow
        // both finalizers wait: neither cancel has returned, and the waiting tasks are still live
        assert.isUndefined(cancel.pollUnsafe())
        assert.isUndefined(again.pollUnsafe())
        assert.deepStrictEqual(yield* Ref.get(log), [])
        assert.strictEqual(Option.getOrThrow(yield* host.get("scoped")).state, "running")
        assert.strictEqual(Option.getOrThrow(yield* host.get("plain")).state, "cancelled")
        yield* Deferred.succeed(gate, undefined)
        const cancelled = yield* Fiber.join(cancel)
        yield* Fiber.join(again)
        assert.deepStrictEqual([...(yield* Ref.get(log))].sort(), ["ensuring", "scoped"])
        assert.deepStrictEqual(cancelled.map((r) => `${r.id}:${r.state}`), ["scoped:cancelled", "ensuring:cancelled", "plain:cancelled"])
        // one terminal event each
        const ends = tags(yield* events).filter((t) => !t.startsWith("Registered"))
        assert.deepStrictEqual([...ends].sort(), ["Cancelled:ensuring", "Cancelled:plain", "Cancelled:scoped"])
      }))

    it.effect("closing the host returns only after a slow finalizer in a task's scope ran; the task ends cancelled, once", () =>
      Effect.gen(function*() {
        const { close, events, host } = yield* makeTestHost()
        const gate = yield* Deferred.make<void>()
        const ran = yield* Ref.make(false)
        const started = yield* Deferred.make<void>()
        yield* host.spawnManaged(
          "s1",
          spec("slow"),
          Effect.addFinalizer(() => Deferred.await(gate).pipe(Effect.andThen(Ref.set(ran, true)))).pipe(
            Effect.andThen(Deferred.succeed(started, undefined)),
            Effect.andThen(Effect.never)
          )
        )
        yield* Deferred.await(started)
        const closing = yield* Effect.forkChild(close)
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow
        assert.isUndefined(closing.pollUnsafe())
        assert.isFalse(yield* Ref.get(ran))
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(closing)
        assert.isTrue(yield* Ref.get(ran))
        assert.deepStrictEqual(tags(yield* events), ["Registered:slow", "Cancelled:slow"])
      }))

    it.effect("a finalizer in a task's scope that dies fails the task, whether the body succeeded, failed or was cancelled, as Effect.scoped around the body would", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const started = yield* Deferred.make<void>()
        const dies = Effect.addFinalizer(() => Effect.die("finalizer broke"))
        yield* host.spawnManaged("s1", spec("ok"), Effect.andThen(dies, Effect.succeed("done")))
        yield* host.spawnManaged("s1", spec("failed"), Effect.andThen(dies, Effect.fail("own failure")))
        yield* host.spawnManaged(
          "s1",
          spec("cancelled", { cancelPolicy: "abort_local" }),
          dies.pipe(Effect.andThen(Deferred.succeed(started, undefined)), Effect.andThen(Effect.never))
        )
        yield* Deferred.await(started)
        yield* host.cancelManaged("s1", "cancelled")
        const outcomes = yield* Effect.forEach(["ok", "failed", "cancelled"], (id) =>
          Effect.map(host.await(id), (r) => `${r.id}:${r.state}:${Option.getOrUndefined(Option.flatMap(r.failure, (f) => f.summary))}`))
        // Effect.scoped's exit in each case: the defect; the body's own failure first; the interruption and the defect
        assert.deepStrictEqual(outcomes, [
          "ok:failed:finalizer broke",
          "failed:failed:own failure",
          "cancelled:failed:finalizer broke"
        ])
      }))

    it.effect("a task inside an uninterruptible region when cancelAllManaged runs finishes the region, then ends cancelled, once", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const inRegion = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const after = yield* Ref.make(false)
        yield* host.spawnManaged(
          "s1",
          spec("critical"),
          Effect.uninterruptible(Deferred.succeed(inRegion, undefined).pipe(Effect.andThen(Deferred.await(release)))).pipe(
            // interrupted as the region ends: this never runs
            Effect.andThen(Ref.set(after, true)),
            Effect.as("finished")
          )
        )
        const other = yield* blocking
        yield* host.spawnManaged("s1", spec("other"), other.task)
        yield* Deferred.await(inRegion)
        yield* Deferred.await(other.started)
        const cancel = yield* Effect.forkChild(host.cancelAllManaged("s1"))
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow
        assert.isUndefined(cancel.pollUnsafe())
        assert.isTrue(yield* Deferred.isDone(other.finalized))
        yield* Deferred.succeed(release, undefined)
        const cancelled = yield* Fiber.join(cancel)
        assert.deepStrictEqual(cancelled.map((r) => `${r.id}:${r.state}`), ["critical:cancelled", "other:cancelled"])
        assert.isFalse(yield* Ref.get(after))
        assert.deepStrictEqual(
          tags(yield* events),
          ["Registered:critical", "Registered:other", "Cancelled:other", "Cancelled:critical"]
        )
      }))

    it.effect("shutdown waits for a hanging external cancel effect no longer than the grace period", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost({ cancelGracePeriod: "2 seconds" })
        yield* host.registerExternal("s1", spec("x1"), Effect.never)
        const closing = yield* Effect.forkChild(events)
        yield* Effect.yieldNow
        assert.isUndefined(closing.pollUnsafe())
        yield* TestClock.adjust("2 seconds")
        const all = yield* Fiber.join(closing)
        assert.deepStrictEqual(tags(all), ["Registered:x1", "Cancelled:x1"])
      }))

    it.effect("closing the layer interrupts every fiber, runs cancel effects, marks records cancelled, ends streams", () =>
      Effect.gen(function*() {
        const { host, close } = yield* makeTestHost()
        const stream = yield* host.subscribe({ sessionId: "s1" })
        const collector = yield* Effect.forkChild(Stream.runCollect(stream))
        const managed = yield* blocking
        const hidden = yield* blocking
        yield* host.spawnManaged("s1", spec("m1"), managed.task)
        yield* host.spawnHidden("s1", "helper", hidden.task)
        const cancelRan = yield* Ref.make(false)
        yield* host.registerExternal("s1", spec("x1"), Ref.set(cancelRan, true))
        yield* host.register({ scope: { sessionId: "s1" }, id: "r1", kind: "other", producer: "p" })
        yield* host.register({ scope: { sessionId: "s1" }, id: "done", kind: "other", producer: "p" })
        yield* host.complete("done", { state: "completed" })
        yield* Deferred.await(managed.started)
        yield* Deferred.await(hidden.started)
        yield* close
        assert.isTrue(yield* Deferred.isDone(managed.finalized))
        assert.isTrue(yield* Deferred.isDone(hidden.finalized))
        assert.isTrue(yield* Ref.get(cancelRan))
        // the stream ended by itself, after the shutdown's own events
        const all = taskEvents(yield* Fiber.join(collector))
        const cancelled = all.filter((e) => e._tag === "Cancelled").map((e) => e.taskId).sort()
        assert.deepStrictEqual(cancelled, ["m1", "r1", "x1"])
        assert.strictEqual(all.filter((e) => e.taskId === "done" && e._tag === "Cancelled").length, 0)
      }))
  })
})
