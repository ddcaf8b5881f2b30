/**
 * Sessions (docs/policies.md §3): `openSession` and its handle, the close policies
 * (`keep`, `cancel`, `transfer`), successors (`handoff`, `options.successor`),
 * closed handles, and host shutdown while a session is open.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Ref, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  type BackgroundTaskRecord,
  type ClosePolicy,
  InvokeError,
  type SubscriptionEvent,
  TaskContext
} from "../src/index.ts"
// not exported from the package's index (yet)
import type { SessionOptions } from "../src/BackgroundTaskHost.ts"
import { blocking, makeTestHost, spec, tags, type TestHost } from "./utils/host.ts"

type Host = TestHost["host"]

/** Opens a session in a scope the test closes itself (`close`). */
const openIn = (host: Host, sessionId: string, options?: SessionOptions) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const session = yield* host.openSession(sessionId, options).pipe(Scope.provide(scope))
    return { session, close: Scope.close(scope, Exit.void) }
  })

/** The error an effect fails with, or `undefined` when it succeeds. */
const failureOf = <A, E extends { readonly _tag: string; readonly message: string }>(
  effect: Effect.Effect<A, E, Scope.Scope>
) => Effect.scoped(effect).pipe(Effect.match({ onFailure: (error): E | undefined => error, onSuccess: () => undefined }))


const record = (host: Host, taskId: string) => host.get(taskId).pipe(Effect.map(Option.getOrThrow))

/** The summary of a record that ended other than `failed`. */
const summaryOf = (record: BackgroundTaskRecord) =>
  Option.getOrUndefined(Option.flatMap(record.result, (outcome) => outcome.summary))

// -- the one place that reads the event union beyond `tags` ---------------------

/** `taskId -> reason` of every `CancelRequested` event (reason `null` when none). */
const cancelReasons = (events: ReadonlyArray<SubscriptionEvent>) => {
  const out = new Map<string, string | null>()
  for (const event of events) {
    if (event._tag === "CancelRequested") out.set(event.taskId, Option.getOrNull(event.reason))
  }
  return out
}

/** `taskId -> "from->to"` of every `Transferred` event. */
const transfers = (events: ReadonlyArray<SubscriptionEvent>) => {
  const out = new Map<string, string>()
  for (const event of events) {
    if (event._tag === "Transferred") out.set(event.taskId, `${event.fromSessionId}->${event.sessionId}`)
  }
  return out
}

/** Ids of the tasks with an event of this tag. */
const idsWith = (events: ReadonlyArray<SubscriptionEvent>, tag: SubscriptionEvent["_tag"]) =>
  events.flatMap((event) => event._tag === tag && "taskId" in event ? [event.taskId] : [])

/** Reads a stream subscribed earlier up to the event numbered `seq`. */
const upTo = (stream: Stream.Stream<SubscriptionEvent>, seq: number) =>
  stream.pipe(Stream.takeUntil((event) => event._tag !== "Lagged" && event.seq >= seq), Stream.runCollect)

/**
 * Reads a stream subscribed earlier until the `n`th event with this tag. A
 * stream is read once: what came in the same chunk after that event is gone,
 * so a test that reads again later takes a second subscription for this.
 */
const untilNth = (stream: Stream.Stream<SubscriptionEvent>, tag: SubscriptionEvent["_tag"], n: number) =>
  Effect.suspend(() => {
    let seen = 0
    return stream.pipe(Stream.takeUntil((event) => event._tag === tag && ++seen >= n), Stream.runCollect)
  })

/** Every event published so far on a stream subscribed earlier (up to the host's current `seq`). */
const eventsSoFar = (host: Host, stream: Stream.Stream<SubscriptionEvent>) =>
  Effect.flatMap(host.stats, ({ seq }) => upTo(stream, seq))

