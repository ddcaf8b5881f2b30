/**
 * The event hub's backing store (the `events.ts` room): one log of the
 * published events shared by the subscribers, each reading from its own
 * position as if it had a bounded, filtered buffer of its own.
 *
 * Owns: the log (a ring of slots), each subscriber's position, filter,
 * capacity, own buffer and `Lagged` count. Calls nothing.
 *
 * @internal
 */
import * as MutableList from "effect/MutableList"
import type * as PubSub from "effect/PubSub"
import { type TaskFilter } from "../BackgroundTask.ts"
import { type BackgroundTaskEvent, matchesEvent, type SubscriptionEvent } from "../TaskEvent.ts"

type Item = SubscriptionEvent

/**
 * One subscriber's view of the store's shared log: the backing subscription
 * of its `PubSub` subscription. It takes no event until it is activated (in
 * the step that also reads the snapshot it continues).
 *
 * A publish costs a subscriber nothing: the event goes once into the store's
 * log, and the subscriber examines it when its reader pulls (its filter, its
 * types and `after` applied then, in one pass over what was published since
 * its last pull). What it has not examined yet is the log from `cursor` on.
 * When a subscriber falls far behind, the store has it let go of the part of
 * the log it no longer needs (`shed`), so the log stays short whoever never
 * reads: one that takes every event keeps only its newest `capacity` in the
 * log; any other moves its matching events into a buffer of its own
 * (`normalize`), at most `capacity` of them, the oldest dropped and counted.
 * Either way a pull gets the same events: the newest `capacity` of its
 * matching ones, after one `Lagged` counting exactly the matching ones
 * dropped.
 */
export class EventBuffer implements PubSub.PubSub.BackingSubscription<Item> {
  /** `undefined`: every event. */
  private filter: TaskFilter | undefined = undefined
  /** The event `_tag`s it takes; `undefined`: every one. */
  private types: ReadonlySet<string> | undefined = undefined
  /** No filter and no types: every event after `after` is its own. */
  private plain = true
  /** Its filter names only a session, and it takes every type: an event of that session is its own (the common read). */
  private session: string | undefined = undefined
  capacity = 1
  /** Events up to this `seq` are not this subscriber's (they came before it). */
  private after = 0
  /** While activated: the position in the store's log of the first event it has not examined. */
  cursor = 0
  /** In the store's set of subscribers: it has a part of the log. */
  private attached = false
  /**
   * Examined, matching, unread events moved out of the log:
   * `items[head..]` while it holds fewer than `capacity` (a poll of one event
   * moves `head`); once full, a ring whose oldest event is at `start` (each
   * new event overwrites the oldest, which is counted in `skipped`).
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
    if (this.ended || this.attached) return
    this.types = types
    this.filter = filter === undefined || (filter.sessionId === undefined && filter.kind === undefined)
      ? undefined
      : filter
    this.plain = this.filter === undefined && types === undefined
    this.session = this.filter !== undefined && this.filter.kind === undefined && types === undefined
      ? this.filter.sessionId
      : undefined
    this.capacity = capacity
    this.after = after
    this.cursor = this.store.head
    this.attached = true
    this.store.add(this)
  }

  /** Whether a published event is this subscriber's. */
  private matches(event: BackgroundTaskEvent): boolean {
    if (event.seq <= this.after) return false
    if (this.filter !== undefined && !matchesEvent(this.filter, event)) return false
    return this.types === undefined || this.types.has(event._tag)
  }

