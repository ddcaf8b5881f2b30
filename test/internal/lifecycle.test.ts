import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Equal, Option, Schema } from "effect"
import {
  BackgroundTaskEvent,
  type BackgroundTaskRecord,
  defaultAttempt,
  InvalidTransition,
  isTerminal,
  TaskState
} from "../../src/index.ts"
import { canMove, checkMove, exitState, isTaskState, moveEvent, moveRecord, progressRecord } from "../../src/internal/lifecycle.ts"

const allStates: ReadonlyArray<TaskState> = TaskState.literals

/**
 * docs/contract.md §4.2, written out by hand (not derived from the implementation):
 * for each `from`, the states it may move to.
 */
const legal: Readonly<Record<TaskState, ReadonlyArray<TaskState>>> = {
  pending: ["pending", "running", "waiting", "completed", "failed", "cancel_requested", "cancelled"],
  running: ["running", "waiting", "completed", "failed", "cancel_requested", "cancelled"],
  waiting: ["running", "waiting", "completed", "failed", "cancel_requested", "cancelled"],
  cancel_requested: ["cancel_requested", "completed", "failed", "cancelled"],
  completed: [],
  failed: [],
  cancelled: []
}

const transitions = allStates.flatMap((from) =>
  allStates.map((to) => {
    const allowed = legal[from].includes(to)
    return { from, to, allowed, verdict: allowed ? "allowed" : "refused" }
  })
)

const t0 = DateTime.makeUnsafe("2024-05-01T12:00:00.000Z")
const now = DateTime.makeUnsafe("2024-05-01T12:30:00.000Z")

const record = (state: TaskState, overrides: Partial<BackgroundTaskRecord> = {}): BackgroundTaskRecord => ({
  id: "task-1",
  kind: "observer",
  producer: "tests",
  scope: { sessionId: "session-1" },
  parentTaskId: Option.none(),
  childSessionId: Option.none(),
  state,
  cancelPolicy: "cooperative",
  closePolicy: "keep",
  attempt: defaultAttempt,
  result: Option.none(),
  failure: Option.none(),
  createdAt: t0,
  updatedAt: t0,
  completedAt: Option.none(),
  progress: Option.none(),
  revision: 1,
  ...overrides
})

describe("canMove: the transition table of docs/contract.md §4.2", () => {
  it("the table covers all 7 × 7 pairs", () => {
    assert.strictEqual(allStates.length, 7)
    assert.strictEqual(transitions.length, 49)
  })

  it.each(transitions)("$from → $to is $verdict", ({ from, to, allowed }) => {
    assert.strictEqual(canMove(from, to), allowed)
  })

  it("pending may move anywhere, itself included", () => {
    for (const to of allStates) assert.isTrue(canMove("pending", to), to)
  })

  it("running and waiting flip both ways and may stay where they are", () => {
    assert.isTrue(canMove("running", "waiting"))
    assert.isTrue(canMove("waiting", "running"))
    assert.isTrue(canMove("running", "running"))
    assert.isTrue(canMove("waiting", "waiting"))
  })

  it("no state moves back to pending except pending itself", () => {
    for (const from of allStates) {
      assert.strictEqual(canMove(from, "pending"), from === "pending", from)
    }
  })

  it("cancel_requested moves only to a terminal state or stays", () => {
    for (const to of allStates) {
      assert.strictEqual(canMove("cancel_requested", to), isTerminal(to) || to === "cancel_requested", to)
    }
  })

  it("terminal states are final: no move out, not even to themselves", () => {
    for (const from of ["completed", "failed", "cancelled"] as const) {
      for (const to of allStates) assert.isFalse(canMove(from, to), `${from} → ${to}`)
    }
  })

  it("every live state may reach every terminal state", () => {
    for (const from of ["pending", "running", "waiting", "cancel_requested"] as const) {
      for (const to of ["completed", "failed", "cancelled"] as const) {
        assert.isTrue(canMove(from, to), `${from} → ${to}`)
      }
    }
  })
})

