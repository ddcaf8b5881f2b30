/**
 * The task lifecycle as plain functions: which moves are legal (docs/contract.md §4.2),
 * which event a move publishes (§6.1), how a record is made and how it changes. No fibers,
 * no clock, no state: the registry calls these inside its atomic steps and
 * the tests call them directly.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import { type TaskEvent } from "../TaskEvent.ts"
import {
  type BackgroundTaskRecord,
  defaultAttempt,
  isTerminal,
  type TaskAttempt,
  type TaskRegistration,
  type TaskSettings,
  TaskState,
  type TerminalState
} from "../BackgroundTask.ts"
import { InvalidTransition } from "../PluginError.ts"

const states: ReadonlySet<string> = new Set(TaskState.literals)

/** Whether a value is one of the seven task states. */
export const isTaskState = (u: unknown): u is TaskState => typeof u === "string" && states.has(u)

/**
 * Whether the lifecycle allows `from` → `to`. Staying in a live state is
 * allowed (it is no change); leaving a terminal state never is.
 */
export const canMove = (from: TaskState, to: TaskState): boolean => {
  if (isTerminal(from)) return false
  switch (from) {
    case "pending":
      return true
    case "running":
    case "waiting":
      return to !== "pending"
    case "cancel_requested":
      return to === "cancel_requested" || isTerminal(to)
  }
}

/** `InvalidTransition` unless `from` → `to` is legal; `to` may be any string. */
export const checkMove = (taskId: string, from: TaskState, to: unknown): InvalidTransition | undefined =>
  isTaskState(to) && canMove(from, to) ? undefined : new InvalidTransition({ taskId, from, to: describeState(to) })

/** A requested state as text: a string as it is, anything else in a form no state name can take. */
export const describeState = (to: unknown): string =>
  typeof to === "string" ? to : (JSON.stringify(to) ?? String(to))

const noSummary: Option.Option<{ readonly summary: Option.Option<string> }> = Option.some({ summary: Option.none() })
let lastEnd: DateTime.Utc | undefined
let lastEndAt: Option.Option<DateTime.Utc> = Option.none()

/**
 * The record after a move to `to` at `now`, by the event numbered `revision`;
 * `summary` goes to `failure` when `to` is `failed`.
 */
export const moveRecord = (
  record: BackgroundTaskRecord,
  to: TaskState,
  now: DateTime.Utc,
  revision: number,
  summary: Option.Option<string> = Option.none()
): BackgroundTaskRecord => {
  if (!isTerminal(to)) return { ...record, state: to, updatedAt: now, revision }
  // immutable values, shared: the outcome without a summary, the end time of the records ended at `now`
  const outcome = Option.isNone(summary) ? noSummary : Option.some({ summary })
  if (now !== lastEnd) {
    lastEnd = now
    lastEndAt = Option.some(now)
  }
  const result = to === "failed" ? record.result : outcome
  const failure = to === "failed" ? outcome : record.failure
  return rebuilt(record, to, result, failure, now, lastEndAt, record.progress, revision)
}

/**
 * The record with `message` as its latest progress, by the event numbered
 * `revision`. The same message again keeps the record's `progress` (an
 * immutable value): one object less per update and per event a subscriber
 * holds.
 */
export const progressRecord = (record: BackgroundTaskRecord, message: string, revision: number): BackgroundTaskRecord => {
  const last = record.progress
  return rebuilt(
    record,
    record.state,
    record.result,
    record.failure,
    record.updatedAt,
    record.completedAt,
    Option.isSome(last) && last.value === message ? last : Option.some(message),
    revision
  )
}

/**
 * A new version of `record` with the fields a move or a progress message
 * changes. Written field by field rather than spread when the record has
 * neither `input` nor `settings` (the common one): about twice as fast, and
 * it changes how V8 treats the record while a subscriber holds events.
 * Measured with a never-reading subscriber (100k progress updates): with the
 * spread record each young-generation collection kept about 15 MB alive
 * against about 3 MB written out, and the collections' pauses halved. (It
 * seems V8 tenured the event literals while the spread records they point
 * to stayed young, so each collection copied every record published since
 * the last one, dead or not.)
 */
const rebuilt = (
  record: BackgroundTaskRecord,
  state: TaskState,
  result: BackgroundTaskRecord["result"],
  failure: BackgroundTaskRecord["failure"],
  updatedAt: DateTime.Utc,
  completedAt: BackgroundTaskRecord["completedAt"],
  progress: BackgroundTaskRecord["progress"],
  revision: number
): BackgroundTaskRecord =>
  "input" in record || "settings" in record
    ? { ...record, state, result, failure, updatedAt, completedAt, progress, revision }
    : {
      id: record.id,
      kind: record.kind,
      producer: record.producer,
      scope: record.scope,
      parentTaskId: record.parentTaskId,
      childSessionId: record.childSessionId,
      state,
      cancelPolicy: record.cancelPolicy,
      closePolicy: record.closePolicy,
      attempt: record.attempt,
      result,
      failure,
      createdAt: record.createdAt,
      updatedAt,
      completedAt,
      progress,
      revision
    }

