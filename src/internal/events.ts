/**
 * The host's events as a PubSub-driven `Stream`.
 *
 * Owns: the host's one `PubSub` of events, its backing store (a bounded,
 * filtered buffer per subscriber) and its strategy (wake readers after the
 * publishing step), and the subscriptions read through
 * `Stream.fromSubscription`. Calls nothing but `state.ts`'s `afterStep`.
 *
 * Why a store and a strategy of our own: the stock ones fall short of what
 * the host promises. Each subscriber's buffer holds only the events matching
 * its filter, so a busy session cannot push a quiet one's events out; when
 * it is full the oldest is dropped and counted, and the reader gets one
 * `Lagged { skipped }` (exact, counting only matching events) in place of the
 * dropped ones, then the newer ones. Publishing never waits (the store always
 * accepts). A reader is never resumed inside the step that published: the
 * strategy wakes waiting readers once, after the step, and a woken reader
 * takes everything buffered in one pull. Closing the hub, or a
 * subscription's scope, ends the buffer: it takes nothing more, the reader
 * drains what it holds, then the subscription shuts down and its stream
 * ends, as any `PubSub` subscription's does.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as MutableList from "effect/MutableList"
import * as MutableRef from "effect/MutableRef"
import * as PubSub from "effect/PubSub"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BackgroundTaskEvent, matchesEvent, type SubscriptionEvent } from "../TaskEvent.ts"
import { type TaskFilter } from "../BackgroundTask.ts"
import { afterStep } from "./state.ts"

type Item = SubscriptionEvent

/**
 * One subscriber's buffer: the backing subscription of its `PubSub`
 * subscription. It takes no event until it is activated (in the step that
 * also reads the snapshot it continues).
 */
export class EventBuffer implements PubSub.PubSub.BackingSubscription<Item> {
  /** `undefined`: every event. */
  private filter: TaskFilter | undefined = undefined
  /** The event `_tag`s it takes; `undefined`: every one. */
  private types: ReadonlySet<string> | undefined = undefined
  capacity = 1
  /** Events up to this `seq` are not this subscriber's (they came before it). */
  private after = 0
  /**
   * The buffered events: `items[head..]` while it holds fewer than
   * `capacity` (a poll of one event moves `head`); once full, a ring whose
   * oldest event is at `start` (each new event overwrites the oldest, which
   * is counted in `skipped`).
   */
  private items: Array<BackgroundTaskEvent> = []
  private head = 0
  private start = 0
  private skipped = 0
  /** No event after what it holds: once drained, its subscription shuts down and its stream ends. */
  private ended = false
  /** Shuts the subscription down (set by the hub when it subscribes). */
  onDrained: (() => void) | undefined = undefined
  private readonly store: EventStore

  constructor(store: EventStore) {
    this.store = store
  }

  /** Starts taking the matching events (of `types`, when given) after `after`. */
  activate(filter: TaskFilter | undefined, capacity: number, after: number, types?: ReadonlySet<string>): void {
    if (this.ended) return
    this.types = types
    this.filter = filter === undefined || (filter.sessionId === undefined && filter.kind === undefined)
      ? undefined
      : filter
    this.capacity = capacity
    this.after = after
    this.store.add(this)
  }

  /** Buffers one published event, if it is this subscriber's. */
  offer(event: BackgroundTaskEvent): void {
    if (event.seq <= this.after || (this.filter !== undefined && !matchesEvent(this.filter, event))) return
    if (this.types !== undefined && !this.types.has(event._tag)) return
    if (this.items.length - this.head < this.capacity) {
      this.items.push(event)
    } else {
      // full: the newest takes the oldest's place (a ring from here on)
      if (this.head > 0) {
        this.items = this.items.slice(this.head)
        this.head = 0
      }
      this.items[this.start] = event
      this.start = this.start + 1 === this.capacity ? 0 : this.start + 1
      this.skipped++
    }
  }

  /** Takes no event any more; the reader drains what is held, then its stream ends. */
  end(): void {
    if (this.ended) return
    this.ended = true
    this.store.remove(this)
    if (this.isEmpty()) this.drain()
  }

  /** Ended and empty: the subscription shuts down (a waiting reader's stream ends). */
  private drain(): void {
    const onDrained = this.onDrained
    this.onDrained = undefined
    onDrained?.()
  }

  isEmpty(): boolean {
    return this.items.length === this.head && this.skipped === 0
  }

  /** Events buffered now (what was dropped not counted). */
  get buffered(): number {
    return this.items.length - this.head
  }

  size(): number {
    return this.items.length - this.head + (this.skipped > 0 ? 1 : 0)
  }

