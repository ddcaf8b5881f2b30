/**
 * The host's event hub: one unbounded `PubSub`, published to synchronously
 * from inside the registry's atomic steps, read by per-subscriber Streams.
 *
 * Closing the hub publishes an end marker instead of shutting the PubSub
 * down: `PubSub.shutdown` discards what a subscriber has not read yet, and the
 * last events of a shutdown (the `Cancelled` of every live task) must reach
 * every subscriber before its stream ends.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BackgroundTaskEvent, matchesEvent, type TaskFilter } from "../BackgroundTask.ts"

const End: unique symbol = Symbol.for("effect-task-host/EventHub/End")
type Item = BackgroundTaskEvent | typeof End

const isEvent = (item: Item): item is BackgroundTaskEvent => item !== End

export interface EventHub {
  /** Publishes one event; never blocks. Call it only from a synchronous step. */
  readonly publish: (event: BackgroundTaskEvent) => void
  /** Ends every subscriber's stream after the events already published. */
  readonly close: () => void
  /**
   * Subscribes now (the subscription is live when the effect returns) and
   * returns the filtered stream; `undefined` when the hub has closed.
   */
  readonly subscribe: (
    filter: TaskFilter | undefined
  ) => Effect.Effect<Stream.Stream<BackgroundTaskEvent> | undefined, never, Scope.Scope>
}

export const make: Effect.Effect<EventHub> = Effect.gen(function*() {
  const pubsub = yield* PubSub.unbounded<Item>()
  let closed = false
  return {
    publish: (event) => {
      PubSub.publishUnsafe(pubsub, event)
    },
    close: () => {
      if (closed) return
      closed = true
      PubSub.publishUnsafe(pubsub, End)
    },
    subscribe: (filter) =>
      Effect.map(PubSub.subscribe(pubsub), (subscription) => {
        // `closed` is read after the subscription exists: either it sees the
        // end marker, or the hub had closed before and there is nothing to read.
        if (closed) return undefined
        const events = Stream.fromSubscription(subscription).pipe(Stream.takeWhile(isEvent))
        return filter === undefined || (filter.sessionId === undefined && filter.kind === undefined)
          ? events
          : Stream.filter(events, (event) => matchesEvent(filter, event))
      })
  }
})
