/**
 * Time and attempts (docs/policies.md §5, §6): the cooperative grace period (host option and
 * per-task override), the per-task timeout, retries with a backoff Schedule
 * (task's, host's, default exponential) and idempotency keys. All time is
 * the TestClock's.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Queue, Ref, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  type BackgroundTaskHostOptions,
  type BackgroundTaskHostService,
  type BackgroundTaskRecord,
  type SubscriptionEvent,
  TaskContext
} from "../src/index.ts"
import { blocking as stubborn, makeTestHost as makeHost, spec, tags, taskEvents, terminalEvents } from "./utils/host.ts"

/** A test host that keeps terminal records however far the TestClock moves. */
const makeTestHost = (options: BackgroundTaskHostOptions = {}) =>
  makeHost({ retention: { maxAge: Infinity }, ...options })

// -- reading events (the one place that knows the event union) -------------------------

type Step =
  | { readonly _tag: "state"; readonly state: string; readonly record: BackgroundTaskRecord }
  | { readonly _tag: "progress"; readonly message: string }
  | { readonly _tag: "end"; readonly tag: string; readonly record: BackgroundTaskRecord }
  | { readonly _tag: "other"; readonly tag: string }

/** What an event says about one task, in the terms these tests compare. */
const stepOf = (event: SubscriptionEvent, taskId: string): Step | undefined => {
  if (event._tag === "Lagged" || event._tag === "Evicted" || event.taskId !== taskId) return undefined
  switch (event._tag) {
    case "StateChanged":
      return { _tag: "state", state: event.state, record: event.record }
    case "Progress":
      return { _tag: "progress", message: event.message }
    case "Completed":
    case "Failed":
    case "Cancelled":
      return { _tag: "end", tag: event._tag, record: event.record }
    default:
      return { _tag: "other", tag: event._tag }
  }
}

/**
 * A subscription read one step at a time: `next(id)` waits for the next
 * event about the task (subscribed before the test acts, so none is missed).
 */
const follow = (host: BackgroundTaskHostService) =>
  Effect.gen(function*() {
    const stream = yield* host.subscribe()
    const queue = yield* Queue.unbounded<SubscriptionEvent>()
    yield* Effect.forkScoped(Stream.runForEach(stream, (event) => Queue.offer(queue, event)))
    return (taskId: string): Effect.Effect<Step> =>
      Effect.gen(function*() {
        while (true) {
          const step = stepOf(yield* Queue.take(queue), taskId)
          if (step !== undefined) return step
        }
      })
  })

const stateOf = (host: BackgroundTaskHostService, id: string) =>
  host.get(id).pipe(Effect.map((record) => Option.getOrThrow(record).state))

const ms = (millis: number) => Duration.millis(millis)
const justBefore = (duration: Duration.Duration) => ms(Duration.toMillis(duration) - 1)

/** A body that fails every attempt with "boom <n>" (n = 1, 2, ...), counting its runs. */
const failing = Effect.gen(function*() {
  const runs = yield* Ref.make(0)
  const body = Ref.updateAndGet(runs, (n) => n + 1).pipe(
    Effect.flatMap((n) => Effect.fail(new Error(`boom ${n}`)))
  )
  return { runs, body } as const
})

/**
 * One retry, seen from outside: the record moves to `waiting` with the next
 * attempt number, a Progress says why and how long, and the next attempt
 * starts exactly after `delay` (not one millisecond earlier).
 */
