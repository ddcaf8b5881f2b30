/**
 * The event hub on its own: a PubSub whose subscriptions have bounded,
 * filtered buffers, exact `Lagged` counts, and an end after a drain.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Fiber, Option, Scope, Stream } from "effect"
import type { BackgroundTaskEvent, SubscriptionEvent, TaskFilter, TaskKind } from "../../src/index.ts"
import { EventHub } from "../../src/internal/events.ts"

const progress = (seq: number, sessionId = "s1", kind: TaskKind = "monitor"): BackgroundTaskEvent => ({
  _tag: "Progress",
  seq,
  taskId: `t${seq}`,
  sessionId,
  kind,
  message: String(seq),
  record: {
    id: `t${seq}`,
    kind,
    producer: "test",
    scope: { sessionId },
    parentTaskId: Option.none(),
    childSessionId: Option.none(),
    state: "running",
    cancelPolicy: "cooperative",
    closePolicy: "keep",
    attempt: { attempt: 0, maxAttempts: Option.none(), idempotencyKey: Option.none() },
    result: Option.none(),
    failure: Option.none(),
    createdAt: DateTime.makeUnsafe(0),
    updatedAt: DateTime.makeUnsafe(0),
    completedAt: Option.none(),
    progress: Option.some(String(seq)),
    revision: seq
  }
})

const seqs = (events: ReadonlyArray<SubscriptionEvent>) =>
  events.map((event) => event._tag === "Lagged" ? `lagged:${event.skipped}` : event.seq)

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Reads what the stream delivers up to (and including) the event `last`. */
const readUntil = (stream: Stream.Stream<SubscriptionEvent>, last: number) =>
  stream.pipe(
    Stream.takeUntil((event) => event._tag !== "Lagged" && event.seq >= last),
    Stream.runCollect
  )

/** A subscription in the current scope, taking the matching events after `after`. */
const attach = (hub: EventHub, filter: TaskFilter | undefined, capacity: number, after = 0) =>
  Effect.map(hub.subscribe(), (subscription) => {
    subscription.activate(filter, capacity, after)
    return subscription
  })

