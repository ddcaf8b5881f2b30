/**
 * The event hub on its own: bounded buffers, exact `Lagged` counts, filters,
 * and the end of a stream.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import type { BackgroundTaskEvent, SubscriptionEvent, TaskKind } from "../../src/index.ts"
import { EventHub } from "../../src/internal/eventHub.ts"

const progress = (seq: number, sessionId = "s1", kind: TaskKind = "monitor"): BackgroundTaskEvent => ({
  _tag: "Progress",
  seq,
  taskId: `t${seq}`,
  sessionId,
  kind,
  message: String(seq)
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

describe("EventHub", () => {
  it.effect("a subscriber attached after seq n never gets events up to n, even published later", () =>
    Effect.gen(function*() {
      const hub = new EventHub(16)
      // a durable host publishes a batch once committed: seq 3..5 may arrive after a watch at seq 5
      const subscription = hub.attach(undefined, 5)!
      const reader = yield* Effect.forkChild(readUntil(subscription.stream, 8))
      for (const seq of range(3, 8)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* Fiber.join(reader)), [6, 7, 8])
    }))

  it.effect("a reader that keeps up gets every event, in order, without Lagged", () =>
    Effect.gen(function*() {
      const hub = new EventHub(4)
      const subscription = hub.attach(undefined)!
      const reader = yield* Effect.forkChild(readUntil(subscription.stream, 100))
      for (const seq of range(1, 100)) {
        hub.publish(progress(seq))
        // let the reader run after every 3 events: never more than 4 are waiting
        if (seq % 3 === 0) yield* Effect.yieldNow
      }
      assert.deepStrictEqual(seqs(yield* Fiber.join(reader)), range(1, 100))
    }))

  it.effect("a reader that never reads holds at most its buffer, through 1,000,000 events", () =>
    Effect.gen(function*() {
      const capacity = 4_096
      const hub = new EventHub(capacity)
      const idle = hub.attach(undefined)!
      let largest = 0
      for (const seq of range(1, 1_000_000)) {
        hub.publish(progress(seq))
        if (idle.size > largest) largest = idle.size
      }
      assert.strictEqual(largest, capacity)
      // what it reads then: one Lagged for exactly the dropped events, then the newest ones
      const read = yield* readUntil(idle.stream, 1_000_000)
      assert.deepStrictEqual(seqs(read), [`lagged:${1_000_000 - capacity}`, ...range(1_000_000 - capacity + 1, 1_000_000)])
    }))

  it.effect("after a Lagged the reader continues with newer events, and lags again only if it falls behind again", () =>
    Effect.gen(function*() {
      const hub = new EventHub(3)
      const subscription = hub.attach(undefined)!
      const pull = subscription.pull
      for (const seq of range(1, 10)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* pull), ["lagged:7", 8, 9, 10])
      hub.publish(progress(11))
      hub.publish(progress(12))
      assert.deepStrictEqual(seqs(yield* pull), [11, 12])
      for (const seq of range(13, 17)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* pull), ["lagged:2", 15, 16, 17])
    }))

  it.effect("a filtered reader's buffer holds only matching events, and skipped counts only those", () =>
    Effect.gen(function*() {
      const hub = new EventHub(2)
      const mine = hub.attach({ sessionId: "s1" })!
      const monitors = hub.attach({ kind: "monitor" })!
      // 10 events, every other one in s1; kinds alternate in pairs
      for (const seq of range(1, 10)) {
        hub.publish(progress(seq, seq % 2 === 0 ? "s1" : "s2", seq % 4 < 2 ? "monitor" : "observer"))
      }
      // s1 events: 2, 4, 6, 8, 10 — the 3 oldest dropped
      assert.deepStrictEqual(seqs(yield* mine.pull), ["lagged:3", 8, 10])
      // monitor events: 1, 4, 5, 8, 9 — the 3 oldest dropped
      assert.deepStrictEqual(seqs(yield* monitors.pull), ["lagged:3", 8, 9])
    }))

  it.effect("Transferred reaches a reader of the old session as well as the new one", () =>
    Effect.gen(function*() {
      const hub = new EventHub(10)
      const old = hub.attach({ sessionId: "old" })!
      const other = hub.attach({ sessionId: "elsewhere" })!
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
    }))

  it.effect("closing lets every reader drain what was published, then ends its stream", () =>
    Effect.gen(function*() {
      const hub = new EventHub(10)
      const waiting = hub.attach(undefined)!
      const reader = yield* Effect.forkChild(Stream.runCollect(waiting.stream))
      yield* Effect.yieldNow // the reader is now waiting for events
      const late = hub.attach(undefined)!
      hub.publish(progress(1))
      hub.publish(progress(2))
      hub.close()
      assert.deepStrictEqual(seqs(yield* Fiber.join(reader)), [1, 2])
      assert.deepStrictEqual(seqs(yield* Stream.runCollect(late.stream)), [1, 2])
      // nothing more is delivered, and no one can subscribe any more
      hub.publish(progress(3))
      assert.isUndefined(hub.attach(undefined))
      assert.strictEqual(hub.subscriberCount, 0)
    }))

  it.effect("a detached reader gets nothing more, and its stream ends after what it held", () =>
    Effect.gen(function*() {
      const hub = new EventHub(10)
      const subscription = hub.attach(undefined)!
      hub.publish(progress(1))
      hub.detach(subscription)
      hub.publish(progress(2))
      assert.strictEqual(hub.subscriberCount, 0)
      assert.deepStrictEqual(seqs(yield* Stream.runCollect(subscription.stream)), [1])
    }))

  it.effect("an interrupted reader leaves the subscription usable", () =>
    Effect.gen(function*() {
      const hub = new EventHub(10)
      const subscription = hub.attach(undefined)!
      const first = yield* Effect.forkChild(Stream.runCollect(subscription.stream))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      hub.publish(progress(1))
      assert.deepStrictEqual(seqs(yield* subscription.pull), [1])
    }))
})
