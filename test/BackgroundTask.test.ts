import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Equal, Option, Schema } from "effect"
import {
  BackgroundTaskEvent,
  BackgroundTaskRecord,
  duration,
  isTerminal,
  matchesEvent,
  matchesRecord,
  type TaskKind,
  TaskState
} from "../src/index.ts"

const RecordJson = Schema.fromJsonString(BackgroundTaskRecord)
const EventJson = Schema.fromJsonString(BackgroundTaskEvent)
const encodeRecord = Schema.encodeEffect(RecordJson)
const decodeRecord = Schema.decodeUnknownEffect(RecordJson)
const encodeEvent = Schema.encodeEffect(EventJson)
const decodeEvent = Schema.decodeUnknownEffect(EventJson)

const isoZ = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

const createdAt = DateTime.makeUnsafe("2024-05-01T12:00:00.000Z")
const updatedAt = DateTime.makeUnsafe("2024-05-01T12:00:05.250Z")
const completedAt = DateTime.makeUnsafe("2024-05-01T12:01:00.000Z")

/** A record with Some and None options everywhere an Option can be. */
const fullRecord: BackgroundTaskRecord = {
  id: "task-1",
  kind: "subagent",
  producer: "planner",
  scope: { sessionId: "session-1" },
  parentTaskId: Option.some("parent-1"),
  childSessionId: Option.none(),
  state: "cancel_requested",
  cancelPolicy: "abort_local",
  closePolicy: "transfer",
  attempt: { attempt: 2, maxAttempts: Option.some(5), idempotencyKey: Option.none() },
  result: Option.some({ summary: Option.some("half done") }),
  failure: Option.none(),
  createdAt,
  updatedAt,
  completedAt: Option.none(),
  progress: Option.some("step 3 of 7"),
  revision: 7
}

const makeRecord = (overrides: Partial<BackgroundTaskRecord> = {}): BackgroundTaskRecord => ({
  ...fullRecord,
  state: "running",
  result: Option.none(),
  ...overrides
})

const completedRecord = makeRecord({
  state: "completed",
  result: Option.some({ summary: Option.none() }),
  completedAt: Option.some(completedAt)
})

const sortedKeys = (u: unknown): ReadonlyArray<string> => Object.keys(u as object).sort()

const base = { seq: 8, taskId: "task-1", sessionId: "session-1", kind: "subagent" } as const

const events: ReadonlyArray<{ readonly type: string; readonly event: BackgroundTaskEvent }> = [
  { type: "registered", event: { _tag: "Registered", ...base, record: makeRecord({ state: "pending" }) } },
  { type: "state_changed", event: {
      _tag: "StateChanged",
      ...base,
      state: "waiting",
      record: makeRecord({ state: "waiting" })
    } },
  { type: "progress", event: { _tag: "Progress", ...base, message: "step 3 of 7", record: makeRecord({ revision: 8 }) } },
  { type: "completed", event: { _tag: "Completed", ...base, record: completedRecord } },
  {
    type: "failed",
    event: {
      _tag: "Failed",
      ...base,
      record: makeRecord({
        state: "failed",
        failure: Option.some({ summary: Option.some("boom") }),
        completedAt: Option.some(completedAt)
      })
    }
  },
  {
    type: "cancel_requested",
    event: { _tag: "CancelRequested", ...base, reason: Option.some("user asked"), record: fullRecord }
  },
  {
    type: "cancelled",
    event: {
      _tag: "Cancelled",
      ...base,
      record: makeRecord({
        state: "cancelled",
        result: Option.some({ summary: Option.none() }),
        completedAt: Option.some(completedAt)
      })
    }
  },
  {
    type: "transferred",
    event: {
      _tag: "Transferred",
      ...base,
      sessionId: "session-2",
      scope: { sessionId: "session-2" },
      fromSessionId: "session-1",
      record: makeRecord({ scope: { sessionId: "session-2" } })
    }
  },
  {
    type: "evicted",
    event: {
      _tag: "Evicted",
      seq: 9,
      sessionId: "session-1",
      kind: "subagent",
      taskIds: ["task-1", "task-2"],
      reason: "max_terminal"
    }
  }
]

const expectSchemaError = <A>(effect: Effect.Effect<A, Schema.SchemaError>) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    assert.strictEqual(error._tag, "SchemaError")
  })

