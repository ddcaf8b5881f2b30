/**
 * The durable store's hand-written wire encoders give exactly what
 * `Schema.encode` gives, for every value the schemas accept.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { BackgroundTaskEvent, BackgroundTaskRecord } from "../../src/index.ts"
import { eventJson, recordJson } from "../../src/internal/wire.ts"

const encodeRecord = Schema.encodeSync(BackgroundTaskRecord)
const encodeEvent = Schema.encodeSync(BackgroundTaskEvent)

describe("wire encoders", () => {
  it.prop("a record's JSON is Schema.encode's", { record: BackgroundTaskRecord }, ({ record }) => {
    assert.deepStrictEqual(JSON.parse(recordJson(record)), encodeRecord(record))
    // the same text again (it is made once per record)
    assert.strictEqual(recordJson(record), recordJson(record))
  }, { arbitrary: { runs: 500 } })

  it.prop(
    "versions of one task (spread from the one before) give Schema.encode's JSON, whichever field a version changes",
    { record: BackgroundTaskRecord, other: BackgroundTaskRecord },
    ({ other, record }) => {
      const versions: Array<BackgroundTaskRecord> = [
        record,
        { ...record, state: other.state, revision: record.revision + 1, updatedAt: other.updatedAt },
        { ...record, kind: other.kind },
        { ...record, producer: other.producer },
        { ...record, scope: other.scope },
        { ...record, parentTaskId: other.parentTaskId },
        { ...record, childSessionId: other.childSessionId },
        { ...record, cancelPolicy: other.cancelPolicy },
        { ...record, closePolicy: other.closePolicy },
        { ...record, attempt: other.attempt },
        { ...record, attempt: { ...record.attempt, attempt: record.attempt.attempt + 1 } },
        // another task with the same id (a session of its own), then the first again
        { ...other, id: record.id },
        { ...record, revision: record.revision + 2 }
      ]
      for (const version of versions) assert.deepStrictEqual(JSON.parse(recordJson(version)), encodeRecord(version))
    },
    { arbitrary: { runs: 300 } }
  )

  const seen = new Map<string, number>()
  it.prop("an event's JSON is Schema.encode's, for every variant", { event: BackgroundTaskEvent }, ({ event }) => {
    seen.set(event._tag, (seen.get(event._tag) ?? 0) + 1)
    assert.deepStrictEqual(JSON.parse(eventJson(event)), encodeEvent(event))
  }, { arbitrary: { runs: 2_000 } })

  it.prop(
    "an event's JSON is the same whether its record's text was made before it or not",
    { event: BackgroundTaskEvent },
    ({ event }) => {
      const first = eventJson(event)
      if (event._tag !== "Evicted") recordJson(event.record)
      assert.strictEqual(eventJson(event), first)
      assert.deepStrictEqual(JSON.parse(first), encodeEvent(event))
    },
    { arbitrary: { runs: 500 } }
  )

  it("a text made after one that failed half-made has none of its parts", () => {
    const record = Schema.decodeUnknownSync(BackgroundTaskRecord)({
      id: "t",
      kind: "other",
      producer: "p",
      scope: { session_id: "s" },
      parent_task_id: null,
      child_session_id: null,
      state: "pending",
      cancel_policy: "cooperative",
      close_policy: "keep",
      attempt: { attempt: 0, max_attempts: null, idempotency_key: null },
      result: null,
      failure: null,
      created_at: "2026-01-01T00:00:00.000Z",
      updated_at: "2026-01-01T00:00:00.000Z",
      completed_at: null,
      revision: 0
    })
    // an input JSON.stringify throws on (a record's input is JSON once validated; this one is forced in)
    assert.throws(() => recordJson({ ...record, input: { n: BigInt(1) } as never }))
    assert.deepStrictEqual(JSON.parse(recordJson(record)), encodeRecord(record))
  })

  it("an event of more parts than the encoders keep room for (an eviction of many tasks), then a small one", () => {
    const decodeEvent = Schema.decodeUnknownSync(BackgroundTaskEvent)
    const many = decodeEvent({
      type: "evicted",
      seq: 7,
      session_id: "s",
      kind: "other",
      task_ids: Array.from({ length: 300 }, (_, i) => i % 7 === 0 ? `t\"${i}` : `t-${i}`),
      reason: "max_terminal"
    })
    assert.deepStrictEqual(JSON.parse(eventJson(many)), encodeEvent(many))
    const one = decodeEvent({ type: "evicted", seq: 8, session_id: "s", kind: "other", task_ids: ["t"], reason: "max_terminal" })
    assert.strictEqual(eventJson(one), JSON.stringify(encodeEvent(one)))
  })

  it("the property above checked every variant of the union", () => {
    assert.deepStrictEqual([...seen.keys()].sort(), [
      "CancelRequested",
      "Cancelled",
      "Completed",
      "Evicted",
      "Failed",
      "Progress",
      "Registered",
      "StateChanged",
      "Transferred"
    ])
    assert.isAtLeast([...seen.values()].reduce((a, b) => a + b, 0), 2_000)
  })

  it("text that needs escaping round-trips", () => {
    const record = Schema.decodeUnknownSync(BackgroundTaskRecord)({
      id: "a\"b\\c\n\u2028",
      kind: "other",
      producer: "p\u0000",
      scope: { session_id: "s" },
      parent_task_id: null,
      child_session_id: "é",
      state: "failed",
      cancel_policy: "cooperative",
      close_policy: "keep",
      attempt: { attempt: 0, max_attempts: 2, idempotency_key: null },
      result: null,
      failure: { summary: "line 1\nline 2" },
      created_at: "2026-01-01T00:00:00.000Z",
      updated_at: "2026-01-01T00:00:01.500Z",
      completed_at: "2026-01-01T00:00:01.500Z",
      revision: 3
    })
    assert.deepStrictEqual(Schema.decodeUnknownSync(Schema.fromJsonString(BackgroundTaskRecord))(recordJson(record)), record)
  })
})
