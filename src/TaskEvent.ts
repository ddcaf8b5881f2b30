/**
 * The lifecycle events the background task host publishes: one per change
 * of a record, numbered by `seq`, each carrying the record after the change,
 * and `Lagged` where a subscriber fell behind.
 *
 * Every type here is an Effect `Schema` whose encoded form is the wire form:
 * snake_case keys and a `type` field (`{"type": "registered", ...}`).
 *
 * @since 0.4.0
 */
import * as Schema from "effect/Schema"
import { BackgroundTaskRecord, Id, TaskFilter, TaskKind, TaskScope, TaskState } from "./BackgroundTask.ts"

/**
 * An event's place in its host's history: the first event a host publishes is
 * 1, each next one is one more.
 *
 * @category models
 * @since 0.2.0
 */
export const Seq = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

const eventKeys = { _tag: "type", taskId: "task_id", sessionId: "session_id" } as const

const event = <const Tag extends string, const Wire extends string, const Fields extends Schema.Struct.Fields>(
  tag: Tag,
  wire: Wire,
  fields: Fields
) =>
  Schema.Struct({
    _tag: Schema.Literal(wire).transform(tag),
    seq: Seq,
    taskId: Id,
    sessionId: Id,
    kind: TaskKind,
    ...fields
  })

/**
 * A task was registered (`register`, `spawnManaged`, `registerExternal`).
 *
 * @category events
 * @since 0.1.0
 */
export const Registered = event("Registered", "registered", { record: BackgroundTaskRecord })
  .pipe(Schema.encodeKeys(eventKeys))

/**
 * A task moved to a non-terminal state other than `cancel_requested`;
 * `record` is the record after the move.
 *
 * @category events
 * @since 0.1.0
 */
export const StateChanged = event("StateChanged", "state_changed", { state: TaskState, record: BackgroundTaskRecord })
  .pipe(Schema.encodeKeys(eventKeys))

/**
 * A task reported progress: `message`, and `record` after the change (its
 * `progress` is the message and its `revision` this event's `seq`). Progress
 * events stored by a host before 0.4 carry no record and no longer decode.
 *
 * @category events
 * @since 0.1.0
 */
export const Progress = event("Progress", "progress", { message: Schema.String, record: BackgroundTaskRecord })
  .pipe(Schema.encodeKeys(eventKeys))

/**
 * A task reached `completed`.
 *
 * @category events
 * @since 0.1.0
 */
export const Completed = event("Completed", "completed", { record: BackgroundTaskRecord })
  .pipe(Schema.encodeKeys(eventKeys))

/**
 * A task reached `failed`.
 *
 * @category events
 * @since 0.1.0
 */
export const Failed = event("Failed", "failed", { record: BackgroundTaskRecord })
  .pipe(Schema.encodeKeys(eventKeys))

/**
 * Cancellation of a task was requested; `record` is the record in
 * `cancel_requested`.
 *
 * @category events
 * @since 0.1.0
 */
export const CancelRequested = event("CancelRequested", "cancel_requested", {
  reason: Schema.OptionFromNullOr(Schema.String),
  record: BackgroundTaskRecord
}).pipe(Schema.encodeKeys(eventKeys))

/**
 * A task reached `cancelled`.
 *
 * @category events
 * @since 0.1.0
 */
export const Cancelled = event("Cancelled", "cancelled", { record: BackgroundTaskRecord })
  .pipe(Schema.encodeKeys(eventKeys))

/**
 * A task moved to another session. `sessionId` is the new session, and
 * `fromSessionId` the old one; a subscriber's session filter matches either.
 * `record` is the record in its new session.
 *
 * @category events
 * @since 0.1.0
 */
export const Transferred = event("Transferred", "transferred", {
  scope: TaskScope,
  fromSessionId: Id,
  record: BackgroundTaskRecord
}).pipe(Schema.encodeKeys({ ...eventKeys, fromSessionId: "from_session_id" }))

/**
 * Why records stopped being held: `max_terminal` and `max_age` are the
 * host's retention limits, `unregistered` is `unregisterExternal`, and
 * `replaced` a terminal record that a new registration (or a transfer) of
 * its id in its session took the place of.
 *
 * @category models
 * @since 0.2.0
 */
export const EvictionReason = Schema.Literals(["max_terminal", "max_age", "unregistered", "replaced"])

/**
 * @category models
 * @since 0.2.0
 */
export type EvictionReason = typeof EvictionReason.Type

/**
 * Records are no longer held (see {@link EvictionReason}): `get`,
 * `list` and `listManaged` stop showing them. One event per session and kind,
 * naming every record that went in the same step. Live records are never
 * evicted.
 *
 * @category events
 * @since 0.2.0
 */