describe("BackgroundTaskRecord wire form", () => {
  it.effect("encodes to JSON with exactly the snake_case keys of the original host", () =>
    Effect.gen(function*() {
      const wire = JSON.parse(yield* encodeRecord(fullRecord))
      assert.deepStrictEqual(sortedKeys(wire), [
        "attempt",
        "cancel_policy",
        "child_session_id",
        "close_policy",
        "completed_at",
        "created_at",
        "failure",
        "id",
        "kind",
        "parent_task_id",
        "producer",
        "progress",
        "result",
        "revision",
        "scope",
        "state",
        "updated_at"
      ])
      assert.deepStrictEqual(sortedKeys(wire.scope), ["session_id"])
      assert.deepStrictEqual(sortedKeys(wire.attempt), ["attempt", "idempotency_key", "max_attempts"])
      assert.deepStrictEqual(sortedKeys(wire.result), ["summary"])
    }))

  it.effect("encodes values as plain JSON: null for None, snake_case enum values", () =>
    Effect.gen(function*() {
      const wire = JSON.parse(yield* encodeRecord(fullRecord))
      assert.deepStrictEqual(wire, {
        id: "task-1",
        kind: "subagent",
        producer: "planner",
        scope: { session_id: "session-1" },
        parent_task_id: "parent-1",
        child_session_id: null,
        state: "cancel_requested",
        cancel_policy: "abort_local",
        close_policy: "transfer",
        attempt: { attempt: 2, max_attempts: 5, idempotency_key: null },
        result: { summary: "half done" },
        failure: null,
        created_at: "2024-05-01T12:00:00.000Z",
        updated_at: "2024-05-01T12:00:05.250Z",
        completed_at: null,
        progress: "step 3 of 7",
        revision: 7
      })
      const quiet = JSON.parse(yield* encodeRecord({ ...completedRecord, progress: Option.none() }))
      assert.strictEqual(quiet.progress, null)
    }))

  it.effect("encodes timestamps as ISO-8601 UTC strings ending in Z", () =>
    Effect.gen(function*() {
      const wire = JSON.parse(yield* encodeRecord(completedRecord))
      for (const key of ["created_at", "updated_at", "completed_at"]) {
        assert.isString(wire[key])
        assert.match(wire[key], isoZ)
      }
      assert.strictEqual(wire.completed_at, "2024-05-01T12:01:00.000Z")
      assert.deepStrictEqual(wire.result, { summary: null })
    }))

  it.effect("decodes its own encoding back to an equal record", () =>
    Effect.gen(function*() {
      for (const record of [fullRecord, completedRecord]) {
        const decoded = yield* decodeRecord(yield* encodeRecord(record))
        assert.isTrue(Equal.equals(decoded, record))
        assert.isTrue(DateTime.isDateTime(decoded.createdAt))
        assert.isTrue(Option.isSome(decoded.parentTaskId))
      }
    }))

  it.effect("round-trip equality is structural: a record differing in one field is not equal", () =>
    Effect.gen(function*() {
      const decoded = yield* decodeRecord(yield* encodeRecord(fullRecord))
      assert.isFalse(Equal.equals(decoded, { ...fullRecord, updatedAt: completedAt }))
      assert.isFalse(Equal.equals(decoded, { ...fullRecord, childSessionId: Option.some("child") }))
      assert.isFalse(
        Equal.equals(decoded, { ...fullRecord, attempt: { ...fullRecord.attempt, maxAttempts: Option.some(6) } })
      )
    }))

  it.effect("decodes a hand-written snake_case JSON document", () =>
    Effect.gen(function*() {
      const decoded = yield* decodeRecord(JSON.stringify({
        id: "t1",
        kind: "monitor",
        producer: "p",
        scope: { session_id: "s1" },
        parent_task_id: null,
        child_session_id: "child",
        state: "waiting",
        cancel_policy: "cooperative",
        close_policy: "keep",
        attempt: { attempt: 0, max_attempts: null, idempotency_key: "key-1" },
        result: null,
        failure: null,
        created_at: "2024-01-02T03:04:05.000Z",
        updated_at: "2024-01-02T03:04:05.000Z",
        completed_at: null
      }))
      assert.strictEqual(decoded.scope.sessionId, "s1")
      assert.strictEqual(decoded.state, "waiting")
      assert.strictEqual(decoded.revision, 0, "a record of the original host, without revision, decodes as revision 0")
      assert.isTrue(Option.isNone(decoded.progress), "a record written before 0.4, without progress, decodes as None")
      assert.isTrue(Equal.equals(decoded.childSessionId, Option.some("child")))
      assert.isTrue(Equal.equals(decoded.attempt.idempotencyKey, Option.some("key-1")))
      assert.isTrue(Option.isNone(decoded.completedAt))
      assert.strictEqual(DateTime.toEpochMillis(decoded.createdAt), Date.UTC(2024, 0, 2, 3, 4, 5))
    }))

  it.effect.prop(
    "record wire round trip",
    { record: Schema.toType(BackgroundTaskRecord) },
    ({ record }) =>
      Effect.gen(function*() {
        const decoded = yield* decodeRecord(yield* encodeRecord(record))
        assert.isTrue(Equal.equals(decoded, record))
      })
  )
})

