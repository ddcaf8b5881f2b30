/**
 * The host's input checks: every public method's arguments are checked here,
 * before its step, and bad input becomes a typed error.
 *
 * A fast path for the registrations the host decodes on every call:
 *
 * Decoding a `RegisterRequest` with Schema costs more than the registration
 * itself (measured: `npm run bench`, registry lifecycle). These guards accept
 * only the plain, common shape — every field of the right primitive type, no
 * `attempt` — and say nothing about anything else: the host then decodes with
 * the Schema, which stays the one authority on what is valid and on the error
 * message. A guard must never accept what the Schema rejects;
 * `test/internal/validate.test.ts` checks that over random inputs.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import {
  CancelPolicy,
  ClosePolicy,
  RegisterRequest,
  TaskFilter,
  TaskKind,
  TaskRegistration,
  TaskScope
} from "../BackgroundTask.ts"
import { InvokeError, RegistrationError, SessionError, SnapshotError } from "../PluginError.ts"
import { BackgroundTaskEvent } from "../TaskEvent.ts"

const kinds: ReadonlySet<unknown> = new Set(TaskKind.literals)
const cancelPolicies: ReadonlySet<unknown> = new Set(CancelPolicy.literals)
const closePolicies: ReadonlySet<unknown> = new Set(ClosePolicy.literals)

/** The same check as `BackgroundTask.Id`'s: a surrogate without its pair. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Whether a string has no lone surrogate (`String.prototype.isWellFormed` where the runtime has it). */
const wellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === "function"
    ? (s) => (s as string & { isWellFormed(): boolean }).isWellFormed()
    : (s) => !loneSurrogate.test(s)

/** An id (`BackgroundTask.Id`): a non-empty string of well-formed Unicode. */
const isId = (u: unknown): u is string => typeof u === "string" && u.length > 0 && wellFormed(u)

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const hasOwn = Object.prototype.hasOwnProperty

/** An optional key: absent, or present with a valid value (never `undefined`). */
const optional = (input: Record<string, unknown>, key: string, valid: (u: unknown) => boolean): boolean =>
  !hasOwn.call(input, key) || valid(input[key])

const isAttempts = (u: unknown): boolean => typeof u === "number" && Number.isSafeInteger(u) && u >= 1

/** The plain shape of a `TaskRegistration`: no `attempt`, `timeout`, `cancelGracePeriod` or `retry`. */
export const isPlainRegistration = (input: unknown): input is TaskRegistration =>
  isObject(input) &&
  isId(input.id) &&
  kinds.has(input.kind) &&
  typeof input.producer === "string" &&
  !hasOwn.call(input, "attempt") &&
  !hasOwn.call(input, "timeout") &&
  !hasOwn.call(input, "cancelGracePeriod") &&
  !hasOwn.call(input, "retry") &&
  !hasOwn.call(input, "backoff") &&
  !hasOwn.call(input, "input") &&
  optional(input, "maxAttempts", isAttempts) &&
  optional(input, "idempotencyKey", isId) &&
  optional(input, "parentTaskId", isId) &&
  optional(input, "childSessionId", isId) &&
  optional(input, "cancelPolicy", (u) => cancelPolicies.has(u)) &&
  optional(input, "closePolicy", (u) => closePolicies.has(u))

/**
 * Whether `spawnManaged`'s arguments are a session id, a registration of the
 * plain shape and an Effect: the common call, checked without allocating.
 * Anything else (including a bad argument) goes through the full checks.
 */
export const isPlainSpawn = (sessionId: unknown, spec: unknown, body: unknown): boolean => {
  try {
    return isId(sessionId) && isPlainRegistration(spec) && Effect.isEffect(body)
  } catch {
    return false
  }
}

/** The plain shape of a `RegisterRequest` (see `isPlainRegistration`). */
export const isPlainRegisterRequest = (input: unknown): input is RegisterRequest =>
  isPlainRegistration(input) && isObject((input as Record<string, unknown>).scope) &&
  isId(((input as Record<string, unknown>).scope as Record<string, unknown>).sessionId)

