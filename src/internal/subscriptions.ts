/**
 * Subscriptions: `subscribe`, `watch` (a snapshot and the events after it,
 * or the stored ones first) and `await` (a task's final record).
 *
 * Owns: taking a subscription and a snapshot in one step, a subscription's
 * own buffer and event types, replay from a durable store, waiting for a
 * task's end. Calls `events.ts` (the subscription), the registry (the
 * snapshot, the task waited for), the supervisor's `Ending` (its end),
 * `durable.ts` (replay, commit) and `state.ts`; its arguments are checked
 * by `validate.ts`.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BackgroundTaskRecord, isTerminal, type TaskFilter } from "../BackgroundTask.ts"
import { type SessionError, SnapshotError, TaskNotFound } from "../PluginError.ts"
import type { SubscriptionEvent } from "../TaskEvent.ts"
import type { Durability } from "./durable.ts"
import type { EventHub } from "./events.ts"
import type { RegistryService } from "./registry.ts"
import type { TaskWatch } from "./service.ts"
import type { Steps } from "./state.ts"
import type { Ending } from "./ending.ts"
import {
  awaitOptionsOf,
  checkAll,
  filterOf,
  type SubscriptionOptions,
  subscriptionOf,
  taskIdOf,
  watchOptionsOf,
  checked
} from "./validate.ts"


export class Subscriptions {
  private readonly steps: Steps
  private readonly registry: RegistryService
  private readonly ending: Ending
  private readonly hub: EventHub
  private readonly durability: Durability
  /** The host's `subscriberBuffer`: a subscription's buffer unless it asks for its own. */
  private readonly subscriberBuffer: number
  /** The stored events up to this `seq` were pruned: a replay cannot start below it. */
  private readonly prunedThrough: () => number

  constructor(
    steps: Steps,
    registry: RegistryService,
    ending: Ending,
    hub: EventHub,
    durability: Durability,
    subscriberBuffer: number,
    prunedThrough: () => number
  ) {
    this.prunedThrough = prunedThrough
    this.steps = steps
    this.registry = registry
    this.ending = ending
    this.hub = hub
    this.durability = durability
    this.subscriberBuffer = subscriberBuffer
  }

  subscribe(options: unknown): Effect.Effect<Stream.Stream<SubscriptionEvent>, SnapshotError | SessionError, Scope.Scope> {
    return checked(
      () =>
        Result.flatMap(subscriptionOf("subscribe", options), ({ filter, options: own }) =>
          Result.map(filterOf(filter), (filter) => ({ filter, own }))),
      ({ filter, own }) => Effect.map(this.attach(filter, own, () => undefined), ({ stream }) => stream)
    )
  }

  watch(options: unknown): Effect.Effect<TaskWatch, SnapshotError | SessionError, Scope.Scope> {
    const { durability, registry } = this
    return checked(
      () =>
        Result.flatMap(subscriptionOf("watch", options), ({ filter: rest, options: own }) =>
          Result.flatMap(watchOptionsOf(rest), ({ filter, fromSeq }) =>
            Result.map(filterOf(filter), (filter) => ({ filter, fromSeq, own })))),
      ({ filter, fromSeq, own }) =>
        Effect.flatMap(
          this.attach(filter, own, (valid) => registry.list(valid)),
          ({ filter, seq, snapshot, stream }): Effect.Effect<TaskWatch, SnapshotError> => {
            const watch = { filter, snapshot, seq, events: stream }
            if (fromSeq === undefined || fromSeq === seq) return Effect.succeed(watch)
            if (fromSeq > seq) {
              return Effect.fail(new SnapshotError({ message: `fromSeq ${fromSeq} is beyond the last event's seq, ${seq}` }))
            }
            const prunedThrough = this.prunedThrough()
            if (fromSeq < prunedThrough) {
              return Effect.fail(
                new SnapshotError({
                  message: `resuming from seq ${fromSeq}: the stored events up to seq ${prunedThrough} were pruned ` +
                    `(eventRetention); watch without fromSeq for a fresh snapshot`
                })
              )
            }
            if (durability.replay === undefined) {
              return Effect.fail(
                new SnapshotError({
                  message: `resuming from seq ${fromSeq} needs a durable store: this host keeps no event history`
                })
              )
            }
            // everything up to `seq` is committed before it is read back
            const types = own.types
            const replayed = durability.replay(fromSeq, seq, filter)
            return Effect.as(durability.sync, {
              ...watch,
              events: Stream.concat(
                types === undefined ? replayed : Stream.filter(replayed, (event) => types.has(event._tag)),
                watch.events
              )
            })
          }
        )
    )
  }

  /** Waits until the task has ended; its final record (on a durable store, once committed). */
  await(taskId: unknown, options: unknown): Effect.Effect<BackgroundTaskRecord, TaskNotFound | SessionError> {
    const { durability, ending, registry, steps } = this
    return checked(() => checkAll(taskIdOf(taskId), awaitOptionsOf(options)), ([taskId, sessionId]) => {
      const notFound = new TaskNotFound(sessionId === undefined ? { taskId } : { taskId, sessionId })
      return steps.whenOpen(() => {
        const task = sessionId === undefined ? registry.resolve(taskId) : registry.find(sessionId, taskId)
        if (task === undefined) return Effect.fail(notFound)
        return Effect.andThen(
          ending.awaitEnd(task),
          Effect.suspend((): Effect.Effect<BackgroundTaskRecord, TaskNotFound | SessionError> => {
            if (!isTerminal(task.record.state)) {
              // a host that stopped (fenced) leaves it live in its store; else it was let go of (unregistered)
              return Effect.fail(steps.isOpen() ? notFound : steps.closedReason)
            }
            const record = task.record
            // on a durable store, once the end is committed; a host that stopped first says why
            return Effect.matchCauseEffect(durability.sync, {
              onSuccess: () => Effect.succeed(record),
              onFailure: (cause) =>
                Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.fail(steps.closedReason)
            })
          })
        )
      })
    })
  }

  /**
   * Subscribes, and takes what `snapshot` reads, in one step: the snapshot is
   * the state as of `seq`, the subscription gets every event after it.
   */
  private attach<S>(
    filter: TaskFilter | undefined,
    own: SubscriptionOptions,
    snapshot: (filter: TaskFilter | undefined) => S
  ): Effect.Effect<
    {
      readonly filter: TaskFilter | undefined
      readonly snapshot: S
      readonly seq: number
      readonly stream: Stream.Stream<SubscriptionEvent>
    },
    SessionError,
    Scope.Scope
  > {
    return Effect.flatMap(this.hub.subscribe(), (pending) =>
      this.steps.whenOpen(() => {
        const seq = this.registry.lastSeq
        pending.activate(filter, own.buffer ?? this.subscriberBuffer, seq, own.types)
        return Effect.succeed({ filter, snapshot: snapshot(filter), seq, stream: pending.stream })
      }))
  }
}
