/**
 * Reading the cluster's store from any process: the global feed as a
 * `Stream` (subscribe, watch), woken by a notification (PostgreSQL's
 * `LISTEN`, given as `listen`) or, without one, by polling.
 *
 * Owns: the process's wake-up signal and the feed readers. The table is the
 * truth; a notification only says "read again". Calls `store.ts` (cluster).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type TaskFilter } from "../../BackgroundTask.ts"
import { type BackgroundTaskEvent, matchesEvent, type SubscriptionEvent } from "../../TaskEvent.ts"
import type { ClusterStore } from "./store.ts"

/** Rows read per query. */
const page = 500

/** The process's wake-up: every reader waits on the current signal, a notification completes it. */
export class FeedSignal {
  private signal = Deferred.makeUnsafe<void>()
  private readonly closed = Deferred.makeUnsafe<void>()
  private readonly pollInterval: Duration.Duration
  constructor(pollInterval: Duration.Duration) {
    this.pollInterval = pollInterval
  }
  /** Something was committed: wake every reader. */
  notify(): void {
    const current = this.signal
    this.signal = Deferred.makeUnsafe<void>()
    Deferred.doneUnsafe(current, Exit.void)
  }
  /** The signal to wait on after a read that found nothing: taken before the read. */
  current(): Deferred.Deferred<void> {
    return this.signal
  }
  /** Waits for a notification, at most the poll interval. */
  wait(signal: Deferred.Deferred<void>): Effect.Effect<void> {
    return Effect.asVoid(Effect.timeoutOption(Deferred.await(signal), this.pollInterval))
  }
  /** Ends every feed (the layer closes). */
  close(): void {
    Deferred.doneUnsafe(this.closed, Exit.void)
    this.notify()
  }
  get ended(): Effect.Effect<void> {
    return Deferred.await(this.closed)
  }
  get isClosed(): boolean {
    return Deferred.isDoneUnsafe(this.closed)
  }
  /** Follows `listen` (a notification stream) for as long as the scope lives, starting again after an error. */
  follow<R>(listen: (channel: string) => Stream.Stream<string, unknown, R>, channel: string): Effect.Effect<void, never, Scope.Scope | R> {
    return Stream.runForEach(listen(channel), () => Effect.sync(() => this.notify())).pipe(
      Effect.tapCause((cause) => Effect.logWarning(`listening for the task feed failed: ${Cause.pretty(cause)}`)),
      Effect.retry(Schedule.spaced(Duration.seconds(1))),
      Effect.ignore,
      Effect.forkScoped,
      Effect.asVoid
    )
  }
}

/**
 * The feed's events after `after` that match the filter and types, for as
 * long as the signal is open: read a page at a time, then wait to be woken.
 * A reader whose position has been pruned from under it gets one `Lagged`
 * and goes on from the oldest event kept.
 */
export const follow = (
  store: ClusterStore,
  signal: FeedSignal,
  after: number,
  filter: TaskFilter | undefined,
  types: ReadonlySet<string> | undefined
): Stream.Stream<SubscriptionEvent> => {
  let position = after
  const matches = (event: BackgroundTaskEvent) =>
    matchesEvent(filter, event) && (types === undefined || types.has(event._tag))
  const pull: Effect.Effect<ReadonlyArray<SubscriptionEvent>> = Effect.gen(function*() {
    while (!signal.isClosed) {
      const wake = signal.current()
      const rows = yield* store.feed(position, page, filter?.sessionId)
      const out: Array<SubscriptionEvent> = []
      if (rows.length > 0 && rows[0]!.gseq > position + 1 && filter?.sessionId === undefined) {
        // the rows in between were pruned (the global feed has no other gap)
        out.push({ _tag: "Lagged", skipped: rows[0]!.gseq - position - 1 })
      }
      for (const row of rows) {
        position = row.gseq
        if (matches(row.event)) out.push(row.event)
      }
      if (out.length > 0) return out
      if (rows.length === 0) yield* signal.wait(wake)
    }
    return []
  }).pipe(
    // a database that does not answer: readers wait and try again
    Effect.retry(Schedule.spaced(Duration.seconds(1))),
    Effect.orDie
  )
  return Stream.fromEffectRepeat(pull).pipe(
    Stream.takeWhile((events) => events.length > 0 || !signal.isClosed),
    Stream.flatMap((events) => Stream.fromIterable(events)),
    Stream.interruptWhen(signal.ended)
  )
}
