/**
 * nothing a caller passes, and no late effect, can corrupt the
 * store, hang a close or kill the process. One block per finding of the
 * issue, each test named after what it proves, and the late completions: a
 * cancel effect, a grace timer, a retry step or a fiber exit that arrives
 * after its task was unregistered, transferred, cancelled or replaced acts
 * only on the incarnation it was started for.
 *
 * Time is the `TestClock`; a call that must return within a bound is forked
 * and the clock advanced in small steps up to the bound (`doneWithin`). The
 * fuzz over every public method is `BackgroundTaskHost.fuzz.test.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Option, Ref, Schedule, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  type BackgroundTaskHost,
  type BackgroundTaskRecord,
  isPluginError,
  type SubscriptionEvent,
  TaskContext
} from "../src/index.ts"
import { makeTestHost, spec, tags, taskEvents } from "./utils/host.ts"
import { eventRows, makeStore, recordOf, registeredOf, sqliteBackend, startHost } from "./utils/store.ts"

type Host = BackgroundTaskHost["Service"]

// -- helpers --------------------------------------------------------------------

/**
 * Advances the `TestClock` in `step`s until `fiber` is done or `within` has
 * passed; whether it is done. (A bound that starts late still runs out: the
 * clock moves on after every step.)
 */
const doneWithin = (
  fiber: Fiber.Fiber<unknown, unknown>,
  within: Duration.Input,
  step: Duration.Input = "100 millis"
) =>
  Effect.gen(function*() {
    const steps = Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(within)) / Duration.toMillis(Duration.fromInputUnsafe(step)))
    yield* Effect.yieldNow
    for (let i = 0; i < steps && fiber.pollUnsafe() === undefined; i++) yield* TestClock.adjust(step)
    return fiber.pollUnsafe() !== undefined
  })

/** A cancel effect (or task step) that says when it started and ends when released. */
const gated = Effect.gen(function*() {
  const started = yield* Deferred.make<void>()
  const release = yield* Deferred.make<void>()
  const effect = Deferred.succeed(started, undefined).pipe(Effect.andThen(Deferred.await(release)), Effect.asVoid)
  return { started, release, effect, open: Deferred.succeed(release, undefined) } as const
})

/** Calls `f`, turning a synchronous throw into a test failure that says so. */
const call = <A, E, R>(what: string, f: () => Effect.Effect<A, E, R>): Effect.Effect<Exit.Exit<A, E>, never, R> => {
  let effect: Effect.Effect<A, E, R>
  try {
    effect = f()
  } catch (error) {
    return Effect.sync(() => assert.fail(`${what} threw synchronously: ${show(error)}`))
  }
  return Effect.exit(effect)
}

/** Any value as text, without calling into it when that throws. */
const show = (u: unknown): string => {
  try {
    return u instanceof Error ? `${u.name}: ${u.message}` : String(u)
  } catch {
    return typeof u
  }
}

/**
 * The call was refused with a typed error of the method's signature
 * (`tags`), whose message names the argument (`argument`); not a defect.
 */
const assertRefused = (
  what: string,
  exit: Exit.Exit<unknown, unknown>,
  argument: RegExp,
  tags: ReadonlyArray<string>
) => {
  assert.isTrue(Exit.isFailure(exit), `${what} was accepted`)
  if (Exit.isSuccess(exit)) return
  assert.isFalse(Cause.hasDies(exit.cause), `${what} died: ${Cause.pretty(exit.cause)}`)
  const error = Cause.findErrorOption(exit.cause)
  assert.isTrue(Option.isSome(error), `${what} failed without a typed error: ${Cause.pretty(exit.cause)}`)
  if (Option.isNone(error)) return
  assert.isTrue(isPluginError(error.value), `${what} failed with something other than a PluginError: ${show(error.value)}`)
  const { _tag, message } = error.value as { readonly _tag: string; readonly message: string }
  assert.include(tags, _tag, `${what}: ${_tag} is not in the method's signature`)
  assert.match(message, argument, `${what}: the message does not name the argument: ${message}`)
}

/** What the registry holds: the last `seq` and every record (same objects while unchanged). */
const snapshot = (host: Host) =>
  Effect.gen(function*() {
    const stats = yield* host.stats
    const records = yield* host.list({ includeTerminal: true })
    return { seq: stats.seq, records }
  })

const assertUnchanged = (
  what: string,
  before: { readonly seq: number; readonly records: ReadonlyArray<BackgroundTaskRecord> },
  after: { readonly seq: number; readonly records: ReadonlyArray<BackgroundTaskRecord> }
) => {
  assert.strictEqual(after.seq, before.seq, `${what} published events`)
  assert.strictEqual(after.records.length, before.records.length, `${what} changed the records`)
  after.records.forEach((record, i) => assert.strictEqual(record, before.records[i], `${what} changed ${record.id}`))
}