describe("checkMove", () => {
  it.each(transitions)("$from → $to: checkMove agrees with the table ($verdict)", ({ from, to, allowed }) => {
    const error = checkMove("task-1", from, to)
    if (allowed) {
      assert.isUndefined(error)
    } else {
      assert.instanceOf(error, InvalidTransition)
      assert.strictEqual(error!.taskId, "task-1")
      assert.strictEqual(error!.from, from)
      assert.strictEqual(error!.to, to)
      assert.include(error!.message, "task-1")
      assert.notInclude(error!.message, "not a task state")
    }
  })

  it("returns an InvalidTransition for a string that is not a task state", () => {
    for (const to of ["exploded", "", "Running", "CANCELLED", "cancelRequested", " running"]) {
      const error = checkMove("task-1", "pending", to)
      assert.instanceOf(error, InvalidTransition, JSON.stringify(to))
      assert.strictEqual(error!.to, to)
      assert.strictEqual(error!.from, "pending")
      assert.include(error!.message, "not a task state")
    }
  })

  it("returns an InvalidTransition for a value that is not a string at all", () => {
    for (const to of [undefined, null, 42, true, {}, ["exploded"], ["running"]]) {
      const error = checkMove("task-1", "running", to)
      assert.instanceOf(error, InvalidTransition)
      assert.notInclude(["pending", "running", "waiting", "completed", "failed", "cancel_requested", "cancelled"], error!.to)
      assert.include(error!.message, "not a task state")
    }
  })

  it("reports an unknown state even from a terminal state", () => {
    const error = checkMove("task-9", "completed", "exploded")
    assert.instanceOf(error, InvalidTransition)
    assert.strictEqual(error!.from, "completed")
    assert.include(error!.message, "task-9")
  })
})

describe("isTaskState", () => {
  it("is true for the seven task states and false for anything else", () => {
    for (const state of allStates) assert.isTrue(isTaskState(state), state)
    for (const u of ["exploded", "", "Pending", "cancel-requested", undefined, null, 1, {}]) {
      assert.isFalse(isTaskState(u), String(u))
    }
  })
})

describe("moveRecord", () => {
  it("completed sets state, updatedAt, completedAt and the summary as result", () => {
    const moved = moveRecord(record("running"), "completed", now, 5, Option.some("all good"))
    assert.strictEqual(moved.state, "completed")
    assert.isTrue(Equal.equals(moved.updatedAt, now))
    assert.isTrue(Equal.equals(moved.completedAt, Option.some(now)))
    assert.isTrue(Equal.equals(moved.result, Option.some({ summary: Option.some("all good") })))
    assert.isTrue(Option.isNone(moved.failure))
  })

  it("completed without a summary still records a result, with no summary", () => {
    const moved = moveRecord(record("running"), "completed", now, 5)
    assert.isTrue(Equal.equals(moved.result, Option.some({ summary: Option.none() })))
    assert.isTrue(Option.isNone(moved.failure))
    assert.isTrue(Equal.equals(moved.completedAt, Option.some(now)))
  })

  it("cancelled sets completedAt and the summary as result", () => {
    const moved = moveRecord(record("cancel_requested"), "cancelled", now, 5, Option.some("stopped"))
    assert.strictEqual(moved.state, "cancelled")
    assert.isTrue(Equal.equals(moved.completedAt, Option.some(now)))
    assert.isTrue(Equal.equals(moved.result, Option.some({ summary: Option.some("stopped") })))
    assert.isTrue(Option.isNone(moved.failure))
  })

  it("failed puts the summary into failure, not result", () => {
    const moved = moveRecord(record("running"), "failed", now, 5, Option.some("boom"))
    assert.strictEqual(moved.state, "failed")
    assert.isTrue(Equal.equals(moved.completedAt, Option.some(now)))
    assert.isTrue(Equal.equals(moved.failure, Option.some({ summary: Option.some("boom") })))
    assert.isTrue(Option.isNone(moved.result))
  })

  it.each(["pending", "running", "waiting", "cancel_requested"] as const)(
    "a live move to %s changes state and updatedAt only, leaving completedAt None",
    (to) => {
      const before = record("pending")
      const moved = moveRecord(before, to, now, 5, Option.some("ignored"))
      assert.strictEqual(moved.state, to)
      assert.isTrue(Equal.equals(moved.updatedAt, now))
      assert.isTrue(Option.isNone(moved.completedAt))
      assert.isTrue(Option.isNone(moved.result))
      assert.isTrue(Option.isNone(moved.failure))
      assert.isTrue(Equal.equals(moved, { ...before, state: to, updatedAt: now, revision: 5 }))
    }
  )

  it("keeps identity fields and createdAt on every move", () => {
    for (const to of allStates) {
      const before = record("running", { parentTaskId: Option.some("parent"), cancelPolicy: "external" })
      const moved = moveRecord(before, to, now, 5)
      assert.strictEqual(moved.id, before.id)
      assert.strictEqual(moved.kind, before.kind)
      assert.strictEqual(moved.producer, before.producer)
      assert.deepStrictEqual(moved.scope, before.scope)
      assert.strictEqual(moved.cancelPolicy, "external")
      assert.isTrue(Equal.equals(moved.parentTaskId, Option.some("parent")))
      assert.isTrue(Equal.equals(moved.createdAt, t0))
    }
  })

  it("does not mutate the record it is given", () => {
    const before = record("running")
    moveRecord(before, "failed", now, 5, Option.some("boom"))
    assert.strictEqual(before.state, "running")
    assert.isTrue(Option.isNone(before.completedAt))
    assert.isTrue(Option.isNone(before.failure))
    assert.isTrue(Equal.equals(before.updatedAt, t0))
  })
})

