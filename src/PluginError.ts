/**
 * The typed failures of the background task host.
 *
 * Every error is a `Schema.TaggedError` class: yield it, catch it with
 * `Effect.catchTag`, print its readable `message`. The four errors of the
 * original host (`RegistrationError`, `SnapshotError`, `InvokeError`,
 * `SessionError`) carry a `message`; the precise ones (`TaskNotFound`,
 * `TaskAlreadyExists`, `InvalidTransition`) carry the ids and states a caller
 * branches on. The {@link PluginError} schema is their wire form:
 * `{"type": "task_not_found", "task_id": …}`.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { TaskState } from "./BackgroundTask.ts"

/** An id or state in a message, quoted, cut to 200 characters: a message stays short whatever the caller passed. */
const quote = (text: string): string =>
  JSON.stringify(text.length <= 200 ? text : `${text.slice(0, 200)}… (${text.length} characters)`)

/**
 * A registration was refused: its input is not valid (an empty id, a negative
 * attempt, an unknown kind, ...).
 *
 * @category errors
 * @since 0.1.0
 */
export class RegistrationError extends Schema.TaggedError<RegistrationError>()("RegistrationError", {
  message: Schema.String
}) {}

/**
 * A snapshot of the registry (`list`, `subscribe`) could not be taken, for
 * example because its filter is not valid.
 *
 * @category errors
 * @since 0.1.0
 */
export class SnapshotError extends Schema.TaggedError<SnapshotError>()("SnapshotError", {
  message: Schema.String
}) {}

/**
 * A task could not be invoked or failed in a way the host reports to its
 * caller.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvokeError extends Schema.TaggedError<InvokeError>()("InvokeError", {
  message: Schema.String
}) {}

/**
 * A session-level call was refused: the session id is not valid, or the host's
 * layer has closed.
 *
 * @category errors
 * @since 0.1.0
 */
export class SessionError extends Schema.TaggedError<SessionError>()("SessionError", {
  message: Schema.String
}) {}

/**
 * No record with this id (in this session, when one is given).
 *
 * @category errors
 * @since 0.1.0
 */
export class TaskNotFound extends Schema.TaggedError<TaskNotFound>()("TaskNotFound", {
  taskId: Schema.String,
  sessionId: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    return this.sessionId === undefined
      ? `task ${quote(this.taskId)} not found`
      : `task ${quote(this.taskId)} not found in session ${quote(this.sessionId!)}`
  }
}

/**
 * The id names a live task already; `sessionId` is the session where it lives.
 *
 * @category errors
 * @since 0.1.0
 */
export class TaskAlreadyExists extends Schema.TaggedError<TaskAlreadyExists>()("TaskAlreadyExists", {
  taskId: Schema.String,
  sessionId: Schema.String
}) {
  override get message(): string {
    return `task ${quote(this.taskId)} is already live in session ${quote(this.sessionId)}`
  }
}

/**
 * The lifecycle does not allow this move (docs/contract.md §4.2). `to` is the
 * requested state as given, so an unknown state string is reported here too.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidTransition extends Schema.TaggedError<InvalidTransition>()("InvalidTransition", {
  taskId: Schema.String,
  from: TaskState,
  to: Schema.String,
  /** What to do instead, when the call that failed has a better one (added to the message). */
  hint: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    const known = (TaskState.literals as ReadonlyArray<string>).includes(this.to)
    const base = known
      ? `task ${quote(this.taskId)} cannot move from ${this.from} to ${this.to}`
      : `task ${quote(this.taskId)} cannot move from ${this.from} to ${
        quote(this.to)
      }: not a task state (expected one of ${TaskState.literals.join(", ")})`
    return this.hint === undefined ? base : `${base}: ${this.hint}`
  }
}

/**
 * An attempt of a managed task ran longer than its `timeout` and was
 * interrupted; the attempt fails with this error (and is retried like any
 * other failure while attempts remain). `timeout` is the limit as text.
 *
 * @category errors
 * @since 0.4.0
 */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  taskId: Schema.String,
  timeout: Schema.String
}) {
  override get message(): string {
    return `timed out after ${this.timeout}`
  }
}