describe("BackgroundTaskRecord decoding of bad input", () => {
  const goodWire = () =>
    Effect.map(encodeRecord(fullRecord), (json) => JSON.parse(json) as Record<string, unknown>)

  it.effect("fails with a SchemaError on an unknown state string", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), state: "exploded" }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError on a camelCase state value", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), state: "cancelRequested" }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError when a field is missing", () =>
    Effect.gen(function*() {
      const { created_at: _, ...wire } = yield* goodWire()
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError when the in-memory camelCase keys are used on the wire", () =>
    Effect.gen(function*() {
      const { created_at, ...wire } = yield* goodWire()
      yield* expectSchemaError(decodeRecord(JSON.stringify({ ...wire, createdAt: created_at })))
    }))

  it.effect("fails with a SchemaError on a negative attempt", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), attempt: { attempt: -1, max_attempts: null, idempotency_key: null } }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError on a fractional attempt", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), attempt: { attempt: 1.5, max_attempts: null, idempotency_key: null } }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError on an empty id", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), id: "" }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError on an empty session id", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), scope: { session_id: "" } }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError on a timestamp that is not a date", () =>
    Effect.gen(function*() {
      const wire = { ...(yield* goodWire()), created_at: "yesterday-ish" }
      yield* expectSchemaError(decodeRecord(JSON.stringify(wire)))
    }))

  it.effect("fails with a SchemaError on text that is not JSON", () => expectSchemaError(decodeRecord("{not json")))
})