describe("progressRecord", () => {
  it("changes progress and revision only, for a record with or without input and settings", () => {
    const plain = record("running", { parentTaskId: Option.some("parent"), progress: Option.some("old") })
    const withInput = record("waiting", { input: { file: "a.txt" } })
    const withSettings = record("pending", { settings: { timeoutMillis: 1_000 } })
    const withBoth = record("running", { input: [1, 2], settings: { cancelGracePeriodMillis: 5 } })
    for (const before of [plain, withInput, withSettings, withBoth]) {
      const copy = { ...before }
      const after = progressRecord(before, "halfway", 7)
      assert.deepStrictEqual(after, { ...before, progress: Option.some("halfway"), revision: 7 })
      assert.deepStrictEqual(Object.keys(after).sort(), Object.keys(before).sort())
      // the record it is given is not changed
      assert.deepStrictEqual(before, copy)
    }
  })

  it("the same message again: the same record as for a new message, its progress the same value", () => {
    const before = record("running", { progress: Option.some("same") })
    const again = progressRecord(before, "same", 8)
    assert.deepStrictEqual(again, { ...before, progress: Option.some("same"), revision: 8 })
    assert.strictEqual(again.progress, before.progress)
    // a different message, or none before: a new value
    const other = progressRecord(before, "other", 9)
    assert.deepStrictEqual(other.progress, Option.some("other"))
    const first = progressRecord(record("running"), "same", 10)
    assert.deepStrictEqual(first.progress, Option.some("same"))
  })
})

describe("moveRecord to a terminal state", () => {
  it("changes the state, times, revision and outcome only, for a record with or without input and settings", () => {
    const plain = record("running", { parentTaskId: Option.some("parent"), progress: Option.some("last") })
    const withInput = record("waiting", { input: { file: "a.txt" } })
    const withSettings = record("cancel_requested", { settings: { timeoutMillis: 1_000 } })
    const withBoth = record("running", { input: [1, 2], settings: { cancelGracePeriodMillis: 5 } })
    for (const before of [plain, withInput, withSettings, withBoth]) {
      for (const to of ["completed", "failed", "cancelled"] as const) {
        const copy = { ...before }
        const after = moveRecord(before, to, now, 9, Option.some("why"))
        const outcome = Option.some({ summary: Option.some("why") })
        assert.deepStrictEqual(after, {
          ...before,
          state: to,
          updatedAt: now,
          completedAt: Option.some(now),
          revision: 9,
          result: to === "failed" ? before.result : outcome,
          failure: to === "failed" ? outcome : before.failure
        })
        assert.deepStrictEqual(Object.keys(after).sort(), Object.keys(before).sort())
        // the record it is given is not changed
        assert.deepStrictEqual(before, copy)
      }
    }
  })
})

