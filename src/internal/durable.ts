/**
 * Durability: where a step's events go, and when a writing call returns.
 *
 * Owns: the two event sinks (in memory, a step publishes as it commits; on
 * a durable store, steps group-commit through the journal and events are
 * published once committed), the "return after commit" wrapper every
 * writing call goes through, the journal (group commit), the store's lease
 * (take, renew, release, and the gate work passes before it starts: see
 * `LeaseGate`) and the replay of stored events. Calls `events.ts`
 * and the store; the host decides what a lost lease or a failed commit stops
 * (`fence`, given to it).
 *
 * Group commit: the registry hands every event (and the record it carries)
 * to the journal in the step that makes it. Writes collect in the open
 * batch; one writer fiber commits a batch per transaction, oldest first, so
 * the store always holds a prefix of the host's history: events without a
 * gap in `seq`. A caller waits with `sync` for the batch its own writes are
 * in; callers that arrive while a batch commits share the next one.
 * Subscribers get a batch's events once it is committed: an event a reader
 * has seen is never lost to a crash. A batch keeps only the latest version
 * of each record.
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
import { type BackgroundTaskEvent, matchesEvent, type SubscriptionEvent } from "../TaskEvent.ts"
import { type TaskFilter } from "../BackgroundTask.ts"
import { SessionError } from "../PluginError.ts"
import { type LeaseHeld, StoreRejected, TaskStoreError } from "../TaskStoreError.ts"
import { type StoredTask, type TaskOwner, type TaskStoreBatch, type TaskStoreService } from "./store.ts"
import type { EventHub } from "./events.ts"
import type { EventSink, RegistryService } from "./registry.ts"
import { afterStep, type Steps } from "./state.ts"
import { ownerName, type Task } from "./task.ts"

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

/**
 * Until when this host surely holds its lease (epoch ms, by the `Clock`):
 * moved on by every renewal and every commit (each renews it in its
 * transaction). A write that fails because the store is unreachable is
 * retried with backoff only while the next try comes before this.
 */
export interface LeaseHeldUntil {
  until: number
}

/** The backoff between tries of a commit the store could not take: 50 ms, doubling, at most 1 s. */
const retryDelayMillis = (n: number): number => Math.min(50 * 2 ** n, 1_000)

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
// the journal
// -----------------------------------------------------------------------------

type Change =
  | { readonly _tag: "Put"; readonly task: StoredTask }
  | { readonly _tag: "Delete"; readonly sessionId: string; readonly taskId: string }

interface Batch {
  readonly events: Array<BackgroundTaskEvent>
  readonly changes: Map<string, Change>
  /** Completed once the batch is committed; made when the first caller waits. */
  done: Deferred.Deferred<void, TaskStoreError | LeaseHeld> | undefined
}

const emptyBatch = (): Batch => ({ events: [], changes: new Map(), done: undefined })

const keyOf = (sessionId: string, taskId: string) => `${sessionId.length}:${sessionId}${taskId}`

export class Journal implements EventSink {
  private open: Batch = emptyBatch()
  private committing: Batch | undefined
  /** Set while the writer waits for work. */
  private idle: Deferred.Deferred<void> | undefined
  /** Set once a commit has failed: every later write fails the same way. */
  private broken: TaskStoreError | LeaseHeld | undefined
  /** Completed with the error when a commit has failed for good (the host stops on it). */
  readonly failed = Deferred.makeUnsafe<TaskStoreError | LeaseHeld>()
  /** Transactions committed (`stats.commits`). */
  commits = 0
  /** Set by a `release` shutdown: later events are not written (the store keeps the tasks live). */
  private frozen = false

  private readonly store: TaskStoreService
  private readonly lease: Effect.Effect<{ readonly owner: string; readonly expiresAt: number }>
  private readonly committed: (events: ReadonlyArray<BackgroundTaskEvent>) => void
  private readonly held: LeaseHeldUntil

  /**
   * `lease` says which lease each commit checks and renews; `committed` gets
   * each committed batch's events, in order (the host publishes them then).
   */
  constructor(
    store: TaskStoreService,
    lease: Effect.Effect<{ readonly owner: string; readonly expiresAt: number }>,
    committed: (events: ReadonlyArray<BackgroundTaskEvent>) => void,
    held: LeaseHeldUntil = { until: Infinity }
  ) {
    this.store = store
    this.lease = lease
    this.committed = committed
    this.held = held
  }