describe("BackgroundTaskEvent wire form", () => {
  it.effect.each(events)("$type event round-trips and is tagged with its snake_case type", ({ event, type }) =>
    Effect.gen(function*() {
      const json = yield* encodeEvent(event)
      const wire = JSON.parse(json)
      assert.strictEqual(wire.type, type)
      assert.isUndefined(wire._tag)
      assert.strictEqual(wire.seq, event.seq)
      if (event._tag === "Evicted") assert.deepStrictEqual(wire.task_ids, event.taskIds)
      else assert.strictEqual(wire.task_id, event.taskId)
      assert.strictEqual(wire.session_id, event.sessionId)
      assert.strictEqual(wire.kind, event.kind)
      assert.isUndefined(wire.taskId)
      assert.isUndefined(wire.sessionId)
      const decoded = yield* decodeEvent(json)
      assert.strictEqual(decoded._tag, event._tag)
      assert.isTrue(Equal.equals(decoded, event))
    }))

  it.effect("covers every event variant", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(
        events.map(({ event }) => event._tag).sort(),
        [
          "CancelRequested",
          "Cancelled",
          "Completed",
          "Evicted",
          "Failed",
          "Progress",
          "Registered",
          "StateChanged",
          "Transferred"
        ]
      )
    }))

  it.effect("Transferred carries from_session_id and the new scope on the wire", () =>
    Effect.gen(function*() {
      const transferred = events.find(({ type }) => type === "transferred")
      assert.isDefined(transferred)
      const wire = JSON.parse(yield* encodeEvent(transferred!.event))
      assert.deepStrictEqual(wire, {
        type: "transferred",
        seq: 8,
        task_id: "task-1",
        session_id: "session-2",
        kind: "subagent",
        scope: { session_id: "session-2" },
        from_session_id: "session-1",
        record: JSON.parse(yield* encodeRecord(makeRecord({ scope: { sessionId: "session-2" } })))
      })
    }))

  it.effect("event payloads use the record's snake_case wire form and null for None", () =>
    Effect.gen(function*() {
      const wire = JSON.parse(
        yield* encodeEvent({
          _tag: "Progress",
          ...base,
          message: "half way",
          record: makeRecord({ progress: Option.some("half way"), revision: 8 })
        })
      )
      assert.deepStrictEqual({ ...wire, record: undefined }, {
        type: "progress",
        seq: 8,
        task_id: "task-1",
        session_id: "session-1",
        kind: "subagent",
        message: "half way",
        record: undefined
      })
      assert.strictEqual(wire.record.progress, "half way")
      assert.strictEqual(wire.record.revision, 8)
      const quiet = JSON.parse(yield* encodeEvent({ _tag: "Completed", ...base, record: makeRecord({ progress: Option.none() }) }))
      assert.strictEqual(quiet.record.progress, null)
      const cancelRequested = JSON.parse(
        yield* encodeEvent({ _tag: "CancelRequested", ...base, reason: Option.none(), record: fullRecord })
      )
      assert.strictEqual(cancelRequested.reason, null)
      assert.strictEqual(cancelRequested.record.state, "cancel_requested")
      assert.strictEqual(cancelRequested.record.revision, 7)
      const completed = JSON.parse(
        yield* encodeEvent({ _tag: "Completed", ...base, record: completedRecord })
      )
      assert.strictEqual(completed.record.state, "completed")
      assert.strictEqual(completed.record.completed_at, "2024-05-01T12:01:00.000Z")
      assert.strictEqual(completed.record.scope.session_id, "session-1")
    }))

  it.effect("fails with a SchemaError on an unknown event type", () =>
    expectSchemaError(decodeEvent(JSON.stringify({
      type: "exploded",
      task_id: "task-1",
      session_id: "session-1",
      kind: "subagent"
    }))))

  it.effect("fails with a SchemaError on the in-memory _tag instead of type", () =>
    expectSchemaError(decodeEvent(JSON.stringify({
      _tag: "Progress",
      task_id: "task-1",
      session_id: "session-1",
      kind: "subagent",
      message: "m"
    }))))

  it.effect("fails with a SchemaError when an event lacks its task_id", () =>
    expectSchemaError(decodeEvent(JSON.stringify({
      type: "state_changed",
      session_id: "session-1",
      kind: "subagent",
      state: "running"
    }))))

  it.effect("fails with a SchemaError on an unknown state in state_changed", () =>
    expectSchemaError(decodeEvent(JSON.stringify({
      type: "state_changed",
      task_id: "task-1",
      session_id: "session-1",
      kind: "subagent",
      state: "exploded"
    }))))

  it.effect("fails with a SchemaError on an unknown kind", () =>
    expectSchemaError(decodeEvent(JSON.stringify({
      type: "progress",
      task_id: "task-1",
      session_id: "session-1",
      kind: "daemon",
      message: "m"
    }))))
})

describe("duration", () => {
  it("is the time from createdAt to completedAt of a finished record, None for a live one", () => {
    const finished = makeRecord({ createdAt, completedAt: Option.some(completedAt), state: "completed" })
    assert.deepStrictEqual(Option.map(duration(finished), Duration.toMillis), Option.some(60_000))
    assert.isTrue(Option.isNone(duration(makeRecord({ completedAt: Option.none(), state: "running" }))))
  })
})

describe("isTerminal", () => {
  it("is true exactly for completed, failed and cancelled", () => {
    const terminal = TaskState.literals.filter((state) => isTerminal(state))
    assert.deepStrictEqual([...terminal].sort(), ["cancelled", "completed", "failed"])
    for (const state of ["pending", "running", "waiting", "cancel_requested"] as const) {
      assert.isFalse(isTerminal(state), state)
    }
  })
})

