/**
 * The wire form (docs/contract.md §1.4) of records and events as JSON text, written by
 * hand for the durable store's write path.
 *
 * `Schema.encode` is the authority on the wire form; it is also most of the
 * cost of a durable write (a generic walk of the schema per value). These
 * functions give the same JSON for every value the schemas accept (a
 * property test holds them to it). A record written as a row has its text
 * made once, and the event that carries it takes that text; a record that
 * only an event carries has no text of its own: its parts go into the
 * event's (the store writes a batch's rows before its events).
 *
 * Each text is made by one `join` of its parts, so it comes out flat: a
 * template literal of many parts makes a rope (a string per part) that the
 * driver then copies into a flat string when it binds it. Text that needs no
 * escaping (ids, kinds, states: printable ASCII without `"` or `\`) is
 * joined between quotes as it is, with no string made for it.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import type * as Option from "effect/Option"
import type { BackgroundTaskEvent } from "../TaskEvent.ts"
import type { BackgroundTaskRecord, TaskOutcome, TaskSettings } from "../BackgroundTask.ts"

/**
 * The parts of the text being made, joined once it is whole. One array for
 * every text (they are made one at a time, never inside one another): its
 * length is `kept` between texts, the slots after the parts hold "" (joined
 * as nothing). `join` takes a scratch array of the array's length, so `kept`
 * is about the parts of a record or of an event whose record's text is made
 * already (the runs of fields that repeat from record to record are one part
 * each, below); a text of more parts (an event with its record's parts)
 * lengthens the array, and cutting it back to `kept` keeps its room, so it is
 * grown once, not for every such text.
 */
const kept = 24
const parts: Array<string | number> = new Array<string>(kept).fill("")
let used = 0

const add = (part: string | number): void => {
  parts[used++] = part
}

/** Starts a text (clearing what a text that threw half-made left). */
const begin = (): void => {
  if (used !== 0) clear()
}

const clear = (): void => {
  for (let i = 0; i < used; i++) parts[i] = ""
  // a text of more than `kept` parts grew the array
  if (parts.length > kept) parts.length = kept
  used = 0
}

/** The text made of the parts added since `begin`. */
const end = (): string => {
  const json = parts.join("")
  clear()
  return json
}

/** Whether `value` is its own JSON text between quotes: printable ASCII, no `"` and no `\`. */
const plain = (value: string): boolean => {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false
  }
  return true
}

/** Adds `value` as a JSON string. */
const str = (value: string): void => {
  if (plain(value)) {
    add("\"")
    add(value)
    add("\"")
  } else add(JSON.stringify(value))
}

const optionalStr = (value: Option.Option<string>): void => {
  if (value._tag === "Some") str(value.value)
  else add("null")
}

const text = (value: string): string => plain(value) ? `"${value}"` : JSON.stringify(value)

const optionalText = (value: Option.Option<string>): string => value._tag === "Some" ? text(value.value) : "null"

const sameOption = <A>(a: Option.Option<A>, b: Option.Option<A>): boolean =>
  a._tag === "None" ? b._tag === "None" : b._tag === "Some" && a.value === b.value

/*
 * Runs of fields that repeat from record to record (a task's versions, and
 * tasks of one kind in one session), each kept as one flat text for the
 * last values it was made from (compared with `===`), made anew when they
 * change.
 */

/** `,"kind":…,"producer":…,"scope":{…},"parent_task_id":…,"child_session_id":…,"state":` */
let ownerText = ""
let ownerFrom:
  | Pick<BackgroundTaskRecord, "kind" | "producer" | "parentTaskId" | "childSessionId"> & { readonly sessionId: string }
  | undefined
const owner = (record: BackgroundTaskRecord): string => {
  const from = ownerFrom
  if (
    from !== undefined && from.kind === record.kind && from.producer === record.producer &&
    from.sessionId === record.scope.sessionId && sameOption(from.parentTaskId, record.parentTaskId) &&
    sameOption(from.childSessionId, record.childSessionId)
  ) return ownerText
  const { childSessionId, kind, parentTaskId, producer } = record
  ownerFrom = { kind, producer, sessionId: record.scope.sessionId, parentTaskId, childSessionId }
  return ownerText = [
    ",\"kind\":",
    text(kind),
    ",\"producer\":",
    text(producer),
    ",\"scope\":{\"session_id\":",
    text(record.scope.sessionId),
    "},\"parent_task_id\":",
    optionalText(parentTaskId),
    ",\"child_session_id\":",
    optionalText(childSessionId),
    ",\"state\":"
  ].join("")
}

/** A state's text, by state (a few literals). */
const stateTexts = new Map<string, string>()
const stateText = (state: string): string => {
  let known = stateTexts.get(state)
  if (known === undefined) {
    known = text(state)
    if (stateTexts.size < 64) stateTexts.set(state, known)
  }
  return known
}

/** `,"cancel_policy":…,"close_policy":…,"attempt":{…},` */
let policiesText = ""
let policiesFrom:
  | Pick<BackgroundTaskRecord, "cancelPolicy" | "closePolicy"> & {
    readonly attempt: number
    readonly maxAttempts: Option.Option<number>
    readonly idempotencyKey: Option.Option<string>
  }
  | undefined