/**
 * A host layer was given an option it cannot use; `option` names it (for
 * example `retention.maxAge`), `message` says what was expected and what
 * came instead. The layer fails to build.
 *
 * @category errors
 * @since 0.4.0
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * Any failure of the host.
 *
 * @category errors
 * @since 0.1.0
 */
export type PluginError =
  | RegistrationError
  | SnapshotError
  | InvokeError
  | SessionError
  | TaskNotFound
  | TaskAlreadyExists
  | InvalidTransition
  | TaskTimeout
  | InvalidOptions

const wire = <
  const Tag extends string,
  const Wire extends string,
  Fields extends Schema.Struct.Fields,
  Keys extends { readonly [K in keyof Fields]?: string }
>(
  error: Schema.Codec<
    { readonly _tag: Tag } & Schema.Struct.Type<Fields>,
    { readonly _tag: Tag } & Schema.Struct.Encoded<Fields>
  >,
  tag: Tag,
  type: Wire,
  fields: Fields,
  keys: Keys
) =>
  Schema.Struct({ _tag: Schema.Literal(type).transform(tag), ...fields }).pipe(
    Schema.encodeKeys({ _tag: "type", ...keys }),
    Schema.decodeTo(error as Schema.Codec<unknown, { readonly _tag: Tag } & Schema.Struct.Type<Fields>>)
  )

/**
 * The wire form of every {@link PluginError}: `{"type": "<snake_case tag>",
 * ...fields in snake_case}`.
 *
 * **Example** (Sending an error over the wire)
 *
 * ```ts
 * import { Schema } from "effect"
 * import { PluginError, TaskNotFound } from "effect-task-host"
 *
 * const json = Schema.encodeEffect(Schema.fromJsonString(PluginError))(
 *   new TaskNotFound({ taskId: "t-1" })
 * ) // Effect<string>: {"type":"task_not_found","task_id":"t-1"}
 * ```
 *
 * @category schemas
 * @since 0.1.0
 */
export const PluginError = Schema.Union([
  wire(RegistrationError, "RegistrationError", "registration_error", { message: Schema.String }, {}),
  wire(SnapshotError, "SnapshotError", "snapshot_error", { message: Schema.String }, {}),
  wire(InvokeError, "InvokeError", "invoke_error", { message: Schema.String }, {}),
  wire(SessionError, "SessionError", "session_error", { message: Schema.String }, {}),
  wire(TaskNotFound, "TaskNotFound", "task_not_found", {
    taskId: Schema.String,
    sessionId: Schema.optionalKey(Schema.String)
  }, { taskId: "task_id", sessionId: "session_id" }),
  wire(TaskAlreadyExists, "TaskAlreadyExists", "task_already_exists", {
    taskId: Schema.String,
    sessionId: Schema.String
  }, { taskId: "task_id", sessionId: "session_id" }),
  wire(InvalidTransition, "InvalidTransition", "invalid_transition", {
    taskId: Schema.String,
    from: TaskState,
    to: Schema.String
  }, { taskId: "task_id" }),
  wire(TaskTimeout, "TaskTimeout", "task_timeout", {
    taskId: Schema.String,
    timeout: Schema.String
  }, { taskId: "task_id" }),
  wire(InvalidOptions, "InvalidOptions", "invalid_options", {
    option: Schema.String,
    message: Schema.String
  }, {})
])

/**
 * True for any {@link PluginError}.
 *
 * @category guards
 * @since 0.1.0
 */
export const isPluginError = (u: unknown): u is PluginError =>
  u instanceof RegistrationError || u instanceof SnapshotError || u instanceof InvokeError ||
  u instanceof SessionError || u instanceof TaskNotFound || u instanceof TaskAlreadyExists ||
  u instanceof InvalidTransition || u instanceof TaskTimeout || u instanceof InvalidOptions
