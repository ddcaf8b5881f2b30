/**
 * The data of the background task host: task records and the requests that
 * create and change them (the events the host publishes are in `TaskEvent.ts`).
 *
 * Every type here is an Effect `Schema`. In memory a record is a plain
 * readonly object with `Option` fields and `DateTime.Utc` timestamps; its
 * encoded form (`Schema.encodeEffect(BackgroundTaskRecord)`) is plain JSON with
 * snake_case keys, `null` for `None` and ISO-8601 timestamps, the wire form of
 * the Rust host this library is modelled on.
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"

// -----------------------------------------------------------------------------
// scalars
// -----------------------------------------------------------------------------

/** A UTF-16 surrogate without its pair: text no store column can hold as it is. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * A task or session identifier: a non-empty string of well-formed Unicode
 * (no lone surrogate: a store keeps ids as text, and an id must read back as
 * the same id).
 *
 * @category models
 * @since 0.1.0
 */
export const Id = Schema.NonEmptyString.check(
  Schema.makeFilter((id: string) => !loneSurrogate.test(id) || "expected well-formed Unicode text (no lone surrogate)")
)

/**
 * What a task is for.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskKind = Schema.Literals(["monitor", "subagent", "observer", "other"])

/**
 * @category models
 * @since 0.1.0
 */
export type TaskKind = typeof TaskKind.Type

/**
 * Where a task is in its lifecycle. `completed`, `failed` and `cancelled` are
 * terminal: a record in one of them never changes state again.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskState = Schema.Literals([
  "pending",
  "running",
  "waiting",
  "completed",
  "failed",
  "cancel_requested",
  "cancelled"
])

/**
 * @category models
 * @since 0.1.0
 */
export type TaskState = typeof TaskState.Type

/**
 * The states a task reports while it works (`TaskContext.setLiveState`,
 * `markLiveState`).
 *
 * @category models
 * @since 0.1.0
 */
export const LiveState = Schema.Literals(["running", "waiting"])

/**
 * @category models
 * @since 0.1.0
 */
export type LiveState = typeof LiveState.Type

/**
 * The terminal states.
 *
 * @category models
 * @since 0.1.0
 */
export const TerminalState = Schema.Literals(["completed", "failed", "cancelled"])

/**
 * @category models
 * @since 0.1.0
 */
export type TerminalState = typeof TerminalState.Type

/**
 * True for `completed`, `failed` and `cancelled`.
 *
 * **Example** (Filtering finished records)
 *
 * ```ts
 * import { isTerminal, type BackgroundTaskRecord } from "effect-task-host"
 *
 * const finished = (records: ReadonlyArray<BackgroundTaskRecord>) =>
 *   records.filter((record) => isTerminal(record.state))
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isTerminal = (state: TaskState): state is TerminalState =>
  state === "completed" || state === "failed" || state === "cancelled"

/**
 * How a cancellation request reaches the task: `cooperative` signals it
 * through its `TaskContext` and interrupts it after a grace period,
 * `abort_local` interrupts its fiber at once, `external` runs the cancel effect
 * given to `registerExternal`.
 *
 * @category models
 * @since 0.1.0
 */
export const CancelPolicy = Schema.Literals(["cooperative", "abort_local", "external"])

/**
 * @category models
 * @since 0.1.0
 */
export type CancelPolicy = typeof CancelPolicy.Type

/**
 * What happens to a live task when its session (a handle from
 * `openSession`) closes: `keep` runs on, `cancel` is cancelled through its
 * cancel policy, `transfer` moves to the session's successor.
 *
 * @category models
 * @since 0.1.0
 */
export const ClosePolicy = Schema.Literals(["keep", "cancel", "transfer"])

/**
 * @category models
 * @since 0.1.0
 */
export type ClosePolicy = typeof ClosePolicy.Type

// -----------------------------------------------------------------------------
// record parts
// -----------------------------------------------------------------------------

/**
 * The session a task belongs to.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskScope = Schema.Struct({
  sessionId: Id
}).pipe(Schema.encodeKeys({ sessionId: "session_id" }))

/**
 * @category models
 * @since 0.1.0
 */