  /**
   * One batch's transaction, tried again while it may still succeed: a
   * store that is unreachable (a restart, a network blip) with backoff for
   * as long as the lease surely holds; any other store error twice more at
   * once (a transaction is all or nothing, so a failed one can be tried
   * again). Each try checks and renews the lease in its transaction.
   *
   * A try whose connection was lost while its COMMIT was on the way may have
   * committed after all: before trying again, the store is asked for the
   * batch's last event, and if it holds it, the batch is done (written once,
   * never twice).
   */
  private commitWithRetries(batch: TaskStoreBatch): Effect.Effect<void, TaskStoreError | LeaseHeld> {
    const last = batch.events.length === 0 ? undefined : batch.events[batch.events.length - 1]!.seq
    /** Whether an earlier try committed (a failed read says no: the next try then fails or commits). */
    const committedBefore: Effect.Effect<boolean> = last === undefined
      ? Effect.succeed(false)
      : this.store.events(last - 1, last, 1).pipe(
        Effect.map(({ events }) => events.length === 1 && events[0]!.seq === last),
        Effect.orElseSucceed(() => false)
      )
    const write = Effect.flatMap(this.lease, (lease) =>
      Effect.tap(
        this.store.write(batch, lease),
        () => Effect.sync(() => void (this.held.until = Math.max(this.held.until, lease.expiresAt)))
      ))
    // `n`: tries after an unreachable store so far (the backoff); `rejected`: after any other error
    const attempt = (n: number, rejected: number): Effect.Effect<void, TaskStoreError | LeaseHeld> =>
      (n + rejected === 0 ? write : Effect.flatMap(committedBefore, (done) => done ? Effect.void : write)).pipe(
        Effect.catch((error) => {
          if (error._tag !== "TaskStoreError") return Effect.fail(error)
          if (!error.isRetryable) return rejected < 2 ? attempt(n, rejected + 1) : Effect.fail(error)
          const delay = retryDelayMillis(n)
          return Effect.flatMap(Clock.currentTimeMillis, (now) =>
            // the next try must come (and its transaction renew the lease) before the lease can run out
            now + delay * 2 >= this.held.until
              ? Effect.fail(error)
              : Effect.andThen(
                n === 0 ? Effect.logWarning(`the task store is unreachable, retrying: ${error.message}`) : Effect.void,
                Effect.andThen(Effect.sleep(Duration.millis(delay)), attempt(n + 1, rejected))
              ))
        })
      )
    return attempt(0, 0)
  }

  /** The registry's sink: every event, with the task it is about, in the step that makes it. */
  readonly emit = (event: BackgroundTaskEvent, task: Task | undefined): void =>
    this.record(event, task?.order ?? 0, task === undefined ? undefined : ownerName(task.owner))

  /** Takes one event (and the record it changes) into the open batch; inside a step. */
  record(event: BackgroundTaskEvent, order: number, owner: TaskOwner | undefined): void {
    if (this.frozen) return
    const batch = this.open
    batch.events.push(event)
    switch (event._tag) {
      case "Evicted":
        for (const taskId of event.taskIds) {
          batch.changes.set(keyOf(event.sessionId, taskId), { _tag: "Delete", sessionId: event.sessionId, taskId })
        }
        break
      case "Transferred":
        batch.changes.set(keyOf(event.fromSessionId, event.taskId), {
          _tag: "Delete",
          sessionId: event.fromSessionId,
          taskId: event.taskId
        })
      // falls through: the record is written under its new session
      default:
        batch.changes.set(keyOf(event.sessionId, event.taskId), {
          _tag: "Put",
          task: { order, owner: owner ?? "caller", record: event.record }
        })
    }
    const idle = this.idle
    if (idle !== undefined) {
      this.idle = undefined
      afterStep(() => Deferred.doneUnsafe(idle, Exit.void))
    }
  }

  /**
   * Writes nothing more (the host stopped): what is not committed stays as the
   * store has it, for the next lease holder to recover; later syncs die with
   * `error`.
   */
  stop(error: TaskStoreError | LeaseHeld): void {
    this.broken ??= error
  }

