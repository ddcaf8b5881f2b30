/**
 * Group commit: the host's writes to a durable store.
 *
 * The registry hands every event (and the record it carries) to `record`, in
 * the step that makes it. Writes collect in the open batch; one writer fiber
 * commits a batch per transaction, oldest first, so the store always holds a
 * prefix of the host's history: events without a gap in `seq`. A caller
 * waits with `sync` for the batch its own writes are in; callers that arrive
 * while a batch commits share the next one. Subscribers get a batch's events
 * once it is committed: an event a reader has seen is never lost to a crash.
 *
 * A batch keeps only the latest version of each record: a task registered,
 * started and ended between two commits is written once.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { BackgroundTaskEvent } from "../BackgroundTask.ts"
import {
  type LeaseHeld,
  type StoredTask,
  type TaskOwner,
  type TaskStoreBatch,
  StoreRejected,
  TaskStoreError,
  type TaskStoreService
} from "../TaskStore.ts"
import type { EventSink } from "./registry.ts"
import { afterStep } from "./state.ts"
import { ownerName, type Task } from "./task.ts"

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

  private readonly store: TaskStoreService
  private readonly lease: Effect.Effect<{ readonly owner: string; readonly expiresAt: number }>
  private readonly committed: (events: ReadonlyArray<BackgroundTaskEvent>) => void

  /**
   * `lease` says which lease each commit checks and renews; `committed` gets
   * each committed batch's events, in order (the host publishes them then).
   */
  constructor(
    store: TaskStoreService,
    lease: Effect.Effect<{ readonly owner: string; readonly expiresAt: number }>,
    committed: (events: ReadonlyArray<BackgroundTaskEvent>) => void
  ) {
    this.store = store
    this.lease = lease
    this.committed = committed
  }

  /** The registry's sink: every event, with the task it is about, in the step that makes it. */
  readonly emit = (event: BackgroundTaskEvent, task: Task | undefined): void =>
    this.record(event, task?.order ?? 0, task === undefined ? undefined : ownerName(task.owner))

  /** Takes one event (and the record it changes) into the open batch; inside a step. */
  record(event: BackgroundTaskEvent, order: number, owner: TaskOwner | undefined): void {
    const batch = this.open
    batch.events.push(event)
    switch (event._tag) {
      case "Progress":
        break
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

  /** Waits until every write made so far is committed; a failed commit is a defect. */
  readonly sync: Effect.Effect<void> = Effect.suspend(() => {
    if (this.broken !== undefined) return Effect.die(this.broken)
    const batch = this.open.events.length > 0 ? this.open : this.committing
    if (batch === undefined) return Effect.void
    return Effect.orDie(Deferred.await(batch.done ??= Deferred.makeUnsafe()))
  })

  /** The writer: commits batch after batch, for as long as the host lives. */
  readonly run: Effect.Effect<never> = Effect.suspend(() => {
    if (this.open.events.length > 0) return this.commitOpen
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
    const write = Effect.flatMap(this.lease, (lease) => this.store.write(toStoreBatch(batch), lease))
    return write.pipe(
      // a transaction is all or nothing: a failed one can be tried again
      Effect.retry({ times: 2, while: (error) => error._tag === "TaskStoreError" }),
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
      ),
      Effect.uninterruptible
    )
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