const expectRetry = (
  host: BackgroundTaskHostService,
  next: (taskId: string) => Effect.Effect<Step>,
  options: {
    readonly id: string
    readonly attempt: number
    readonly maxAttempts: number
    readonly message: string
    readonly delay: Duration.Duration
    readonly runs: Ref.Ref<number>
  }
) =>
  Effect.gen(function*() {
    const { attempt, delay, id, maxAttempts, message, runs } = options
    const waiting = yield* next(id)
    assert.strictEqual(waiting._tag, "state")
    if (waiting._tag === "state") {
      assert.strictEqual(waiting.state, "waiting")
      assert.strictEqual(waiting.record.attempt.attempt, attempt)
      assert.deepStrictEqual(waiting.record.attempt.maxAttempts, Option.some(maxAttempts))
    }
    assert.deepStrictEqual(yield* next(id), {
      _tag: "progress",
      message: `attempt ${attempt} of ${maxAttempts} failed: ${message}; retrying in ${Duration.format(delay)}`
    })
    const record = Option.getOrThrow(yield* host.get(id))
    assert.strictEqual(record.state, "waiting")
    assert.strictEqual(record.attempt.attempt, attempt)
    yield* TestClock.adjust(justBefore(delay))
    assert.strictEqual(yield* stateOf(host, id), "waiting", `attempt ${attempt} still waiting just before ${Duration.format(delay)}`)
    assert.strictEqual(yield* Ref.get(runs), attempt, "no new attempt before the delay")
    yield* TestClock.adjust(ms(1))
    const running = yield* next(id)
    assert.strictEqual(running._tag, "state")
    if (running._tag === "state") {
      assert.strictEqual(running.state, "running")
      assert.strictEqual(running.record.attempt.attempt, attempt)
    }
  })


const resultSummary = (record: BackgroundTaskRecord) =>
  Option.getOrUndefined(Option.flatMap(record.result, (outcome) => outcome.summary))
const failureSummary = (record: BackgroundTaskRecord) =>
  Option.getOrUndefined(Option.flatMap(record.failure, (outcome) => outcome.summary))

const graceNote = (duration: Duration.Duration) => `did not stop within its ${Duration.format(duration)} grace period`