  /** Events written and not yet committed (and so not yet published). */
  get backlog(): number {
    return this.open.events.length + (this.committing?.events.length ?? 0)
  }

  /**
   * Takes no more events (a `release` shutdown, in the step that closes the
   * host): what was written so far is still committed by `flush`; what the
   * stopped fibers do after is not written, so their records stay live.
   */
  freeze(): void {
    this.frozen = true
  }

  /**
   * Marks the records of `tasks` as released (after `flush`, at a `release`
   * shutdown): one transaction, checked against the lease like a commit, no
   * event. A failure leaves them unmarked: the next holder then recovers them
   * as it would after a crash.
   */
  release(tasks: ReadonlyArray<StoredTask>): Effect.Effect<void, TaskStoreError | LeaseHeld> {
    if (tasks.length === 0 || this.broken !== undefined) return Effect.void
    const write = Effect.flatMap(
      this.lease,
      (lease) => this.store.write({ events: [], puts: tasks.map((task) => ({ ...task, released: true })), deletes: [] }, lease)
    )
    return Effect.retry(write, { times: 2, while: (error) => error._tag === "TaskStoreError" })
  }

  /** Waits until every write made so far is committed; a failed commit is a defect. */
  readonly sync: Effect.Effect<void> = Effect.suspend(() => {
    if (this.broken !== undefined) return Effect.die(this.broken)
    const batch = this.open.events.length > 0 ? this.open : this.committing
    if (batch === undefined) return Effect.void
    return Effect.orDie(Deferred.await(batch.done ??= Deferred.makeUnsafe()))
  })

  /** The writer: commits batch after batch, for as long as the host lives. */
  readonly run: Effect.Effect<never> = Effect.suspend(() => {
    // a committed batch is published at once: the next waits for the next
    // scheduler pass, so readers take this one first (see `Pace`)
    if (this.open.events.length > 0) return Effect.andThen(this.commitOpen, Effect.yieldNow)
    const idle = Deferred.makeUnsafe<void>()
    this.idle = idle
    return Deferred.await(idle)
  }).pipe(Effect.forever)

  /** Commits the open batch, if there is one, and waits for it. */
  private readonly commitOpen: Effect.Effect<void> = Effect.suspend(() => {
    const batch = this.open
    if (batch.events.length === 0) return Effect.void
    this.open = emptyBatch()
    if (this.broken !== undefined) {
      // nothing more is written: the batch is dropped, its waiters fail
      if (batch.done !== undefined) Deferred.doneUnsafe(batch.done, Exit.fail(this.broken))
      return Effect.void
    }
    this.committing = batch
    // the transaction can be interrupted (a shutdown past its flush deadline, on a database that
    // stopped answering: it is then not committed); what follows it cannot
    return Effect.uninterruptibleMask((restore) =>
      restore(this.commitWithRetries(toStoreBatch(batch))).pipe(
      Effect.exit,
      Effect.flatMap((exit) =>
        Effect.sync(() => {
          this.committing = undefined
          if (Exit.isFailure(exit)) {
            // nothing more is committed after a batch that was not: the store keeps a prefix
            const error = Cause.findError(exit.cause)
            this.broken = error._tag === "Success"
              ? error.success
              : new TaskStoreError({ reason: new StoreRejected({ operation: "write", message: Cause.pretty(exit.cause) }) })
            Deferred.doneUnsafe(this.failed, Exit.succeed(this.broken))
          } else {
            this.commits++
            this.committed(batch.events)
          }
          if (batch.done !== undefined) Deferred.doneUnsafe(batch.done, exit)
        })
      )
    ))
  })

  /** Waits until the writer has committed everything (at shutdown, after the last step). */
  readonly flush: Effect.Effect<void> = Effect.suspend(() =>
    this.open.events.length === 0 && this.committing === undefined
      ? Effect.void
      : Effect.andThen(this.sync, this.flush)
  )
}

const toStoreBatch = (batch: Batch): TaskStoreBatch => {
  const puts: Array<StoredTask> = []
  const deletes: Array<{ readonly sessionId: string; readonly taskId: string }> = []
  for (const change of batch.changes.values()) {
    if (change._tag === "Put") puts.push(change.task)
    else deletes.push(change)
  }
  return { events: batch.events, puts, deletes }
}

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
