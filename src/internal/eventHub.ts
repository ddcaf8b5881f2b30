/**
 * The host's event hub: a bounded buffer per subscriber, written to
 * synchronously from inside the registry's atomic steps, read by a Stream.
 *
 * Publishing never waits: it appends the event to the buffer of each
 * subscriber whose filter matches. A full buffer drops its oldest event and
 * counts it; the reader then gets one `Lagged { skipped }` in place of the
 * dropped events, followed by the newer ones. The dropped events are always
 * the ones right after what the reader last took, so `skipped` is exact and
 * the gap is exactly where `Lagged` stands.
 *
 * A reader takes everything buffered in one pull (one chunk), so a fast
 * reader costs the publisher an array push per event, and an idle one the
 * same until its buffer is full. Closing the hub lets every reader drain what
 * was published before, then ends its stream.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Pull from "effect/Pull"
import * as Stream from "effect/Stream"
import {
  type BackgroundTaskEvent,
  matchesEvent,
  type SubscriptionEvent,
  type TaskFilter
} from "../BackgroundTask.ts"

/** Runs `f` once the current synchronous step (and the fiber running it) has given way. */
export const afterStep = (f: () => void): void => queueMicrotask(f)

type Chunk = readonly [SubscriptionEvent, ...Array<SubscriptionEvent>]

/** One subscriber's buffer. */
export class Subscription {
  /** `undefined`: every event. */
  readonly filter: TaskFilter | undefined
  readonly capacity: number
  /** Events up to this `seq` are not this subscriber's (they came before it). */
  readonly after: number
  /**
   * The buffered events: a plain array while it holds fewer than `capacity`;
   * once full, a ring whose oldest event is at `start` (each new event
   * overwrites the oldest, which is counted in `skipped`).
   */
  private items: Array<BackgroundTaskEvent> = []
  private start = 0
  private skipped = 0
  private ended = false
  private wake: ((effect: Effect.Effect<void>) => void) | undefined = undefined

  constructor(filter: TaskFilter | undefined, capacity: number, after: number) {
    this.filter = filter === undefined || (filter.sessionId === undefined && filter.kind === undefined)
      ? undefined
      : filter
    this.capacity = capacity
    this.after = after
  }

  push(event: BackgroundTaskEvent): void {
    if (this.items.length < this.capacity) {
      this.items.push(event)
    } else {
      // full: the newest takes the oldest's place
      this.items[this.start] = event
      this.start = this.start + 1 === this.capacity ? 0 : this.start + 1
      this.skipped++
    }
    this.notify()
  }

  /** No event after this one; the reader drains what is buffered, then ends. */
  end(): void {
    this.ended = true
    this.notify()
  }

  /** Events buffered now; for tests and stats. */
  get size(): number {
    return this.items.length
  }

  /** Everything buffered, `Lagged` first when events were dropped; `undefined` when empty. */
  private takeAll(): Chunk | undefined {
    if (this.items.length === 0 && this.skipped === 0) return undefined
    const items = this.items
    const events: Array<SubscriptionEvent> = this.start === 0
      ? items
      : items.slice(this.start).concat(items.slice(0, this.start))
    this.items = []
    this.start = 0
    if (this.skipped === 0) return events as unknown as Chunk
    const lagged: SubscriptionEvent = { _tag: "Lagged", skipped: this.skipped }
    this.skipped = 0
    return [lagged, ...events]
  }

  private notify(): void {
    const wake = this.wake
    if (wake === undefined) return
    this.wake = undefined
    // resuming a fiber runs it at once, inside the caller's stack: the reader
    // must run after the step that published, never in the middle of it
    afterStep(() => wake(Effect.void))
  }

  /** Waits for the next push or the end. */
  private readonly waitForMore: Effect.Effect<void> = Effect.callback<void>((resume) => {
    this.wake = resume
    return Effect.sync(() => {
      if (this.wake === resume) this.wake = undefined
    })
  })

  readonly pull: Pull.Pull<Chunk, never, void> = Effect.suspend(() => {
    const chunk = this.takeAll()
    if (chunk !== undefined) return Effect.succeed(chunk)
    if (this.ended) return Cause.done()
    return Effect.flatMap(this.waitForMore, () => this.pull)
  })

  /** The subscriber's stream; run it once. */
  readonly stream: Stream.Stream<SubscriptionEvent> = Stream.fromPull(Effect.succeed(this.pull))
}

export class EventHub {
  private readonly subscribers = new Set<Subscription>()
  private closed = false
  readonly capacity: number

  constructor(capacity: number) {
    this.capacity = capacity
  }

  /** Publishes one event; never waits. Call it only from a synchronous step. */
  publish(event: BackgroundTaskEvent): void {
    for (const subscriber of this.subscribers) {
      if (event.seq <= subscriber.after) continue
      if (subscriber.filter === undefined || matchesEvent(subscriber.filter, event)) subscriber.push(event)
    }
  }

  /**
   * A new subscriber, for the events after `after` (the registry's last
   * `seq`: with a durable store, events reach the hub once committed, so
   * some up to `after` may still come); `undefined` once the hub has closed.
   */
  attach(filter: TaskFilter | undefined, after = 0): Subscription | undefined {
    if (this.closed) return undefined
    const subscriber = new Subscription(filter, this.capacity, after)
    this.subscribers.add(subscriber)
    return subscriber
  }

  /** Stops delivering to a subscriber; its stream ends after what it holds. */
  detach(subscriber: Subscription): void {
    if (this.subscribers.delete(subscriber)) subscriber.end()
  }

  /** Ends every subscriber's stream after the events already published. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const subscriber of this.subscribers) subscriber.end()
    this.subscribers.clear()
  }

  get subscriberCount(): number {
    return this.subscribers.size
  }
}