describe("BackgroundTaskHost time and attempts", () => {
  describe("cooperative grace period", () => {
    it.effect("host option: a task ignoring the request is kept until grace - 1ms and interrupted at grace; the record says so", () =>
      Effect.gen(function*() {
        const grace = Duration.seconds(2)
        const { host } = yield* makeTestHost({ cancelGracePeriod: grace })
        const watch = yield* host.subscribe()
        const { finalized, started, task } = yield* stubborn
        yield* host.spawnManaged("s1", spec("t"), task)
        yield* Deferred.await(started)
        const requested = yield* host.requestCancel("t", "wrap up")
        assert.strictEqual(requested.state, "cancel_requested")
        yield* TestClock.adjust(justBefore(grace))
        assert.strictEqual(yield* stateOf(host, "t"), "cancel_requested")
        assert.isFalse(yield* Deferred.isDone(finalized))
        yield* TestClock.adjust(ms(1))
        const [end] = yield* terminalEvents(watch, ["t"])
        assert.strictEqual(end?._tag, "Cancelled")
        assert.isTrue(yield* Deferred.isDone(finalized))
        const record = Option.getOrThrow(yield* host.get("t"))
        assert.strictEqual(record.state, "cancelled")
        assert.strictEqual(resultSummary(record), `wrap up; ${graceNote(grace)}`)
      }))

    it.effect("default: 5 seconds; without a reason the summary is the grace note alone", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { started, task } = yield* stubborn
        yield* host.spawnManaged("s1", spec("t"), task)
        yield* Deferred.await(started)
        yield* host.requestCancel("t")
        yield* TestClock.adjust(justBefore(Duration.seconds(5)))
        assert.strictEqual(yield* stateOf(host, "t"), "cancel_requested")
        yield* TestClock.adjust(ms(1))
        yield* terminalEvents(watch, ["t"])
        const record = Option.getOrThrow(yield* host.get("t"))
        assert.strictEqual(record.state, "cancelled")
        assert.strictEqual(resultSummary(record), graceNote(Duration.seconds(5)))
      }))

    it.effect("per-task override, shorter and longer than the host's, beside a task without one", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "3 seconds" })
        const watch = yield* host.subscribe()
        const short = yield* stubborn
        const plain = yield* stubborn
        const long = yield* stubborn
        yield* host.spawnManaged("s1", spec("short", { cancelGracePeriod: "1 second" }), short.task)
        yield* host.spawnManaged("s1", spec("plain"), plain.task)
        yield* host.spawnManaged("s1", spec("long", { cancelGracePeriod: Duration.seconds(10) }), long.task)
        yield* Effect.forEach([short, plain, long], (s) => Deferred.await(s.started), { discard: true })
        yield* Effect.forEach(["short", "plain", "long"], (id) => host.requestCancel(id), { discard: true })
        const expectLive = (ids: ReadonlyArray<string>) =>
          Effect.forEach(ids, (id) =>
            stateOf(host, id).pipe(Effect.map((state) => assert.strictEqual(state, "cancel_requested", id))))
        yield* TestClock.adjust("999 millis")
        yield* expectLive(["short", "plain", "long"])
        yield* TestClock.adjust("1 millis")
        yield* terminalEvents(watch, ["short"])
        assert.strictEqual(resultSummary(Option.getOrThrow(yield* host.get("short"))), graceNote(Duration.seconds(1)))
        yield* TestClock.adjust("1999 millis") // 2999 ms
        yield* expectLive(["plain", "long"])
        yield* TestClock.adjust("1 millis")
        yield* terminalEvents(watch, ["plain"])
        assert.strictEqual(resultSummary(Option.getOrThrow(yield* host.get("plain"))), graceNote(Duration.seconds(3)))
        yield* TestClock.adjust("6999 millis") // 9999 ms
        yield* expectLive(["long"])
        yield* TestClock.adjust("1 millis")
        yield* terminalEvents(watch, ["long"])
        assert.strictEqual(resultSummary(Option.getOrThrow(yield* host.get("long"))), graceNote(Duration.seconds(10)))
        assert.isTrue(yield* Deferred.isDone(long.finalized))
      }))

    it.effect("an external cooperative task: its cancel effect runs when the grace period ends", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: "2 seconds" })
        const watch = yield* host.subscribe()
        const cancels = yield* Ref.make(0)
        yield* host.registerExternal("s1", spec("x"), Ref.update(cancels, (n) => n + 1))
        yield* host.requestCancel("x", "please")
        yield* TestClock.adjust("1999 millis")
        assert.strictEqual(yield* Ref.get(cancels), 0)
        assert.strictEqual(yield* stateOf(host, "x"), "cancel_requested")
        yield* TestClock.adjust("1 millis")
        yield* terminalEvents(watch, ["x"])
        assert.strictEqual(yield* Ref.get(cancels), 1)
        assert.strictEqual(resultSummary(Option.getOrThrow(yield* host.get("x"))), `please; ${graceNote(Duration.seconds(2))}`)
      }))

    it.effect("a task that stops within its grace period keeps its own summary; the timer never fires", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost({ cancelGracePeriod: "2 seconds" })
        const watch = yield* host.subscribe()
        yield* host.spawnManaged(
          "s1",
          spec("t"),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* ctx.cancelRequested
            yield* Effect.sleep("1 second") // cleaning up takes a while, within the grace period
            return "cleaned up"
          })
        )
        yield* host.requestCancel("t")
        yield* TestClock.adjust("1 second")
        yield* terminalEvents(watch, ["t"])
        assert.strictEqual((yield* host.stats).fibers, 0, "neither the task's fiber nor its grace timer is left")
        yield* TestClock.adjust("1 hour")
        const record = Option.getOrThrow(yield* host.get("t"))
        assert.strictEqual(record.state, "cancelled")
        assert.strictEqual(resultSummary(record), "cleaned up")
        assert.deepStrictEqual(tags(yield* events), ["Registered:t", "CancelRequested:t", "Cancelled:t"])
      }))

    it.effect("an infinite grace period never interrupts", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ cancelGracePeriod: Infinity })
        const { finalized, started, task } = yield* stubborn
        yield* host.spawnManaged("s1", spec("t"), task)
        yield* Deferred.await(started)
        yield* host.requestCancel("t")
        yield* TestClock.adjust("100 days")
        assert.strictEqual(yield* stateOf(host, "t"), "cancel_requested")
        assert.isFalse(yield* Deferred.isDone(finalized))
      }))
  })

  describe("per-task timeout", () => {
    it.effect("an attempt running longer is interrupted and the task fails with \"timed out after …\"", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const { finalized, started, task } = yield* stubborn
        yield* host.spawnManaged("s1", spec("t", { timeout: "1 second" }), task)
        yield* Deferred.await(started)
        yield* TestClock.adjust("999 millis")
        assert.strictEqual(yield* stateOf(host, "t"), "running")
        assert.isFalse(yield* Deferred.isDone(finalized))
        yield* TestClock.adjust("1 millis")
        const [end] = yield* terminalEvents(watch, ["t"])
        assert.strictEqual(end?._tag, "Failed")
        assert.isTrue(yield* Deferred.isDone(finalized))
        const record = Option.getOrThrow(yield* host.get("t"))
        assert.strictEqual(record.state, "failed")
        assert.strictEqual(failureSummary(record), `timed out after ${Duration.format(Duration.seconds(1))}`)
        assert.match(failureSummary(record) ?? "", /^timed out after 1s$/)
        assert.deepStrictEqual(tags(yield* events), ["Registered:t", "Failed:t"])
      }))

    it.effect("a task that finishes within its timeout completes with its result", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        yield* host.spawnManaged("s1", spec("t", { timeout: "2 seconds" }), Effect.sleep("1999 millis").pipe(Effect.as("made it")))
        yield* TestClock.adjust("1999 millis")
        const [end] = yield* terminalEvents(watch, ["t"])
        assert.strictEqual(end?._tag, "Completed")
        yield* TestClock.adjust("1 hour")
        const record = Option.getOrThrow(yield* host.get("t"))
        assert.strictEqual(record.state, "completed")
        assert.strictEqual(resultSummary(record), "made it")
      }))

    it.effect("the timeout bounds each attempt: a retried attempt gets the full timeout again", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const next = yield* follow(host)
        const runs = yield* Ref.make(0)
        const delay = Duration.millis(500)
        yield* host.spawnManaged(
          "s1",
          spec("t", { timeout: "1 second", maxAttempts: 2, retry: Schedule.spaced(delay) }),
          Ref.update(runs, (n) => n + 1).pipe(Effect.andThen(Effect.never))
        )
        assert.strictEqual((yield* next("t"))._tag, "other") // Registered
        yield* TestClock.adjust("1 second")
        yield* expectRetry(host, next, { id: "t", attempt: 1, maxAttempts: 2, message: "timed out after 1s", delay, runs })
        yield* TestClock.adjust("999 millis")
        assert.strictEqual(yield* stateOf(host, "t"), "running")
        yield* TestClock.adjust("1 millis")
        const end = yield* next("t")
        assert.strictEqual(end._tag === "end" ? end.tag : end._tag, "Failed")
        const record = Option.getOrThrow(yield* host.get("t"))
        assert.strictEqual(failureSummary(record), "timed out after 1s")
        assert.strictEqual(yield* Ref.get(runs), 2)
      }))
  })

  describe("retries", () => {
    it.effect("the task's Schedule: each retry increments attempt, publishes StateChanged/Progress; the final failure keeps the last message", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost({ retry: { schedule: Schedule.spaced("1 hour") } })
        const next = yield* follow(host)
        const { body, runs } = yield* failing
        const delay = Duration.seconds(3)
        const registered = yield* host.spawnManaged("s1", spec("r", { maxAttempts: 3, retry: Schedule.spaced(delay) }), body)
        assert.strictEqual(registered.attempt.attempt, 0)
        assert.deepStrictEqual(registered.attempt.maxAttempts, Option.some(3))
        assert.strictEqual((yield* next("r"))._tag, "other") // Registered
        yield* expectRetry(host, next, { id: "r", attempt: 1, maxAttempts: 3, message: "boom 1", delay, runs })
        yield* expectRetry(host, next, { id: "r", attempt: 2, maxAttempts: 3, message: "boom 2", delay, runs })
        const end = yield* next("r")
        assert.strictEqual(end._tag, "end")
        if (end._tag === "end") {
          assert.strictEqual(end.tag, "Failed")
          assert.strictEqual(end.record.attempt.attempt, 2)
          assert.strictEqual(failureSummary(end.record), "boom 3")
        }
        assert.strictEqual(yield* Ref.get(runs), 3)
        yield* TestClock.adjust("1 day")
        assert.strictEqual(yield* Ref.get(runs), 3, "no attempt after the last")
        assert.deepStrictEqual(tags(taskEvents(yield* events)), [
          "Registered:r",
          "StateChanged:r",
          "Progress:r",
          "StateChanged:r",
          "StateChanged:r",
          "Progress:r",
          "StateChanged:r",
          "Failed:r"
        ])
      }))

    it.effect("a retried attempt that succeeds completes the task on that attempt", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const next = yield* follow(host)
        const runs = yield* Ref.make(0)
        const body = Ref.updateAndGet(runs, (n) => n + 1).pipe(
          Effect.flatMap((n) => n < 2 ? Effect.fail(new Error("flaky")) : Effect.succeed("second time lucky"))
        )
        yield* host.spawnManaged("s1", spec("r", { maxAttempts: 5, retry: Schedule.spaced("1 second") }), body)
        yield* next("r")
        yield* expectRetry(host, next, { id: "r", attempt: 1, maxAttempts: 5, message: "flaky", delay: Duration.seconds(1), runs })
        const end = yield* next("r")
        assert.strictEqual(end._tag === "end" ? end.tag : end._tag, "Completed")
        const record = Option.getOrThrow(yield* host.get("r"))
        assert.strictEqual(record.attempt.attempt, 1)
        assert.strictEqual(resultSummary(record), "second time lucky")
      }))

    it.effect("the host's retry.schedule when the task has none", () =>
      Effect.gen(function*() {
        const delay = Duration.seconds(7)
        const { host } = yield* makeTestHost({ retry: { schedule: Schedule.spaced(delay) } })
        const next = yield* follow(host)
        const { body, runs } = yield* failing
        yield* host.spawnManaged("s1", spec("r", { maxAttempts: 2 }), body)
        yield* next("r")
        yield* expectRetry(host, next, { id: "r", attempt: 1, maxAttempts: 2, message: "boom 1", delay, runs })
        const end = yield* next("r")
        assert.strictEqual(end._tag === "end" ? end.tag : end._tag, "Failed")
        assert.strictEqual(failureSummary(Option.getOrThrow(yield* host.get("r"))), "boom 2")
      }))

    it.effect("the default backoff is exponential from 1 second: 1s, 2s, 4s", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const next = yield* follow(host)
        const { body, runs } = yield* failing
        yield* host.spawnManaged("s1", spec("r", { maxAttempts: 4 }), body)
        yield* next("r")
        for (const [attempt, seconds] of [[1, 1], [2, 2], [3, 4]] as const) {
          yield* expectRetry(host, next, {
            id: "r",
            attempt,
            maxAttempts: 4,
            message: `boom ${attempt}`,
            delay: Duration.seconds(seconds),
            runs
          })
        }
        const end = yield* next("r")
        assert.strictEqual(end._tag === "end" ? end.tag : end._tag, "Failed")
        assert.strictEqual(failureSummary(Option.getOrThrow(yield* host.get("r"))), "boom 4")
        assert.strictEqual(yield* Ref.get(runs), 4)
      }))

    it.effect("a schedule that ends before maxAttempts ends the retries: the last failure stands", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const next = yield* follow(host)
        const { body, runs } = yield* failing
        const delay = Duration.seconds(1)
        yield* host.spawnManaged("s1", spec("r", { maxAttempts: 5, retry: Schedule.spaced(delay).pipe(Schedule.upTo({ times: 1 })) }), body)
        yield* next("r")
        yield* expectRetry(host, next, { id: "r", attempt: 1, maxAttempts: 5, message: "boom 1", delay, runs })
        const end = yield* next("r")
        assert.strictEqual(end._tag === "end" ? end.tag : end._tag, "Failed")
        assert.strictEqual(failureSummary(Option.getOrThrow(yield* host.get("r"))), "boom 2")
        assert.strictEqual(yield* Ref.get(runs), 2)
      }))

    it.effect("without maxAttempts (or with 1) a failure is final", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const once = yield* failing
        const one = yield* failing
        yield* host.spawnManaged("s1", spec("plain"), once.body)
        yield* host.spawnManaged("s1", spec("one", { maxAttempts: 1 }), one.body)
        yield* terminalEvents(watch, ["plain", "one"])
        yield* TestClock.adjust("1 day")
        assert.strictEqual(yield* Ref.get(once.runs), 1)
        assert.strictEqual(yield* Ref.get(one.runs), 1)
        assert.sameMembers(tags(yield* events), ["Registered:plain", "Registered:one", "Failed:plain", "Failed:one"])
      }))

    it.effect("a defect is not retried", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const runs = yield* Ref.make(0)
        yield* host.spawnManaged(
          "s1",
          spec("d", { maxAttempts: 3, retry: Schedule.spaced("1 second") }),
          Ref.update(runs, (n) => n + 1).pipe(Effect.andThen(Effect.die(new Error("kaboom"))))
        )
        yield* terminalEvents(watch, ["d"])
        yield* TestClock.adjust("1 hour")
        assert.strictEqual(yield* Ref.get(runs), 1)
        const record = Option.getOrThrow(yield* host.get("d"))
        assert.strictEqual(record.state, "failed")
        assert.strictEqual(record.attempt.attempt, 0)
        assert.strictEqual(failureSummary(record), "kaboom")
        assert.deepStrictEqual(tags(yield* events), ["Registered:d", "Failed:d"])
      }))

    it.effect("an interruption is not retried", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const runs = yield* Ref.make(0)
        yield* host.spawnManaged(
          "s1",
          spec("i", { maxAttempts: 3, retry: Schedule.spaced("1 second") }),
          Ref.update(runs, (n) => n + 1).pipe(Effect.andThen(Effect.interrupt))
        )
        yield* terminalEvents(watch, ["i"])
        yield* TestClock.adjust("1 hour")
        assert.strictEqual(yield* Ref.get(runs), 1)
        const record = Option.getOrThrow(yield* host.get("i"))
        assert.strictEqual(record.state, "cancelled")
        assert.strictEqual(record.attempt.attempt, 0)
        assert.deepStrictEqual(tags(yield* events), ["Registered:i", "Cancelled:i"])
      }))

    describe("a cancel during the backoff ends the task cancelled without another attempt", () => {
      const inBackoff = (cancelPolicy: "cooperative" | "abort_local") =>
        Effect.gen(function*() {
          const { events, host } = yield* makeTestHost()
          const next = yield* follow(host)
          const { body, runs } = yield* failing
          yield* host.spawnManaged("s1", spec("r", { maxAttempts: 3, retry: Schedule.spaced("3 seconds"), cancelPolicy }), body)
          yield* next("r") // Registered
          const waiting = yield* next("r")
          assert.strictEqual(waiting._tag === "state" ? waiting.state : waiting._tag, "waiting")
          yield* next("r") // Progress
          return { events, host, next, runs } as const
        })

      it.effect("requestCancel, cooperative", () =>
        Effect.gen(function*() {
          const { events, host, next, runs } = yield* inBackoff("cooperative")
          const requested = yield* host.requestCancel("r", "enough")
          assert.include(["cancel_requested", "cancelled"], requested.state)
          assert.deepStrictEqual(yield* next("r"), { _tag: "other", tag: "CancelRequested" })
          // the request ends the wait at once: no clock needed
          const end = yield* next("r")
          yield* TestClock.adjust("1 hour")
          assert.deepStrictEqual(end._tag === "end" ? [end.tag, end.record.state] : end._tag, ["Cancelled", "cancelled"])
          assert.strictEqual(yield* Ref.get(runs), 1)
          assert.deepStrictEqual(tags(yield* events), [
            "Registered:r",
            "StateChanged:r",
            "Progress:r",
            "CancelRequested:r",
            "Cancelled:r"
          ])
        }))

      it.effect("requestCancel, abort_local: cancelled when the call returns", () =>
        Effect.gen(function*() {
          const { host, runs } = yield* inBackoff("abort_local")
          const record = yield* host.requestCancel("r")
          assert.strictEqual(record.state, "cancelled")
          yield* TestClock.adjust("1 hour")
          assert.strictEqual(yield* Ref.get(runs), 1)
          assert.strictEqual(yield* stateOf(host, "r"), "cancelled")
        }))

      it.effect("cancelManaged: cancelled when the call returns", () =>
        Effect.gen(function*() {
          const { events, host, runs } = yield* inBackoff("cooperative")
          yield* host.cancelManaged("s1", "r")
          assert.strictEqual(yield* stateOf(host, "r"), "cancelled")
          yield* TestClock.adjust("1 hour")
          assert.strictEqual(yield* Ref.get(runs), 1)
          assert.deepStrictEqual(tags(yield* events), ["Registered:r", "StateChanged:r", "Progress:r", "Cancelled:r"])
        }))
    })
  })

  describe("idempotencyKey", () => {
    it.effect("spawnManaged with a key a live task holds returns that task's record; nothing registered, no fiber started", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const started = yield* Deferred.make<void>()
        const duplicateRan = yield* Ref.make(false)
        const first = yield* host.spawnManaged("s1", spec("a", { idempotencyKey: "job-1" }), Deferred.succeed(started, undefined).pipe(Effect.andThen(Effect.never)))
        yield* Deferred.await(started)
        const fibers = (yield* host.stats).fibers
        const again = yield* host.spawnManaged("s1", spec("b", { idempotencyKey: "job-1" }), Ref.set(duplicateRan, true))
        const sameId = yield* host.spawnManaged("s1", spec("a", { idempotencyKey: "job-1" }), Ref.set(duplicateRan, true))
        assert.strictEqual(again.id, "a")
        assert.deepStrictEqual(again, Option.getOrThrow(yield* host.get("a")))
        assert.strictEqual(sameId.id, "a", "no TaskAlreadyExists for the holder's own id")
        assert.deepStrictEqual(first.attempt.idempotencyKey, Option.some("job-1"))
        assert.strictEqual((yield* host.stats).fibers, fibers)
        assert.isTrue(Option.isNone(yield* host.get("b")))
        yield* Effect.yieldNow
        assert.isFalse(yield* Ref.get(duplicateRan))
        assert.deepStrictEqual(tags(yield* events), ["Registered:a", "Cancelled:a"])
      }))

    it.effect("register and registerExternal with a held key return the holder, across methods", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const cancels = yield* Ref.make(0)
        const ran = yield* Ref.make(false)
        yield* host.registerExternal("s1", spec("x", { idempotencyKey: "k-ext" }), Ref.update(cancels, (n) => n + 1))
        yield* host.register({ ...spec("r", { idempotencyKey: "k-reg" }), scope: { sessionId: "s1" } })
        const viaRegister = yield* host.register({ ...spec("r2", { idempotencyKey: "k-ext" }), scope: { sessionId: "s1" } })
        const viaExternal = yield* host.registerExternal("s1", spec("x2", { idempotencyKey: "k-reg" }), Ref.update(cancels, (n) => n + 100))
        const viaSpawn = yield* host.spawnManaged("s1", spec("m", { idempotencyKey: "k-ext" }), Ref.set(ran, true))
        const viaExternalSame = yield* host.registerExternal("s1", spec("x3", { idempotencyKey: "k-ext" }))
        assert.strictEqual(viaRegister.id, "x")
        assert.strictEqual(viaExternal.id, "r")
        assert.strictEqual(viaSpawn.id, "x")
        assert.strictEqual(viaExternalSame.id, "x")
        yield* Effect.yieldNow
        assert.isFalse(yield* Ref.get(ran))
        assert.deepStrictEqual((yield* host.list()).map((r) => r.id), ["x", "r"])
        // the holder's own cancel effect is the one that runs
        yield* host.cancelManaged("s1", "x")
        assert.strictEqual(yield* Ref.get(cancels), 1)
        assert.deepStrictEqual(tags(yield* events), ["Registered:x", "Registered:r", "Cancelled:x", "Cancelled:r"])
      }))

    it.effect("once the holder is terminal the key is free", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const release = yield* Deferred.make<void>()
        yield* host.spawnManaged("s1", spec("a", { idempotencyKey: "job" }), Deferred.await(release))
        yield* Deferred.succeed(release, undefined)
        yield* terminalEvents(watch, ["a"])
        const fresh = yield* host.spawnManaged("s1", spec("b", { idempotencyKey: "job" }), Effect.never)
        assert.strictEqual(fresh.id, "b")
        assert.strictEqual(fresh.state, "running")
        yield* host.register({ ...spec("c", { idempotencyKey: "job2" }), scope: { sessionId: "s1" } })
        yield* host.complete("c", { state: "failed" })
        const fresh2 = yield* host.registerExternal("s1", spec("d", { idempotencyKey: "job2" }))
        assert.strictEqual(fresh2.id, "d")
        // and now "b" holds "job": a duplicate returns it
        assert.strictEqual((yield* host.register({ ...spec("e", { idempotencyKey: "job" }), scope: { sessionId: "s1" } })).id, "b")
      }))
  })
})