export type TaskScope = typeof TaskScope.Type

/**
 * Which attempt of a piece of work a task is.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskAttempt = Schema.Struct({
  attempt: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  maxAttempts: Schema.OptionFromNullOr(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  idempotencyKey: Schema.OptionFromNullOr(Id)
}).pipe(Schema.encodeKeys({ maxAttempts: "max_attempts", idempotencyKey: "idempotency_key" }))

/**
 * @category models
 * @since 0.1.0
 */
export type TaskAttempt = typeof TaskAttempt.Type

/**
 * A task's input: any JSON value, stored with its record (on a durable store,
 * in the store) and handed back to the recovery handler. Describe it with a
 * Schema of your own: encode the value before spawning
 * (`Schema.encodeSync(Job)(job)`), decode `record.input` in the handler.
 * Limited to the host's `maxInputBytes` (as JSON text, default 64 KiB).
 *
 * @category models
 * @since 0.4.0
 */
export const TaskInput = Schema.Json

/**
 * @category models
 * @since 0.4.0
 */
export type TaskInput = typeof Schema.Json.Type

const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/**
 * A retry backoff as data, so it can be stored and kept by a recovered task:
 * the first retry after `initialMillis`, each next one `factor` (default 2)
 * times longer, at most `maxMillis` (default: no cap). A `retry` `Schedule`
 * cannot be stored; a recovered task without a `backoff` retries with the
 * host's schedule.
 *
 * @category models
 * @since 0.4.0
 */
export const TaskBackoff = Schema.Struct({
  initialMillis: NonNegativeInt,
  factor: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(1))),
  maxMillis: Schema.optionalKey(NonNegativeInt)
}).pipe(Schema.encodeKeys({ initialMillis: "initial_millis", maxMillis: "max_millis" }))

/**
 * @category models
 * @since 0.4.0
 */
export type TaskBackoff = typeof TaskBackoff.Type

/**
 * The per-task options a record keeps so that a recovered task runs as it
 * was spawned: its `timeout`, its `cancelGracePeriod` (in milliseconds, when
 * finite) and its `backoff`. Only the options the registration gave.
 *
 * @category models
 * @since 0.4.0
 */
export const TaskSettings = Schema.Struct({
  timeoutMillis: Schema.optionalKey(NonNegativeInt),
  cancelGracePeriodMillis: Schema.optionalKey(NonNegativeInt),
  backoff: Schema.optionalKey(TaskBackoff)
}).pipe(Schema.encodeKeys({ timeoutMillis: "timeout_millis", cancelGracePeriodMillis: "cancel_grace_period_millis" }))

/**
 * @category models
 * @since 0.4.0
 */
export type TaskSettings = typeof TaskSettings.Type

/**
 * The default attempt: attempt 0, no limit, no idempotency key.
 *
 * @category constructors
 * @since 0.1.0
 */
export const defaultAttempt: TaskAttempt = {
  attempt: 0,
  maxAttempts: Option.none(),
  idempotencyKey: Option.none()
}

/**
 * What a finished task left behind.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskOutcome = Schema.Struct({
  summary: Schema.OptionFromNullOr(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type TaskOutcome = typeof TaskOutcome.Type

const OptionalId = Schema.OptionFromNullOr(Id)
const Timestamp = Schema.DateTimeUtcFromString

/**
 * One task as the host knows it. `revision` is the `seq` of the event that
 * last changed the record (its `Registered`, a state change, a progress
 * message, a transfer). `progress` is the latest progress message (`None`
 * until the task reports one); it stays on the record after the task ends.
 *
 * @category models
 * @since 0.1.0
 */
