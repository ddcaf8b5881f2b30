/**
 * The host's options, checked once when the layer starts, with their
 * defaults. A bad option fails the layer with `InvalidOptions` naming it.
 *
 * Checked by hand rather than decoded by a Schema: options hold values a
 * Schema can only declare (a `Schedule`, handler functions), and the
 * messages say what to pass ("a non-negative duration") where a Schema says
 * `Expected <Declaration>`.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { type TaskBackoff, TaskKind } from "../BackgroundTask.ts"
import type {
  BackgroundTaskHostOptions,
  BackgroundTaskHostStoreOptions,
  ExternalRecoveryHandler,
  RecoveryHandler
} from "./service.ts"
import { InvalidOptions } from "../PluginError.ts"
import type { Limits } from "./slots.ts"

const invalidOption = (name: string, expected: string, input: unknown) =>
  new InvalidOptions({
    option: name,
    message: `the background task host cannot start: ${name} must be ${expected}, got ${
      typeof input === "number" ? String(input) : String(JSON.stringify(input) ?? typeof input)
    }`
  })

/** A duration option, or why it is not valid. */
const durationOption = (
  name: string,
  input: Duration.Input | undefined,
  fallback: Duration.Input
): Effect.Effect<Duration.Duration, InvalidOptions> => {
  const value = input ?? fallback
  let duration: Option.Option<Duration.Duration>
  try {
    duration = typeof value === "number" && Number.isNaN(value) ? Option.none() : Duration.fromInput(value)
  } catch {
    duration = Option.none()
  }
  return Option.isSome(duration) && !Duration.isNegative(duration.value)
    ? Effect.succeed(duration.value)
    : Effect.fail(invalidOption(name, "a non-negative duration", value))
}

/** A count option: an integer >= `min`, or `Infinity` where `infinite` allows it. */
const countOption = (
  name: string,
  input: unknown,
  fallback: number,
  range: { readonly min: number; readonly infinite: boolean }
): Effect.Effect<number, InvalidOptions> => {
  const value = input ?? fallback
  return typeof value === "number" &&
      ((Number.isSafeInteger(value) && value >= range.min) || (range.infinite && value === Infinity))
    ? Effect.succeed(value)
    : Effect.fail(
      invalidOption(name, `an integer >= ${range.min}${range.infinite ? " or Infinity" : ""}`, value)
    )
}

const limitsOf = (options: BackgroundTaskHostOptions): Effect.Effect<Limits, InvalidOptions> =>
  Effect.gen(function*() {
    const concurrency = options.concurrency ?? {}
    const perSession = yield* countOption("concurrency.perSession", concurrency.perSession, Infinity, {
      min: 1,
      infinite: true
    })
    const perKind: { [K in TaskKind]?: number } = {}
    for (const [kind, limit] of Object.entries(concurrency.perKind ?? {})) {
      if (!(TaskKind.literals as ReadonlyArray<string>).includes(kind)) {
        return yield* Effect.fail(invalidOption("concurrency.perKind", `keyed by ${TaskKind.literals.join(", ")}`, kind))
      }
      perKind[kind as TaskKind] = yield* countOption(`concurrency.perKind.${kind}`, limit, Infinity, {
        min: 1,
        infinite: true
      })
    }
    return { perSession, perKind }
  })

/** A backoff given as data (`TaskBackoff`), as a `Schedule`. */
export const backoffSchedule = (backoff: TaskBackoff): Schedule.Schedule<unknown, unknown> => {
  const exponential = Schedule.exponential(Duration.millis(backoff.initialMillis), backoff.factor ?? 2)
  const max = backoff.maxMillis
  return max === undefined
    ? exponential
    : exponential.pipe(Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.millis(max)))))
}

/** The default backoff between attempts: 1 s, 2 s, 4 s, … */
export const defaultRetrySchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential("1 second")