// -----------------------------------------------------------------------------
// the host's input checks: every public method's arguments, before its step
// -----------------------------------------------------------------------------

const decodeRegister = Schema.decodeUnknownResult(Schema.toType(RegisterRequest))
const decodeRegistration = Schema.decodeUnknownResult(Schema.toType(TaskRegistration))
const decodeFilter = Schema.decodeUnknownResult(Schema.toType(TaskFilter))
const decodeScope = Schema.decodeUnknownResult(Schema.toType(TaskScope))

/** A registration decoded synchronously: the plain shape passes a fast guard, anything else goes through the Schema. */
const registration = <A>(
  what: string,
  input: unknown,
  plain: (input: unknown) => input is A,
  decode: (input: unknown, options: { readonly errors: "all" }) => Result.Result<A, Schema.SchemaError>
): Result.Result<A, RegistrationError> =>
  guarded(
    () =>
      plain(input) ? Result.succeed(input) : Result.mapError(
        decode(input, { errors: "all" }),
        (error) => new RegistrationError({ message: bounded(`invalid ${what}: ${error.message}`) })
      ),
    (why) => new RegistrationError({ message: `invalid ${what}: ${why}` })
  )

export const registerRequestOf = (input: unknown): Result.Result<RegisterRequest, RegistrationError> =>
  registration("registration", input, isPlainRegisterRequest, decodeRegister)

export const registrationOf = (input: unknown): Result.Result<TaskRegistration, RegistrationError> =>
  registration("task registration", input, isPlainRegistration, decodeRegistration)

export const filterOf = (filter: unknown): Result.Result<TaskFilter | undefined, SnapshotError> =>
  filter === undefined ? Result.succeed(undefined) : guarded(
    () =>
      Result.mapError(
        decodeFilter(filter, { errors: "all" }),
        (error) => new SnapshotError({ message: bounded(`invalid task filter: ${error.message}`) })
      ),
    (why) => new SnapshotError({ message: `invalid task filter: ${why}` })
  )

export const scopeOf = (scope: unknown): Result.Result<TaskScope, SessionError> =>
  guarded(
    () =>
      Result.mapError(
        decodeScope(scope, { errors: "all" }),
        (error) => new SessionError({ message: bounded(`invalid target scope: ${error.message}`) })
      ),
    (why) => new SessionError({ message: `invalid target scope: ${why}` })
  )

// -----------------------------------------------------------------------------
// the boundary: one check per kind of argument, each reading the caller's value
// at most once and under `try`, each naming the parameter as the interface
// spells it, each message at most `maxMessage` characters
// -----------------------------------------------------------------------------

/** The longest message an input check writes. */
export const maxMessage = 1_000

/** `message`, cut to `maxMessage` characters. */
export const bounded = (message: string): string =>
  message.length <= maxMessage ? message : `${message.slice(0, maxMessage - 1)}…`

/** A caller's value, for a message: its type, and for a primitive a bounded prefix; never calls into it. */
export const describeValue = (u: unknown): string => {
  switch (typeof u) {
    case "string":
      return u.length <= 60 ? JSON.stringify(u) : `${JSON.stringify(u.slice(0, 60))}… (${u.length} characters)`
    case "number":
    case "boolean":
    case "undefined":
      return String(u)
    case "bigint":
      return "a bigint"
    case "symbol":
      return "a symbol"
    case "function":
      return "a function"
    default:
      if (u === null) return "null"
      try {
        return Array.isArray(u) ? "an array" : "an object"
      } catch {
        // a revoked proxy
        return "an object"
      }
  }
}

/** Why a caller's value could not be read (a throwing getter or proxy), for a message. */
const unreadable = (error: unknown): string => {
  try {
    return error instanceof Error ? `reading it threw: ${error.message.slice(0, 200)}` : "reading it threw"
  } catch {
    return "reading it threw"
  }
}