export const BackgroundTaskRecord = Schema.Struct({
  id: Id,
  kind: TaskKind,
  producer: Schema.String,
  scope: TaskScope,
  parentTaskId: OptionalId,
  childSessionId: OptionalId,
  state: TaskState,
  cancelPolicy: CancelPolicy,
  closePolicy: ClosePolicy,
  attempt: TaskAttempt,
  result: Schema.OptionFromNullOr(TaskOutcome),
  failure: Schema.OptionFromNullOr(TaskOutcome),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  completedAt: Schema.OptionFromNullOr(Timestamp),
  // records written before 0.4 have no progress: they decode as None
  progress: Schema.OptionFromNullOr(Schema.String).pipe(Schema.withDecodingDefaultKey(Effect.succeed(null))),
  // records written by the original host have no revision: they decode as 0
  revision: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)).pipe(Schema.withDecodingDefaultKey(Effect.succeed(0))),
  /** The registration's `input`, when it gave one. */
  input: Schema.optionalKey(TaskInput),
  /** The registration's per-task options that can be stored, when it gave any. */
  settings: Schema.optionalKey(TaskSettings)
}).pipe(Schema.encodeKeys({
  parentTaskId: "parent_task_id",
  childSessionId: "child_session_id",
  cancelPolicy: "cancel_policy",
  closePolicy: "close_policy",
  createdAt: "created_at",
  updatedAt: "updated_at",
  completedAt: "completed_at"
}))

/**
 * @category models
 * @since 0.1.0
 */
export interface BackgroundTaskRecord extends Schema.Schema.Type<typeof BackgroundTaskRecord> {}

// -----------------------------------------------------------------------------
// requests
// -----------------------------------------------------------------------------

/** A `Duration.Input` that is a non-negative duration ("30 seconds", `Duration.minutes(1)`, millis). */
const isDurationInput = (u: unknown): u is Duration.Input => {
  if (typeof u === "number" && Number.isNaN(u)) return false
  try {
    const duration = Duration.fromInput(u as Duration.Input)
    return Option.isSome(duration) && !Duration.isNegative(duration.value)
  } catch {
    return false
  }
}

/**
 * A non-negative duration in any form `Duration.fromInput` reads: a
 * `Duration`, a number of milliseconds, or text such as `"30 seconds"`.
 *
 * @category models
 * @since 0.2.0
 */
export const DurationInput = Schema.declare(isDurationInput, {
  title: "Duration.Input",
  // what a bad value's message says is expected
  expected: "a non-negative duration (a Duration, milliseconds >= 0, or text such as \"30 seconds\")",
  description: "a non-negative duration: a Duration, milliseconds, or text such as \"30 seconds\""
})

/**
 * A backoff `Schedule` for the retries of a managed task; its input is the
 * failure.
 *
 * @category models
 * @since 0.2.0
 */
export const RetrySchedule: Schema.declare<Schedule.Schedule<unknown, unknown>> = Schema.declare(
  (u): u is Schedule.Schedule<unknown, unknown> => Schedule.isSchedule(u),
  { title: "Schedule", description: "an effect Schedule" }
)

const registrationFields = {
  id: Id,
  kind: TaskKind,
  producer: Schema.String,
  parentTaskId: Schema.optionalKey(Id),
  childSessionId: Schema.optionalKey(Id),
  cancelPolicy: Schema.optionalKey(CancelPolicy),
  closePolicy: Schema.optionalKey(ClosePolicy),
  /** A managed task is interrupted after this long and ends `failed` ("timed out after …"); per attempt. */
  timeout: Schema.optionalKey(DurationInput),
  /** Overrides the host's `cancelGracePeriod` for this task. */
  cancelGracePeriod: Schema.optionalKey(DurationInput),
  /** How many times a managed task may run in all (1: no retry); goes to `attempt.maxAttempts`. */
  maxAttempts: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** A live task with this key is returned instead of starting a duplicate; goes to `attempt.idempotencyKey`. */
  idempotencyKey: Schema.optionalKey(Id),
  /** Overrides the host's retry backoff for this task (not stored: see `backoff`). */
  retry: Schema.optionalKey(RetrySchedule),
  /** Overrides the host's retry backoff for this task, as data (stored with the record); `retry` wins over it. */
  backoff: Schema.optionalKey(TaskBackoff),
  /** Any JSON value, stored with the record and handed to the recovery handler. */
  input: Schema.optionalKey(TaskInput)
}