const policies = (record: BackgroundTaskRecord): string => {
  const from = policiesFrom
  const attempt = record.attempt
  if (
    from !== undefined && from.cancelPolicy === record.cancelPolicy && from.closePolicy === record.closePolicy &&
    from.attempt === attempt.attempt && sameOption(from.maxAttempts, attempt.maxAttempts) &&
    sameOption(from.idempotencyKey, attempt.idempotencyKey)
  ) return policiesText
  policiesFrom = {
    cancelPolicy: record.cancelPolicy,
    closePolicy: record.closePolicy,
    attempt: attempt.attempt,
    maxAttempts: attempt.maxAttempts,
    idempotencyKey: attempt.idempotencyKey
  }
  return policiesText = [
    ",\"cancel_policy\":",
    text(record.cancelPolicy),
    ",\"close_policy\":",
    text(record.closePolicy),
    ",\"attempt\":{\"attempt\":",
    attempt.attempt,
    ",\"max_attempts\":",
    attempt.maxAttempts._tag === "Some" ? attempt.maxAttempts.value : "null",
    ",\"idempotency_key\":",
    optionalText(attempt.idempotencyKey),
    "},"
  ].join("")
}

/** `,"session_id":…,"kind":…` of an event */
let sessionKindText = ""
let sessionKindFrom: { readonly sessionId: string; readonly kind: string } | undefined
const sessionKind = (sessionId: string, kind: string): string => {
  const from = sessionKindFrom
  if (from !== undefined && from.sessionId === sessionId && from.kind === kind) return sessionKindText
  sessionKindFrom = { sessionId, kind }
  return sessionKindText = [",\"session_id\":", text(sessionId), ",\"kind\":", text(kind)].join("")
}

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

/** `"result":…,"failure":…` */
const outcomes = (record: BackgroundTaskRecord): void => {
  if (record.result._tag === "None" && record.failure._tag === "None") return add("\"result\":null,\"failure\":null")
  add("\"result\":")
  outcome(record.result)
  add(",\"failure\":")
  outcome(record.failure)
}

const outcome = (value: Option.Option<TaskOutcome>): void => {
  if (value._tag === "None") return add("null")
  add("{\"summary\":")
  optionalStr(value.value.summary)
  add("}")
}

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

/** Adds a record's text, part by part. */
const recordParts = (record: BackgroundTaskRecord): void => {
  add("{\"id\":")
  str(record.id)
  add(owner(record))
  add(stateText(record.state))
  add(policies(record))
  outcomes(record)
  add(",\"created_at\":")
  add(time(record.createdAt))
  add(",\"updated_at\":")
  add(time(record.updatedAt))
  add(",\"completed_at\":")
  add(record.completedAt._tag === "Some" ? time(record.completedAt.value) : "null")
  add(",\"progress\":")
  optionalStr(record.progress)
  add(",\"revision\":")
  add(record.revision)
  if (record.input !== undefined) {
    add(",\"input\":")
    add(JSON.stringify(record.input))
  }
  if (record.settings !== undefined) {
    add(",\"settings\":")
    add(settingsJson(record.settings))
  }
  add("}")
}

/** A record's wire form, as JSON text (kept for the record: its events find it). */
export const recordJson = (record: BackgroundTaskRecord): string => {
  const known = recordTexts.get(record)
  if (known !== undefined) return known
  begin()
  recordParts(record)
  const json = end()
  recordTexts.set(record, json)
  return json
}

/** Adds an event's type, seq, task, session and kind. */
const eventHead = (
  type: string,
  event: { readonly seq: number; readonly taskId: string; readonly sessionId: string; readonly kind: string }
): void => {
  add(type)
  add(event.seq)
  add(",\"task_id\":")
  str(event.taskId)
  add(sessionKind(event.sessionId, event.kind))
}

/**
 * An event's wire form, as JSON text. The record's text is taken as it is
 * when it was made already (the record was written as a row); otherwise its
 * parts are joined into the event's, and no text of its own is made.
 */
export const eventJson = (event: BackgroundTaskEvent): string => {
  begin()
  if (event._tag === "Evicted") {
    add("{\"type\":\"evicted\",\"seq\":")
    add(event.seq)
    add(sessionKind(event.sessionId, event.kind))
    add(",\"task_ids\":[")
    const ids = event.taskIds
    for (let i = 0; i < ids.length; i++) {
      if (i > 0) add(",")
      str(ids[i]!)
    }
    add("],\"reason\":")
    str(event.reason)
    add("}")
    return end()
  }
  switch (event._tag) {
    case "Registered":
      eventHead("{\"type\":\"registered\",\"seq\":", event)
      break
    case "StateChanged":
      eventHead("{\"type\":\"state_changed\",\"seq\":", event)
      add(",\"state\":")
      str(event.state)
      break
    case "Progress":
      eventHead("{\"type\":\"progress\",\"seq\":", event)
      add(",\"message\":")
      str(event.message)
      break
    case "Completed":
      eventHead("{\"type\":\"completed\",\"seq\":", event)
      break
    case "Failed":
      eventHead("{\"type\":\"failed\",\"seq\":", event)
      break
    case "CancelRequested":
      eventHead("{\"type\":\"cancel_requested\",\"seq\":", event)
      add(",\"reason\":")
      optionalStr(event.reason)
      break
    case "Cancelled":
      eventHead("{\"type\":\"cancelled\",\"seq\":", event)
      break
    case "Transferred":
      eventHead("{\"type\":\"transferred\",\"seq\":", event)
      add(",\"scope\":{\"session_id\":")
      str(event.scope.sessionId)
      add("},\"from_session_id\":")
      str(event.fromSessionId)
      break
  }
  add(",\"record\":")
  const known = recordTexts.get(event.record)
  if (known !== undefined) add(known)
  else recordParts(event.record)
  add("}")
  return end()
}
