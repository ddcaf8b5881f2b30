/**
 * Concurrency limits (docs/policies.md §7): `concurrency.perSession` and
 * `concurrency.perKind`. Managed tasks beyond a limit wait in `pending`, in
 * FIFO order, and start when a slot frees; cancelling a queued task never
 * starts it; `stats.queued`; shutdown; invalid limits.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Ref, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { BackgroundTaskHost, type BackgroundTaskHostOptions, type SubscriptionEvent } from "../src/index.ts"
import { makeTestHost, spec, tags, type TestHost } from "./utils/host.ts"

type Host = TestHost["host"]

/**
 * Managed task bodies that log their start and wait until released: `task(id)`
 * makes one, `started(id)` waits until it runs, `release(id)` lets it end.
 */
const gates = Effect.gen(function*() {
  const log = yield* Ref.make<ReadonlyArray<string>>([])
  const gates = new Map<string, { readonly started: Deferred.Deferred<void>; readonly release: Deferred.Deferred<void> }>()
  const gate = (id: string) => {
    let found = gates.get(id)
    if (found === undefined) {
      found = { started: Deferred.makeUnsafe<void>(), release: Deferred.makeUnsafe<void>() }
      gates.set(id, found)
    }
    return found
  }
  return {
    /** The ids of the tasks whose body ran, in the order they started. */
    log: Ref.get(log),
    task: (id: string) =>
      Ref.update(log, (ids) => [...ids, id]).pipe(
        Effect.andThen(Deferred.succeed(gate(id).started, undefined)),
        Effect.andThen(Deferred.await(gate(id).release))
      ),
    started: (id: string) => Deferred.await(gate(id).started),
    release: (id: string) => Deferred.succeed(gate(id).release, undefined)
  }
})

const stateOf = (host: Host, taskId: string) => host.get(taskId).pipe(Effect.map((r) => Option.getOrThrow(r).state))

const statesOf = (host: Host, taskIds: ReadonlyArray<string>) =>
  Effect.forEach(taskIds, (id) => Effect.map(stateOf(host, id), (state) => `${id}:${state}`))

// -- the one place that reads the event union beyond `tags` ---------------------

/** The ids of the tasks moved to `running` by a `StateChanged`, in event order. */
const startedIds = (events: ReadonlyArray<SubscriptionEvent>) =>
  events.flatMap((event) => event._tag === "StateChanged" && event.state === "running" ? [event.taskId] : [])

/** Every event published so far, on a stream subscribed earlier and read once. */
const eventsSoFar = (host: Host, stream: Stream.Stream<SubscriptionEvent>) =>
  Effect.flatMap(host.stats, ({ seq }) =>
    stream.pipe(Stream.takeUntil((event) => event._tag !== "Lagged" && event.seq >= seq), Stream.runCollect))