const counts = (host: Host) =>
  Effect.map(host.stats, ({ cancelled, completed, failed, live, retained }) => ({ live, retained, completed, failed, cancelled }))

/** Fresh hostile values, as the issue found them (one per test: a value may be consumed). */
const nullPrototype = () => Object.create(null) as unknown
const throwingToString = () => ({
  toString() {
    throw new Error("toString was called")
  },
  valueOf() {
    throw new Error("valueOf was called")
  }
})
const throwingProxy = () =>
  new Proxy({}, {
    get: () => {
      throw new Error("proxy get")
    },
    has: () => {
      throw new Error("proxy has")
    },
    ownKeys: () => {
      throw new Error("proxy ownKeys")
    },
    getOwnPropertyDescriptor: () => {
      throw new Error("proxy getOwnPropertyDescriptor")
    },
    getPrototypeOf: () => {
      throw new Error("proxy getPrototypeOf")
    }
  }) as unknown
const deepObject = (depth: number) => {
  let value: Record<string, unknown> = {}
  for (let i = 0; i < depth; i++) value = { a: value }
  return value
}

// -----------------------------------------------------------------------------

describe("BackgroundTaskHost hardening", () => {
  // ---------------------------------------------------------------------------
  describe("1. a late cancel effect acts only on the incarnation it was started for", () => {
    it.effect("a cancel effect that ends after its task was unregistered and its id registered again leaves the new task as it is", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const cancel = yield* gated
        yield* host.registerExternal("s", spec("x", { kind: "other", producer: "p", cancelPolicy: "external" }), cancel.effect)
        const cancelling = yield* Effect.forkChild(host.requestCancel("x", "stop"))
        yield* Deferred.await(cancel.started)
        yield* host.unregisterExternal("s", "x")
        const fresh = yield* host.registerExternal("s", spec("x", { kind: "monitor", producer: "p2" }))
        yield* cancel.open
        yield* Fiber.join(cancelling)

        assert.strictEqual(Option.getOrThrow(yield* host.get("x")), fresh, "the new task's record changed")
        assert.deepStrictEqual(yield* counts(host), { live: 1, retained: 0, completed: 0, failed: 0, cancelled: 0 })
        const all = yield* events
        // the one Cancelled is the shutdown's, of the new task
        assert.deepStrictEqual(tags(all), ["Registered:x", "CancelRequested:x", "Evicted:x", "Registered:x", "Cancelled:x"])
        const cancelled = taskEvents(all).filter((event) => event._tag === "Cancelled")
        assert.deepStrictEqual(cancelled.map((event) => "record" in event ? event.record.kind : undefined), ["monitor"])
      }))

    it.effect("a cancel effect that ends after its task was unregistered publishes nothing and counts nothing", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const cancel = yield* gated
        yield* host.registerExternal("s", spec("x", { cancelPolicy: "external" }), cancel.effect)
        const cancelling = yield* Effect.forkChild(host.requestCancel("x", "stop"))
        yield* Deferred.await(cancel.started)
        yield* host.unregisterExternal("s", "x")
        yield* cancel.open
        yield* Fiber.join(cancelling)

        assert.isTrue(Option.isNone(yield* host.get("x")))
        assert.deepStrictEqual(yield* counts(host), { live: 0, retained: 0, completed: 0, failed: 0, cancelled: 0 })
        assert.deepStrictEqual(tags(yield* events), ["Registered:x", "CancelRequested:x", "Evicted:x"])
      }))

    it.effect("on a durable store, the old cancel effect's end neither overwrites the new task's row nor writes an event: a restarted host would find the new task live", () =>
      Effect.gen(function*() {
        const db = yield* sqliteBackend.fresh
        const { host } = yield* startHost(db.sql)
        const cancel = yield* gated
        yield* host.registerExternal("s", spec("x", { kind: "other", producer: "p", cancelPolicy: "external" }), cancel.effect)
        const cancelling = yield* Effect.forkChild(host.requestCancel("x", "stop"))
        yield* Deferred.await(cancel.started)
        yield* host.unregisterExternal("s", "x")
        yield* host.registerExternal("s", spec("x", { kind: "monitor", producer: "p2" }))
        yield* cancel.open
        // requestCancel returns once its writes are committed
        yield* Fiber.join(cancelling)

        // what the next host would load: the acknowledged new task, live
        const loaded = yield* (yield* makeStore(db.sql)).load
        assert.deepStrictEqual(loaded.quarantined, [])
        assert.deepStrictEqual(
          loaded.tasks.map(({ record }) => [record.scope.sessionId, record.id, record.kind, record.state]),
          [["s", "x", "monitor", "running"]]
        )
        const rows = yield* eventRows(db.sql)
        assert.deepStrictEqual(rows.map((row) => row.tag), ["Registered", "CancelRequested", "Evicted", "Registered"])
      }))
  })

  // ---------------------------------------------------------------------------
  describe("late completions change nothing once their task was unregistered, transferred, cancelled or replaced", () => {
    it.effect("a grace period that runs out after its task was unregistered and its id registered again leaves the new task as it is", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        const sessionScope = yield* Scope.make()
        const session = yield* host.openSession("s").pipe(Scope.provide(sessionScope))
        // cooperative, with no cancel effect: the owner has the grace period to end it
        yield* session.registerExternal(spec("x", { kind: "other", closePolicy: "cancel" }))
        const closing = yield* Effect.forkDetach(Scope.close(sessionScope, Exit.void))
        yield* Effect.yieldNow
        assert.strictEqual(Option.getOrThrow(yield* host.get("x")).state, "cancel_requested")
        yield* host.unregisterExternal("s", "x")
        const fresh = yield* host.registerExternal("s", spec("x", { kind: "monitor", producer: "p2" }))

        assert.isTrue(yield* doneWithin(closing, "2 seconds"), "the session close did not return")
        assert.strictEqual(Option.getOrThrow(yield* host.get("x")), fresh, "the new task's record changed")
        assert.deepStrictEqual(yield* counts(host), { live: 1, retained: 0, completed: 0, failed: 0, cancelled: 0 })
        const all = yield* events
        assert.deepStrictEqual(tags(all), ["Registered:x", "CancelRequested:x", "Evicted:x", "Registered:x", "Cancelled:x"])
      }))

    it.effect("a parent's cancel that waits for a child's grace period returns when the child is unregistered, and nothing more is published about the child", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        const ran = yield* Ref.make(0)
        yield* host.register({ scope: { sessionId: "s" }, id: "p", kind: "other", producer: "p" })
        // cooperative with a cancel effect: a grace timer runs, then the cancel effect
        yield* host.registerExternal("s", spec("c", { parentTaskId: "p" }), Ref.update(ran, (n) => n + 1))
        const cancelling = yield* Effect.forkDetach(host.requestCancel("p", "stop"))
        yield* Effect.yieldNow
        assert.strictEqual(Option.getOrThrow(yield* host.get("c")).state, "cancel_requested")
        yield* host.unregisterExternal("s", "c")

        assert.isTrue(yield* doneWithin(cancelling, "2 seconds"), "requestCancel of the parent did not return")
        assert.strictEqual(yield* Ref.get(ran), 0, "the unregistered child's cancel effect ran")
        const all = yield* events
        assert.deepStrictEqual(
          tags(all).filter((tag) => tag.endsWith(":c")),
          ["Registered:c", "CancelRequested:c", "Evicted:c"]
        )
      }))

    it.effect("a grace timer of an unregistered task runs neither its cancel effect nor the one of the task registered with its id afterwards", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        const oldRuns = yield* Ref.make(0)
        const newRuns = yield* Ref.make(0)
        yield* host.registerExternal("s", spec("x"), Ref.update(oldRuns, (n) => n + 1))
        assert.strictEqual((yield* host.requestCancel("x")).state, "cancel_requested")
        yield* host.unregisterExternal("s", "x")
        const fresh = yield* host.registerExternal("s", spec("x", { kind: "other" }), Ref.update(newRuns, (n) => n + 1))
        yield* TestClock.adjust("5 seconds")
        assert.deepStrictEqual([yield* Ref.get(oldRuns), yield* Ref.get(newRuns)], [0, 0])
        assert.strictEqual(Option.getOrThrow(yield* host.get("x")), fresh)
      }))

    it.effect("a cancel effect that ends after its task was transferred cancels it in its new session only", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const cancel = yield* gated
        yield* host.registerExternal("s1", spec("x", { cancelPolicy: "external" }), cancel.effect)
        const cancelling = yield* Effect.forkChild(host.requestCancel("x", "stop"))
        yield* Deferred.await(cancel.started)
        yield* host.transfer("x", { sessionId: "s2" })
        yield* cancel.open
        yield* Fiber.join(cancelling)

        const record = Option.getOrThrow(yield* host.get("x"))
        assert.deepStrictEqual([record.scope.sessionId, record.state], ["s2", "cancelled"])
        assert.isTrue(Option.isNone(yield* host.getManaged("s1", "x")))
        const all = taskEvents(yield* events)
        assert.deepStrictEqual(all.map((event) => `${event._tag}:${event.sessionId}`), [
          "Registered:s1",
          "CancelRequested:s1",
          "Transferred:s2",
          "Cancelled:s2"
        ])
      }))

    it.effect("a cancel effect that ends after its owner completed the task and its id was registered again leaves the new task as it is", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const cancel = yield* gated
        yield* host.registerExternal("s", spec("x", { cancelPolicy: "external" }), cancel.effect)
        const cancelling = yield* Effect.forkChild(host.requestCancel("x", "stop"))
        yield* Deferred.await(cancel.started)
        yield* host.complete("x", { state: "failed", summary: "the owner gave up" })
        const fresh = yield* host.registerExternal("s", spec("x", { kind: "other" }))
        yield* cancel.open
        yield* Fiber.join(cancelling)

        assert.strictEqual(Option.getOrThrow(yield* host.get("x")), fresh)
        assert.deepStrictEqual(yield* counts(host), { live: 1, retained: 0, completed: 0, failed: 1, cancelled: 0 })
      }))

    it.effect("a grace timer of a task that ended itself does not touch the task registered with its id afterwards", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        const ends = yield* host.subscribe({ sessionId: "s" })
        const cooperative = Effect.gen(function*() {
          const ctx = yield* TaskContext
          yield* ctx.cancelRequested
        })
        yield* host.spawnManaged("s", spec("m"), cooperative)
        yield* Effect.yieldNow
        yield* host.requestCancel("m", "stop")
        yield* Stream.runHead(Stream.filter(ends, (event) => event._tag === "Cancelled"))
        const fresh = yield* host.spawnManaged("s", spec("m", { kind: "other" }), Effect.never)
        yield* TestClock.adjust("5 seconds")
        const now = Option.getOrThrow(yield* host.get("m"))
        assert.deepStrictEqual([now.kind, now.state, now.revision], [fresh.kind, "running", fresh.revision])
      }))

    it.effect("a retry step that ends after its task was transferred retries it in its new session, and nothing is published in the old one", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const step = yield* gated
        const runs = yield* Ref.make(0)
        const body = Effect.flatMap(Ref.updateAndGet(runs, (n) => n + 1), (n) => n === 1 ? Effect.fail("first attempt fails") : Effect.succeed("done"))
        yield* host.spawnManaged("s1", spec("r", { maxAttempts: 2, retry: Schedule.spaced("1 second").pipe(Schedule.tap(() => step.effect)) }), body)
        yield* Deferred.await(step.started)
        yield* host.transfer("r", { sessionId: "s2" })
        yield* step.open
        yield* TestClock.adjust("1 second")

        const record = Option.getOrThrow(yield* host.get("r"))
        assert.deepStrictEqual([record.scope.sessionId, record.state, yield* Ref.get(runs)], ["s2", "completed", 2])
        const all = taskEvents(yield* events)
        const transferred = all.findIndex((event) => event._tag === "Transferred")
        assert.isAbove(transferred, 0)
        assert.deepStrictEqual(all.slice(transferred).filter((event) => event.sessionId !== "s2").map((event) => event._tag), [])
      }))

    it.effect("a fiber that exits after its record was completed by hand and its id registered again leaves the new record as it is", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const body = yield* gated
        yield* host.spawnManaged("s", spec("m"), Effect.uninterruptible(body.effect))
        yield* Deferred.await(body.started)
        // complete waits for the fiber, which cannot be interrupted until released
        const completing = yield* Effect.forkChild(host.complete("m", { state: "completed", summary: "by hand" }))
        yield* Effect.yieldNow
        assert.strictEqual(Option.getOrThrow(yield* host.get("m")).state, "completed")
        const fresh = yield* host.register({ scope: { sessionId: "s" }, id: "m", kind: "other", producer: "p" })
        yield* body.open
        yield* Fiber.join(completing)

        assert.strictEqual(Option.getOrThrow(yield* host.get("m")), fresh)
        assert.deepStrictEqual(yield* counts(host), { live: 1, retained: 0, completed: 1, failed: 0, cancelled: 0 })
      }))
  })

  // ---------------------------------------------------------------------------
  describe("2. every cancel effect is bounded by its grace period, wherever it sits in a tree", () => {
    /** A managed parent (cooperative, never ends by itself) and an external child whose cancel effect never ends. */
    const tree = (host: Host, child: Parameters<typeof spec>[1] = {}) =>
      Effect.gen(function*() {
        yield* host.spawnManaged("s", spec("p", { closePolicy: "cancel" }), Effect.never)
        yield* host.registerExternal("s", spec("c", { parentTaskId: "p", ...child }), Effect.never)
        yield* Effect.yieldNow
      })

    /** Both ended cancelled, the child's event first. */
    const assertTreeCancelled = (all: ReadonlyArray<SubscriptionEvent>) => {
      const ends = taskEvents(all).filter((event) => event._tag === "Cancelled").map((event) => event.taskId)
      assert.deepStrictEqual(ends, ["c", "p"])
    }

    it.effect("closing the layer returns within the grace period when a managed parent's external child has a cancel effect that never ends", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        yield* tree(host)
        const closing = yield* Effect.forkDetach(events)
        assert.isTrue(yield* doneWithin(closing, "2 seconds"), "closing the layer did not return")
        assertTreeCancelled(yield* Fiber.join(closing))
      }))

    it.effect("closing a session returns within the grace periods when a managed parent's external child has a cancel effect that never ends", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        const sessionScope = yield* Scope.make()
        yield* host.openSession("s").pipe(Scope.provide(sessionScope))
        yield* tree(host)
        const closing = yield* Effect.forkDetach(Scope.close(sessionScope, Exit.void))
        // the child's owner gets its grace period, then its cancel effect gets one; then the parent's
        assert.isTrue(yield* doneWithin(closing, "4 seconds"), "closing the session did not return")
        assert.deepStrictEqual([(yield* host.get("c")).pipe(Option.map((r) => r.state)), (yield* host.get("p")).pipe(Option.map((r) => r.state))], [
          Option.some("cancelled"),
          Option.some("cancelled")
        ])
        assertTreeCancelled(yield* events)
      }))

    it.effect("requestCancel on the parent returns within the grace periods", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        yield* tree(host)
        const cancelling = yield* Effect.forkDetach(host.requestCancel("p", "stop"))
        assert.isTrue(yield* doneWithin(cancelling, "3 seconds"), "requestCancel did not return")
        assert.strictEqual(Option.getOrThrow(yield* host.get("c")).state, "cancelled")
        yield* TestClock.adjust("2 seconds") // the parent's own grace period
        assertTreeCancelled(yield* events)
      }))

    it.effect("cancelManaged on the parent returns within the grace period", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        yield* tree(host)
        const cancelling = yield* Effect.forkDetach(host.cancelManaged("s", "p"))
        assert.isTrue(yield* doneWithin(cancelling, "2 seconds"), "cancelManaged did not return")
        assertTreeCancelled(yield* events)
      }))

    it.effect("cancelAllManaged returns within the grace period", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        yield* tree(host)
        const cancelling = yield* Effect.forkDetach(host.cancelAllManaged("s"))
        assert.isTrue(yield* doneWithin(cancelling, "2 seconds"), "cancelAllManaged did not return")
        assertTreeCancelled(yield* events)
      }))

    it.effect("a lone external task: cancelManaged and requestCancel (policy external) return within the grace period and the record ends cancelled", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        yield* host.registerExternal("s", spec("a"), Effect.never)
        yield* host.registerExternal("s", spec("b", { cancelPolicy: "external" }), Effect.never)
        const hard = yield* Effect.forkDetach(host.cancelManaged("s", "a"))
        assert.isTrue(yield* doneWithin(hard, "2 seconds"), "cancelManaged did not return")
        const requested = yield* Effect.forkDetach(host.requestCancel("b"))
        assert.isTrue(yield* doneWithin(requested, "2 seconds"), "requestCancel did not return")
        assert.deepStrictEqual(
          [Option.getOrThrow(yield* host.get("a")).state, Option.getOrThrow(yield* host.get("b")).state],
          ["cancelled", "cancelled"]
        )
      }))

    it.effect("a lone external task whose session closes (closePolicy cancel) with a cancel effect that never ends: the close returns within the grace periods", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "1 second" })
        const sessionScope = yield* Scope.make()
        const session = yield* host.openSession("s").pipe(Scope.provide(sessionScope))
        yield* session.registerExternal(spec("x", { closePolicy: "cancel" }), Effect.never)
        const closing = yield* Effect.forkDetach(Scope.close(sessionScope, Exit.void))
        assert.isTrue(yield* doneWithin(closing, "3 seconds"), "closing the session did not return")
        assert.strictEqual(Option.getOrThrow(yield* host.get("x")).state, "cancelled")
      }))
  })

  // ---------------------------------------------------------------------------
  describe("3. a cancel reason that is not a string is refused", () => {
    const badReasons: ReadonlyArray<readonly [string, () => unknown]> = [
      ["a number", () => 42],
      ["an object", () => ({ why: "because" })],
      ["a Symbol", () => Symbol("why")],
      ["a BigInt", () => 10n],
      ["null", () => null],
      ["a null-prototype object", nullPrototype]
    ]

    for (const [label, reason] of badReasons) {
      it.effect(`requestCancel with ${label} as reason fails with a typed error naming the reason, and changes nothing`, () =>
        Effect.gen(function*() {
          const { host } = yield* makeTestHost()
          yield* host.register({ scope: { sessionId: "s" }, id: "x", kind: "other", producer: "p" })
          const before = yield* snapshot(host)
          const exit = yield* call("requestCancel", () => host.requestCancel("x", reason() as never))
          assertRefused("requestCancel", exit, /reason/, ["TaskNotFound", "InvalidTransition", "SessionError"])
          assertUnchanged("requestCancel", before, yield* snapshot(host))
        }))
    }

    it.effect("on a durable store, bad reasons write nothing, the host keeps running, and a restarted host finds the task (nothing quarantined)", () =>
      Effect.gen(function*() {
        const db = yield* sqliteBackend.fresh
        const a = yield* startHost(db.sql)
        yield* a.host.register({ scope: { sessionId: "s" }, id: "x", kind: "other", producer: "p" })
        // a BigInt last: today it stops the host for good
        for (const [label, reason] of badReasons) {
          const exit = yield* call(`requestCancel(${label})`, () => a.host.requestCancel("x", reason() as never))
          assert.isTrue(Exit.isFailure(exit), `requestCancel with ${label} was accepted`)
        }
        // still running: it takes a write
        const written = yield* call("register", () => a.host.register({ scope: { sessionId: "s" }, id: "y", kind: "other", producer: "p" }))
        assert.isTrue(Exit.isSuccess(written), `the host stopped: ${Exit.isFailure(written) ? Cause.pretty(written.cause) : ""}`)
        const rows = yield* Effect.exit(eventRows(db.sql))
        assert.isTrue(Exit.isSuccess(rows), "an event row does not decode")
        yield* a.close

        const b = yield* startHost(db.sql)
        const report = yield* b.host.recovery
        assert.deepStrictEqual(report.quarantined.map((corrupt) => corrupt.message), [])
        assert.deepStrictEqual(
          (yield* b.host.list({ includeTerminal: true })).map((record) => record.id).sort(),
          ["x", "y"]
        )
      }))
  })

  // ---------------------------------------------------------------------------
  describe("4. a task body or cancel effect that is not an Effect is refused at the boundary", () => {
    const notEffects: ReadonlyArray<readonly [string, () => unknown]> = [
      ["42", () => 42],
      ["a function that returns an Effect", () => () => Effect.void],
      ["a null-prototype object", nullPrototype],
      ["an object whose toString throws", throwingToString],
      ["a throwing Proxy", throwingProxy]
    ]

    for (const [label, value] of notEffects) {
      it.effect(`spawnManaged with ${label} as the task fails with RegistrationError naming the task and registers nothing`, () =>
        Effect.gen(function*() {
          const { host } = yield* makeTestHost()
          const before = yield* snapshot(host)
          const exit = yield* call("spawnManaged", () => host.spawnManaged("s", spec("m"), value() as Effect.Effect<unknown>))
          assertRefused("spawnManaged", exit, /\btask\b/, ["RegistrationError"])
          assertUnchanged("spawnManaged", before, yield* snapshot(host))
        }))

      it.effect(`spawnHidden with ${label} as the task fails with SessionError naming the task, and awaitHidden returns`, () =>
        Effect.gen(function*() {
          const { host } = yield* makeTestHost()
          const exit = yield* call("spawnHidden", () => host.spawnHidden("s", "helper", value() as Effect.Effect<void>))
          assertRefused("spawnHidden", exit, /\btask\b/, ["SessionError"])
          const waiting = yield* Effect.forkDetach(Effect.exit(host.awaitHidden("s")))
          assert.isTrue(yield* doneWithin(waiting, "1 second"), "awaitHidden did not return")
        }))

      it.effect(`registerExternal with ${label} as the cancel effect fails with RegistrationError naming it and registers nothing`, () =>
        Effect.gen(function*() {
          const { host } = yield* makeTestHost()
          const before = yield* snapshot(host)
          const exit = yield* call("registerExternal", () => host.registerExternal("s", spec("x"), value() as never))
          assertRefused("registerExternal", exit, /\bcancel\b/, ["RegistrationError"])
          assertUnchanged("registerExternal", before, yield* snapshot(host))
        }))
    }

    it.effect("a recovery handler that returns something other than an Effect ends its task failed instead of leaving it running", () =>
      Effect.gen(function*() {
        const db = yield* sqliteBackend.fresh
        // a task a previous process left running, with attempts left
        const left = recordOf({ id: "x", state: "running", producer: "p", maxAttempts: 3, seq: 1 })
        yield* (yield* makeStore(db.sql)).write(
          { events: [registeredOf(left)], puts: [{ order: 1, owner: "host", record: left }], deletes: [] },
          undefined
        )
        const { host } = yield* startHost(db.sql, { recovery: { p: () => 42 as never } })
        // the handler's answer is judged at recovery: neither a body nor a decision, so the task ends failed there
        const report = yield* host.recovery
        assert.deepStrictEqual(report.respawned, [])
        assert.deepStrictEqual(report.failed, ["x"])
        const record = Option.getOrThrow(yield* host.get("x"))
        assert.strictEqual(record.state, "failed")
        assert.match(Option.getOrElse(Option.flatMap(record.failure, (outcome) => outcome.summary), () => ""), /returned neither an effect nor a decision/)
      }))
  })

  // ---------------------------------------------------------------------------
  describe("5. a cancelled task does not run again", () => {
    it.effect("a cancel request during an asynchronous retry step ends the task cancelled without another attempt and without leaving cancel_requested", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const step = yield* gated
        const runs = yield* Ref.make(0)
        const body = Effect.andThen(Ref.update(runs, (n) => n + 1), Effect.fail("boom"))
        yield* host.spawnManaged(
          "s",
          spec("r", { maxAttempts: 3, retry: Schedule.spaced("1 second").pipe(Schedule.tap(() => step.effect)) }),
          body
        )
        yield* Deferred.await(step.started)
        yield* host.requestCancel("r", "enough")
        yield* step.open
        yield* TestClock.adjust("1 minute")

        assert.strictEqual(yield* Ref.get(runs), 1, "the cancelled task ran again")
        assert.strictEqual(Option.getOrThrow(yield* host.get("r")).state, "cancelled")
        const all = taskEvents(yield* events)
        const requested = all.findIndex((event) => event._tag === "CancelRequested")
        const after = all.slice(requested + 1).map((event) =>
          event._tag === "StateChanged" ? `StateChanged:${event.state}` : event._tag
        )
        assert.deepStrictEqual(after.filter((tag) => tag.startsWith("StateChanged")), [], "a move out of cancel_requested")
        assert.strictEqual(after[after.length - 1], "Cancelled")
      }))
  })

  // ---------------------------------------------------------------------------
  describe("6. a wrong-typed argument fails typed, naming the argument, and changes nothing", () => {
    const cases: ReadonlyArray<{
      readonly name: string
      readonly argument: RegExp
      readonly tags: ReadonlyArray<string>
      readonly run: (host: Host) => Effect.Effect<unknown, unknown, Scope.Scope>
    }> = [
      {
        name: "getManaged(10n, \"x\")",
        argument: /sessionId|session id/,
        tags: ["SessionError"],
        run: (host) => host.getManaged(10n as never, "x")
      },
      {
        name: "listManaged(<a 10,000-deep object>)",
        argument: /sessionId|session id/,
        tags: ["SessionError"],
        run: (host) => host.listManaged(deepObject(10_000) as never)
      },
      {
        name: "transferManaged(\"s\", \"t\", 5)",
        argument: /taskIds|task ids/,
        tags: ["TaskAlreadyExists", "SessionError"],
        run: (host) => host.transferManaged("s", "t", 5 as never)
      },
      {
        name: "update(Object.create(null), {})",
        argument: /taskId|task id/,
        tags: ["TaskNotFound", "InvalidTransition", "InvokeError", "SessionError"],
        run: (host) => host.update(nullPrototype() as never, {})
      },
      {
        name: "update(\"x\", { state: 10n })",
        argument: /state/,
        tags: ["TaskNotFound", "InvalidTransition", "InvokeError", "SessionError"],
        run: (host) => host.update("x", { state: 10n as never })
      },
      {
        name: "openSession(\"s\", null)",
        argument: /options/,
        tags: ["SessionError"],
        run: (host) => host.openSession("s", null as never)
      },
      {
        name: "requestCancel(Symbol())",
        argument: /taskId|task id/,
        tags: ["TaskNotFound", "InvalidTransition", "SessionError"],
        run: (host) => host.requestCancel(Symbol("x") as never)
      },
      {
        name: "spawnHidden(\"s\", Object.create(null), Effect.void)",
        argument: /label/,
        tags: ["SessionError"],
        run: (host) => host.spawnHidden("s", nullPrototype() as never, Effect.void)
      },
      {
        name: "markTerminal(\"s\", \"x\", 10n)",
        argument: /state/,
        tags: ["SessionError"],
        run: (host) => host.markTerminal("s", "x", 10n as never)
      },
      {
        name: "session.register(<a throwing Proxy>)",
        argument: /spec|registration/,
        tags: ["RegistrationError", "TaskAlreadyExists", "TaskNotFound", "InvalidTransition", "SessionError"],
        run: (host) => Effect.flatMap(host.openSession("h"), (session) => session.register(throwingProxy() as never))
      },
      {
        name: "session.list(<a throwing Proxy>)",
        argument: /filter/,
        tags: ["SnapshotError", "SessionError"],
        run: (host) => Effect.flatMap(host.openSession("h"), (session) => session.list(throwingProxy() as never))
      }
    ]

    for (const { argument, name, run, tags: allowed } of cases) {
      it.effect(`${name} fails with a typed error naming the argument`, () =>
        Effect.gen(function*() {
          const { host } = yield* makeTestHost()
          yield* host.register({ scope: { sessionId: "s" }, id: "x", kind: "other", producer: "p" })
          const before = yield* snapshot(host)
          const exit = yield* Effect.scoped(call(name, () => run(host)))
          assertRefused(name, exit, argument, allowed)
          assertUnchanged(name, before, yield* snapshot(host))
        }))
    }
  })

  // ---------------------------------------------------------------------------
  describe("7. a burst of calls does not starve readers or timers", () => {
    const burst = (store: "memory" | "sqlite") =>
      Effect.gen(function*() {
        const buffer = 1_000
        const n = 10 * buffer
        const { host } = yield* makeTestHost({ subscriberBuffer: buffer }, store)
        const stream = yield* host.subscribe()
        const seen = { events: 0, skipped: 0 }
        // an active reader: it reads every chunk as soon as it runs
        const reader = yield* Effect.forkChild(
          Stream.runDrain(Stream.takeUntil(stream, (event) => {
            if (event._tag === "Lagged") seen.skipped += event.skipped
            else seen.events++
            return seen.events + seen.skipped >= n
          }))
        )
        yield* Effect.yieldNow
        let returned = 0
        let returnedWhenTimerRan: number | undefined
        setImmediate(() => {
          returnedWhenTimerRan = returned
        })
        yield* Effect.forEach(
          Array.from({ length: n }, (_, i) => i),
          (i) =>
            Effect.tap(
              host.register({ scope: { sessionId: "s" }, id: `t${i}`, kind: "other", producer: "p" }),
              () => Effect.sync(() => returned++)
            ),
          { concurrency: "unbounded", discard: true }
        )
        yield* Fiber.join(reader)
        assert.deepStrictEqual(seen, { events: n, skipped: 0 }, "the reader lagged")
        assert.isDefined(returnedWhenTimerRan, "a timer set before the burst had not run when it ended")
        assert.isBelow(returnedWhenTimerRan!, n, "a timer set before the burst ran only after it")
      })

    it.effect("an active subscriber reads every event of 10,000 concurrent calls (10 times its buffer) and a timer runs during them", () =>
      burst("memory"), 30_000)

    it.effect("on a durable store, an active subscriber reads every event of 10,000 concurrent calls and a timer runs during them", () =>
      burst("sqlite"), 30_000)

    it.effect("a subscriber with a small buffer joining in the middle of a burst slows the burst down at once: it reads every event", () =>
      Effect.gen(function*() {
        // the default buffer (4,096): a burst takes 1,024 steps between two turns
        const { host, close } = yield* makeTestHost()
        yield* host.register({ scope: { sessionId: "s" }, id: "t", kind: "other", producer: "p" })
        for (let i = 0; i < 100; i++) yield* host.update("t", { progress: `before ${i}` })
        // still in the same turn: from here on at most 2 steps between two turns (a quarter of 8)
        const stream = yield* host.subscribe({ buffer: 8, types: ["Progress"] })
        const reader = yield* Effect.forkChild(Stream.runCollect(stream))
        const n = 200
        for (let i = 0; i < n; i++) yield* host.update("t", { progress: `after ${i}` })
        yield* close
        const events = yield* Fiber.join(reader)
        assert.deepStrictEqual(
          events.map((event) => event._tag === "Progress" ? event.message : event._tag),
          Array.from({ length: n }, (_, i) => `after ${i}`),
          "the reader lagged"
        )
      }))
  })
})