export const Evicted = Schema.Struct({
  _tag: Schema.Literal("evicted").transform("Evicted"),
  seq: Seq,
  sessionId: Id,
  kind: TaskKind,
  taskIds: Schema.NonEmptyArray(Id),
  reason: EvictionReason
}).pipe(Schema.encodeKeys({ _tag: "type", sessionId: "session_id", taskIds: "task_ids" }))

/**
 * Every event the host publishes, numbered by `seq`. Each carries
 * `sessionId` and `kind`, so any event can be filtered; each but `Evicted`
 * concerns one task, `taskId`, and every one that changes a record carries
 * the changed `record`.
 *
 * **Example** (Describing an event)
 *
 * ```ts
 * import { BackgroundTaskEvent } from "effect-task-host"
 *
 * const describe = (event: BackgroundTaskEvent) =>
 *   BackgroundTaskEvent.match(event, {
 *     Registered: (e) => `${e.taskId} registered`,
 *     StateChanged: (e) => `${e.taskId} is ${e.state}`,
 *     Progress: (e) => `${e.taskId}: ${e.message}`,
 *     Completed: (e) => `${e.taskId} completed`,
 *     Failed: (e) => `${e.taskId} failed`,
 *     CancelRequested: (e) => `${e.taskId} asked to stop`,
 *     Cancelled: (e) => `${e.taskId} cancelled`,
 *     Transferred: (e) => `${e.taskId} moved from ${e.fromSessionId} to ${e.sessionId}`,
 *     Evicted: (e) => `${e.taskIds.join(", ")} no longer held (${e.reason})`
 *   })
 * ```
 *
 * @category events
 * @since 0.1.0
 */
export const BackgroundTaskEvent = Schema.Union([
  Registered,
  StateChanged,
  Progress,
  Completed,
  Failed,
  CancelRequested,
  Cancelled,
  Transferred,
  Evicted
]).pipe(Schema.toTaggedUnion("_tag"))

/**
 * @category events
 * @since 0.1.0
 */
export type BackgroundTaskEvent = typeof BackgroundTaskEvent.Type

/**
 * The `_tag`s of {@link BackgroundTaskEvent}.
 *
 * @category events
 * @since 0.1.0
 */
export type BackgroundTaskEventTag = BackgroundTaskEvent["_tag"]

/**
 * The events about one task: every {@link BackgroundTaskEvent} but `Evicted`.
 *
 * @category events
 * @since 0.2.0
 */
export type TaskEvent = Exclude<BackgroundTaskEvent, { readonly _tag: "Evicted" }>

/**
 * Whether an event concerns one task (has a `taskId`).
 *
 * @category guards
 * @since 0.2.0
 */
export const isTaskEvent = (event: BackgroundTaskEvent): event is TaskEvent => event._tag !== "Evicted"

/**
 * A subscriber fell behind: its buffer was full, and the `skipped` oldest
 * events it had not read yet were dropped (exactly that many, all matching its
 * filter). Delivered in place of them; the events after it are the newer
 * ones. A view kept from `watch` is stale after this: take a new `list`.
 *
 * @category events
 * @since 0.2.0
 */
export const Lagged = Schema.Struct({
  _tag: Schema.Literal("lagged").transform("Lagged"),
  skipped: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
}).pipe(Schema.encodeKeys({ _tag: "type" }))

/**
 * @category events
 * @since 0.2.0
 */
export type Lagged = typeof Lagged.Type

/**
 * What a subscription's stream yields: the host's events, and `Lagged` where
 * the subscriber fell behind.
 *
 * @category events
 * @since 0.2.0
 */
export const SubscriptionEvent = Schema.Union([BackgroundTaskEvent, Lagged])

/**
 * @category events
 * @since 0.2.0
 */
export type SubscriptionEvent = BackgroundTaskEvent | Lagged

/**
 * Whether an event matches a filter's `sessionId` and `kind` (a `Transferred`
 * event matches its old session as well as its new one; `Lagged` matches
 * every filter).
 *
 * @category filters
 * @since 0.1.0
 */
export const matchesEvent = (filter: TaskFilter | undefined, event: SubscriptionEvent): boolean => {
  if (filter === undefined || event._tag === "Lagged") return true
  if (filter.kind !== undefined && event.kind !== filter.kind) return false
  if (filter.sessionId !== undefined && event.sessionId !== filter.sessionId) {
    return event._tag === "Transferred" && event.fromSessionId === filter.sessionId
  }
  return true
}