  /** Buffers one examined event of its own (the oldest dropped and counted once full). */
  private offer(event: BackgroundTaskEvent): void {
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

  /**
   * Lets go of the part of the log it no longer needs (the store found it far
   * behind). One that takes every event and holds none of its own keeps
   * reading from the log, past the events it has lost (counted, as a buffer
   * of its own would count them); any other moves its part into its own
   * buffer.
   */
  shed(): void {
    if (!this.attached) return
    if (!this.plain || this.items.length !== this.head) return this.normalize()
    const store = this.store
    const keep = store.head - this.capacity
    if (this.cursor >= keep) return
    const log = store.log
    const mask = store.mask
    let p = this.cursor
    while (p < keep && log[p & mask]!.seq <= this.after) p++
    this.skipped += keep - p
    this.cursor = keep
  }

  /** Moves its part of the log into its own buffer: then it holds no position in the log. */
  normalize(): void {
    if (!this.attached) return
    const store = this.store
    const end = store.head
    let p = this.cursor
    if (p >= end) return
    const log = store.log
    const mask = store.mask
    if (this.plain) {
      while (p < end && log[p & mask]!.seq <= this.after) p++
      if (end - p >= this.capacity) {
        // the log alone fills it: what it held and the older of these are dropped
        this.skipped += this.items.length - this.head + (end - p - this.capacity)
        this.items = store.copy(end - this.capacity, end)
        this.head = 0
        this.start = 0
      } else {
        for (; p < end; p++) this.offer(log[p & mask]!)
      }
    } else {
      for (; p < end; p++) {
        const event = log[p & mask]!
        if (this.matches(event)) this.offer(event)
      }
    }
    store.caughtUp(this)
  }

  /** Its own events not yet examined in the log: none once `cursor` reaches a matching one or the end. */
  private pendingInLog(): boolean {
    if (!this.attached) return false
    const store = this.store
    const log = store.log
    const mask = store.mask
    const end = store.head
    let p = this.cursor
    // the events it passes are not its own: it never needs them
    while (p < end && !this.matches(log[p & mask]!)) p++
    if (p < end) {
      this.cursor = p
      return true
    }
    if (this.cursor < end) store.caughtUp(this)
    return false
  }

  /** Takes no event any more; the reader drains what is held, then its stream ends. */
  end(): void {
    if (this.ended) return
    this.ended = true
    if (this.attached) {
      // what it has not examined leaves the log with it
      this.normalize()
      this.attached = false
      this.store.remove(this)
    }
    if (this.isEmpty()) this.drain()
  }

  /** Ended and empty: the subscription shuts down (a waiting reader's stream ends). */
  private drain(): void {
    const onDrained = this.onDrained
    this.onDrained = undefined
    onDrained?.()
  }

  isEmpty(): boolean {
    return this.items.length === this.head && this.skipped === 0 && !this.pendingInLog()
  }

  /** Events buffered now (what was dropped not counted). */
  get buffered(): number {
    this.normalize()
    return this.items.length - this.head
  }

  size(): number {
    this.normalize()
    return this.items.length - this.head + (this.skipped > 0 ? 1 : 0)
  }

  poll(): Item | MutableList.Empty {
    if (this.attached) {
      // nothing moved out of the log, and the log holds no more than it may: its next matching event there
      const store = this.store
      if (this.items.length === this.head && this.skipped === 0 && store.head - this.cursor <= this.capacity) {
        if (!this.pendingInLog()) return MutableList.Empty
        const event = store.log[this.cursor & store.mask]!
        if (this.cursor + 1 === store.head) store.caughtUp(this)
        else this.cursor++
        return event
      }
      this.normalize()
    }
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

  /** Everything it has (`n` is always unbounded here: readers take all), `Lagged` first when events were dropped. */
  pollUpTo(n: number): Array<Item> {
    if (n !== Number.POSITIVE_INFINITY) {
      this.normalize()
      if (n < this.size()) return pollSome(this, n)
    }
    if (this.items.length === this.head && this.skipped === 0 && this.attached) return this.takeFromLog()
    this.normalize()
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

  /** The common pull: nothing was moved out of the log, so its events are read from the log directly. */
  private takeFromLog(): Array<Item> {
    const store = this.store
    const end = store.head
    let p = this.cursor
    if (p >= end) return []
    const log = store.log
    const mask = store.mask
    let events: Array<Item>
    let dropped = 0
    if (this.plain) {
      while (p < end && log[p & mask]!.seq <= this.after) p++
      if (end - p > this.capacity) {
        dropped = end - p - this.capacity
        p = end - this.capacity
      }
      events = store.copy(p, end)
    } else {
      // commonly every one matches: then a copy of the span
      let q = p
      const session = this.session
      if (session !== undefined) {
        // the session's events after `after` are its own, as `matches` says (without its calls)
        const after = this.after
        while (q < end) {
          const event = log[q & mask]!
          if (event.sessionId !== session || event.seq <= after) break
          q++
        }
      }
      while (q < end && this.matches(log[q & mask]!)) q++
      events = store.copy(p, q)
      for (q++; q < end; q++) {
        const event = log[q & mask]!
        if (this.matches(event)) events.push(event)
      }
      if (events.length > this.capacity) {
        dropped = events.length - this.capacity
        events = events.slice(dropped)
      }
    }
    store.caughtUp(this)
    if (dropped > 0) events.unshift({ _tag: "Lagged", skipped: dropped })
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

/** The log's first ring of slots (a power of two); it doubles when full. */
const initialSlots = 1_024
/** An empty log with more slots than this goes back to `initialSlots`. */
const maxIdleSlots = 16_384
/**
 * Every `compactEvery` events published beyond what the log held after the
 * last compaction, the subscribers more than `farBehind` events behind let go
 * of what they no longer need (`EventBuffer.shed`) and the log lets go of what
 * every subscriber has examined. So a subscriber that never reads keeps at
 * most its own buffer in the log, plus up to `farBehind + compactEvery`
 * events if it is filtered.
 */
const compactEvery = 1_024
const farBehind = 4_096

/**
 * The `PubSub`'s backing store: one log of the published events shared by
 * every active subscriber, each reading from its own position; it always
 * accepts. The log is a ring of slots: the event at position `p` is in
 * `log[p & mask]`, for `base <= p < head`; a slot is emptied as soon as every
 * subscriber has examined its event.
 */
export class EventStore implements PubSub.PubSub.Atomic<Item> {
  readonly capacity = Number.POSITIVE_INFINITY
  readonly active = new Set<EventBuffer>()
  /** The smallest capacity among the active buffers (`Infinity` without one): kept as they come and go. */
  smallest = Number.POSITIVE_INFINITY
  log: Array<BackgroundTaskEvent | undefined> = new Array<BackgroundTaskEvent | undefined>(initialSlots).fill(undefined)
  mask = initialSlots - 1
  /** The oldest event the log holds. */
  base = 0
  /** The position the next published event takes. */
  head = 0
  /** The number of events held at which the log is compacted next. */
  private compactAt = compactEvery
  /** How many active subscribers have examined the whole log: once all have, it is emptied. */
  private atHead = 0

  /** A new subscriber, positioned at the head (`buffer.cursor`). */
  add(buffer: EventBuffer): void {
    this.active.add(buffer)
    this.atHead++
    if (buffer.capacity < this.smallest) this.smallest = buffer.capacity
  }

  /** `buffer` has examined the whole log (its cursor moves to the head): the last to do so empties it. */
  caughtUp(buffer: EventBuffer): void {
    buffer.cursor = this.head
    if (++this.atHead === this.active.size) this.release(this.head)
  }

  remove(buffer: EventBuffer): void {
    if (!this.active.delete(buffer)) return
    if (buffer.cursor === this.head) this.atHead--
    // the others may all have examined the whole log
    if (this.atHead === this.active.size) this.release(this.head)
    if (buffer.capacity > this.smallest) return
    let smallest = Number.POSITIVE_INFINITY
    for (const other of this.active) if (other.capacity < smallest) smallest = other.capacity
    this.smallest = smallest
  }

  /** The events at positions `from` to `to` (excluded), in a new array. */
  copy(from: number, to: number): Array<BackgroundTaskEvent> {
    const n = to - from
    if (n <= 0) return []
    const slots = this.log.length
    const first = from & this.mask
    const events = first + n <= slots
      ? this.log.slice(first, first + n)
      : this.log.slice(first).concat(this.log.slice(0, first + n - slots))
    return events as Array<BackgroundTaskEvent>
  }

  /** Lets go of the events before position `to` (every subscriber has examined them): their slots are emptied. */
  private release(to: number): void {
    if (to <= this.base) return
    if (to === this.head && this.log.length > maxIdleSlots) {
      // empty, after a burst grew it: back to a small ring
      this.log = new Array<BackgroundTaskEvent | undefined>(initialSlots).fill(undefined)
      this.mask = initialSlots - 1
    } else {
      const slots = this.log.length
      const first = this.base & this.mask
      const last = first + (to - this.base)
      if (last <= slots) this.log.fill(undefined, first, last)
      else {
        this.log.fill(undefined, first, slots)
        this.log.fill(undefined, 0, last - slots)
      }
    }
    this.base = to
    this.compactAt = this.head - to + compactEvery
  }

  /** The subscribers far behind let go of what they no longer need; the log, of what every one has examined. */
  private compact(): void {
    const far = this.head - farBehind
    let oldest = this.head
    for (const buffer of this.active) {
      if (buffer.cursor < far) buffer.shed()
      if (buffer.cursor < oldest) oldest = buffer.cursor
    }
    this.release(oldest)
    this.compactAt = this.head - this.base + compactEvery
  }

  /** Twice the slots, the events at their positions. */
  private grow(): void {
    const slots = this.log.length * 2
    const log = new Array<BackgroundTaskEvent | undefined>(slots).fill(undefined)
    const mask = slots - 1
    for (let p = this.base; p < this.head; p++) log[p & mask] = this.log[p & this.mask]
    this.log = log
    this.mask = mask
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
    // the host publishes only its own events; `Lagged` exists only in a reader's pull
    if (value._tag !== "Lagged") this.append(value)
    return true
  }
  /** One of the host's events into the log (what the hub publishes, without `publish`'s check). */
  append(value: BackgroundTaskEvent): void {
    const head = this.head
    const held = head - this.base
    if (held >= this.compactAt || held === this.log.length) this.makeRoom()
    this.log[head & this.mask] = value
    this.head = head + 1
    // nobody has examined this one yet
    this.atHead = 0
  }
  /** Compacts the log when it is due, then grows it if it is still full. */
  private makeRoom(): void {
    if (this.head - this.base >= this.compactAt) this.compact()
    if (this.head - this.base === this.log.length) this.grow()
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
