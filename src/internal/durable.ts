/**
 * Durability: where a step's events go, and when a writing call returns.
 *
 * Owns: the two event sinks (in memory, a step publishes as it commits; on
 * a durable store, steps group-commit through the journal and events are
 * published once committed), the "return after commit" wrapper every
 * writing call goes through, the store's lease (take, renew, release) and
 * the replay of stored events. Calls `journal.ts`, `events.ts` and the
 * store; the host decides what a lost lease or a failed commit stops
 * (`fence`, given to it).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { matchesEvent, type SubscriptionEvent, type TaskFilter } from "../BackgroundTask.ts"
import { SessionError } from "../PluginError.ts"
import { type LeaseHeld, type TaskStoreError, type TaskStoreService } from "../TaskStore.ts"
import type { EventHub } from "./events.ts"
import { Journal } from "./journal.ts"
import type { EventSink } from "./registry.ts"
import type { Steps } from "./state.ts"

/** How the host's writes reach subscribers and, on a durable store, the disk. */
export interface Durability {
  readonly sink: EventSink
  /**
   * A writing call as callers see it: on a durable store it returns once its
   * writes are committed (a call the host refused wrote nothing and waits
   * for nothing); in memory, the call itself.
   */
  readonly write: <A, E, R>(call: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Waits until everything written so far is committed. */
  readonly sync: Effect.Effect<void>
  /** Transactions committed (`stats.commits`). */
  readonly commits: () => number
  /** The stored events after `fromSeq` up to `toSeq` that match `filter`; `undefined` without a durable store. */
  readonly replay:
    | ((fromSeq: number, toSeq: number, filter: TaskFilter | undefined) => Stream.Stream<SubscriptionEvent>)
    | undefined
}

/** In memory: a step publishes its events as it makes them; a call returns when its step is done. */
export const memory = (hub: EventHub): Durability => ({
  sink: { emit: (event) => hub.publish(event) },
  write: (call) => call,
  sync: Effect.void,
  commits: () => 0,
  replay: undefined
})

/** Why a failed commit stops the host. */
export const stopReason = (error: unknown): string =>
  error !== null && typeof error === "object" && "_tag" in error && error._tag === "LeaseHeld"
    ? `another host has taken its store's lease (${(error as LeaseHeld).message})`
    : `writing to its store failed (${error instanceof Error ? error.message : String(error)})`

/**
 * On a durable store: steps write to the journal, which commits batch after
 * batch and publishes each batch's events once committed. `fence` stops the
 * host when a commit fails for good.
 */
export const journaled = (
  store: TaskStoreService,
  hub: EventHub,
  steps: Steps,
  lease: { readonly owner: string; readonly ttlMillis: number },
  fence: (why: string) => Effect.Effect<void>
): Effect.Effect<{ readonly durability: Durability; readonly journal: Journal }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const journal = new Journal(
      store,
      Effect.map(Clock.currentTimeMillis, (now) => ({ owner: lease.owner, expiresAt: now + lease.ttlMillis })),
      (events) => {
        for (const event of events) hub.publish(event)
      }
    )
    /** Waits for the commit of everything written so far; a host whose commits fail stops first. */
    const sync: Effect.Effect<void> = journal.sync.pipe(
      // a failed commit is a defect here (an interrupted wait is not a failure)
      Effect.tapDefect((defect) => fence(stopReason(defect)))
    )
    /** A call refused because the host is not open: it wrote nothing, so there is nothing to wait for. */
    const refused = (exit: Exit.Exit<unknown, unknown>) => {
      if (Exit.isSuccess(exit) || steps.isOpen()) return false
      const error = Cause.findError(exit.cause)
      return error._tag === "Success" && error.success instanceof SessionError
    }
    yield* Effect.forkScoped(journal.run)
    // a commit that failed for good, with no call waiting for it: the host stops
    yield* Effect.forkScoped(Effect.flatMap(Deferred.await(journal.failed), (error) => fence(stopReason(error))))
    const durability: Durability = {
      sink: journal,
      write: (call) => Effect.onExit(call, (exit) => refused(exit) ? Effect.void : sync),
      sync,
      commits: () => journal.commits,
      replay: (fromSeq, toSeq, filter) => replay(store, fromSeq, toSeq, filter)
    }
    return { durability, journal }
  })

