/**
 * `TaskView`: a watch's snapshot with its events folded in holds what `list`
 * returns for the same filter.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  type BackgroundTaskEvent,
  type BackgroundTaskRecord,
  defaultAttempt,
  isTerminal,
  type SubscriptionEvent,
  type TaskFilter,
  type TaskKind,
  type TaskState,
  TaskView
} from "../src/index.ts"
import { makeTestHost, spec } from "./utils/host.ts"

// -- hand-built records and events -------------------------------------------------

const record = (
  sessionId: string,
  id: string,
  state: TaskState,
  revision: number,
  options: { readonly kind?: TaskKind; readonly createdAt?: number } = {}
): BackgroundTaskRecord => {
  const createdAt = DateTime.makeUnsafe(options.createdAt ?? 0)
  const updatedAt = DateTime.makeUnsafe((options.createdAt ?? 0) + revision)
  return {
    id,
    kind: options.kind ?? "monitor",
    producer: "test",
    scope: { sessionId },
    parentTaskId: Option.none(),
    childSessionId: Option.none(),
    state,
    cancelPolicy: "cooperative",
    closePolicy: "keep",
    attempt: defaultAttempt,
    result: state === "completed" ? Option.some({ summary: Option.none() }) : Option.none(),
    failure: state === "failed" ? Option.some({ summary: Option.none() }) : Option.none(),
    createdAt,
    updatedAt,
    completedAt: isTerminal(state) ? Option.some(updatedAt) : Option.none(),
    progress: Option.none(),
    revision
  }
}

const about = (r: BackgroundTaskRecord) => ({
  seq: r.revision,
  taskId: r.id,
  sessionId: r.scope.sessionId,
  kind: r.kind,
  record: r
})

/** The event that produced a record (its `revision` is the event's `seq`). */
const eventOf = (r: BackgroundTaskRecord): BackgroundTaskEvent => {
  switch (r.state) {
    case "pending":
      return { _tag: "Registered", ...about(r) }
    case "running":
    case "waiting":
      return { _tag: "StateChanged", state: r.state, ...about(r) }
    case "cancel_requested":
      return { _tag: "CancelRequested", reason: Option.none(), ...about(r) }
    case "completed":
      return { _tag: "Completed", ...about(r) }
    case "failed":
      return { _tag: "Failed", ...about(r) }
    case "cancelled":
      return { _tag: "Cancelled", ...about(r) }
  }
}

const registered = (r: BackgroundTaskRecord): BackgroundTaskEvent => ({ _tag: "Registered", ...about(r) })

const transferred = (r: BackgroundTaskRecord, fromSessionId: string): BackgroundTaskEvent => ({
  _tag: "Transferred",
  ...about(r),
  scope: r.scope,
  fromSessionId
})

const progress = (seq: number, r: BackgroundTaskRecord): BackgroundTaskEvent => ({
  _tag: "Progress",
  seq,
  taskId: r.id,
  sessionId: r.scope.sessionId,
  kind: r.kind,
  message: "half way",
  record: { ...r, progress: Option.some("half way"), revision: seq }
})

const evicted = (
  seq: number,
  sessionId: string,
  taskIds: readonly [string, ...Array<string>]
): BackgroundTaskEvent => ({
  _tag: "Evicted",
  seq,
  sessionId,
  kind: "monitor",
  taskIds,
  reason: "max_terminal"
})

const lagged = (skipped: number): SubscriptionEvent => ({ _tag: "Lagged", skipped })

const keys = (view: TaskView) => view.records().map((r) => `${r.scope.sessionId}/${r.id}:${r.state}`)

