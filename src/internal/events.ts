/**
 * The host's events as a PubSub-driven `Stream`.
 *
 * Owns: the host's one `PubSub` of events, its backing store (`eventlog.ts`:
 * one log of events shared by the subscribers, each reading from its own
 * position, as if it had a bounded, filtered buffer of its own) and its
 * strategy (wake readers after the publishing step), and the subscriptions
 * read through `Stream.fromSubscription`. Calls nothing but `eventlog.ts` and
 * `state.ts`'s `afterStep`.
 *
 * Why a store and a strategy of our own: the stock ones fall short of what
 * the host promises. Each subscriber reads as if from a buffer of its own
 * holding only the events matching its filter, so a busy session cannot push
 * a quiet one's events out; when it is full the oldest is dropped and
 * counted, and the reader gets one `Lagged { skipped }` (exact, counting only
 * matching events) in place of the dropped ones, then the newer ones.
 * Publishing never waits (the store always accepts), and costs the same
 * whatever the number of subscribers: the event goes once into the log. A
 * reader is never resumed inside the step that published: the strategy
 * wakes waiting readers once, after the step, and a woken reader
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
import { type TaskFilter } from "../BackgroundTask.ts"
import { type BackgroundTaskEvent, type SubscriptionEvent } from "../TaskEvent.ts"
import { EventBuffer, EventStore } from "./eventlog.ts"
import { afterStep } from "./state.ts"

type Item = SubscriptionEvent

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
    completePollers(subscribers, subscription, pollers)
  }

  /** A publish through the `PubSub` (the hub appends to its store itself): wake the waiting readers after the step. */
  completeSubscribersUnsafe(_pubsub: PubSub.PubSub.Atomic<Item>, subscribers: PubSub.PubSub.Subscribers<Item>): void {
    if (subscribers.size > 0) this.wakeAfterStep()
  }

  /** The readers waiting for events (the `PubSub`'s own map, the same for its life): set once it is made. */
  watch(subscribers: PubSub.PubSub.Subscribers<Item>): void {
    this.subscribers = subscribers
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
  private readonly strategy: WakeAfterStep
  private readonly pubsub: PubSub.PubSub<Item>
  /** The readers waiting for events, by subscription (the `PubSub`'s map). */
  private readonly waiting: PubSub.PubSub.Subscribers<Item>
  private closed = false

  private constructor(store: EventStore, strategy: WakeAfterStep, pubsub: PubSub.PubSub<Item>) {
    this.store = store
    this.strategy = strategy
    this.pubsub = pubsub
    this.waiting = pubsub.subscribers
    strategy.watch(pubsub.subscribers)
  }

  static readonly make: Effect.Effect<EventHub> = Effect.suspend(() => {
    const store = new EventStore()
    const strategy = new WakeAfterStep()
    return Effect.map(
      PubSub.make<Item>({ atomicPubSub: () => store, strategy: () => strategy }),
      (pubsub) => new EventHub(store, strategy, pubsub)
    )
  })

  /** Publishes one event; never waits. Call it only from a synchronous step. */
  publish(event: BackgroundTaskEvent): void {
    const store = this.store
    // no subscriber: nothing to buffer, nobody to wake
    if (store.active.size === 0) return
    // what `PubSub.publishUnsafe` does for a PubSub that is never shut down or ended (this one: the
    // subscriptions end through their buffers), without its checks: into the log, and the waiting
    // readers (if any: a subscriber that is not reading waits for nothing) woken after the step
    store.append(event)
    if (this.waiting.size > 0) this.strategy.wakeAfterStep()
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

  /** Events in the shared log now: published, and not yet examined by every subscriber. */
  get logged(): number {
    return this.store.head - this.store.base
  }
}
