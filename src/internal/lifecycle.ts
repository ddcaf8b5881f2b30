/**
 * The task lifecycle as plain functions: which moves are legal (docs/contract.md §4.2),
 * which event a move publishes (§6.1), and how a record changes. No fibers,
 * no clock, no state: the registry calls these inside its atomic steps and
 * the tests call them directly.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"
import { type TaskEvent } from "../TaskEvent.ts"
import { type BackgroundTaskRecord, isTerminal, TaskState, type TerminalState } from "../BackgroundTask.ts"
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
  const outcome = Option.some({ summary })
  return {
    ...record,
    state: to,
    updatedAt: now,
    revision,
    completedAt: Option.some(now),
    result: to === "failed" ? record.result : outcome,
    failure: to === "failed" ? outcome : record.failure
  }
}

/**
 * The one event a real move publishes, numbered by the moved record's
 * `revision`: a terminal event for a terminal state, `CancelRequested` for
 * `cancel_requested`, else `StateChanged`.
 */
export const moveEvent = (record: BackgroundTaskRecord, reason: Option.Option<string>): TaskEvent => {
  const base = { seq: record.revision, taskId: record.id, sessionId: record.scope.sessionId, kind: record.kind, record }
  switch (record.state) {
    case "completed":
      return { _tag: "Completed", ...base }
    case "failed":
      return { _tag: "Failed", ...base }
    case "cancelled":
      return { _tag: "Cancelled", ...base }
    case "cancel_requested":
      return { _tag: "CancelRequested", ...base, reason }
    default:
      return { _tag: "StateChanged", ...base, state: record.state }
  }
}

/** The terminal state a managed task reaches when its fiber exits. */
export const exitState = (
  outcome: "success" | "failure" | "interrupt",
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