/** `f`, with anything it throws (a caller's getter, proxy trap or `toString`) turned into `onThrow`'s error. */
const guarded = <A, E>(f: () => Result.Result<A, E>, onThrow: (why: string) => E): Result.Result<A, E> => {
  try {
    return f()
  } catch (error) {
    return Result.fail(onThrow(unreadable(error)))
  }
}

type Success<R> = R extends Result.Result<infer A, infer _> ? A : never
type Failure<R> = R extends Result.Result<infer _, infer E> ? E : never

/** Every argument's check, in order: the first failure, or every checked value. */
export const checkAll = <const R extends ReadonlyArray<Result.Result<unknown, unknown>>>(
  ...results: R
): Result.Result<{ -readonly [K in keyof R]: Success<R[K]> }, Failure<R[number]>> => {
  for (const result of results) if (Result.isFailure(result)) return result as never
  return Result.succeed(results.map((result) => (result as Result.Success<unknown, unknown>).success)) as never
}

/** A session id: a non-empty string. */
export const sessionIdOf = (u: unknown, name = "sessionId"): Result.Result<string, SessionError> =>
  isId(u) ? Result.succeed(u) : Result.fail(
    new SessionError({
      message: bounded(
        `invalid ${name}: expected a session id (a non-empty string of well-formed Unicode), got ${describeValue(u)}`
      )
    })
  )

/** A task id: a string (an unknown one is for the method to answer). */
export const taskIdOf = (u: unknown, name = "taskId"): Result.Result<string, SessionError> =>
  typeof u === "string" ? Result.succeed(u) : Result.fail(
    new SessionError({ message: bounded(`invalid ${name}: expected a task id (a string), got ${describeValue(u)}`) })
  )

/** A string argument of a session method (`label`, `state`): a string; what it means is for the method. */
export const stringOf = (u: unknown, name: string): Result.Result<string, SessionError> =>
  typeof u === "string" ? Result.succeed(u) : Result.fail(
    new SessionError({ message: bounded(`invalid ${name}: expected a string, got ${describeValue(u)}`) })
  )

/** `requestCancel`'s reason: absent or a string. */
export const reasonOf = (u: unknown): Result.Result<string | undefined, SessionError> =>
  u === undefined ? Result.succeed(undefined) : stringOf(u, "reason")

