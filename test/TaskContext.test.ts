/**
 * docs/contract.md §5: what a managed task sees through `TaskContext`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Option, Stream } from "effect"
import { TaskContext } from "../src/index.ts"
import { makeTestHost, spec, terminalEvents } from "./utils/host.ts"

describe("TaskContext", () => {
  it.effect("progress and setLiveState publish events for the task", () =>
    Effect.gen(function*() {
      const { host, events } = yield* makeTestHost()
      const watch = yield* host.subscribe()
      yield* host.spawnManaged(
        "s1",
        spec("m1"),
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          assert.strictEqual(ctx.taskId, "m1")
          assert.strictEqual(yield* ctx.sessionId, "s1")
          yield* ctx.progress("step 1")
          yield* ctx.setLiveState("waiting")
          yield* ctx.setLiveState("waiting")
          yield* ctx.setLiveState("running")
          yield* ctx.progress("step 2")
        })
      )
      yield* terminalEvents(watch, ["m1"])
      const all = yield* events
      assert.deepStrictEqual(
        all.map((e) => e._tag === "Progress" ? e.message : e._tag === "StateChanged" ? e.state : e._tag),
        ["Registered", "step 1", "waiting", "running", "step 2", "Completed"]
      )
    }))

  it.effect("progress after the record went terminal is a no-op", () =>
    Effect.gen(function*() {
      const { host, events } = yield* makeTestHost()
      const watch = yield* host.subscribe()
      const finalizerDone = yield* Deferred.make<void>()
      yield* host.spawnManaged(
        "s1",
        spec("m1"),
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          // a finalizer that reports progress while the task is being completed from outside
          yield* Effect.addFinalizer(() => ctx.progress("too late").pipe(Effect.andThen(Deferred.succeed(finalizerDone, undefined))))
          yield* ctx.progress("working")
          yield* Effect.never
        })
      )
      // the task is running once its first progress event is out
      yield* Stream.runHead(Stream.filter(watch, (e) => e._tag === "Progress"))
      yield* host.complete("m1", { state: "completed" })
      yield* Deferred.await(finalizerDone)
      const all = yield* events
      assert.deepStrictEqual(all.map((e) => e._tag === "Progress" ? e.message : e._tag), ["Registered", "working", "Completed"])
    }))

  it.effect("setLiveState after a cancel request changes nothing", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const requested = yield* Deferred.make<void>()
      const flipped = yield* Deferred.make<void>()
      yield* host.spawnManaged(
        "s1",
        spec("m1"),
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          yield* ctx.cancelRequested
          yield* Deferred.await(requested)
          yield* ctx.setLiveState("waiting")
          yield* Deferred.succeed(flipped, undefined)
          yield* Effect.never
        })
      )
      yield* host.requestCancel("m1")
      yield* Deferred.succeed(requested, undefined)
      yield* Deferred.await(flipped)
      assert.strictEqual(Option.getOrThrow(yield* host.get("m1")).state, "cancel_requested")
    }))
})