const registrationKeys = {
  parentTaskId: "parent_task_id",
  childSessionId: "child_session_id",
  cancelPolicy: "cancel_policy",
  closePolicy: "close_policy",
  cancelGracePeriod: "cancel_grace_period",
  maxAttempts: "max_attempts",
  idempotencyKey: "idempotency_key"
} as const

/**
 * The input of `register`: a new record in `pending`.
 *
 * @category models
 * @since 0.1.0
 */
export const RegisterRequest = Schema.Struct({
  scope: TaskScope,
  ...registrationFields,
  attempt: Schema.optionalKey(TaskAttempt)
}).pipe(Schema.encodeKeys(registrationKeys))

/**
 * @category models
 * @since 0.1.0
 */
export type RegisterRequest = typeof RegisterRequest.Type

/**
 * The input of `spawnManaged` and `registerExternal`: the session comes from
 * the call, the record starts `running`.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskRegistration = Schema.Struct(registrationFields).pipe(Schema.encodeKeys(registrationKeys))

/**
 * @category models
 * @since 0.1.0
 */
export type TaskRegistration = typeof TaskRegistration.Type

/**
 * The input of `update`: a new non-terminal state, a progress message, or both.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskUpdate = Schema.Struct({
  state: Schema.optionalKey(TaskState),
  progress: Schema.optionalKey(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type TaskUpdate = typeof TaskUpdate.Type

/**
 * The input of `complete`: a terminal state and an optional summary.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskCompletion = Schema.Struct({
  state: TaskState,
  summary: Schema.optionalKey(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type TaskCompletion = typeof TaskCompletion.Type

/**
 * Selects records (`list`) and events (`subscribe`). `includeTerminal`
 * (default `false`) concerns `list` only.
 *
 * @category models
 * @since 0.1.0
 */
export const TaskFilter = Schema.Struct({
  sessionId: Schema.optionalKey(Id),
  kind: Schema.optionalKey(TaskKind),
  includeTerminal: Schema.optionalKey(Schema.Boolean)
}).pipe(Schema.encodeKeys({ sessionId: "session_id", includeTerminal: "include_terminal" }))

/**
 * @category models
 * @since 0.1.0
 */
export type TaskFilter = typeof TaskFilter.Type

/**
 * Whether a record matches a filter (`includeTerminal` defaults to `false`).
 *
 * @category filters
 * @since 0.1.0
 */
export const matchesRecord = (filter: TaskFilter | undefined, record: BackgroundTaskRecord): boolean => {
  if (filter === undefined) return !isTerminal(record.state)
  if (filter.includeTerminal !== true && isTerminal(record.state)) return false
  if (filter.kind !== undefined && record.kind !== filter.kind) return false
  if (filter.sessionId !== undefined && record.scope.sessionId !== filter.sessionId) return false
  return true
}

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/**
 * A host's counters (`stats`). `completed`, `failed` and `cancelled` count
 * every task that ever ended so, evicted or not; `evicted` counts the records
 * the retention limits evicted (`max_terminal`, `max_age`; not `unregistered`
 * or `replaced`); `live` and `retained` are the records held now; `seq` is the
 * last event's number (0 before the first).
 *
 * @category models
 * @since 0.2.0
 */
export const TaskStats = Schema.Struct({
  seq: Count,
  live: Count,
  retained: Count,
  completed: Count,
  failed: Count,
  cancelled: Count,
  evicted: Count,
  subscribers: Count,
  /** Fibers the host runs now: managed tasks, hidden tasks, timers. */
  fibers: Count,
  /** Managed tasks waiting in `pending` for a concurrency slot. */
  queued: Count,
  /** Transactions committed to a durable store (each holds every write made while the one before committed); 0 in memory. */
  commits: Count
})

/**
 * @category models
 * @since 0.2.0
 */
export type TaskStats = typeof TaskStats.Type

/**
 * How long a finished task ran, from `createdAt` to `completedAt`.
 *
 * @category getters
 * @since 0.1.0
 */
export const duration = (record: BackgroundTaskRecord) =>
  Option.map(record.completedAt, (end) => DateTime.distance(record.createdAt, end))