export const optionsOf = (options: BackgroundTaskHostOptions) =>
  Effect.all({
    grace: durationOption("cancelGracePeriod", options.cancelGracePeriod, "5 seconds"),
    maxTerminal: countOption("retention.maxTerminal", options.retention?.maxTerminal, 10_000, {
      min: 0,
      infinite: true
    }),
    maxAge: durationOption("retention.maxAge", options.retention?.maxAge, "1 hour"),
    subscriberBuffer: countOption("subscriberBuffer", options.subscriberBuffer, 4_096, { min: 1, infinite: false }),
    maxInputBytes: countOption("maxInputBytes", options.maxInputBytes, 65_536, { min: 0, infinite: true }),
    retrySchedule: options.retry?.schedule === undefined
      ? Effect.succeed(defaultRetrySchedule)
      : Schedule.isSchedule(options.retry.schedule)
      ? Effect.succeed(options.retry.schedule)
      : Effect.fail(invalidOption("retry.schedule", "a Schedule", "something else")),
    limits: limitsOf(options)
  })

/** The durable-store options: the lease and the recovery handlers. */
export const storeOptionsOf = (options: BackgroundTaskHostStoreOptions<unknown>) =>
  Effect.gen(function*() {
    const lease = options.lease ?? {}
    const ttl = yield* durationOption("lease.ttl", lease.ttl, "30 seconds")
    if (Duration.toMillis(ttl) < 1 || !Duration.isFinite(ttl)) {
      return yield* Effect.fail(invalidOption("lease.ttl", "a finite duration of at least 1 millisecond", lease.ttl))
    }
    const renewEvery = yield* durationOption("lease.renewEvery", lease.renewEvery, Duration.toMillis(ttl) / 3)
    if (!Duration.isLessThan(renewEvery, ttl) || Duration.toMillis(renewEvery) < 1) {
      return yield* Effect.fail(
        invalidOption("lease.renewEvery", "at least 1 millisecond and shorter than lease.ttl", lease.renewEvery)
      )
    }
    const onHeld = lease.onHeld ?? "fail"
    if (onHeld !== "fail" && onHeld !== "wait") {
      return yield* Effect.fail(invalidOption("lease.onHeld", "\"fail\" or \"wait\"", onHeld))
    }
    if (lease.owner !== undefined && (typeof lease.owner !== "string" || lease.owner.length === 0)) {
      return yield* Effect.fail(invalidOption("lease.owner", "a non-empty string", lease.owner))
    }
    const recovery = new Map<string, RecoveryHandler<unknown>>()
    for (const [producer, handler] of Object.entries(options.recovery ?? {})) {
      if (typeof handler !== "function") {
        return yield* Effect.fail(invalidOption(`recovery.${producer}`, "a function", typeof handler))
      }
      recovery.set(producer, handler)
    }
    const recoverExternal = new Map<string, ExternalRecoveryHandler<unknown>>()
    for (const [producer, handler] of Object.entries(options.recoverExternal ?? {})) {
      if (typeof handler !== "function") {
        return yield* Effect.fail(invalidOption(`recoverExternal.${producer}`, "a function", typeof handler))
      }
      recoverExternal.set(producer, handler)
    }
    const shutdown = options.shutdown ?? {}
    const mode = shutdown.mode ?? "release"
    if (mode !== "release" && mode !== "cancel") {
      return yield* Effect.fail(invalidOption("shutdown.mode", "\"release\" or \"cancel\"", mode))
    }
    const drain = yield* durationOption("shutdown.drain", shutdown.drain, 0)
    const flushTimeout = yield* durationOption("shutdown.flushTimeout", shutdown.flushTimeout, "10 seconds")
    const maxEvents = yield* countOption("eventRetention.maxEvents", options.eventRetention?.maxEvents, 1_000_000, {
      min: 1,
      infinite: true
    })
    const maxAge = yield* durationOption("eventRetention.maxAge", options.eventRetention?.maxAge, "7 days")
    const pruneEvery = yield* durationOption("eventRetention.pruneEvery", options.eventRetention?.pruneEvery, "1 minute")
    if (Duration.toMillis(pruneEvery) < 1) {
      return yield* Effect.fail(invalidOption("eventRetention.pruneEvery", "at least 1 millisecond", options.eventRetention?.pruneEvery))
    }
    return { ttl, renewEvery, onHeld, owner: lease.owner, recovery, recoverExternal, shutdown: { mode, drain, flushTimeout }, eventRetention: { maxEvents, maxAge, pruneEvery } }
  })