describe("BackgroundTaskHost sessions", () => {
  describe("openSession", () => {
    it.effect("returns a handle bound to the session; a session can be open only once at a time", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        assert.strictEqual(session.sessionId, "s1")
        const error = yield* failureOf(host.openSession("s1"))
        assert.strictEqual(error?._tag, "SessionError")
        assert.include(error?.message, "already open")
        // the refused open did not close the first one, and other sessions open freely
        const registered = yield* session.register(spec("r1"))
        assert.strictEqual(registered.scope.sessionId, "s1")
        const other = yield* openIn(host, "s2")
        yield* other.close
        yield* close
      }))

    it.effect("an empty session id, an empty successor or the session itself as successor is a SessionError", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const empty = yield* failureOf(host.openSession(""))
        assert.strictEqual(empty?._tag, "SessionError")
        const self = yield* failureOf(host.openSession("s1", { successor: "s1" }))
        assert.strictEqual(self?._tag, "SessionError")
        assert.include(self?.message, "its own successor")
        const emptySuccessor = yield* failureOf(host.openSession("s1", { successor: "" }))
        assert.strictEqual(emptySuccessor?._tag, "SessionError")
        // none of the refused opens left the session open
        const { session, close } = yield* openIn(host, "s1", { successor: "s2" })
        assert.strictEqual((yield* failureOf(session.handoff("s1")))?._tag, "SessionError")
        assert.strictEqual((yield* failureOf(session.handoff("")))?._tag, "SessionError")
        // a refused handoff leaves the successor as it was
        yield* session.spawn(spec("t1", { closePolicy: "transfer" }), Effect.never)
        yield* close
        assert.strictEqual((yield* record(host, "t1")).scope.sessionId, "s2")
      }))

    it.effect("a closed session can be opened again; the old handle stays closed", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const first = yield* openIn(host, "s1")
        yield* first.session.spawn(spec("k1"), Effect.never)
        yield* first.close
        const second = yield* openIn(host, "s1")
        // the kept task is listed under the reopened session
        assert.deepStrictEqual((yield* second.session.list()).map((r) => r.id), ["k1"])
        const stale = yield* failureOf(first.session.list())
        assert.strictEqual(stale?._tag, "SessionError")
        yield* second.session.spawn(spec("k2"), Effect.never)
        assert.deepStrictEqual((yield* second.session.list()).map((r) => r.id), ["k1", "k2"])
        // closing the old handle's scope again changes nothing for the new session
        yield* first.close
        assert.deepStrictEqual((yield* second.session.list()).map((r) => r.id), ["k1", "k2"])
        yield* second.close
        assert.strictEqual((yield* record(host, "k2")).state, "running")
      }))

    it.effect("after the scope closes every handle method fails with SessionError and does nothing", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const ran = yield* Ref.make(false)
        const { session, close } = yield* openIn(host, "s1")
        yield* session.spawn(spec("k1"), Effect.never)
        yield* close
        const before = yield* host.stats
        const calls: ReadonlyArray<
          readonly [string, Effect.Effect<unknown, { readonly _tag: string; readonly message: string }, Scope.Scope>]
        > = [
          ["spawn", session.spawn(spec("a"), Ref.set(ran, true))],
          ["registerExternal", session.registerExternal(spec("b"), Ref.set(ran, true))],
          ["register", session.register(spec("c"))],
          ["get", session.get("k1")],
          ["list", session.list()],
          ["cancel", session.cancel("k1")],
          ["cancelAll", session.cancelAll],
          ["transfer", session.transfer("s2", ["k1"])],
          ["handoff", session.handoff("s2")],
          ["subscribe", session.subscribe()],
          ["watch", session.watch()],
          ["spawnHidden", session.spawnHidden("h", Ref.set(ran, true))],
          ["awaitHidden", session.awaitHidden]
        ]
        for (const [name, call] of calls) {
          const error = yield* failureOf(call)
          assert.strictEqual(error?._tag, "SessionError", name)
          assert.strictEqual(error?.message, `session "s1" is closed`, name)
        }
        yield* Effect.yieldNow
        assert.isFalse(yield* Ref.get(ran))
        const after = yield* host.stats
        assert.strictEqual(after.seq, before.seq)
        assert.strictEqual(after.fibers, 1)
        assert.strictEqual((yield* record(host, "k1")).state, "running")
        assert.deepStrictEqual((yield* host.list({ sessionId: "s2" })).map((r) => r.id), [])
      }))
  })

  describe("close policies", () => {
    it.effect("keep (also the default): the task runs on, still listed under the session, with no event", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1", { successor: "s2" })
        const kept = yield* blocking
        const byDefault = yield* blocking
        const cancelRan = yield* Ref.make(false)
        yield* session.spawn(spec("keep", { closePolicy: "keep" }), kept.task)
        yield* session.spawn(spec("default"), byDefault.task)
        yield* session.registerExternal(spec("ext", { cancelPolicy: "external" }), Ref.set(cancelRan, true))
        yield* session.register(spec("reg", { cancelPolicy: "abort_local" }))
        yield* Deferred.await(kept.started)
        yield* Deferred.await(byDefault.started)
        const before = yield* host.stats
        yield* close
        const after = yield* host.stats
        assert.strictEqual(after.seq, before.seq)
        assert.strictEqual(after.fibers, 2)
        const listed = yield* host.list({ sessionId: "s1" })
        assert.deepStrictEqual(listed.map((r) => `${r.id}:${r.state}`), [
          "keep:running",
          "default:running",
          "ext:running",
          "reg:pending"
        ])
        assert.strictEqual(listed[1]?.closePolicy, "keep")
        assert.isFalse(yield* Deferred.isDone(kept.finalized))
        assert.isFalse(yield* Deferred.isDone(byDefault.finalized))
        assert.isFalse(yield* Ref.get(cancelRan))
      }))

    it.effect("cancel: a cooperative task gets the request with reason \"session closed\"; the close waits for its end", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { session, close } = yield* openIn(host, "s1")
        const started = yield* Deferred.make<void>()
        const finalized = yield* Deferred.make<void>()
        const seen = yield* Ref.make<Option.Option<string>>(Option.none())
        yield* session.spawn(
          spec("m1", { closePolicy: "cancel" }),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* Deferred.succeed(started, undefined)
            yield* Ref.set(seen, yield* ctx.cancelRequested)
            // some cleanup that takes a turn before it ends
            yield* Effect.yieldNow
          }).pipe(Effect.ensuring(Deferred.succeed(finalized, undefined)))
        )
        yield* Deferred.await(started)
        yield* close
        // the close returned after the task had ended
        assert.isTrue(yield* Deferred.isDone(finalized))
        assert.strictEqual((yield* record(host, "m1")).state, "cancelled")
        assert.deepStrictEqual(yield* Ref.get(seen), Option.some("session closed"))
        const events = yield* eventsSoFar(host, watch)
        assert.deepStrictEqual(tags(events), ["Registered:m1", "CancelRequested:m1", "Cancelled:m1"])
        assert.deepStrictEqual(cancelReasons(events), new Map([["m1", "session closed"]]))
      }))

    it.effect("cancel: a cooperative task that ignores the request is interrupted after its grace period", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        const task = yield* blocking
        yield* session.spawn(spec("m1", { closePolicy: "cancel", cancelGracePeriod: "2 seconds" }), task.task)
        yield* Deferred.await(task.started)
        const closing = yield* Effect.forkChild(close)
        yield* TestClock.adjust("1999 millis")
        assert.isUndefined(closing.pollUnsafe())
        assert.strictEqual((yield* record(host, "m1")).state, "cancel_requested")
        assert.isFalse(yield* Deferred.isDone(task.finalized))
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(closing)
        assert.isTrue(yield* Deferred.isDone(task.finalized))
        const ended = yield* record(host, "m1")
        assert.strictEqual(ended.state, "cancelled")
        assert.strictEqual(summaryOf(ended), "session closed; did not stop within its 2s grace period")
        // no timer or fiber left behind
        assert.strictEqual((yield* host.stats).fibers, 0)
      }))

    it.effect("cancel acts through each cancel policy: abort_local, external, caller-owned records", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "3 seconds" })
        const watch = yield* host.subscribe()
        const requests = yield* host.subscribe()
        const { session, close } = yield* openIn(host, "s1")
        const aborted = yield* blocking
        const cancelRuns = yield* Ref.make(0)
        yield* session.spawn(spec("abort", { closePolicy: "cancel", cancelPolicy: "abort_local" }), aborted.task)
        yield* session.registerExternal(
          spec("ext", { closePolicy: "cancel", cancelPolicy: "external" }),
          Ref.update(cancelRuns, (n) => n + 1)
        )
        yield* session.register(spec("callerAbort", { closePolicy: "cancel", cancelPolicy: "abort_local" }))
        yield* session.register(spec("callerCoop", { closePolicy: "cancel" }))
        yield* Deferred.await(aborted.started)
        const closing = yield* Effect.forkChild(close)
        // the caller-owned cooperative record gets the grace period: the close waits for it
        const requested = yield* untilNth(requests, "CancelRequested", 4)
        assert.sameMembers(idsWith(requested, "CancelRequested"), ["abort", "ext", "callerAbort", "callerCoop"])
        yield* TestClock.adjust("2999 millis")
        assert.isUndefined(closing.pollUnsafe())
        assert.strictEqual((yield* record(host, "callerCoop")).state, "cancel_requested")
        for (const id of ["abort", "ext", "callerAbort"]) assert.strictEqual((yield* record(host, id)).state, "cancelled")
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(closing)
        assert.isTrue(yield* Deferred.isDone(aborted.finalized))
        assert.strictEqual(yield* Ref.get(cancelRuns), 1)
        for (const id of ["abort", "ext", "callerAbort", "callerCoop"]) {
          const ended = yield* record(host, id)
          assert.strictEqual(ended.state, "cancelled", id)
        }
        // a task the host cancels with a reason carries it as its summary
        assert.strictEqual(summaryOf(yield* record(host, "abort")), "session closed")
        assert.strictEqual(summaryOf(yield* record(host, "callerAbort")), "session closed")
        const events = yield* eventsSoFar(host, watch)
        const reasons = cancelReasons(events)
        assert.sameMembers([...reasons.keys()], ["abort", "ext", "callerAbort", "callerCoop"])
        for (const reason of reasons.values()) assert.strictEqual(reason, "session closed")
        assert.sameMembers(idsWith(events, "Cancelled"), ["abort", "ext", "callerAbort", "callerCoop"])
      }))

    it.effect("transfer: moved to options.successor with Transferred events; the tasks run on there", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const toS2 = yield* host.subscribe({ sessionId: "s2" })
        const { session, close } = yield* openIn(host, "s1", { successor: "s2" })
        const task = yield* blocking
        const sessionSeen = yield* Deferred.make<string>()
        const cancelRan = yield* Ref.make(false)
        yield* session.spawn(
          spec("m1", { closePolicy: "transfer" }),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* task.task.pipe(
              Effect.onInterrupt(() => Effect.flatMap(ctx.sessionId, (id) => Deferred.succeed(sessionSeen, id)))
            )
          })
        )
        yield* session.registerExternal(spec("x1", { closePolicy: "transfer" }), Ref.set(cancelRan, true))
        yield* session.register(spec("r1", { closePolicy: "transfer" }))
        yield* Deferred.await(task.started)
        yield* close
        const moved = yield* toS2.pipe(Stream.take(3), Stream.runCollect)
        assert.deepStrictEqual(tags(moved), ["Transferred:m1", "Transferred:x1", "Transferred:r1"])
        assert.deepStrictEqual(
          transfers(moved),
          new Map([["m1", "s1->s2"], ["x1", "s1->s2"], ["r1", "s1->s2"]])
        )
        assert.deepStrictEqual((yield* host.list({ sessionId: "s1" })).map((r) => r.id), [])
        assert.deepStrictEqual(
          (yield* host.list({ sessionId: "s2" })).map((r) => `${r.id}:${r.state}`),
          ["m1:running", "x1:running", "r1:pending"]
        )
        assert.isFalse(yield* Deferred.isDone(task.finalized))
        assert.isFalse(yield* Ref.get(cancelRan))
        assert.strictEqual((yield* host.stats).fibers, 1)
        // the fiber kept running: it is now a task of s2
        yield* host.cancelManaged("s2", "m1")
        assert.strictEqual(yield* Deferred.await(sessionSeen), "s2")
        assert.strictEqual((yield* record(host, "m1")).scope.sessionId, "s2")
      }))

    it.effect("transfer: handoff names the successor and overrides options.successor; the last handoff wins", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1", { successor: "s2" })
        yield* session.spawn(spec("m1", { closePolicy: "transfer" }), Effect.never)
        yield* session.handoff("s3")
        yield* session.handoff("s4")
        yield* close
        assert.strictEqual((yield* record(host, "m1")).scope.sessionId, "s4")
        assert.deepStrictEqual(yield* host.list({ sessionId: "s2" }), [])
        assert.deepStrictEqual(yield* host.list({ sessionId: "s3" }), [])
        // handoff without options.successor
        const other = yield* openIn(host, "s5")
        yield* other.session.spawn(spec("m2", { closePolicy: "transfer" }), Effect.never)
        yield* other.session.handoff("s6")
        yield* other.close
        assert.strictEqual((yield* record(host, "m2")).scope.sessionId, "s6")
      }))

    it.effect("transfer without a successor: cancelled with reason \"session closed without a successor\"", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { session, close } = yield* openIn(host, "s1")
        const task = yield* blocking
        const cancelRan = yield* Ref.make(false)
        yield* session.spawn(spec("m1", { closePolicy: "transfer", cancelPolicy: "abort_local" }), task.task)
        yield* session.registerExternal(
          spec("x1", { closePolicy: "transfer", cancelPolicy: "external" }),
          Ref.set(cancelRan, true)
        )
        yield* Deferred.await(task.started)
        yield* close
        assert.isTrue(yield* Deferred.isDone(task.finalized))
        assert.isTrue(yield* Ref.get(cancelRan))
        const m1 = yield* record(host, "m1")
        assert.strictEqual(m1.state, "cancelled")
        assert.strictEqual(m1.scope.sessionId, "s1")
        assert.strictEqual(summaryOf(m1), "session closed without a successor")
        assert.strictEqual((yield* record(host, "x1")).state, "cancelled")
        const events = yield* eventsSoFar(host, watch)
        assert.deepStrictEqual(
          cancelReasons(events),
          new Map([["m1", "session closed without a successor"], ["x1", "session closed without a successor"]])
        )
        assert.deepStrictEqual(idsWith(events, "Transferred"), [])
      }))

    it.effect("transfer collision: a live id cannot exist in the successor; a terminal one there is replaced", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        // a terminal t2 in the successor
        yield* host.register({ scope: { sessionId: "s2" }, ...spec("t2") })
        yield* host.complete("t2", { state: "completed", summary: "old" })
        const { session, close } = yield* openIn(host, "s1", { successor: "s2" })
        yield* session.spawn(spec("t1", { closePolicy: "transfer" }), Effect.never)
        yield* session.spawn(spec("t2", { closePolicy: "transfer" }), Effect.never)
        // the successor cannot hold a live t1 beside the one that will move there
        const duplicate = yield* failureOf(host.registerExternal("s2", spec("t1")))
        assert.strictEqual(duplicate?._tag, "TaskAlreadyExists")
        const duplicateManaged = yield* failureOf(host.spawnManaged("s2", spec("t2"), Effect.void))
        assert.strictEqual(duplicateManaged?._tag, "TaskAlreadyExists")
        yield* close
        const s2 = yield* host.list({ sessionId: "s2", includeTerminal: true })
        assert.deepStrictEqual(s2.map((r) => `${r.id}:${r.state}`), ["t1:running", "t2:running"])
        const events = yield* eventsSoFar(host, watch)
        assert.deepStrictEqual(transfers(events), new Map([["t1", "s1->s2"], ["t2", "s1->s2"]]))
        const evicted = events.flatMap((event) =>
          event._tag === "Evicted" ? [`${event.sessionId}:${event.taskIds.join(",")}:${event.reason}`] : []
        )
        assert.deepStrictEqual(evicted, ["s2:t2:replaced"])
        assert.deepStrictEqual(idsWith(events, "CancelRequested"), [])
        assert.strictEqual((yield* host.stats).fibers, 2)
      }))

    it.effect("closing one session leaves the other sessions' tasks alone", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const s1 = yield* openIn(host, "s1")
        const s2 = yield* openIn(host, "s2")
        yield* s1.session.spawn(spec("a", { closePolicy: "cancel", cancelPolicy: "abort_local" }), Effect.never)
        yield* s2.session.spawn(spec("b", { closePolicy: "cancel", cancelPolicy: "abort_local" }), Effect.never)
        yield* host.spawnManaged("s3", spec("c", { closePolicy: "cancel", cancelPolicy: "abort_local" }), Effect.never)
        yield* s1.close
        assert.strictEqual((yield* record(host, "a")).state, "cancelled")
        assert.strictEqual((yield* record(host, "b")).state, "running")
        assert.strictEqual((yield* record(host, "c")).state, "running")
        assert.deepStrictEqual((yield* s2.session.list()).map((r) => r.id), ["b"])
        yield* s2.close
        assert.strictEqual((yield* record(host, "b")).state, "cancelled")
        assert.strictEqual((yield* record(host, "c")).state, "running")
      }))

    it.effect("a cancelled task's live descendants end before it, whatever their own close policy", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { session, close } = yield* openIn(host, "s1")
        yield* session.spawn(spec("parent", { closePolicy: "cancel", cancelPolicy: "abort_local" }), Effect.never)
        yield* session.spawn(
          spec("child", { parentTaskId: "parent", closePolicy: "keep", cancelPolicy: "abort_local" }),
          Effect.never
        )
        yield* session.spawn(spec("kept", { closePolicy: "keep" }), Effect.never)
        yield* close
        const events = yield* eventsSoFar(host, watch)
        assert.deepStrictEqual(idsWith(events, "Cancelled"), ["child", "parent"])
        assert.strictEqual((yield* record(host, "kept")).state, "running")
        assert.strictEqual((yield* host.stats).fibers, 1)
      }))

    it.effect(
      "a session closed with 100 live tasks of mixed policies keeps the keep ones, moves the transfer ones, cancels the rest, leaks no fiber",
      () =>
        Effect.gen(function*() {
          const { host, events: shutdown } = yield* makeTestHost()
          const watch = yield* host.subscribe()
          const requests = yield* host.subscribe()
          const { session, close } = yield* openIn(host, "s1")
          yield* session.handoff("s2")

          const closePolicies: ReadonlyArray<ClosePolicy> = ["keep", "cancel", "transfer"]
          const shapes = ["cooperative", "ignoring", "abort_local", "external", "caller"] as const
          type Shape = typeof shapes[number]
          const plan = Array.from({ length: 100 }, (_, i) => ({
            id: `t${i}`,
            closePolicy: closePolicies[i % closePolicies.length]!,
            shape: shapes[i % shapes.length]! as Shape
          }))
          const isManaged = (shape: Shape) => shape === "cooperative" || shape === "ignoring" || shape === "abort_local"
          const managedCount = plan.filter((task) => isManaged(task.shape)).length

          const startedCount = yield* Ref.make(0)
          const allStarted = yield* Deferred.make<void>()
          const finalized = yield* Ref.make<ReadonlySet<string>>(new Set())
          const cancelEffects = yield* Ref.make<ReadonlyArray<string>>([])
          const started = Ref.updateAndGet(startedCount, (n) => n + 1).pipe(
            Effect.flatMap((n) => n === managedCount ? Deferred.succeed(allStarted, undefined) : Effect.void)
          )
          const finalizer = (id: string) => Ref.update(finalized, (set) => new Set([...set, id]))

          for (const { closePolicy, id, shape } of plan) {
            switch (shape) {
              case "cooperative":
                // ends itself when asked
                yield* session.spawn(
                  spec(id, { closePolicy }),
                  Effect.gen(function*() {
                    const ctx = yield* TaskContext
                    yield* started
                    yield* ctx.cancelRequested
                  }).pipe(Effect.ensuring(finalizer(id)))
                )
                break
              case "ignoring":
                yield* session.spawn(
                  spec(id, { closePolicy }),
                  started.pipe(Effect.andThen(Effect.never), Effect.ensuring(finalizer(id)))
                )
                break
              case "abort_local":
                yield* session.spawn(
                  spec(id, { closePolicy, cancelPolicy: "abort_local", kind: "subagent" }),
                  started.pipe(Effect.andThen(Effect.never), Effect.ensuring(finalizer(id)))
                )
                break
              case "external":
                yield* session.registerExternal(
                  spec(id, { closePolicy, cancelPolicy: "external", kind: "observer" }),
                  Ref.update(cancelEffects, (ids) => [...ids, id])
                )
                break
              case "caller":
                yield* session.register(spec(id, { closePolicy, kind: "other" }))
                break
            }
          }
          yield* Deferred.await(allStarted)
          const before = yield* host.stats
          assert.strictEqual(before.live, 100)
          assert.strictEqual(before.fibers, managedCount)

          const idsOf = (policy: ClosePolicy) => plan.filter((task) => task.closePolicy === policy).map((t) => t.id)
          const keep = idsOf("keep")
          const cancel = idsOf("cancel")
          const transfer = idsOf("transfer")
          const survivingFibers = plan.filter((task) => task.closePolicy !== "cancel" && isManaged(task.shape)).length

          const closing = yield* Effect.forkChild(close)
          // every request is out before the grace periods run
          yield* untilNth(requests, "CancelRequested", cancel.length)
          yield* TestClock.adjust("5 seconds")
          yield* Fiber.join(closing)

          const after = yield* host.stats
          assert.strictEqual(after.fibers, survivingFibers)
          assert.strictEqual(after.live, keep.length + transfer.length)
          assert.strictEqual(after.cancelled, cancel.length)
          assert.deepStrictEqual((yield* host.list({ sessionId: "s1" })).map((r) => r.id), keep)
          assert.deepStrictEqual((yield* host.list({ sessionId: "s2" })).map((r) => r.id), transfer)
          for (const { closePolicy, id, shape } of plan) {
            const now = yield* record(host, id)
            const expected = closePolicy === "cancel"
              ? "cancelled"
              : shape === "caller"
              ? "pending"
              : "running"
            assert.strictEqual(now.state, expected, id)
            assert.strictEqual(now.scope.sessionId, closePolicy === "transfer" ? "s2" : "s1", id)
          }
          const cancelledManaged = plan.filter((task) => task.closePolicy === "cancel" && isManaged(task.shape))
          assert.sameMembers([...(yield* Ref.get(finalized))], cancelledManaged.map((task) => task.id))
          assert.sameMembers(
            [...(yield* Ref.get(cancelEffects))],
            plan.filter((task) => task.closePolicy === "cancel" && task.shape === "external").map((task) => task.id)
          )

          const events = yield* eventsSoFar(host, watch)
          const reasons = cancelReasons(events)
          assert.sameMembers([...reasons.keys()], cancel)
          for (const reason of reasons.values()) assert.strictEqual(reason, "session closed")
          assert.sameMembers(idsWith(events, "Cancelled"), cancel)
          const moved = transfers(events)
          assert.sameMembers([...moved.keys()], transfer)
          for (const route of moved.values()) assert.strictEqual(route, "s1->s2")

          // the survivors are still the host's: shutdown ends every one of them
          yield* shutdown
          assert.strictEqual((yield* Ref.get(finalized)).size, managedCount)
        })
    )
  })

  describe("host shutdown while a session is open", () => {
    it.effect("cancels every task whatever its close policy, transfers nothing; the handle is closed", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1", { successor: "s2" })
        const kept = yield* blocking
        const moving = yield* blocking
        const cancelRan = yield* Ref.make(false)
        yield* session.spawn(spec("keep", { closePolicy: "keep" }), kept.task)
        yield* session.spawn(spec("transfer", { closePolicy: "transfer" }), moving.task)
        yield* session.registerExternal(spec("ext", { closePolicy: "keep" }), Ref.set(cancelRan, true))
        yield* session.register(spec("reg", { closePolicy: "keep" }))
        yield* Deferred.await(kept.started)
        yield* Deferred.await(moving.started)
        const all = yield* events
        assert.isTrue(yield* Deferred.isDone(kept.finalized))
        assert.isTrue(yield* Deferred.isDone(moving.finalized))
        assert.isTrue(yield* Ref.get(cancelRan))
        assert.sameMembers(idsWith(all, "Cancelled"), ["keep", "transfer", "ext", "reg"])
        assert.deepStrictEqual(idsWith(all, "Transferred"), [])
        const closed = yield* failureOf(session.list())
        assert.strictEqual(closed?._tag, "SessionError")
        assert.strictEqual((yield* failureOf(host.openSession("s3")))?._tag, "SessionError")
        // closing the session's scope afterwards is a quiet no-op
        yield* close
      }))
  })

  describe("handle methods", () => {
    it.effect("spawn, registerExternal and register create tasks in the bound session", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        const ran = yield* Deferred.make<string>()
        const cancelRan = yield* Ref.make(false)
        const spawned = yield* session.spawn(
          spec("m1"),
          Effect.flatMap(TaskContext, (ctx) => Effect.flatMap(ctx.sessionId, (id) => Deferred.succeed(ran, id)))
        )
        const external = yield* session.registerExternal(spec("x1", { cancelPolicy: "external" }), Ref.set(cancelRan, true))
        const caller = yield* session.register(spec("r1"))
        assert.deepStrictEqual(
          [spawned, external, caller].map((r) => `${r.id}:${r.scope.sessionId}:${r.state}`),
          ["m1:s1:running", "x1:s1:running", "r1:s1:pending"]
        )
        assert.strictEqual(yield* Deferred.await(ran), "s1")
        // the external task's cancel effect is the one given to the handle
        yield* host.requestCancel("x1")
        assert.isTrue(yield* Ref.get(cancelRan))
        // registration errors come through unchanged
        assert.strictEqual((yield* failureOf(session.register(spec("r1"))))?._tag, "TaskAlreadyExists")
        assert.strictEqual((yield* failureOf(session.spawn(spec(""), Effect.void)))?._tag, "RegistrationError")
        yield* close
      }))

    it.effect("get and list see only this session's records; list filters by kind and includeTerminal", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        yield* session.register(spec("a"))
        yield* session.register(spec("b", { kind: "subagent" }))
        yield* session.register(spec("done"))
        yield* host.complete("done", { state: "completed" })
        yield* host.register({ scope: { sessionId: "s2" }, ...spec("elsewhere") })
        assert.strictEqual(Option.getOrThrow(yield* session.get("a")).id, "a")
        assert.strictEqual(Option.getOrThrow(yield* session.get("done")).state, "completed")
        assert.isTrue(Option.isNone(yield* session.get("elsewhere")))
        assert.isTrue(Option.isNone(yield* session.get("ghost")))
        assert.deepStrictEqual((yield* session.list()).map((r) => r.id), ["a", "b"])
        assert.deepStrictEqual((yield* session.list({ includeTerminal: true })).map((r) => r.id), ["a", "b", "done"])
        assert.deepStrictEqual((yield* session.list({ kind: "subagent" })).map((r) => r.id), ["b"])
        yield* close
      }))

    it.effect("cancel cancels a task of this session now, whatever its policy; another session's task is untouched", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        const mine = yield* blocking
        const theirs = yield* blocking
        yield* session.spawn(spec("mine"), mine.task)
        yield* host.spawnManaged("s2", spec("theirs"), theirs.task)
        yield* Deferred.await(mine.started)
        yield* Deferred.await(theirs.started)
        // cooperative, yet cancelled at once: its finalizer has run when cancel returns
        yield* session.cancel("mine")
        assert.isTrue(yield* Deferred.isDone(mine.finalized))
        assert.strictEqual((yield* record(host, "mine")).state, "cancelled")
        yield* session.cancel("theirs")
        yield* session.cancel("ghost")
        assert.strictEqual((yield* record(host, "theirs")).state, "running")
        assert.isFalse(yield* Deferred.isDone(theirs.finalized))
        yield* close
      }))

    it.effect("cancelAll cancels the session's live tasks and returns their final records", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        const task = yield* blocking
        yield* session.spawn(spec("m1"), task.task)
        yield* session.register(spec("r1"))
        yield* host.register({ scope: { sessionId: "s2" }, ...spec("other") })
        yield* Deferred.await(task.started)
        const cancelled = yield* session.cancelAll
        assert.deepStrictEqual(cancelled.map((r) => `${r.id}:${r.state}`), ["m1:cancelled", "r1:cancelled"])
        assert.isTrue(yield* Deferred.isDone(task.finalized))
        assert.strictEqual((yield* record(host, "other")).state, "pending")
        assert.deepStrictEqual(yield* session.cancelAll, [])
        yield* close
      }))

    it.effect("transfer moves tasks out of the session (unknown ids skipped); they no longer follow its close policy", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { session, close } = yield* openIn(host, "s1")
        const task = yield* blocking
        yield* session.spawn(spec("m1", { closePolicy: "cancel" }), task.task)
        yield* session.register(spec("r1", { closePolicy: "cancel", cancelPolicy: "abort_local" }))
        yield* session.register(spec("stay", { closePolicy: "cancel", cancelPolicy: "abort_local" }))
        yield* Deferred.await(task.started)
        yield* session.transfer("s2", ["m1", "ghost", "r1"])
        assert.deepStrictEqual((yield* session.list()).map((r) => r.id), ["stay"])
        assert.isTrue(Option.isNone(yield* session.get("m1")))
        yield* close
        assert.strictEqual((yield* record(host, "stay")).state, "cancelled")
        assert.deepStrictEqual(
          (yield* host.list({ sessionId: "s2" })).map((r) => `${r.id}:${r.state}`),
          ["m1:running", "r1:pending"]
        )
        assert.isFalse(yield* Deferred.isDone(task.finalized))
        const events = yield* eventsSoFar(host, watch)
        assert.deepStrictEqual(transfers(events), new Map([["m1", "s1->s2"], ["r1", "s1->s2"]]))
        assert.deepStrictEqual(idsWith(events, "CancelRequested"), ["stay"])
      }))

    it.effect("subscribe delivers this session's events only (a transfer out included), filtered by kind", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        const all = yield* session.subscribe()
        const subagents = yield* session.subscribe({ kind: "subagent" })
        yield* host.register({ scope: { sessionId: "s2" }, ...spec("o1") })
        yield* session.register(spec("a"))
        yield* session.register(spec("b", { kind: "subagent" }))
        yield* host.complete("o1", { state: "completed" })
        yield* session.transfer("s2", ["a"])
        yield* host.complete("a", { state: "completed" })
        yield* session.register(spec("end", { kind: "subagent" }))
        const isEnd = (event: SubscriptionEvent) => event._tag === "Registered" && event.taskId === "end"
        assert.deepStrictEqual(
          tags(yield* Stream.runCollect(Stream.takeUntil(all, isEnd))),
          ["Registered:a", "Registered:b", "Transferred:a", "Registered:end"]
        )
        assert.deepStrictEqual(
          tags(yield* Stream.runCollect(Stream.takeUntil(subagents, isEnd))),
          ["Registered:b", "Registered:end"]
        )
        yield* close
      }))

    it.effect("watch gives this session's records as of seq and exactly the events after it", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        yield* session.register(spec("a"))
        yield* session.register(spec("b", { kind: "subagent" }))
        yield* host.register({ scope: { sessionId: "s2" }, ...spec("other") })
        const watch = yield* session.watch()
        const subagents = yield* session.watch({ kind: "subagent" })
        assert.deepStrictEqual(watch.snapshot.map((r) => r.id), ["a", "b"])
        assert.deepStrictEqual(subagents.snapshot.map((r) => r.id), ["b"])
        assert.strictEqual(watch.seq, (yield* host.stats).seq)
        yield* host.complete("other", { state: "completed" })
        yield* host.complete("a", { state: "completed" })
        yield* host.complete("b", { state: "completed" })
        assert.deepStrictEqual(tags(yield* Stream.runCollect(Stream.take(watch.events, 2))), ["Completed:a", "Completed:b"])
        assert.deepStrictEqual(tags(yield* Stream.runCollect(Stream.take(subagents.events, 1))), ["Completed:b"])
        const terminal = yield* session.watch({ includeTerminal: true })
        assert.deepStrictEqual(terminal.snapshot.map((r) => `${r.id}:${r.state}`), ["a:completed", "b:completed"])
        yield* close
      }))

    it.effect("spawnHidden runs a fiber the host counts; awaitHidden waits for it and reports its failure once", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const { session, close } = yield* openIn(host, "s1")
        const release = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        yield* session.spawnHidden(
          "helper",
          Deferred.succeed(started, undefined).pipe(
            Effect.andThen(Deferred.await(release)),
            Effect.andThen(Effect.fail(new InvokeError({ message: "helper broke" })))
          )
        )
        yield* Deferred.await(started)
        assert.strictEqual((yield* host.stats).fibers, 1)
        // no record for a hidden task
        assert.deepStrictEqual(yield* session.list({ includeTerminal: true }), [])
        const waiting = yield* Effect.forkChild(Effect.flip(session.awaitHidden))
        yield* Effect.yieldNow
        assert.isUndefined(waiting.pollUnsafe())
        yield* Deferred.succeed(release, undefined)
        const error = yield* Fiber.join(waiting)
        assert.strictEqual(error._tag, "InvokeError")
        assert.strictEqual(error.message, "helper broke")
        assert.strictEqual((yield* host.stats).fibers, 0)
        // reported once
        yield* session.awaitHidden
        yield* close
      }))
  })
})
