/**
 * Durability: where a step's events go, and when a writing call returns.
 *
 * Owns: the two event sinks (in memory, a step publishes as it commits; on
 * a durable store, steps group-commit through the journal and events are
 * published once committed), the "return after commit" wrapper every
 * writing call goes through, the store's lease (take, renew, release, and
 * the gate work passes before it starts: see `LeaseGate`) and the replay of
 * stored events. The journal (group commit) is `journal.ts`. Calls
 * `events.ts`, `journal.ts` and the store; the host decides what a lost lease or a failed commit stops
 * (`fence`, given to it).
 *
 * @internal
 */
import { hostname } from "node:os"
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
import { matchesEvent, type SubscriptionEvent } from "../TaskEvent.ts"
import { type TaskFilter } from "../BackgroundTask.ts"
import { SessionError } from "../PluginError.ts"
import { type LeaseHeld, TaskStoreError } from "../TaskStoreError.ts"
import { type StoredTask, type TaskStoreService } from "./store.ts"
import type { EventHub } from "./events.ts"
import type { EventSink, RegistryService } from "./registry.ts"
import type { Steps } from "./state.ts"
import { Journal, type LeaseHeldUntil } from "./journal.ts"
import { ownerName } from "./task.ts"

export { Journal, type LeaseHeldUntil }

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
  lease: { readonly owner: string; readonly ttlMillis: number; readonly held: LeaseHeldUntil },
  fence: (why: string) => Effect.Effect<void>
): Effect.Effect<{ readonly durability: Durability; readonly journal: Journal }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const journal = new Journal(
      store,
      Effect.map(Clock.currentTimeMillis, (now) => ({ owner: lease.owner, expiresAt: now + lease.ttlMillis })),
      (events) => {
        for (const event of events) hub.publish(event)
      },
      lease.held
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
    /** After a call: its commit waited for (one function for every call). */
    const afterCall = (exit: Exit.Exit<unknown, unknown>) => refused(exit) ? Effect.void : sync
    yield* Effect.forkScoped(journal.run)
    // a commit that failed for good, with no call waiting for it: the host stops
    yield* Effect.forkScoped(Effect.flatMap(Deferred.await(journal.failed), (error) => fence(stopReason(error))))
    const durability: Durability = {
      sink: journal,
      write: (call) => Effect.onExit(call, afterCall),
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
 * The lease as the host's work sees it, before queued work starts (a task's
 * first run, its next attempt, the pruner): the lease surely holds while
 * the host's clock is before the expiry it knows (`LeaseHeldUntil`), one
 * clock read; once the clock has passed it (the process was paused, the
 * machine slept, renewals were late), the lease is confirmed in the store
 * first, one renewal shared by everyone who waits, and a lease another host
 * took meanwhile stops the host (`fence`) before the work starts.
 */
export interface LeaseGate {
  /** `undefined` while the lease surely holds; else waits until it is confirmed, or a renewal has stopped the host. */
  readonly check: () => Effect.Effect<void> | undefined
  /** Whether a renewal found the lease lost (the host has stopped). */
  readonly lost: () => boolean
}

/** What holding the lease gives the host: its fencing token and the gate its work passes. */
export interface HeldLease {
  readonly token: number
  readonly gate: LeaseGate
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
  fence: (why: string) => Effect.Effect<void>,
  held: LeaseHeldUntil = { until: 0 },
  releaseWithin: Duration.Duration = Duration.seconds(10)
): Effect.Effect<HeldLease, TaskStoreError | LeaseHeld, Scope.Scope> =>
  Effect.gen(function*() {
    const ttl = Duration.toMillis(options.ttl)
    const takeLease = Effect.flatMap(Clock.currentTimeMillis, (now) => store.acquireLease(owner, now, now + ttl))
    let told = false
    // with the default ("fail"), a lease held by a process of this machine that no longer runs
    // (a crash; the default owner names host and pid) is waited for: it runs out within its ttl
    const waits = (error: TaskStoreError | LeaseHeld) =>
      error._tag === "LeaseHeld" && (options.onHeld === "wait" || deadHolder(error.holder))
    const token = yield* takeLease.pipe(
        Effect.tapError((error) => {
          if (told || !waits(error)) return Effect.void
          told = true
          return Effect.logInfo(
            `waiting for the task store: ${error.message}` +
              (options.onHeld === "wait" ? "" : ` (its holder's process has exited)`)
          )
        }),
        Effect.retry({
          while: waits,
          schedule: Schedule.spaced(Duration.min(options.renewEvery, Duration.seconds(1)))
        })
      )
    // closed last: after the shutdown has written its last batch
    // (bounded: a database that stopped answering cannot hold the shutdown)
    yield* Effect.addFinalizer(() => Effect.ignore(Effect.timeoutOption(store.releaseLease(owner), releaseWithin)))
    const clock = yield* Clock.clockWith(Effect.succeed)
    const scope = yield* Effect.scope
    // when the lease we hold runs out, unless renewed
    let expiry = clock.currentTimeMillisUnsafe() + ttl
    held.until = Math.max(held.until, expiry)
    const renewEveryMillis = Duration.toMillis(options.renewEvery)
    /** Set once a renewal has stopped the host: the lease is not ours to confirm any more. */
    let lost = false
    const stop = (why: string) => Effect.suspend(() => {
      lost = true
      return fence(why)
    })
    /** One renewal, and what its outcome means for the host. */
    const renewOnce = Effect.gen(function*() {
      const now = clock.currentTimeMillisUnsafe()
      // the clock has passed the lease's expiry: the process was paused or the machine slept
      const woke = now >= held.until
      const renewed = yield* Effect.result(store.renewLease(owner, now + ttl))
      if (renewed._tag === "Success" && renewed.success) {
        expiry = now + ttl
        held.until = Math.max(held.until, expiry)
        return
      }
      // a commit may have renewed it meanwhile
      expiry = Math.max(expiry, held.until)
      const late = woke ? "its clock passed its lease's expiry (was the process paused, or the machine asleep?) and " : ""
      if (renewed._tag === "Success") return yield* stop(`${late}another host has taken its store's lease`)
      yield* Effect.logWarning(`renewing the store's lease failed: ${renewed.failure.message}`)
      // stop before the lease can run out and another host take these tasks
      if (now + renewEveryMillis >= expiry) {
        yield* stop(
          woke
            ? `${late}it could not confirm its store's lease (${renewed.failure.message})`
            : `it could not renew its store's lease before it runs out (${renewed.failure.message})`
        )
      }
    })
    /**
     * Renews now; whoever asks while a renewal runs waits for that one. It runs
     * in the lease's scope, so `fence` (which stops the work waiting for it)
     * never interrupts the renewal that called it.
     */
    let renewing: Deferred.Deferred<void> | undefined
    const renewNow: Effect.Effect<void> = Effect.suspend(() => {
      if (renewing !== undefined) return Deferred.await(renewing)
      const done = Deferred.makeUnsafe<void>()
      renewing = done
      const settle = Effect.sync(() => {
        renewing = undefined
        Deferred.doneUnsafe(done, Exit.void)
      })
      return Effect.andThen(Effect.forkIn(Effect.ensuring(renewOnce, settle), scope), Deferred.await(done))
    })
    yield* Effect.forkScoped(Effect.repeat(Effect.delay(renewNow, options.renewEvery), Schedule.forever))
    /**
     * Renews until the lease surely holds again (a renewal that began before
     * the clock jumped does not say so) or a renewal has stopped the host
     * (each try either moves the expiry past now or stops the host).
     */
    const confirm: Effect.Effect<void> = Effect.suspend(() =>
      lost || clock.currentTimeMillisUnsafe() < held.until ? Effect.void : Effect.andThen(renewNow, confirm)
    )
    const gate: LeaseGate = {
      check: () => clock.currentTimeMillisUnsafe() < held.until ? undefined : confirm,
      lost: () => lost
    }
    return { token, gate }
  })

/**
 * Whether a lease holder is a process of this machine that no longer runs:
 * its name is the default owner (`host:pid:suffix`) with this host's name
 * and a pid that does not exist. A holder on another machine, or named by
 * `lease.owner`, cannot be told dead.
 */
export const deadHolder = (holder: string): boolean => {
  const [host, pid, suffix, ...rest] = holder.split(":")
  if (rest.length > 0 || suffix === undefined || host !== hostname() || !/^[1-9][0-9]*$/.test(pid ?? "")) return false
  if (Number(pid) === process.pid) return false
  try {
    process.kill(Number(pid), 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH"
  }
}

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

// -----------------------------------------------------------------------------
// shutdown
// -----------------------------------------------------------------------------

/**
 * The shutdown's last commits, bounded by `flushTimeout`: a database that
 * stopped answering cannot hold the process. `false` when they did not all
 * commit (what did not stays as the store has it: the next host recovers
 * those tasks as after a crash).
 */
export const flushAtShutdown = (journal: Journal, flushTimeout: Duration.Duration, owner: string): Effect.Effect<boolean> =>
  Effect.exit(Effect.timeoutOption(journal.flush, flushTimeout)).pipe(
    Effect.flatMap((exit) => {
      if (exit._tag === "Success" && exit.value._tag === "Some") return Effect.succeed(true)
      const why = exit._tag === "Success" ? `not committed within ${Duration.format(flushTimeout)}` : "a commit failed"
      return Effect.as(
        Effect.logError(`the background task host ${owner} shut down before its last writes were committed (${why}): the next host recovers what they would have changed`),
        false
      )
    })
  )

/**
 * A `release` shutdown: in one step the journal stops taking events and the
 * host closes (no step runs after it, so a stopped fiber moves no record);
 * what was written before is committed, the live records are marked
 * released, then the fibers are stopped. External work is left running; the
 * lease is given up after this (its finalizer runs last).
 */
export const releaseAtShutdown = (deps: {
  readonly journal: Journal
  readonly registry: RegistryService
  readonly steps: Steps
  readonly hub: EventHub
  readonly stopFibers: Effect.Effect<void>
  readonly flushTimeout: Duration.Duration
  readonly owner: string
}): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { hub, journal, registry, steps } = deps
    let live: Array<StoredTask> = []
    yield* Effect.andThen(
      Effect.sync(() => {
        live = registry.liveTasks().map((task) => ({ order: task.order, owner: ownerName(task.owner), record: task.record }))
        journal.freeze()
      }),
      steps.closed
    )
    if (!(yield* flushAtShutdown(journal, deps.flushTimeout, deps.owner))) {
      return yield* Effect.andThen(deps.stopFibers, Effect.sync(() => hub.close()))
    }
    yield* journal.release(live).pipe(
      Effect.catch((error) =>
        Effect.logWarning(
          `the background task host ${deps.owner} could not mark its live tasks released (the next host recovers them as after a crash): ${error.message}`
        )
      )
    )
    yield* deps.stopFibers
    hub.close()
  })