  poll(): Item | MutableList.Empty {
    if (this.skipped > 0) {
      const lagged: SubscriptionEvent = { _tag: "Lagged", skipped: this.skipped }
      this.skipped = 0
      return lagged
    }
    if (this.items.length === this.head) return MutableList.Empty
    if (this.start !== 0) {
      // a ring read from its oldest: back to a plain array first
      this.items = this.items.slice(this.start).concat(this.items.slice(0, this.start))
      this.start = 0
    }
    const event = this.items[this.head++]!
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    }
    // (an ended buffer drains on the reader's next pull, never here: the poller must get this event first)
    return event
  }

  /** Everything buffered (`n` is always unbounded here: readers take all), `Lagged` first when events were dropped. */
  pollUpTo(n: number): Array<Item> {
    if (n < this.size()) return pollSome(this, n)
    const items = this.items
    const events: Array<Item> = this.start !== 0
      ? items.slice(this.start).concat(items.slice(0, this.start))
      : this.head === 0
      ? items
      : items.slice(this.head)
    this.items = []
    this.head = 0
    this.start = 0
    if (this.skipped > 0) {
      events.unshift({ _tag: "Lagged", skipped: this.skipped })
      this.skipped = 0
    }
    // the reader took the last of an ended buffer: its next pull finds the subscription shut down
    if (this.ended) this.drain()
    return events
  }

  unsubscribe(): void {
    this.end()
  }
}

const pollSome = (buffer: EventBuffer, n: number): Array<Item> => {
  const out: Array<Item> = []
  while (out.length < n) {
    const item = buffer.poll()
    if (item === MutableList.Empty) break
    out.push(item)
  }
  return out
}

const noReplay: PubSub.PubSub.ReplayWindow<never> = {
  take: () => undefined,
  takeN: () => [],
  takeAll: () => [],
  close: () => {},
  remaining: 0
}

/** The `PubSub`'s backing store: a buffer per active subscriber; it always accepts. */
export class EventStore implements PubSub.PubSub.Atomic<Item> {
  readonly capacity = Number.POSITIVE_INFINITY
  readonly active = new Set<EventBuffer>()
  /** The smallest capacity among the active buffers (`Infinity` without one): kept as they come and go. */
  smallest = Number.POSITIVE_INFINITY

  add(buffer: EventBuffer): void {
    this.active.add(buffer)
    if (buffer.capacity < this.smallest) this.smallest = buffer.capacity
  }

  remove(buffer: EventBuffer): void {
    if (!this.active.delete(buffer) || buffer.capacity > this.smallest) return
    let smallest = Number.POSITIVE_INFINITY
    for (const other of this.active) if (other.capacity < smallest) smallest = other.capacity
    this.smallest = smallest
  }

  isEmpty(): boolean {
    return true
  }
  isFull(): boolean {
    return false
  }
  size(): number {
    return 0
  }
  publish(value: Item): boolean {
    // the host publishes only its own events; `Lagged` exists only in a reader's buffer
    if (value._tag !== "Lagged") for (const buffer of this.active) buffer.offer(value)
    return true
  }
  publishAll(elements: Iterable<Item>): Array<Item> {
    for (const value of elements) this.publish(value)
    return []
  }
  slide(): void {}
  subscribe(): EventBuffer {
    return new EventBuffer(this)
  }
  replayWindow(): PubSub.PubSub.ReplayWindow<Item> {
    return noReplay
  }
}

/** Hands each waiting reader its next event after the publishing step, never inside it. */
export class WakeAfterStep implements PubSub.PubSub.Strategy<Item> {
  private scheduled = false
  private subscribers: PubSub.PubSub.Subscribers<Item> | undefined

  readonly shutdown: Effect.Effect<void> = Effect.void

  handleSurplus(): Effect.Effect<boolean> {
    // the store accepts every event: there is never a surplus
    return Effect.succeed(true)
  }

  onPubSubEmptySpaceUnsafe(): void {}

  /** A reader registering to wait (in its own fiber): hand it what is there now. */
  completePollersUnsafe(
    _pubsub: PubSub.PubSub.Atomic<Item>,
    subscribers: PubSub.PubSub.Subscribers<Item>,
    subscription: PubSub.PubSub.BackingSubscription<Item>,
    pollers: MutableList.MutableList<Deferred.Deferred<Item>>
  ): void {
    this.subscribers = subscribers
    completePollers(subscribers, subscription, pollers)
  }

  /** A publish, inside a step: wake the waiting readers once the step is over. */
  completeSubscribersUnsafe(_pubsub: PubSub.PubSub.Atomic<Item>, subscribers: PubSub.PubSub.Subscribers<Item>): void {
    this.subscribers = subscribers
    if (subscribers.size > 0) this.wakeAfterStep()
  }