describe("moveEvent", () => {
  const identity = { seq: 5, taskId: "task-1", sessionId: "session-1", kind: "observer" }

  it("a completed record gives Completed carrying the record", () => {
    const moved = moveRecord(record("running"), "completed", now, 5)
    const event = moveEvent(moved, Option.none())
    assert.strictEqual(event._tag, "Completed")
    assert.isTrue(Equal.equals(event, { _tag: "Completed", ...identity, record: moved }))
  })

  it("a failed record gives Failed carrying the record", () => {
    const moved = moveRecord(record("running"), "failed", now, 5, Option.some("boom"))
    const event = moveEvent(moved, Option.none())
    assert.strictEqual(event._tag, "Failed")
    assert.isTrue(Equal.equals(event, { _tag: "Failed", ...identity, record: moved }))
  })

  it("a cancelled record gives Cancelled carrying the record", () => {
    const moved = moveRecord(record("cancel_requested"), "cancelled", now, 5)
    const event = moveEvent(moved, Option.some("ignored for terminal events"))
    assert.strictEqual(event._tag, "Cancelled")
    assert.isTrue(Equal.equals(event, { _tag: "Cancelled", ...identity, record: moved }))
  })

  it("a cancel_requested record gives CancelRequested with the reason", () => {
    const moved = moveRecord(record("running"), "cancel_requested", now, 5)
    assert.isTrue(Equal.equals(
      moveEvent(moved, Option.some("user asked")),
      { _tag: "CancelRequested", ...identity, reason: Option.some("user asked"), record: moved }
    ))
    assert.isTrue(Equal.equals(
      moveEvent(moved, Option.none()),
      { _tag: "CancelRequested", ...identity, reason: Option.none(), record: moved }
    ))
  })

  it.each(["pending", "running", "waiting"] as const)("a %s record gives StateChanged with that state", (state) => {
    const moved = moveRecord(record("pending"), state, now, 5)
    const event = moveEvent(moved, Option.some("ignored"))
    assert.isTrue(Equal.equals(event, { _tag: "StateChanged", ...identity, state, record: moved }))
  })

  it("every event carries the record's current session and kind", () => {
    const elsewhere = record("running", { scope: { sessionId: "session-2" }, kind: "monitor" })
    for (const to of allStates) {
      const event = moveEvent(moveRecord(elsewhere, to, now, 5), Option.none())
      assert.strictEqual(event.taskId, "task-1")
      assert.strictEqual(event.sessionId, "session-2")
      assert.strictEqual(event.kind, "monitor")
    }
  })

  it.effect("every event it builds is valid for the wire schema", () =>
    Effect.gen(function*() {
      const EventJson = Schema.fromJsonString(BackgroundTaskEvent)
      for (const to of allStates) {
        const event = moveEvent(moveRecord(record("pending"), to, now, 5, Option.some("s")), Option.some("r"))
        const decoded = yield* Schema.decodeUnknownEffect(EventJson)(yield* Schema.encodeEffect(EventJson)(event))
        assert.isTrue(Equal.equals(decoded, event), to)
      }
    }))
})

describe("exitState", () => {
  const cases: ReadonlyArray<{
    readonly outcome: "success" | "failure" | "interrupt"
    readonly current: TaskState
    readonly expected: TaskState
  }> = [
    { outcome: "success", current: "running", expected: "completed" },
    { outcome: "success", current: "waiting", expected: "completed" },
    { outcome: "success", current: "pending", expected: "completed" },
    { outcome: "success", current: "cancel_requested", expected: "cancelled" },
    { outcome: "failure", current: "running", expected: "failed" },
    { outcome: "failure", current: "waiting", expected: "failed" },
    { outcome: "failure", current: "cancel_requested", expected: "failed" },
    { outcome: "interrupt", current: "running", expected: "cancelled" },
    { outcome: "interrupt", current: "waiting", expected: "cancelled" },
    { outcome: "interrupt", current: "cancel_requested", expected: "cancelled" }
  ]

  it.each(cases)("exit by $outcome from $current ends $expected", ({ outcome, current, expected }) => {
    assert.strictEqual(exitState(outcome, current), expected)
  })

  it("always yields a terminal state the current live state may move to", () => {
    for (const outcome of ["success", "failure", "interrupt"] as const) {
      for (const current of ["pending", "running", "waiting", "cancel_requested"] as const) {
        const state = exitState(outcome, current)
        assert.isTrue(isTerminal(state))
        assert.isTrue(canMove(current, state), `${outcome} from ${current}`)
      }
    }
  })
})
