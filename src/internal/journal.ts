/**
 * The journal: a durable host's event sink, and its group commit.
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
 * Owns: the open batch, the writer fiber, the retries of a commit (with
 * backoff while the lease surely holds; a try whose reply was lost is not
 * written twice), freezing at a `release` shutdown. Calls the store;
 * `durable.ts` builds it and gives it the lease to check.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { BackgroundTaskEvent } from "../TaskEvent.ts"
import { type LeaseHeld, StoreRejected, TaskStoreError } from "../TaskStoreError.ts"
import type { EventSink } from "./registry.ts"
import { afterStep } from "./state.ts"
import type { StoredTask, TaskOwner, TaskStoreBatch, TaskStoreService } from "./store.ts"
import { ownerName, type Task } from "./task.ts"

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

type Change =
  | { readonly _tag: "Put"; readonly task: StoredTask }
  | { readonly _tag: "Delete"; readonly sessionId: string; readonly taskId: string }

interface Batch {
  readonly events: Array<BackgroundTaskEvent>
  /** The latest change of each record, by session id, then task id. */
  readonly changes: Map<string, Map<string, Change>>
  /** Completed once the batch is committed; made when the first caller waits. */
  done: Deferred.Deferred<void, TaskStoreError | LeaseHeld> | undefined
  /** Waits for `done`, a failure as a defect: made with it, for every caller that waits. */
  wait: Effect.Effect<void> | undefined
}

const emptyBatch = (): Batch => ({ events: [], changes: new Map(), done: undefined, wait: undefined })

/** The changes of a session's records in `batch` (ids as they are: no key string made per event). */
const changesOf = (batch: Batch, sessionId: string): Map<string, Change> => {
  let changes = batch.changes.get(sessionId)
  if (changes === undefined) batch.changes.set(sessionId, changes = new Map())
  return changes
}

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
          changesOf(batch, event.sessionId).set(taskId, { _tag: "Delete", sessionId: event.sessionId, taskId })
        }
        break
      case "Transferred":
        changesOf(batch, event.fromSessionId).set(event.taskId, {
          _tag: "Delete",
          sessionId: event.fromSessionId,
          taskId: event.taskId
        })
      // falls through: the record is written under its new session
      default:
        changesOf(batch, event.sessionId).set(event.taskId, {
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
    return batch.wait ??= Effect.orDie(Deferred.await(batch.done ??= Deferred.makeUnsafe()))
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
  for (const changes of batch.changes.values()) {
    for (const change of changes.values()) {
      if (change._tag === "Put") puts.push(change.task)
      else deletes.push(change)
    }
  }
  return { events: batch.events, puts, deletes }
}