describe("BackgroundTaskHost concurrency limits", () => {
  it.effect("perSession: beyond the limit a managed task is registered pending and does not run; other sessions are not held back", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 2 } })
      const g = yield* gates
      const records = yield* Effect.forEach(["a", "b", "c", "d"], (id) => host.spawnManaged("s1", spec(id), g.task(id)))
      assert.deepStrictEqual(records.map((r) => r.state), ["running", "running", "pending", "pending"])
      yield* host.spawnManaged("s2", spec("e"), g.task("e"))
      yield* Effect.all([g.started("a"), g.started("b"), g.started("e")])
      assert.deepStrictEqual(yield* statesOf(host, ["a", "b", "c", "d", "e"]), [
        "a:running",
        "b:running",
        "c:pending",
        "d:pending",
        "e:running"
      ])
      const stats = yield* host.stats
      assert.strictEqual(stats.queued, 2)
      assert.strictEqual(stats.fibers, 3)
      assert.sameMembers([...(yield* g.log)], ["a", "b", "e"])
    }))

  it.effect("queued tasks start in FIFO order as slots free, each with a StateChanged to running", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 2 } })
      const watch = yield* host.subscribe()
      const g = yield* gates
      const ids = ["t0", "t1", "t2", "t3", "t4", "t5"]
      for (const id of ids) yield* host.spawnManaged("s1", spec(id), g.task(id))
      yield* Effect.all([g.started("t0"), g.started("t1")])
      assert.strictEqual((yield* host.stats).queued, 4)
      // slots free in an order unrelated to the queue's: the queue still starts oldest first
      yield* g.release("t1")
      yield* g.started("t2")
      assert.deepStrictEqual(yield* statesOf(host, ["t3", "t4", "t5"]), ["t3:pending", "t4:pending", "t5:pending"])
      yield* g.release("t0")
      yield* g.started("t3")
      assert.deepStrictEqual(yield* statesOf(host, ["t4", "t5"]), ["t4:pending", "t5:pending"])
      yield* g.release("t3")
      yield* g.started("t4")
      yield* g.release("t2")
      yield* g.started("t5")
      assert.deepStrictEqual(yield* g.log, ids)
      assert.strictEqual((yield* host.stats).queued, 0)
      const events = yield* eventsSoFar(host, watch)
      assert.deepStrictEqual(startedIds(events), ["t2", "t3", "t4", "t5"])
      // each queued task started in the step its predecessor ended in: right after its terminal event
      const order = tags(events).filter((tag) => !tag.startsWith("Registered"))
      assert.deepStrictEqual(order, [
        "Completed:t1",
        "StateChanged:t2",
        "Completed:t0",
        "StateChanged:t3",
        "Completed:t3",
        "StateChanged:t4",
        "Completed:t2",
        "StateChanged:t5"
      ])
    }))

  it.effect("a slot is freed however the running task ends: failure, cancellation, complete, markTerminal", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("fails"), g.task("fails").pipe(Effect.andThen(Effect.fail("boom"))))
      for (const id of ["cancelled", "completed", "marked", "last"]) {
        yield* host.spawnManaged("s1", spec(id, { cancelPolicy: "abort_local" }), g.task(id))
      }
      yield* g.started("fails")
      yield* g.release("fails")
      yield* g.started("cancelled")
      yield* host.requestCancel("cancelled")
      yield* g.started("completed")
      yield* host.complete("completed", { state: "completed" })
      yield* g.started("marked")
      yield* host.markTerminal("s1", "marked", "failed")
      yield* g.started("last")
      assert.deepStrictEqual(yield* statesOf(host, ["fails", "cancelled", "completed", "marked", "last"]), [
        "fails:failed",
        "cancelled:cancelled",
        "completed:completed",
        "marked:failed",
        "last:running"
      ])
      assert.deepStrictEqual(yield* g.log, ["fails", "cancelled", "completed", "marked", "last"])
    }))

  it.effect("perKind: the limit counts a kind across sessions, FIFO; other kinds are not held back", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perKind: { monitor: 1 } } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("m1"), g.task("m1"))
      yield* host.spawnManaged("s2", spec("m2"), g.task("m2"))
      yield* host.spawnManaged("s3", spec("m3"), g.task("m3"))
      yield* host.spawnManaged("s1", spec("m4"), g.task("m4"))
      const sub = yield* host.spawnManaged("s1", spec("x1", { kind: "subagent" }), g.task("x1"))
      const other = yield* host.spawnManaged("s2", spec("o1", { kind: "other" }), g.task("o1"))
      assert.strictEqual(sub.state, "running")
      assert.strictEqual(other.state, "running")
      yield* Effect.all([g.started("m1"), g.started("x1"), g.started("o1")])
      assert.deepStrictEqual(yield* statesOf(host, ["m2", "m3", "m4"]), ["m2:pending", "m3:pending", "m4:pending"])
      assert.strictEqual((yield* host.stats).queued, 3)
      yield* g.release("m1")
      yield* g.started("m2")
      yield* g.release("m2")
      yield* g.started("m3")
      yield* g.release("m3")
      yield* g.started("m4")
      assert.deepStrictEqual((yield* g.log).filter((id) => id.startsWith("m")), ["m1", "m2", "m3", "m4"])
    }))

  it.effect("the queue starts every task that fits: one blocked by its kind does not hold back another kind behind it", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perKind: { monitor: 1, subagent: 1 } } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("m1"), g.task("m1"))
      yield* host.spawnManaged("s1", spec("a1", { kind: "subagent" }), g.task("a1"))
      // queue: m2 first, then a2
      yield* host.spawnManaged("s1", spec("m2"), g.task("m2"))
      yield* host.spawnManaged("s1", spec("a2", { kind: "subagent" }), g.task("a2"))
      yield* Effect.all([g.started("m1"), g.started("a1")])
      yield* g.release("a1")
      yield* g.started("a2")
      assert.strictEqual(yield* stateOf(host, "m2"), "pending")
      yield* g.release("m1")
      yield* g.started("m2")
      assert.deepStrictEqual(yield* g.log, ["m1", "a1", "a2", "m2"])
    }))

  it.effect("both limits together: a free session slot goes to the oldest task whose kind also has one", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 2, perKind: { monitor: 1 } } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("m1"), g.task("m1"))
      yield* host.spawnManaged("s1", spec("x1", { kind: "subagent" }), g.task("x1"))
      // m2: its kind is full; x2: its session is full
      yield* host.spawnManaged("s1", spec("m2"), g.task("m2"))
      yield* host.spawnManaged("s1", spec("x2", { kind: "subagent" }), g.task("x2"))
      yield* Effect.all([g.started("m1"), g.started("x1")])
      assert.strictEqual((yield* host.stats).queued, 2)
      yield* g.release("x1")
      yield* g.started("x2")
      assert.strictEqual(yield* stateOf(host, "m2"), "pending")
      yield* g.release("x2")
      // the session has a free slot, but the kind has none: m2 still waits
      yield* host.spawnManaged("s1", spec("x3", { kind: "subagent" }), g.task("x3"))
      yield* g.started("x3")
      assert.strictEqual(yield* stateOf(host, "m2"), "pending")
      yield* g.release("m1")
      yield* g.started("m2")
      assert.deepStrictEqual(yield* g.log, ["m1", "x1", "x2", "x3", "m2"])
    }))

  it.effect("cancelling a queued task, by any path, ends it cancelled at once; its body never runs", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const watch = yield* host.subscribe()
      const g = yield* gates
      const ran = yield* Ref.make<ReadonlyArray<string>>([])
      const body = (id: string) => Ref.update(ran, (ids) => [...ids, id])
      const scope = yield* Scope.make()
      const session = yield* host.openSession("s1").pipe(Scope.provide(scope))
      yield* session.spawn(spec("running"), g.task("running"))
      const queued = ["byCancelManaged", "byRequest", "byAbortRequest", "byUpdate", "byHandle", "byComplete", "bySessionClose"]
      for (const id of queued) {
        yield* session.spawn(
          spec(id, {
            cancelPolicy: id === "byAbortRequest" || id === "bySessionClose" ? "abort_local" : "cooperative",
            closePolicy: id === "bySessionClose" ? "cancel" : "keep"
          }),
          body(id)
        )
      }
      yield* g.started("running")
      assert.strictEqual((yield* host.stats).queued, queued.length)
      yield* host.cancelManaged("s1", "byCancelManaged")
      // a cooperative queued task has nothing to ask: no grace period
      assert.strictEqual((yield* host.requestCancel("byRequest", "not needed")).state, "cancelled")
      assert.strictEqual((yield* host.requestCancel("byAbortRequest")).state, "cancelled")
      assert.strictEqual((yield* host.update("byUpdate", { state: "cancel_requested" })).state, "cancelled")
      yield* session.cancel("byHandle")
      yield* host.complete("byComplete", { state: "cancelled" })
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* statesOf(host, queued), queued.map((id) => `${id}:cancelled`))
      assert.strictEqual((yield* host.stats).queued, 0)
      // the freed slot and time change nothing for them
      yield* host.spawnManaged("s1", spec("next"), g.task("next"))
      yield* g.release("running")
      yield* g.started("next")
      // longer than any grace period (shorter than the retention of terminal records)
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(yield* Ref.get(ran), [])
      assert.deepStrictEqual(yield* g.log, ["running", "next"])
      const events = yield* eventsSoFar(host, watch)
      assert.deepStrictEqual(startedIds(events), ["next"])
      for (const id of queued) {
        const own = tags(events).filter((tag) => tag.endsWith(`:${id}`))
        assert.deepStrictEqual(own.filter((tag) => !tag.startsWith("CancelRequested")), [
          `Registered:${id}`,
          `Cancelled:${id}`
        ])
      }
      assert.strictEqual(Option.getOrThrow(yield* host.get("byRequest")).result.pipe(
        Option.flatMap((outcome) => outcome.summary),
        Option.getOrUndefined
      ), "not needed")
    }))

  it.effect("cancelAllManaged cancels a session's queued tasks without running them", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      const ran = yield* Ref.make(false)
      yield* host.spawnManaged("s1", spec("running"), g.task("running"))
      yield* host.spawnManaged("s1", spec("p1"), Ref.set(ran, true))
      yield* host.spawnManaged("s1", spec("p2"), Ref.set(ran, true))
      yield* g.started("running")
      const cancelled = yield* host.cancelAllManaged("s1")
      assert.deepStrictEqual(cancelled.map((r) => `${r.id}:${r.state}`), [
        "running:cancelled",
        "p1:cancelled",
        "p2:cancelled"
      ])
      yield* host.spawnManaged("s1", spec("after"), g.task("after"))
      yield* g.started("after")
      assert.isFalse(yield* Ref.get(ran))
      assert.strictEqual((yield* host.stats).queued, 0)
    }))

  it.effect("stats.queued counts the tasks waiting for a slot, and stats.fibers only the ones running", () =>
    Effect.gen(function*() {
      const unlimited = yield* makeTestHost()
      const free = yield* gates
      for (const id of ["u1", "u2", "u3"]) yield* unlimited.host.spawnManaged("s1", spec(id), free.task(id))
      yield* Effect.all([free.started("u1"), free.started("u2"), free.started("u3")])
      assert.deepStrictEqual(
        yield* Effect.map(unlimited.host.stats, ({ fibers, queued }) => ({ fibers, queued })),
        { fibers: 3, queued: 0 }
      )

      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      const counts = Effect.map(host.stats, ({ fibers, queued }) => ({ fibers, queued }))
      yield* host.spawnManaged("s1", spec("a"), g.task("a"))
      yield* g.started("a")
      assert.deepStrictEqual(yield* counts, { fibers: 1, queued: 0 })
      yield* host.spawnManaged("s1", spec("b"), g.task("b"))
      yield* host.spawnManaged("s1", spec("c"), g.task("c"))
      assert.deepStrictEqual(yield* counts, { fibers: 1, queued: 2 })
      yield* g.release("a")
      yield* g.started("b")
      assert.deepStrictEqual(yield* counts, { fibers: 1, queued: 1 })
      yield* g.release("b")
      yield* g.started("c")
      assert.deepStrictEqual(yield* counts, { fibers: 1, queued: 0 })
      yield* g.release("c")
      const watch = yield* host.subscribe()
      yield* watch.pipe(Stream.takeUntil((event) => event._tag === "Completed" && event.taskId === "c"), Stream.runDrain)
      assert.deepStrictEqual(yield* counts, { fibers: 0, queued: 0 })
    }))

  it.effect("a queued task transferred to a session with a free slot starts at the transfer", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("a"), g.task("a"))
      const queued = yield* host.spawnManaged("s1", spec("b"), g.task("b"))
      assert.strictEqual(queued.state, "pending")
      yield* host.transferManaged("s1", "s2", ["b"])
      // a still runs in s1; b has s2's free slot
      yield* g.started("b")
      assert.deepStrictEqual(yield* statesOf(host, ["a", "b"]), ["a:running", "b:running"])
      assert.strictEqual((yield* host.stats).queued, 0)
    }))

  it.effect("at shutdown the queued tasks end cancelled and never run", () =>
    Effect.gen(function*() {
      const { host, events } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      const ran = yield* Ref.make(false)
      yield* host.spawnManaged("s1", spec("running"), g.task("running"))
      yield* host.spawnManaged("s1", spec("p1"), Ref.set(ran, true))
      yield* host.spawnManaged("s1", spec("p2", { cancelPolicy: "abort_local" }), Ref.set(ran, true))
      yield* g.started("running")
      const all = yield* events
      yield* Effect.yieldNow
      assert.isFalse(yield* Ref.get(ran))
      assert.sameMembers(
        tags(all).filter((tag) => tag.startsWith("Cancelled")),
        ["Cancelled:running", "Cancelled:p1", "Cancelled:p2"]
      )
      // a closing host starts nothing: the queued tasks never claim to run
      assert.deepStrictEqual(startedIds(all), [])
    }))

  it.effect("a queued cooperative task cancelled by its session's close never runs, even when a slot frees meanwhile", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      const ran = yield* Ref.make(false)
      const scope = yield* Scope.make()
      const session = yield* host.openSession("s1").pipe(Scope.provide(scope))
      yield* session.spawn(spec("running"), g.task("running"))
      yield* session.spawn(spec("queued", { closePolicy: "cancel" }), Ref.set(ran, true))
      yield* g.started("running")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.yieldNow
      // the running task (kept) ends and frees the slot while the close is under way
      yield* g.release("running")
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(closing)
      assert.strictEqual(yield* stateOf(host, "queued"), "cancelled")
      assert.isFalse(yield* Ref.get(ran))
      assert.strictEqual((yield* host.stats).queued, 0)
    }))

  it.effect("closing a session cancels its queued cooperative task at once: nothing to wait a grace period for", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      const ran = yield* Ref.make(false)
      const scope = yield* Scope.make()
      const session = yield* host.openSession("s1").pipe(Scope.provide(scope))
      yield* session.spawn(spec("running"), g.task("running"))
      yield* session.spawn(spec("queued", { closePolicy: "cancel" }), Ref.set(ran, true))
      yield* g.started("running")
      // no TestClock.adjust: the close returns by itself
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* stateOf(host, "queued"), "cancelled")
      assert.strictEqual((yield* host.stats).queued, 0)
      assert.isFalse(yield* Ref.get(ran))
    }))

  it.effect("a queued task does not start on request: update fails, markLiveState does nothing", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("a"), g.task("a"))
      yield* host.spawnManaged("s1", spec("b"), g.task("b"))
      const error = yield* Effect.flip(host.update("b", { state: "running" }))
      assert.strictEqual(error._tag, "InvalidTransition")
      yield* host.markLiveState("s1", "b", "running")
      assert.deepStrictEqual(yield* statesOf(host, ["a", "b"]), ["a:running", "b:pending"])
      assert.strictEqual((yield* host.stats).queued, 1)
      // it starts, and runs, when the slot frees
      yield* g.release("a")
      yield* g.started("b")
      assert.deepStrictEqual(yield* g.log, ["a", "b"])
    }))

  it.effect("a running task's slot follows it to another session", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const g = yield* gates
      yield* host.spawnManaged("s1", spec("a"), g.task("a"))
      yield* g.started("a")
      yield* host.transferManaged("s1", "s2", ["a"])
      // s1's slot is free; s2's is taken by a
      assert.strictEqual((yield* host.spawnManaged("s1", spec("b"), g.task("b"))).state, "running")
      assert.strictEqual((yield* host.spawnManaged("s2", spec("c"), g.task("c"))).state, "pending")
    }))

  it.effect("external and caller-registered tasks do not count against the limits", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1, perKind: { monitor: 1 } } })
      yield* host.registerExternal("s1", spec("x1"))
      yield* host.registerExternal("s1", spec("x2"))
      yield* host.register({ scope: { sessionId: "s1" }, ...spec("r1") })
      const managed = yield* host.spawnManaged("s1", spec("m1"), Effect.never)
      assert.strictEqual(managed.state, "running")
      // and the external ones were not limited either
      assert.deepStrictEqual(yield* statesOf(host, ["x1", "x2", "r1"]), ["x1:running", "x2:running", "r1:pending"])
      assert.strictEqual((yield* host.stats).queued, 0)
    }))

  it.effect("spawning with the idempotency key of a queued task returns its record and queues nothing", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ concurrency: { perSession: 1 } })
      const ran = yield* Ref.make(0)
      yield* host.spawnManaged("s1", spec("a"), Effect.never)
      const first = yield* host.spawnManaged("s1", spec("p1", { idempotencyKey: "k" }), Ref.update(ran, (n) => n + 1))
      const again = yield* host.spawnManaged("s1", spec("p2", { idempotencyKey: "k" }), Ref.update(ran, (n) => n + 1))
      assert.strictEqual(again.id, "p1")
      assert.strictEqual(again.state, "pending")
      assert.strictEqual(first.id, "p1")
      assert.strictEqual((yield* host.stats).queued, 1)
      assert.isTrue(Option.isNone(yield* host.get("p2")))
    }))

  describe("invalid limits fail the layer with InvalidOptions naming the option", () => {
    const buildError = (options: BackgroundTaskHostOptions) =>
      Layer.build(BackgroundTaskHost.layerWith(options)).pipe(
        Effect.scoped,
        Effect.match({ onFailure: (error) => error, onSuccess: () => undefined })
      )
    const invalid: ReadonlyArray<readonly [string, BackgroundTaskHostOptions, string]> = [
      ["perSession 0", { concurrency: { perSession: 0 } }, "concurrency.perSession"],
      ["perSession -1", { concurrency: { perSession: -1 } }, "concurrency.perSession"],
      ["perSession 1.5", { concurrency: { perSession: 1.5 } }, "concurrency.perSession"],
      ["perSession NaN", { concurrency: { perSession: Number.NaN } }, "concurrency.perSession"],
      ["perSession -Infinity", { concurrency: { perSession: -Infinity } }, "concurrency.perSession"],
      ["perSession as text", { concurrency: { perSession: "2" as unknown as number } }, "concurrency.perSession"],
      ["perKind 0", { concurrency: { perKind: { monitor: 0 } } }, "concurrency.perKind.monitor"],
      ["perKind 2.5", { concurrency: { perKind: { subagent: 2.5 } } }, "concurrency.perKind.subagent"],
      ["perKind unknown kind", { concurrency: { perKind: { bogus: 1 } as never } }, "concurrency.perKind"]
    ]
    for (const [name, options, option] of invalid) {
      it.effect(name, () =>
        Effect.gen(function*() {
          const error = yield* buildError(options)
          assert.strictEqual(error?._tag, "InvalidOptions")
          assert.include(error?.message, option)
        }))
    }

    it.effect("valid limits build: positive integers, Infinity, and undefined ones", () =>
      Effect.gen(function*() {
        for (
          const options of [
            { concurrency: { perSession: 1 } },
            { concurrency: { perSession: Infinity, perKind: { monitor: Infinity, other: 3 } } },
            { concurrency: { perSession: undefined, perKind: { observer: undefined } } },
            { concurrency: {} }
          ] satisfies ReadonlyArray<BackgroundTaskHostOptions>
        ) {
          assert.isUndefined(yield* buildError(options))
        }
      }))

    it.effect("Infinity and absent limits hold nothing back", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ concurrency: { perSession: Infinity, perKind: { monitor: Infinity } } })
        const records = yield* Effect.forEach(["a", "b", "c"], (id) => host.spawnManaged("s1", spec(id), Effect.never))
        assert.deepStrictEqual(records.map((r) => r.state), ["running", "running", "running"])
        assert.strictEqual((yield* host.stats).queued, 0)
      }))
  })
})