describe("matchesEvent", () => {
  const progress = (sessionId: string, kind: TaskKind): BackgroundTaskEvent => ({
    _tag: "Progress",
    seq: 1,
    taskId: "task-1",
    sessionId,
    kind,
    message: "m",
    record: { ...fullRecord, scope: { sessionId }, kind }
  })
  const transferred: BackgroundTaskEvent = {
    _tag: "Transferred",
    seq: 2,
    taskId: "task-1",
    sessionId: "new",
    kind: "monitor",
    scope: { sessionId: "new" },
    fromSessionId: "old",
    record: makeRecord({ kind: "monitor", scope: { sessionId: "new" } })
  }

  it("matches every event when there is no filter or an empty one", () => {
    for (const { event } of events) {
      assert.isTrue(matchesEvent(undefined, event))
      assert.isTrue(matchesEvent({}, event))
    }
  })

  it("filters by sessionId", () => {
    assert.isTrue(matchesEvent({ sessionId: "s1" }, progress("s1", "monitor")))
    assert.isFalse(matchesEvent({ sessionId: "s2" }, progress("s1", "monitor")))
  })

  it("filters by kind", () => {
    assert.isTrue(matchesEvent({ kind: "monitor" }, progress("s1", "monitor")))
    assert.isFalse(matchesEvent({ kind: "observer" }, progress("s1", "monitor")))
  })

  it("requires both sessionId and kind to match when both are given", () => {
    assert.isTrue(matchesEvent({ sessionId: "s1", kind: "monitor" }, progress("s1", "monitor")))
    assert.isFalse(matchesEvent({ sessionId: "s1", kind: "observer" }, progress("s1", "monitor")))
    assert.isFalse(matchesEvent({ sessionId: "s2", kind: "monitor" }, progress("s1", "monitor")))
  })

  it("filters every event variant by its sessionId and kind", () => {
    for (const { event } of events) {
      assert.isTrue(matchesEvent({ sessionId: event.sessionId, kind: event.kind }, event), event._tag)
      assert.isFalse(matchesEvent({ kind: "observer" }, event), event._tag)
      assert.isFalse(matchesEvent({ sessionId: "elsewhere" }, event), event._tag)
    }
  })

  it("ignores includeTerminal for events", () => {
    const completed = events.find(({ type }) => type === "completed")
    assert.isDefined(completed)
    assert.isTrue(matchesEvent({ includeTerminal: false }, completed!.event))
  })

  it("matches a Transferred event on its new session and on its old session", () => {
    assert.isTrue(matchesEvent({ sessionId: "new" }, transferred))
    assert.isTrue(matchesEvent({ sessionId: "old" }, transferred))
    assert.isFalse(matchesEvent({ sessionId: "third" }, transferred))
  })

  it("still applies the kind filter to a Transferred event matched on its old session", () => {
    assert.isTrue(matchesEvent({ sessionId: "old", kind: "monitor" }, transferred))
    assert.isFalse(matchesEvent({ sessionId: "old", kind: "subagent" }, transferred))
  })
})

describe("matchesRecord", () => {
  const live = makeRecord({ state: "running", kind: "monitor", scope: { sessionId: "s1" } })
  const done = makeRecord({ state: "completed", kind: "monitor", scope: { sessionId: "s1" } })

  it("excludes terminal records by default, with no filter or with an empty one", () => {
    assert.isTrue(matchesRecord(undefined, live))
    assert.isFalse(matchesRecord(undefined, done))
    assert.isTrue(matchesRecord({}, live))
    assert.isFalse(matchesRecord({}, done))
    assert.isFalse(matchesRecord({ sessionId: "s1" }, done))
  })

  it("excludes every terminal state and keeps every live state by default", () => {
    for (const state of TaskState.literals) {
      assert.strictEqual(matchesRecord({}, makeRecord({ state })), !isTerminal(state), state)
    }
  })

  it("includes terminal records when includeTerminal is true", () => {
    assert.isTrue(matchesRecord({ includeTerminal: true }, done))
    assert.isTrue(matchesRecord({ includeTerminal: true }, live))
    assert.isFalse(matchesRecord({ includeTerminal: false }, done))
  })

  it("filters by sessionId and kind", () => {
    assert.isTrue(matchesRecord({ sessionId: "s1", kind: "monitor" }, live))
    assert.isFalse(matchesRecord({ sessionId: "s2" }, live))
    assert.isFalse(matchesRecord({ kind: "observer" }, live))
    assert.isTrue(matchesRecord({ sessionId: "s1", includeTerminal: true }, done))
    assert.isFalse(matchesRecord({ sessionId: "s2", includeTerminal: true }, done))
  })
})
