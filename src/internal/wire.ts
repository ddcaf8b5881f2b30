/**
 * The wire form (docs/contract.md §1.4) of records and events as JSON text, written by
 * hand for the durable store's write path.
 *
 * `Schema.encode` is the authority on the wire form; it is also most of the
 * cost of a durable write (a generic walk of the schema per value). These
 * functions give the same JSON for every value the schemas accept (a
 * property test holds them to it), and a record's text is made once however
 * many events and rows carry it.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import type * as Option from "effect/Option"
import type { BackgroundTaskEvent } from "../TaskEvent.ts"
import type { BackgroundTaskRecord, TaskOutcome, TaskSettings } from "../BackgroundTask.ts"

const text = JSON.stringify as (value: string) => string

const optionalText = (value: Option.Option<string>): string => value._tag === "Some" ? text(value.value) : "null"

const optionalInt = (value: Option.Option<number>): string => value._tag === "Some" ? String(value.value) : "null"

// a record's times are few and repeat from record to record (created, then updated, at a few
// milliseconds): the texts of the last two are kept, by their epoch milliseconds
let lastMillis = Number.NaN
let lastTimeText = ""
let otherMillis = Number.NaN
let otherTimeText = ""
const time = (value: DateTime.Utc): string => {
  const millis = value.epochMilliseconds
  if (millis === lastMillis) return lastTimeText
  if (millis !== otherMillis) {
    otherMillis = millis
    otherTimeText = `"${new Date(millis).toISOString()}"`
  }
  // the one just used becomes the first looked at
  const text = otherTimeText
  otherMillis = lastMillis
  otherTimeText = lastTimeText
  lastMillis = millis
  lastTimeText = text
  return text
}

const outcome = (value: Option.Option<TaskOutcome>): string =>
  value._tag === "Some" ? `{"summary":${optionalText(value.value.summary)}}` : "null"

const settingsJson = (settings: TaskSettings): string => {
  const parts: Array<string> = []
  if (settings.timeoutMillis !== undefined) parts.push(`"timeout_millis":${settings.timeoutMillis}`)
  if (settings.cancelGracePeriodMillis !== undefined) {
    parts.push(`"cancel_grace_period_millis":${settings.cancelGracePeriodMillis}`)
  }
  const backoff = settings.backoff
  if (backoff !== undefined) {
    parts.push(
      `"backoff":{"initial_millis":${backoff.initialMillis}` +
        (backoff.factor === undefined ? "" : `,"factor":${backoff.factor}`) +
        (backoff.maxMillis === undefined ? "" : `,"max_millis":${backoff.maxMillis}`) + "}"
    )
  }
  return `{${parts.join(",")}}`
}

/** Records are immutable: one text per record object. */
const recordTexts = new WeakMap<BackgroundTaskRecord, string>()

/**
 * The parts of a record's text that a task's versions share (its versions are
 * made by spreading the previous one, so they share these very values): the
 * fields before `state`, and the policies with the attempt after it. Kept by
 * task id for the last few thousand tasks (a task's versions are written
 * close together), and used only while every value they were made from is
 * the same (`===`).
 */
interface Shared {
  /** What the texts were made from (not the record itself, which may hold a large input). */
  readonly from: Pick<
    BackgroundTaskRecord,
    "attempt" | "kind" | "producer" | "scope" | "parentTaskId" | "childSessionId" | "cancelPolicy" | "closePolicy"
  >
  readonly head: string
  readonly middle: string
}
const sharedTexts = new Map<string, Shared>()
/** Tasks whose shared parts are kept, at most (then they are dropped all at once). */
const sharedKept = 4_096