/** The lease options, checked. */
export interface LeaseOptions {
  readonly ttl: Duration.Duration
  readonly renewEvery: Duration.Duration
  readonly onHeld: "fail" | "wait"
}

/**
 * Takes the store's lease (waiting for it with `onHeld: "wait"`), renews it
 * for as long as the scope lives, and gives it up when the scope closes.
 * `fence` is called when the lease is lost or cannot be renewed in time.
 */
export const holdLease = (
  store: TaskStoreService,
  owner: string,
  options: LeaseOptions,
  fence: (why: string) => Effect.Effect<void>
): Effect.Effect<void, TaskStoreError | LeaseHeld, Scope.Scope> =>
  Effect.gen(function*() {
    const ttl = Duration.toMillis(options.ttl)
    const takeLease = Effect.flatMap(Clock.currentTimeMillis, (now) => store.acquireLease(owner, now, now + ttl))
    let told = false
    yield* options.onHeld === "fail"
      ? takeLease
      : takeLease.pipe(
        Effect.tapError((error) => {
          if (told || error._tag !== "LeaseHeld") return Effect.void
          told = true
          return Effect.logInfo(`waiting for the task store: ${error.message}`)
        }),
        Effect.retry({
          while: (error) => error._tag === "LeaseHeld",
          schedule: Schedule.spaced(Duration.min(options.renewEvery, Duration.seconds(1)))
        })
      )
    // closed last: after the shutdown has written its last batch
    yield* Effect.addFinalizer(() => Effect.ignore(store.releaseLease(owner)))
    // when the lease we hold runs out, unless renewed
    let expiry = (yield* Clock.currentTimeMillis) + ttl
    const renewEveryMillis = Duration.toMillis(options.renewEvery)
    const renew = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const renewed = yield* Effect.result(store.renewLease(owner, now + ttl))
      if (renewed._tag === "Success" && renewed.success) {
        expiry = now + ttl
        return
      }
      if (renewed._tag === "Success") return yield* fence("another host has taken its store's lease")
      yield* Effect.logWarning(`renewing the store's lease failed: ${renewed.failure.message}`)
      // stop before the lease can run out and another host take these tasks
      if (now + renewEveryMillis >= expiry) {
        yield* fence(`it could not renew its store's lease before it runs out (${renewed.failure.message})`)
      }
    }).pipe(
      Effect.repeat(Schedule.spaced(options.renewEvery)),
      Effect.delay(options.renewEvery)
    )
    yield* Effect.forkScoped(renew)
  })

/** Stored events read per query when `watch` replays. */
const replayPage = 1_000

/**
 * The stored events after `fromSeq` up to `toSeq` that match `filter`, read a
 * page at a time. The store's events have no gap in `seq` but where a row no
 * longer decoded and was quarantined (now or by an earlier read): each such
 * gap stands as a `Lagged` where it is, so the reader knows it missed
 * something there.
 */
const replay = (
  store: TaskStoreService,
  fromSeq: number,
  toSeq: number,
  filter: TaskFilter | undefined
): Stream.Stream<SubscriptionEvent> =>
  Stream.paginate(fromSeq, (from: number) =>
    store.events(from, toSeq, replayPage).pipe(
      Effect.tap(({ quarantined }) =>
        Effect.forEach(quarantined, (error) => Effect.logWarning(`quarantined a stored event: ${error.message}`, error))
      ),
      Effect.map(({ events, lastRead }) => {
        const out: Array<SubscriptionEvent> = []
        const lag = (skipped: number) => {
          if (skipped > 0) out.push({ _tag: "Lagged", skipped })
        }
        let expected = from + 1
        for (const event of events) {
          lag(event.seq - expected)
          if (matchesEvent(filter, event)) out.push(event)
          expected = event.seq + 1
        }
        // nothing more to read: the rest up to `toSeq` is missing; else the
        // page's last rows (up to `lastRead`) did not decode
        const done = lastRead <= from || lastRead >= toSeq
        lag((done ? toSeq : lastRead) - expected + 1)
        return [out, done ? Option.none() : Option.some(lastRead)] as const
      }),
      Effect.orDie
    ))