/** `transferManaged`'s `taskIds`: iterated once, into an array of strings. */
export const taskIdsOf = (u: unknown): Result.Result<ReadonlyArray<string>, SessionError> => {
  const refuse = (why: string) => new SessionError({ message: bounded(`invalid taskIds: ${why}`) })
  return guarded(() => {
    if (u === null || u === undefined || typeof (u as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== "function") {
      return Result.fail(refuse(`expected an iterable of task ids, got ${describeValue(u)}`))
    }
    const ids: Array<string> = []
    for (const id of u as Iterable<unknown>) {
      if (typeof id !== "string") return Result.fail(refuse(`expected task ids (strings), got ${describeValue(id)}`))
      ids.push(id)
    }
    return Result.succeed(ids)
  }, refuse)
}

/**
 * Whether `u` is an `Effect`. Asking can throw (a proxy's `has` trap), and
 * that is an answer too: not one.
 */
export const isEffectValue = (u: unknown): u is Effect.Effect<unknown, unknown, unknown> => {
  try {
    return Effect.isEffect(u)
  } catch {
    return false
  }
}

/** A task body or cancel effect: an `Effect` (`optional`: or absent). */
export const effectOf = <E>(
  u: unknown,
  name: string,
  error: (message: string) => E,
  optional = false
): Result.Result<Effect.Effect<unknown, unknown, unknown> | undefined, E> =>
  (optional && u === undefined) || isEffectValue(u)
    ? Result.succeed(u as Effect.Effect<unknown, unknown, unknown> | undefined)
    : Result.fail(error(bounded(`invalid ${name}: expected an Effect, got ${describeValue(u)}`)))

/** `update`'s and `complete`'s argument: an object whose `state` and `field` are absent or strings. */
export const outcomeOf = (
  name: "update" | "completion",
  input: unknown,
  field: "progress" | "summary"
): Result.Result<Outcome, InvokeError> => {
  const checked = checkOutcome(name, input, field, "")
  return checked instanceof InvokeError
    ? Result.fail(checked)
    : Result.succeed({ state: checked.state, text: checked.text })
}

/** A checked `update` or `completion`: its state, and its progress or summary. */
export interface Outcome {
  readonly state: string | undefined
  readonly text: string | undefined
}

/** `update(taskId, update)`'s arguments, checked. */
export interface UpdateArgs extends Outcome {
  readonly taskId: string
}

/**
 * `outcomeOf`'s check, without its `Result`: the outcome (beside `taskId`,
 * in one object), or the error. No closure is made unless the input is
 * refused (`update` is called in bursts).
 */
const checkOutcome = (
  name: "update" | "completion",
  input: unknown,
  field: "progress" | "summary",
  taskId: string
): UpdateArgs | InvokeError => {
  if (typeof input !== "object" || input === null) {
    return outcomeError(name, `expected an object, got ${describeValue(input)}`)
  }
  let text: unknown
  let state: unknown
  try {
    ;({ [field]: text, state } = input as Record<string, unknown>)
  } catch (error) {
    return outcomeError(name, unreadable(error))
  }
  // a completion names the state it ends in; an update may leave it as it is
  if ((state !== undefined || name === "completion") && typeof state !== "string") {
    return outcomeError(name, `state must be a string, got ${describeValue(state)}`)
  }
  if (text !== undefined && typeof text !== "string") {
    return outcomeError(name, `${field} must be a string, got ${describeValue(text)}`)
  }
  return { taskId, state: state as string | undefined, text }
}

const outcomeError = (name: "update" | "completion", why: string) =>
  new InvokeError({ message: bounded(`invalid ${name}: ${why}`) })

/**
 * `update(taskId, update)`'s arguments, checked in order as `checkAll(taskIdOf(taskId), outcomeOf("update", update,
 * "progress"))` checks them (the same errors), in one object, or the error (no `Result` around either: `update` is
 * called in bursts; `isRefusal` tells them apart).
 */
export const checkUpdateArgs = (taskId: unknown, update: unknown): UpdateArgs | SessionError | InvokeError =>
  typeof taskId !== "string"
    ? (taskIdOf(taskId) as Result.Failure<never, SessionError>).failure
    : checkOutcome("update", update, "progress", taskId)

/** Whether `checkUpdateArgs` refused its input. */
export const isRefusal = (checked: UpdateArgs | SessionError | InvokeError): checked is SessionError | InvokeError =>
  checked instanceof Error

/** `checkUpdateArgs` as a `Result`. */
export const updateArgsOf = (taskId: unknown, update: unknown): Result.Result<UpdateArgs, SessionError | InvokeError> => {
  const checked = checkUpdateArgs(taskId, update)
  return isRefusal(checked) ? Result.fail(checked) : Result.succeed(checked)
}

/**
 * A session handle's filter (no `sessionId`: the handle adds its own):
 * absent or an object, copied once.
 */
export const sessionFilterOf = <F extends object>(
  filter: unknown,
  sessionId: string
): Result.Result<F & { readonly sessionId: string }, SnapshotError> => {
  const refuse = (why: string) => new SnapshotError({ message: bounded(`invalid task filter: ${why}`) })
  if (filter !== undefined && (typeof filter !== "object" || filter === null)) {
    return Result.fail(refuse(`expected an object, got ${describeValue(filter)}`))
  }
  return guarded(() => Result.succeed({ ...(filter as F | undefined), sessionId } as F & { sessionId: string }), refuse)
}

/** `watch`'s options: absent or an object; `fromSeq` read out, the rest a filter. */
export const watchOptionsOf = (
  options: unknown
): Result.Result<{ readonly fromSeq: number | undefined; readonly filter: unknown }, SnapshotError> => {
  const refuse = (why: string) => new SnapshotError({ message: bounded(`invalid watch options (filter): ${why}`) })
  if (options === undefined) return Result.succeed({ fromSeq: undefined, filter: undefined })
  if (typeof options !== "object" || options === null) {
    return Result.fail(refuse(`expected an object, got ${describeValue(options)}`))
  }
  return guarded(() => {
    const { fromSeq, ...rest } = options as Record<string, unknown>
    if (fromSeq !== undefined && !(typeof fromSeq === "number" && Number.isSafeInteger(fromSeq) && fromSeq >= 0)) {
      return Result.fail(
        new SnapshotError({ message: `fromSeq must be an integer >= 0, got ${describeValue(fromSeq)}` })
      )
    }
    const filter = fromSeq !== undefined && Object.keys(rest).length === 0 ? undefined : rest
    return Result.succeed({ fromSeq, filter })
  }, refuse)
}

/** `openSession`'s options: absent or an object whose `successor`, if any, is a session id. */
export const sessionOptionsOf = (
  options: unknown
): Result.Result<{ readonly successor: string | undefined }, SessionError> => {
  const refuse = (why: string) => new SessionError({ message: bounded(`invalid options: ${why}`) })
  if (options === undefined) return Result.succeed({ successor: undefined })
  if (typeof options !== "object" || options === null) {
    return Result.fail(refuse(`expected an object, got ${describeValue(options)}`))
  }
  return guarded((): Result.Result<{ readonly successor: string | undefined }, SessionError> => {
    const successor = (options as Record<string, unknown>).successor
    if (successor === undefined) return Result.succeed({ successor: undefined })
    return Result.map(sessionIdOf(successor, "options.successor"), (successor) => ({ successor }))
  }, refuse)
}

/** A session handle's `register` spec: an object, copied once, with the handle's scope. */
export const sessionRequestOf = (spec: unknown, sessionId: string): Result.Result<unknown, RegistrationError> => {
  const refuse = (why: string) => new RegistrationError({ message: bounded(`invalid registration (spec): ${why}`) })
  if (typeof spec !== "object" || spec === null) {
    return Result.fail(refuse(`expected an object, got ${describeValue(spec)}`))
  }
  return guarded(() => Result.succeed({ ...spec, scope: { sessionId } }), refuse)
}

/** The event `_tag`s a subscription may ask for. */
const eventTags: ReadonlyArray<string> = Object.keys(BackgroundTaskEvent.cases)
const knownTags: ReadonlySet<string> = new Set(eventTags)

/** A subscription's own options (`subscribe`, `watch`), apart from its filter. */
export interface SubscriptionOptions {
  /** Its buffer's capacity; `undefined`: the host's `subscriberBuffer`. */
  readonly buffer: number | undefined
  /** The event `_tag`s it takes; `undefined`: every one. */
  readonly types: ReadonlySet<string> | undefined
}

/**
 * Splits `subscribe`'s / `watch`'s argument into its filter (decoded by
 * `filterOf`) and the subscription's own options, checked: `buffer` an
 * integer >= 1, `types` a non-empty array of event `_tag`s.
 */
export const subscriptionOf = (
  method: string,
  options: unknown
): Result.Result<{ readonly filter: unknown; readonly options: SubscriptionOptions }, SnapshotError> =>
  guarded(
    () => subscriptionOfUnsafe(method, options),
    (why) => new SnapshotError({ message: bounded(`${method}: invalid task filter: ${why}`) })
  )

/** `subscriptionOf`'s reads of the caller's value, which may throw (`guarded` catches them). */
const subscriptionOfUnsafe = (
  method: string,
  options: unknown
): Result.Result<{ readonly filter: unknown; readonly options: SubscriptionOptions }, SnapshotError> => {
  if (options === undefined || options === null || typeof options !== "object") {
    return Result.succeed({ filter: options, options: { buffer: undefined, types: undefined } })
  }
  const { buffer, types, ...rest } = options as Record<string, unknown>
  // without options of its own, the argument is the filter as given
  const filter = buffer === undefined && types === undefined
    ? options
    : Object.keys(rest).length === 0
    ? undefined
    : rest
  if (
    buffer !== undefined &&
    !(typeof buffer === "number" && Number.isSafeInteger(buffer) && buffer >= 1)
  ) {
    return Result.fail(
      new SnapshotError({
        message: `${method}: buffer must be an integer >= 1 (events the subscriber may have unread), got ${
          typeof buffer === "number" ? String(buffer) : typeof buffer
        }`
      })
    )
  }
  let tags: ReadonlySet<string> | undefined
  if (types !== undefined) {
    const expected = `expected a non-empty array of event types (${eventTags.join(", ")})`
    if (!Array.isArray(types) || types.length === 0) {
      return Result.fail(
        new SnapshotError({
          message: `${method}: types must name at least one event type, ${expected}, got ${
            Array.isArray(types) ? "[]" : typeof types
          }`
        })
      )
    }
    const unknown = types.find((tag) => typeof tag !== "string" || !knownTags.has(tag))
    if (unknown !== undefined) {
      return Result.fail(
        new SnapshotError({ message: `${method}: unknown event type ${String(JSON.stringify(unknown))} in types, ${expected}` })
      )
    }
    tags = new Set(types as ReadonlyArray<string>)
  }
  return Result.succeed({ filter, options: { buffer: buffer as number | undefined, types: tags } })
}

/** `await`'s options: absent, or an object whose `sessionId`, when given, is a session id. */
export const awaitOptionsOf = (options: unknown): Result.Result<string | undefined, SessionError> => {
  if (options === undefined) return Result.succeed(undefined)
  if (typeof options !== "object" || options === null) {
    return Result.fail(
      new SessionError({ message: `await: options must be an object, got ${options === null ? "null" : typeof options}` })
    )
  }
  return guarded(() => {
    const sessionId: unknown = (options as { readonly sessionId?: unknown }).sessionId
    return sessionId === undefined ? Result.succeed(undefined) : sessionIdOf(sessionId)
  }, (why) => new SessionError({ message: bounded(`await: invalid options: ${why}`) }))
}

/** Where a value is not plain JSON (a function, a Date, NaN, a cycle, …), if it is not. */
const notJson = (value: unknown, path: string, seen: Set<object>): string | undefined => {
  if (value === null || typeof value === "string" || typeof value === "boolean") return undefined
  if (typeof value === "number") return Number.isFinite(value) ? undefined : `${path} is ${value}`
  if (typeof value !== "object") return `${path} is a ${typeof value}`
  if (seen.has(value)) return `${path} refers to itself`
  const proto = Object.getPrototypeOf(value)
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return `${path} is not a plain object`
  seen.add(value)
  for (const [key, item] of Object.entries(value)) {
    const problem = notJson(item, Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`, seen)
    if (problem !== undefined) return problem
  }
  seen.delete(value)
  return undefined
}

/** A registration whose input is not JSON, or larger than `maxInputBytes` as JSON text, as the error it gets. */
export const inputTooLarge = (taskId: string, input: unknown, maxInputBytes: number): RegistrationError | undefined => {
  if (input === undefined) return undefined
  const problem = notJson(input, "input", new Set())
  if (problem !== undefined) {
    return new RegistrationError({ message: `invalid task registration for ${taskId}: the input must be JSON, but ${problem}` })
  }
  if (maxInputBytes === Infinity) return undefined
  const bytes = Buffer.byteLength(JSON.stringify(input), "utf8")
  return bytes <= maxInputBytes ? undefined : new RegistrationError({
    message: `invalid task registration for ${taskId}: its input is ${bytes} bytes of JSON, more than maxInputBytes (${maxInputBytes})`
  })
}

/**
 * `effect` with its `input` checked first (every argument, before anything
 * is looked up), when the call runs, never when its Effect is built.
 */
export const checked = <I, E1, A, E, R>(
  input: () => Result.Result<I, E1>,
  effect: (input: I) => Effect.Effect<A, E, R>
): Effect.Effect<A, E1 | E, R> =>
  Effect.suspend((): Effect.Effect<A, E1 | E, R> => {
    const valid = input()
    return Result.isFailure(valid) ? Effect.fail(valid.failure) : effect(valid.success)
  })