const sharedOf = (record: BackgroundTaskRecord): Shared => {
  const known = sharedTexts.get(record.id)
  if (
    known !== undefined && known.from.attempt === record.attempt && known.from.kind === record.kind &&
    known.from.producer === record.producer && known.from.scope === record.scope &&
    known.from.parentTaskId === record.parentTaskId && known.from.childSessionId === record.childSessionId &&
    known.from.cancelPolicy === record.cancelPolicy && known.from.closePolicy === record.closePolicy
  ) return known
  const { attempt, cancelPolicy, childSessionId, closePolicy, kind, parentTaskId, producer, scope } = record
  const shared: Shared = {
    from: { attempt, cancelPolicy, childSessionId, closePolicy, kind, parentTaskId, producer, scope },
    head: `{"id":${text(record.id)},"kind":${text(record.kind)},"producer":${text(record.producer)},` +
      `"scope":{"session_id":${text(record.scope.sessionId)}},` +
      `"parent_task_id":${optionalText(record.parentTaskId)},"child_session_id":${optionalText(record.childSessionId)},`,
    middle: `,"cancel_policy":${text(record.cancelPolicy)},"close_policy":${text(record.closePolicy)},` +
      `"attempt":{"attempt":${attempt.attempt},"max_attempts":${optionalInt(attempt.maxAttempts)},` +
      `"idempotency_key":${optionalText(attempt.idempotencyKey)}},`
  }
  if (sharedTexts.size >= sharedKept) sharedTexts.clear()
  sharedTexts.set(record.id, shared)
  return shared
}

/** A record's wire form, as JSON text. */
export const recordJson = (record: BackgroundTaskRecord): string => {
  const known = recordTexts.get(record)
  if (known !== undefined) return known
  const { head, middle } = sharedOf(record)
  const json = `${head}"state":${text(record.state)}${middle}` +
    `"result":${outcome(record.result)},"failure":${outcome(record.failure)},` +
    `"created_at":${time(record.createdAt)},"updated_at":${time(record.updatedAt)},` +
    `"completed_at":${record.completedAt._tag === "Some" ? time(record.completedAt.value) : "null"},` +
    `"progress":${optionalText(record.progress)},"revision":${record.revision}` +
    (record.input === undefined ? "" : `,"input":${JSON.stringify(record.input)}`) +
    (record.settings === undefined ? "" : `,"settings":${settingsJson(record.settings)}`) +
    "}"
  recordTexts.set(record, json)
  return json
}

/** An event's wire form, as JSON text. */
export const eventJson = (event: BackgroundTaskEvent): string => {
  if (event._tag === "Evicted") {
    return `{"type":"evicted","seq":${event.seq},"session_id":${text(event.sessionId)},"kind":${text(event.kind)},` +
      `"task_ids":[${event.taskIds.map(text).join(",")}],"reason":${text(event.reason)}}`
  }
  const head = `"seq":${event.seq},"task_id":${text(event.taskId)},"session_id":${text(event.sessionId)},` +
    `"kind":${text(event.kind)}`
  switch (event._tag) {
    case "Registered":
      return `{"type":"registered",${head},"record":${recordJson(event.record)}}`
    case "StateChanged":
      return `{"type":"state_changed",${head},"state":${text(event.state)},"record":${recordJson(event.record)}}`
    case "Progress":
      return `{"type":"progress",${head},"message":${text(event.message)},"record":${recordJson(event.record)}}`
    case "Completed":
      return `{"type":"completed",${head},"record":${recordJson(event.record)}}`
    case "Failed":
      return `{"type":"failed",${head},"record":${recordJson(event.record)}}`
    case "CancelRequested":
      return `{"type":"cancel_requested",${head},"reason":${optionalText(event.reason)},"record":${
        recordJson(event.record)
      }}`
    case "Cancelled":
      return `{"type":"cancelled",${head},"record":${recordJson(event.record)}}`
    case "Transferred":
      return `{"type":"transferred",${head},"scope":{"session_id":${text(event.scope.sessionId)}},` +
        `"from_session_id":${text(event.fromSessionId)},"record":${recordJson(event.record)}}`
  }
}
