/**
 * The event hub on its own: a PubSub whose subscriptions have bounded,
 * filtered buffers, exact `Lagged` counts, and an end after a drain.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { type BackgroundTaskEvent, matchesEvent, type SubscriptionEvent, type TaskFilter, type TaskKind } from "../../src/index.ts"
import { EventHub, type PendingSubscription } from "../../src/internal/events.ts"

const progress = (seq: number, sessionId = "s1", kind: TaskKind = "monitor"): Extract<BackgroundTaskEvent, { _tag: "Progress" }> => ({
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

/** A deterministic stream of numbers (a linear congruential generator). */
const lcg = (seed: number) => {
  let state = seed >>> 0
  return (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state % n
  }
}

/**
 * What a subscriber must read, kept the simplest way: a buffer of its own
 * that every matching event enters at once, dropping (and counting) its
 * oldest when full.
 */
class ModelBuffer {
  /** Held: `items[oldest..]`. */
  private items: Array<BackgroundTaskEvent> = []
  private oldest = 0
  private skipped = 0
  private readonly filter: TaskFilter | undefined
  private readonly types: ReadonlySet<string> | undefined
  private readonly capacity: number
  constructor(filter: TaskFilter | undefined, types: ReadonlySet<string> | undefined, capacity: number) {
    this.filter = filter
    this.types = types
    this.capacity = capacity
  }
  offer(event: BackgroundTaskEvent): void {
    if (!matchesEvent(this.filter, event) || (this.types !== undefined && !this.types.has(event._tag))) return
    this.items.push(event)
    if (this.items.length - this.oldest > this.capacity) {
      // the oldest is dropped
      this.oldest++
      this.skipped++
    }
  }
  get isEmpty(): boolean {
    return this.items.length === this.oldest && this.skipped === 0
  }
  take(): Array<SubscriptionEvent> {
    const out: Array<SubscriptionEvent> = this.skipped > 0 ? [{ _tag: "Lagged", skipped: this.skipped }] : []
    for (let i = this.oldest; i < this.items.length; i++) out.push(this.items[i]!)
    this.items = []
    this.oldest = 0
    this.skipped = 0
    return out
  }
}

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

  it.effect("events up to its seq published after it attached are never counted as lost, however far behind it falls", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const plain = yield* attach(hub, undefined, 100, 50)
      const filtered = yield* attach(hub, { sessionId: "s1" }, 100, 50)
      // a durable host's batch committed after the subscription: seq 41..50 are not its own
      for (const seq of range(41, 10_050)) hub.publish(progress(seq))
      const expected = ["lagged:9900", ...range(9_951, 10_050)]
      assert.deepStrictEqual(seqs(yield* plain.pull), expected)
      assert.deepStrictEqual(seqs(yield* filtered.pull), expected)
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

  it.effect("the events every subscriber has read are let go; one that never reads keeps a bounded part", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const streamed = yield* attach(hub, undefined, 1_000_000)
      const pulled = yield* attach(hub, { sessionId: "s1" }, 1_000_000)
      let read = 0
      const reader = yield* Effect.forkChild(
        streamed.stream.pipe(Stream.runForEach(() => Effect.sync(() => read++)))
      )
      yield* Effect.yieldNow
      // readers that keep up: once both have read, the log holds nothing (batches of 100, then single events)
      for (let round = 1; round <= 20; round++) {
        const size = round <= 10 ? 100 : 1
        const first = read + 1
        for (const seq of range(first, first + size - 1)) hub.publish(progress(seq, seq % 2 === 0 || size === 1 ? "s1" : "s2"))
        assert.strictEqual(hub.logged, size)
        yield* Effect.yieldNow // the stream's reader is woken and takes them
        assert.strictEqual(read, first + size - 1)
        assert.strictEqual(hub.logged, size)
        assert.strictEqual((yield* pulled.pull).length, Math.ceil(size / 2))
        assert.strictEqual(hub.logged, 0)
      }
      // a subscriber that never reads (and one whose session is quiet): the log stays bounded meanwhile
      const idle = yield* attach(hub, undefined, 4_096)
      const quiet = yield* attach(hub, { sessionId: "s3" }, 4_096)
      hub.publish(progress(1_011, "s3"))
      let largest = 0
      for (const seq of range(1_012, 200_000)) {
        hub.publish(progress(seq, seq % 2 === 0 ? "s1" : "s2"))
        if (hub.logged > largest) largest = hub.logged
        if (seq % 1_000 === 0) {
          yield* Effect.yieldNow
          yield* pulled.pull
        }
      }
      assert.isAtMost(largest, 4_096 + 1_024)
      yield* Fiber.interrupt(reader)
      assert.deepStrictEqual(seqs(yield* quiet.pull), [1_011])
      assert.deepStrictEqual(seqs(yield* idle.pull), [`lagged:${200_000 - 1_010 - 4_096}`, ...range(200_000 - 4_095, 200_000)])
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

  it.effect("what a subscriber already held and what was published since count together against its buffer", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      const plain = yield* attach(hub, undefined, 3)
      const filtered = yield* attach(hub, { kind: "monitor" }, 3)
      hub.publish(progress(1))
      hub.publish(progress(2))
      // reading its size moves what it has into a buffer of its own
      assert.strictEqual(plain.size(), 2)
      assert.strictEqual(filtered.size(), 2)
      for (const seq of range(3, 7)) hub.publish(progress(seq))
      assert.deepStrictEqual(seqs(yield* plain.pull), ["lagged:4", 5, 6, 7])
      assert.deepStrictEqual(seqs(yield* filtered.pull), ["lagged:4", 5, 6, 7])
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

  it.effect("a session's reader takes its run of events up to the first of another session, then only its own", () =>
    Effect.gen(function*() {
      const hub = yield* EventHub.make
      // attached after seq 2: events up to 2, published late, are not its own
      const mine = yield* attach(hub, { sessionId: "s1" }, 100, 2)
      for (const seq of [3, 4, 1, 5, 6]) hub.publish(progress(seq, "s1"))
      hub.publish(progress(7, "s2"))
      hub.publish(progress(8, "s1"))
      hub.publish({
        _tag: "Transferred",
        seq: 9,
        taskId: "t",
        sessionId: "s2",
        kind: "monitor",
        scope: { sessionId: "s2" },
        fromSessionId: "s1",
        record: {} as never // not read by the hub
      })
      hub.publish(progress(10, "s2"))
      hub.publish(progress(11, "s1"))
      assert.deepStrictEqual(seqs(yield* mine.pull), [3, 4, 5, 6, 8, 9, 11])
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

  it.effect("every reader gets what a buffer of its own would hold, however far behind it falls and whoever else reads", () =>
    Effect.gen(function*() {
      // 12,000 events in three sessions, kinds and tags, read by subscribers with every kind of filter and
      // capacity, each at its own pace (every few events, every few thousand, once at the end, never); a
      // subscriber joins or leaves now and then; each pull is compared with a buffer of its own
      const next = lcg(20261205)
      const hub = yield* EventHub.make
      const sessions = ["s1", "s2", "s3"]
      const kinds: ReadonlyArray<TaskKind> = ["monitor", "observer", "subagent"]
      const filters: ReadonlyArray<TaskFilter | undefined> = [
        undefined,
        { sessionId: "s1" },
        { kind: "observer" },
        { sessionId: "s3", kind: "subagent" }
      ]
      const typeSets: ReadonlyArray<ReadonlySet<string> | undefined> = [undefined, new Set(["StateChanged", "Transferred"])]
      const capacities = [1, 3, 100, 5_000, 1_000_000_000]
      const paces = [10, 100, 1_500, 6_000, Number.POSITIVE_INFINITY]
      interface Reader {
        readonly scope: Scope.Closeable
        readonly subscription: PendingSubscription
        readonly model: ModelBuffer
        readonly pace: number
      }
      const readers: Array<Reader> = []
      let seq = 0
      let pulls = 0
      let lagged = 0
      const join = (filter: TaskFilter | undefined, types: ReadonlySet<string> | undefined, capacity: number, pace: number) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const subscription = yield* hub.subscribe().pipe(Scope.provide(scope))
          subscription.activate(filter, capacity, seq, types)
          readers.push({ scope, subscription, model: new ModelBuffer(filter, types, capacity), pace })
        })
      const joinAny = Effect.suspend(() =>
        join(
          filters[next(filters.length)],
          typeSets[next(typeSets.length)],
          capacities[next(capacities.length)]!,
          paces[next(paces.length)]!
        )
      )
      const read = (reader: Reader) =>
        Effect.gen(function*() {
          if (reader.model.isEmpty) {
            assert.strictEqual(reader.subscription.size(), 0)
            return
          }
          const got = yield* reader.subscription.pull
          const expected = reader.model.take()
          pulls++
          if (expected[0]?._tag === "Lagged") lagged++
          // (compared as text: tens of thousands of pulls)
          assert.strictEqual(seqs(got).join(), seqs(expected).join())
        })
      // every filter, types and capacity, read often and seldom
      for (const filter of filters) {
        for (const types of typeSets) {
          for (const capacity of capacities) {
            yield* join(filter, types, capacity, paces[next(2)]!)
            yield* join(filter, types, capacity, paces[2 + next(3)]!)
          }
        }
      }
      for (let step = 0; step < 12_000; step++) {
        seq++
        const session = sessions[next(sessions.length)]!
        const kind = kinds[next(kinds.length)]!
        const roll = next(10)
        const event: BackgroundTaskEvent = roll === 0
          ? {
            _tag: "Transferred",
            seq,
            taskId: `t${seq}`,
            sessionId: session,
            kind,
            scope: { sessionId: session },
            fromSessionId: sessions[next(sessions.length)]!,
            record: progress(seq, session, kind).record
          }
          : roll < 4
          ? { ...progress(seq, session, kind), _tag: "StateChanged", state: "running" } as BackgroundTaskEvent
          : progress(seq, session, kind)
        hub.publish(event)
        for (const reader of readers) reader.model.offer(event)
        for (const reader of readers) if (next(reader.pace) === 0) yield* read(reader)
        if (next(1_500) === 0) yield* joinAny
        if (next(1_500) === 0) {
          // a reader leaves: its stream gives what it held, then ends
          const [gone] = readers.splice(next(readers.length), 1)
          yield* Scope.close(gone!.scope, Exit.void)
          const rest = yield* Stream.runCollect(gone!.subscription.stream)
          assert.deepStrictEqual(seqs(rest), seqs(gone!.model.take()))
        }
      }
      for (const reader of readers) yield* read(reader)
      // the run exercised what it claims to
      assert.isAbove(pulls, 1_000)
      assert.isAbove(lagged, 100)
    }).pipe(Effect.scoped))
})