describe("EventHub", () => {
  it.effect("a subscriber attached after seq n never gets events up to n, even published later", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      // a durable host publishes a batch once committed: seq 3..5 may arrive after a watch at seq 5
      const subscription = yield* attach(hub, undefined, 16, 5)
      const reader = yield* Effect.forkChild(readUntil(subscription.stream, 8))
      for (const seq of range(3, 8)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* Fiber.join(reader)), [6, 7, 8])
    }).pipe(Effect.scoped))

  it.effect("a reader that keeps up gets every event, in order, without Lagged", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const subscription = yield* attach(hub, undefined, 4)
      const reader = yield* Effect.forkChild(readUntil(subscription.stream, 100))
      for (const seq of range(1, 100)) {
        hub.publish(progress(seq))
        // let the reader run after every 3 events: never more than 4 are waiting
        if (seq % 3 === 0) yield* Effect.yieldNow
      }
      assert.deepStrictEqual(seqs(yield* Fiber.join(reader)), range(1, 100))
    }).pipe(Effect.scoped))

  it.effect("a reader is never resumed inside the publishing step", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const subscription = yield* attach(hub, undefined, 16)
      const seen: Array<number> = []
      const reader = yield* Effect.forkChild(
        subscription.stream.pipe(
          Stream.take(3),
          Stream.runForEach((event) => Effect.sync(() => seen.push(event._tag === "Lagged" ? -1 : event.seq)))
        )
      )
      yield* Effect.yieldNow // the reader is now waiting
      // one synchronous step publishes three events: the reader sees none of them during it
      const during = yield* Effect.sync(() => {
        for (const seq of range(1, 3)) hub.publish(progress(seq))
        return seen.length
      })
      assert.strictEqual(during, 0)
      yield* Fiber.join(reader)
      assert.deepStrictEqual(seen, [1, 2, 3])
    }).pipe(Effect.scoped))

  it.effect("a reader that never reads holds at most its buffer, through 1,000,000 events", () =>
    Effect.gen(function*() {
      const capacity = 4_096
      const hub = yield* EventHub.make
      const idle = yield* attach(hub, undefined, capacity)
      let largest = 0
      for (const seq of range(1, 1_000_000)) {
        hub.publish(progress(seq))
        const size = idle.size()
        if (size > largest) largest = size
      }
      assert.strictEqual(largest, capacity)
      // what it reads then: one Lagged for exactly the dropped events, then the newest ones
      const read = yield* readUntil(idle.stream, 1_000_000)
      assert.deepStrictEqual(seqs(read), [`lagged:${1_000_000 - capacity}`, ...range(1_000_000 - capacity + 1, 1_000_000)])
    }).pipe(Effect.scoped))

  it.effect("after a Lagged the reader continues with newer events, and lags again only if it falls behind again", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const subscription = yield* attach(hub, undefined, 3)
      const pull = subscription.pull
      for (const seq of range(1, 10)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* pull), ["lagged:7", 8, 9, 10])
      hub.publish(progress(11))
      hub.publish(progress(12))
      assert.deepStrictEqual(seqs(yield* pull), [11, 12])
      for (const seq of range(13, 17)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* pull), ["lagged:2", 15, 16, 17])
    }).pipe(Effect.scoped))

  it.effect("a filtered reader's buffer holds only matching events, and skipped counts only those", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const mine = yield* attach(hub, { sessionId: "s1" }, 2)
      const monitors = yield* attach(hub, { kind: "monitor" }, 2)
      // 10 events, every other one in s1; kinds alternate in pairs
      for (const seq of range(1, 10)) {
        hub.publish(progress(seq, seq % 2 === 0 ? "s1" : "s2", seq % 4 < 2 ? "monitor" : "observer"))
      }
      // s1 events: 2, 4, 6, 8, 10 — the 3 oldest dropped
      assert.deepStrictEqual(seqs(yield* mine.pull), ["lagged:3", 8, 10])
      // monitor events: 1, 4, 5, 8, 9 — the 3 oldest dropped
      assert.deepStrictEqual(seqs(yield* monitors.pull), ["lagged:3", 8, 9])
    }).pipe(Effect.scoped))

  it.effect("Transferred reaches a reader of the old session as well as the new one", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const old = yield* attach(hub, { sessionId: "old" }, 10)
      const other = yield* attach(hub, { sessionId: "elsewhere" }, 10)
      const record = {} as never // not read by the hub
      hub.publish({
        _tag: "Transferred",
        seq: 1,
        taskId: "t",
        sessionId: "new",
        kind: "monitor",
        scope: { sessionId: "new" },
        fromSessionId: "old",
        record
      })
      hub.publish(progress(2, "elsewhere"))
      assert.deepStrictEqual(seqs(yield* old.pull), [1])
      assert.deepStrictEqual(seqs(yield* other.pull), [2])
    }).pipe(Effect.scoped))

  it.effect("a subscription takes nothing until it is activated", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const pending = yield* hub.subscribe()
      hub.publish(progress(1))
      assert.strictEqual(hub.subscriberCount, 0)
      pending.activate(undefined, 10, 1)
      hub.publish(progress(2))
      assert.strictEqual(hub.subscriberCount, 1)
      assert.deepStrictEqual(seqs(yield* pending.pull), [2])
    }).pipe(Effect.scoped))

  it.effect("closing lets every reader drain what was published, then ends its stream", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const waiting = yield* attach(hub, undefined, 10)
      const reader = yield* Effect.forkChild(Stream.runCollect(waiting.stream))
      yield* Effect.yieldNow // the reader is now waiting for events
      const late = yield* attach(hub, undefined, 10)
      hub.publish(progress(1))
      hub.publish(progress(2))
      hub.close()
      assert.deepStrictEqual(seqs(yield* Fiber.join(reader)), [1, 2])
      assert.deepStrictEqual(seqs(yield* Stream.runCollect(late.stream)), [1, 2])
      // nothing more is delivered, and a subscription made now ends at once, empty
      hub.publish(progress(3))
      const after = yield* attach(hub, undefined, 10)
      assert.deepStrictEqual(seqs(yield* Stream.runCollect(after.stream)), [])
      assert.strictEqual(hub.subscriberCount, 0)
    }).pipe(Effect.scoped))

  it.effect("a subscription whose scope closed gets nothing more, and its stream ends after what it held", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const scope = yield* Scope.make()
      const subscription = yield* attach(hub, undefined, 10).pipe(Scope.provide(scope))
      hub.publish(progress(1))
      yield* Scope.close(scope, undefined as never)
      hub.publish(progress(2))
      assert.strictEqual(hub.subscriberCount, 0)
      assert.deepStrictEqual(seqs(yield* Stream.runCollect(subscription.stream)), [1])
    }))

  it.effect("an interrupted reader leaves the subscription usable", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const subscription = yield* attach(hub, undefined, 10)
      const first = yield* Effect.forkChild(Stream.runCollect(subscription.stream))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      hub.publish(progress(1))
      assert.deepStrictEqual(seqs(yield* subscription.pull), [1])
    }).pipe(Effect.scoped))
})