/**
 * The one event a real move publishes, numbered by the moved record's
 * `revision`: a terminal event for a terminal state, `CancelRequested` for
 * `cancel_requested`, else `StateChanged`.
 */
export const moveEvent = (record: BackgroundTaskRecord, reason: Option.Option<string>): TaskEvent => {
  // one object per event (a spread of a shared base would make two)
  const { id: taskId, kind, revision: seq, scope: { sessionId }, state } = record
  switch (state) {
    case "completed":
      return { _tag: "Completed", seq, taskId, sessionId, kind, record }
    case "failed":
      return { _tag: "Failed", seq, taskId, sessionId, kind, record }
    case "cancelled":
      return { _tag: "Cancelled", seq, taskId, sessionId, kind, record }
    case "cancel_requested":
      return { _tag: "CancelRequested", seq, taskId, sessionId, kind, record, reason }
    default:
      return { _tag: "StateChanged", seq, taskId, sessionId, kind, record, state }
  }
}

/** How a managed task's fiber exited. */
export type Outcome = "success" | "failure" | "interrupt"

/** The terminal state a managed task reaches when its fiber exits. */
export const exitState = (
  outcome: Outcome,
  current: TaskState
): TerminalState => {
  switch (outcome) {
    case "success":
      // a cooperative task that returns after a cancel request was cancelled
      return current === "cancel_requested" ? "cancelled" : "completed"
    case "failure":
      return "failed"
    case "interrupt":
      return "cancelled"
  }
}

/** A registration, with the attempt a recovered task resumes from. */
export type Spec = TaskRegistration & { readonly attempt?: TaskAttempt }

const attemptOf = (spec: Spec): TaskAttempt => {
  const base = spec.attempt ?? defaultAttempt
  if (spec.maxAttempts === undefined && spec.idempotencyKey === undefined) return base
  return {
    attempt: base.attempt,
    maxAttempts: spec.maxAttempts === undefined ? base.maxAttempts : Option.some(spec.maxAttempts),
    idempotencyKey: spec.idempotencyKey === undefined ? base.idempotencyKey : Option.some(spec.idempotencyKey)
  }
}

let lastScope: { readonly sessionId: string } = { sessionId: "" }

/** A new record, as registered. */
export const newRecord = (
  sessionId: string,
  spec: Spec,
  state: TaskState,
  now: DateTime.Utc,
  revision: number
): BackgroundTaskRecord => {
  // the scope is immutable: the records of a burst in one session share one
  if (sessionId !== lastScope.sessionId) lastScope = { sessionId }
  const record: BackgroundTaskRecord = {
    id: spec.id,
    kind: spec.kind,
    producer: spec.producer,
    scope: lastScope,
    parentTaskId: Option.fromUndefinedOr(spec.parentTaskId),
    childSessionId: Option.fromUndefinedOr(spec.childSessionId),
    state,
    cancelPolicy: spec.cancelPolicy ?? "cooperative",
    closePolicy: spec.closePolicy ?? "keep",
    attempt: attemptOf(spec),
    result: Option.none(),
    failure: Option.none(),
    createdAt: now,
    updatedAt: now,
    completedAt: Option.none(),
    progress: Option.none(),
    revision
  }
  // the common registration has neither: no object is made for them
  if (spec.input === undefined && spec.timeout === undefined && spec.cancelGracePeriod === undefined && spec.backoff === undefined) {
    return record
  }
  return { ...record, ...(spec.input === undefined ? {} : { input: spec.input }), ...settingsOf(spec) }
}

/** The per-task options a record keeps (finite durations in milliseconds), when the registration gave any. */
const settingsOf = (spec: Spec): { readonly settings?: TaskSettings } => {
  const millis = (input: Duration.Input | undefined) => {
    if (input === undefined) return undefined
    const duration = Duration.fromInputUnsafe(input)
    return Duration.isFinite(duration) ? Math.round(Duration.toMillis(duration)) : undefined
  }
  const timeoutMillis = millis(spec.timeout)
  const cancelGracePeriodMillis = millis(spec.cancelGracePeriod)
  const settings: TaskSettings = {
    ...(timeoutMillis === undefined ? {} : { timeoutMillis }),
    ...(cancelGracePeriodMillis === undefined ? {} : { cancelGracePeriodMillis }),
    ...(spec.backoff === undefined ? {} : { backoff: spec.backoff })
  }
  return Object.keys(settings).length === 0 ? {} : { settings }
}
