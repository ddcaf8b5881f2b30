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