describe("TaskView", () => {
  it("starts from the snapshot, at the snapshot's seq", () => {
    const a = record("s1", "a", "running", 3)
    const b = record("s2", "b", "pending", 5)
    const view = TaskView.fromWatch({ snapshot: [a, b], seq: 7, filter: undefined })
    assert.strictEqual(view.seq, 7)
    assert.strictEqual(view.size, 2)
    assert.isFalse(view.stale)
    assert.strictEqual(view.get("s1", "a"), a)
    assert.strictEqual(view.get("s2", "b"), b)
    assert.isUndefined(view.get("s2", "a"))
    assert.deepStrictEqual(view.records(), [a, b])
  })

  it("folds each event's record in and follows its seq", () => {
    const view = new TaskView([], 0, undefined)
    const a1 = record("s1", "a", "pending", 1)
    const a2 = record("s1", "a", "running", 2)
    const a3 = record("s1", "a", "cancel_requested", 4)
    assert.isTrue(view.apply(registered(a1)))
    assert.strictEqual(view.get("s1", "a"), a1)
    assert.isTrue(view.apply(eventOf(a2)))
    assert.strictEqual(view.get("s1", "a"), a2)
    // a gap in seq is what a filtered watch sees: the view follows
    assert.isTrue(view.apply(eventOf(a3)))
    assert.strictEqual(view.get("s1", "a"), a3)
    assert.strictEqual(view.seq, 4)
    assert.strictEqual(view.size, 1)
  })

  it("ignores events at or below its seq: the snapshot already holds them", () => {
    const a = record("s1", "a", "running", 5)
    const view = new TaskView([a], 5, undefined)
    assert.isFalse(view.apply(eventOf(record("s1", "a", "waiting", 5))))
    assert.isFalse(view.apply(eventOf(record("s1", "a", "completed", 3))))
    assert.isFalse(view.apply(registered(record("s1", "z", "pending", 2))))
    assert.isFalse(view.apply(evicted(4, "s1", ["a"])))
    assert.strictEqual(view.seq, 5)
    assert.deepStrictEqual(view.records(), [a])
    // the same event after the view has moved past it: a duplicate, ignored too
    const waiting = eventOf(record("s1", "a", "waiting", 6))
    assert.isTrue(view.apply(waiting))
    assert.isFalse(view.apply(waiting))
    assert.strictEqual(view.get("s1", "a")?.state, "waiting")
    assert.strictEqual(view.seq, 6)
  })

  it("a cluster's watch across sessions (seqPerSession) is folded per session", () => {
    // the watch's seq is a position in the cluster's feed; each event keeps its session's seq
    const a = record("s1", "a", "running", 5)
    const b = record("s2", "b", "running", 2)
    const watched = { snapshot: [a, b], seq: 100, filter: undefined, seqPerSession: true as const }
    const view = TaskView.fromWatch(watched)
    assert.strictEqual(view.seqOf("s1"), 5)
    assert.strictEqual(view.seqOf("s2"), 2)
    assert.strictEqual(view.seqOf("s3"), 0)
    // after the snapshot in its session: folded, though below the watch's seq
    assert.isTrue(view.apply(eventOf(record("s2", "b", "waiting", 3))))
    assert.isTrue(view.apply(registered(record("s3", "c", "pending", 1))))
    // at or before what the view holds of its session: ignored
    assert.isFalse(view.apply(eventOf(record("s1", "a", "completed", 4))))
    assert.isFalse(view.apply(eventOf(record("s2", "b", "waiting", 3))))
    assert.isFalse(view.apply(evicted(5, "s1", ["a"])))
    assert.isTrue(view.apply(eventOf(record("s1", "a", "waiting", 6))))
    assert.deepStrictEqual(keys(view), ["s1/a:waiting", "s2/b:waiting", "s3/c:pending"])
    assert.deepStrictEqual([view.seqOf("s1"), view.seqOf("s2"), view.seqOf("s3"), view.seq], [6, 3, 1, 100])
    // the same watch folded with one seq for all would drop every one of these events
    const global = new TaskView(watched.snapshot, watched.seq, undefined)
    assert.isFalse(global.apply(eventOf(record("s2", "b", "waiting", 3))))
    assert.strictEqual(global.seqOf("s2"), 100)
  })

  it("without includeTerminal, a record that ends leaves the view", () => {
    for (const filter of [undefined, {}, { includeTerminal: false }, { sessionId: "s1" }] as const) {
      const view = new TaskView([record("s1", "a", "running", 1), record("s1", "b", "running", 2)], 2, filter)
      assert.isTrue(view.apply(eventOf(record("s1", "a", "completed", 3))), JSON.stringify(filter))
      assert.isTrue(view.apply(eventOf(record("s1", "b", "cancelled", 4))))
      assert.strictEqual(view.size, 0, JSON.stringify(filter))
      // a terminal record arriving (moved in from another session) is not held either
      assert.isFalse(view.apply(transferred(record("s1", "c", "failed", 5), "s2")))
      assert.strictEqual(view.size, 0)
      assert.strictEqual(view.seq, 5)
    }
  })

  it("with includeTerminal, a record that ends stays, in its terminal state", () => {
    const view = new TaskView([record("s1", "a", "running", 1)], 1, { includeTerminal: true })
    const done = record("s1", "a", "failed", 2)
    assert.isTrue(view.apply(eventOf(done)))
    assert.strictEqual(view.get("s1", "a"), done)
    assert.deepStrictEqual(keys(view), ["s1/a:failed"])
  })

  it("Evicted removes the named records of its session only", () => {
    const view = new TaskView(
      [
        record("s1", "a", "completed", 1),
        record("s1", "b", "failed", 2),
        record("s2", "a", "cancelled", 3),
        record("s1", "c", "running", 4)
      ],
      4,
      { includeTerminal: true }
    )
    assert.isTrue(view.apply(evicted(5, "s1", ["a", "b"])))
    assert.deepStrictEqual(keys(view), ["s2/a:cancelled", "s1/c:running"])
    // naming records the view does not hold changes nothing, but moves seq on
    assert.isFalse(view.apply(evicted(6, "s3", ["a"])))
    assert.isFalse(view.apply(evicted(7, "s1", ["a"])))
    assert.strictEqual(view.seq, 7)
    assert.deepStrictEqual(keys(view), ["s2/a:cancelled", "s1/c:running"])
  })

  it("Progress puts the record it carries: the latest message survives a re-sync", () => {
    const a = record("s1", "a", "running", 1)
    const view = new TaskView([a], 1, undefined)
    const event = progress(2, a)
    assert.isTrue(view.apply(event))
    assert.strictEqual(view.get("s1", "a"), event._tag === "Progress" ? event.record : undefined)
    assert.deepStrictEqual(view.get("s1", "a")?.progress, Option.some("half way"))
    assert.strictEqual(view.size, 1)
    assert.strictEqual(view.seq, 2)
    // a record outside the view's filter stays out
    const filtered = new TaskView([a], 2, { sessionId: "s1" })
    assert.isFalse(filtered.apply(progress(3, record("s2", "z", "running", 1))))
    assert.strictEqual(filtered.size, 1)
  })

  it("with a session filter, Transferred moves a record out of the view or into it", () => {
    const a = record("s1", "a", "running", 1)
    const view = new TaskView([a], 2, { sessionId: "s1" })
    // out: a is now in s2
    assert.isTrue(view.apply(transferred(record("s2", "a", "running", 3), "s1")))
    assert.isUndefined(view.get("s1", "a"))
    assert.isUndefined(view.get("s2", "a"))
    assert.strictEqual(view.size, 0)
    // in: b comes from s3
    const b = record("s1", "b", "waiting", 4)
    assert.isTrue(view.apply(transferred(b, "s3")))
    assert.strictEqual(view.get("s1", "b"), b)
    assert.deepStrictEqual(keys(view), ["s1/b:waiting"])
    // a record registered in another session is not held
    assert.isFalse(view.apply(registered(record("s2", "c", "pending", 5))))
    assert.strictEqual(view.size, 1)
  })

  it("without a session filter, Transferred re-keys the record", () => {
    const view = new TaskView([record("s1", "a", "running", 1)], 1, undefined)
    const moved = record("s2", "a", "running", 2)
    assert.isTrue(view.apply(transferred(moved, "s1")))
    assert.isUndefined(view.get("s1", "a"))
    assert.strictEqual(view.get("s2", "a"), moved)
    assert.strictEqual(view.size, 1)
  })

  it("a transfer onto a terminal record of the same id replaces it", () => {
    const view = new TaskView(
      [record("s2", "a", "completed", 1), record("s1", "a", "running", 2)],
      2,
      { includeTerminal: true }
    )
    const moved = record("s2", "a", "running", 3)
    assert.isTrue(view.apply(transferred(moved, "s1")))
    assert.strictEqual(view.size, 1)
    assert.strictEqual(view.get("s2", "a"), moved)
  })

  it("with a kind filter, records of other kinds are not held", () => {
    const view = new TaskView([], 0, { kind: "observer" })
    assert.isFalse(view.apply(registered(record("s1", "a", "pending", 1, { kind: "monitor" }))))
    assert.isTrue(view.apply(registered(record("s1", "b", "pending", 2, { kind: "observer" }))))
    assert.deepStrictEqual(keys(view), ["s1/b:pending"])
  })

  it("Lagged makes the view stale and changes nothing else", () => {
    const a = record("s1", "a", "running", 1)
    const view = new TaskView([a], 1, undefined)
    assert.isFalse(view.apply(lagged(3)))
    assert.isTrue(view.stale)
    assert.strictEqual(view.seq, 1)
    assert.deepStrictEqual(view.records(), [a])
    // later events still fold in; the view stays stale
    assert.isTrue(view.apply(eventOf(record("s1", "a", "waiting", 5))))
    assert.strictEqual(view.get("s1", "a")?.state, "waiting")
    assert.isTrue(view.stale)
  })

  it("records() is oldest first by createdAt, whatever order the snapshot and events came in", () => {
    const c = record("s1", "c", "running", 1, { createdAt: 3_000 })
    const a = record("s2", "a", "running", 2, { createdAt: 1_000 })
    const view = new TaskView([c, a], 2, undefined)
    assert.deepStrictEqual(view.records(), [a, c])
    const d = record("s3", "d", "pending", 3, { createdAt: 4_000 })
    const b = record("s1", "b", "pending", 4, { createdAt: 2_000 })
    assert.isTrue(view.apply(registered(d)))
    assert.isTrue(view.apply(registered(b)))
    assert.deepStrictEqual(view.records(), [a, b, c, d])
    // a transfer keeps createdAt, so the record keeps its place
    const movedA = record("s3", "a", "running", 5, { createdAt: 1_000 })
    view.apply(transferred(movedA, "s2"))
    assert.deepStrictEqual(view.records(), [movedA, b, c, d])
  })

  it.effect("through a host: watch({ sessionId }) folded is list({ sessionId })", () =>
    Effect.gen(function*() {
      const { close, host } = yield* makeTestHost({ retention: { maxTerminal: 2 } })
      const sessionId = "s1"
      const filter: TaskFilter = { sessionId }
      const reg = (session: string, id: string) =>
        host.register({ scope: { sessionId: session }, id, kind: "monitor", producer: "test" }).pipe(
          Effect.andThen(TestClock.adjust("1 second"))
        )
      // before the watch
      yield* reg("s1", "before-live")
      yield* reg("s1", "before-done")
      yield* host.complete("before-done", { state: "completed" })
      yield* reg("s2", "elsewhere")

      const scope = yield* Scope.make()
      const watched = yield* host.watch(filter).pipe(Scope.provide(scope))
      assert.deepStrictEqual(watched.filter, filter)
      assert.deepStrictEqual(watched.snapshot.map((r) => r.id), ["before-live"])
      assert.strictEqual(watched.seq, (yield* host.stats).seq)
      const reader = yield* Effect.forkDetach(Stream.runCollect(watched.events))

      // after it: records come, change, move in and out, end and are evicted
      yield* reg("s1", "x")
      yield* host.update("x", { state: "running", progress: "started" })
      yield* reg("s2", "y")
      yield* host.transfer("y", { sessionId: "s1" }) // in
      yield* host.transfer("before-live", { sessionId: "s2" }) // out
      yield* host.transfer("before-live", { sessionId: "s1" }) // and back
      yield* host.update("y", { state: "waiting" })
      yield* host.requestCancel("x", "enough")
      yield* host.registerExternal("s1", spec("ext"), Effect.void)
      yield* host.spawnManaged("s1", spec("managed"), Effect.never)
      yield* TestClock.adjust("1 second")
      yield* host.cancelManaged("s1", "managed")
      yield* host.complete("x", { state: "cancelled" })
      yield* host.complete("elsewhere", { state: "failed" }) // evicts the oldest terminal: before-done
      yield* host.unregisterExternal("s1", "ext")
      yield* reg("s1", "before-done") // the id again, live this time

      const expected = yield* host.list(filter)
      const seq = (yield* host.stats).seq
      yield* Scope.close(scope, Exit.void)
      const events = yield* Fiber.join(reader)

      assert.isFalse(events.some((e) => e._tag === "Lagged"))
      const view = TaskView.fromWatch(watched)
      for (const event of events) view.apply(event)
      assert.isFalse(view.stale)
      assert.strictEqual(view.seq, seq)
      // every createdAt differs here, so the order is list's order too
      assert.deepStrictEqual(view.records(), expected)
      assert.deepStrictEqual(
        expected.map((r) => `${r.id}:${r.state}`),
        ["before-live:pending", "y:waiting", "before-done:pending"]
      )
      yield* close
    }))
})