  /** Wakes the waiting readers once the current step is over (once, however many steps ask). */
  wakeAfterStep(): void {
    if (this.scheduled) return
    this.scheduled = true
    afterStep(this.wake)
  }

  /** Wakes every waiting reader that has something to take. */
  readonly wake = (): void => {
    this.scheduled = false
    const subscribers = this.subscribers
    if (subscribers === undefined) return
    for (const [subscription, pollersSet] of subscribers) {
      for (const pollers of pollersSet) completePollers(subscribers, subscription, pollers)
    }
  }
}

const completePollers = (
  subscribers: PubSub.PubSub.Subscribers<Item>,
  subscription: PubSub.PubSub.BackingSubscription<Item>,
  pollers: MutableList.MutableList<Deferred.Deferred<Item>>
): void => {
  while (!subscription.isEmpty()) {
    const poller = MutableList.take(pollers)
    if (poller === MutableList.Empty) break
    const item = subscription.poll()
    if (item === MutableList.Empty) {
      MutableList.prepend(pollers, poller)
      break
    }
    // the reader takes the rest of its buffer itself, in the same pull
    Deferred.doneUnsafe(poller, Exit.succeed(item))
  }
  if (pollers.length === 0) {
    const set = subscribers.get(subscription)
    if (set !== undefined) {
      set.delete(pollers)
      if (set.size === 0) subscribers.delete(subscription)
    }
  }
}

/** A subscription before it is activated: its stream, and the step that starts it. */
export interface PendingSubscription {
  readonly stream: Stream.Stream<SubscriptionEvent>
  /** One pull of the stream: everything buffered (waiting for at least one event); empty once ended. */
  readonly pull: Effect.Effect<ReadonlyArray<SubscriptionEvent>>
  /** Events buffered now. */
  readonly size: () => number
  /**
   * Starts taking the matching events (of `types`, when given) after `after`
   * (the registry's last `seq`); inside a step.
   */
  readonly activate: (filter: TaskFilter | undefined, capacity: number, after: number, types?: ReadonlySet<string>) => void
}

export class EventHub {
  private readonly store: EventStore
  private readonly pubsub: PubSub.PubSub<Item>
  private closed = false

  private constructor(store: EventStore, pubsub: PubSub.PubSub<Item>) {
    this.store = store
    this.pubsub = pubsub
  }

  static readonly make: Effect.Effect<EventHub> = Effect.suspend(() => {
    const store = new EventStore()
    const strategy = new WakeAfterStep()
    return Effect.map(
      PubSub.make<Item>({ atomicPubSub: () => store, strategy: () => strategy }),
      (pubsub) => new EventHub(store, pubsub)
    )
  })

  /** Publishes one event; never waits. Call it only from a synchronous step. */
  publish(event: BackgroundTaskEvent): void {
    // no subscriber: nothing to buffer, nobody to wake
    if (this.store.active.size > 0) PubSub.publishUnsafe(this.pubsub, event)
  }

  /**
   * A new subscription in the caller's scope, taking nothing until it is
   * activated. Closing the scope unsubscribes it.
   */
  subscribe(): Effect.Effect<PendingSubscription, never, Scope.Scope> {
    const hub = this
    return Effect.gen(function*() {
      // the PubSub subscription lives in a scope of its own: closing the caller's scope ends the
      // buffer (the reader drains what it holds, then its stream ends), and a drained buffer
      // closes the subscription's scope, which ends the stream as any PubSub subscription's
      const own = yield* Scope.make()
      const subscription = yield* PubSub.subscribe(hub.pubsub).pipe(Scope.provide(own))
      const buffer = subscription.subscription
      if (!(buffer instanceof EventBuffer)) return yield* Effect.die("the host's PubSub lost its backing store")
      buffer.onDrained = () => {
        // the reader's next pull sees it at once; the scope's close interrupts a waiting reader
        MutableRef.set(subscription.shutdownFlag, true)
        Effect.runFork(Scope.close(own, Exit.void))
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => buffer.end()))
      return {
        stream: Stream.fromSubscription(subscription),
        pull: PubSub.takeAll(subscription),
        size: () => buffer.buffered,
        activate: (filter, capacity, after, types) => {
          if (hub.closed) buffer.end()
          else buffer.activate(filter, capacity, after, types)
        }
      }
    })
  }

  /** Ends every subscriber's stream after the events already published. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const buffer of Array.from(this.store.active)) buffer.end()
  }

  /** The smallest buffer among the subscribers (`Infinity` without one). */
  get smallestBuffer(): number {
    return this.store.smallest
  }

  get subscriberCount(): number {
    return this.store.active.size
  }
}
