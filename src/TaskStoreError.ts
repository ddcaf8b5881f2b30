/**
 * The failures of a task store, and why: `TaskStoreError` with its reason
 * union, `LeaseHeld` when another host runs the store, `CorruptRecord` for a
 * stored row that no longer decodes.
 *
 * @since 0.4.0
 */
import * as Schema from "effect/Schema"

/**
 * Why a store operation failed: the database could not be reached or timed
 * out (`StoreUnreachable`, worth retrying), it refused a statement
 * (`StoreRejected`), the store is set up wrong (`StoreMisconfigured`), or the
 * host stopped writing to it (`HostStopped`, its lease lost or a commit
 * failed for good). `operation` says what was tried.
 *
 * @category errors
 * @since 0.4.0
 */
export class StoreUnreachable extends Schema.TaggedClass<StoreUnreachable>()("StoreUnreachable", {
  operation: Schema.String,
  message: Schema.String
}) {}

/**
 * The database refused a statement (a constraint, a syntax error, a type it
 * cannot store); trying again will not help.
 *
 * @category errors
 * @since 0.4.0
 */
export class StoreRejected extends Schema.TaggedClass<StoreRejected>()("StoreRejected", {
  operation: Schema.String,
  message: Schema.String
}) {}

/**
 * The store is set up wrong (an invalid table prefix, a migration that
 * cannot run).
 *
 * @category errors
 * @since 0.4.0
 */
export class StoreMisconfigured extends Schema.TaggedClass<StoreMisconfigured>()("StoreMisconfigured", {
  operation: Schema.String,
  message: Schema.String
}) {}

/**
 * The host stopped writing to its store (it lost the lease, or a commit
 * failed for good): later writes are refused with this reason.
 *
 * @category errors
 * @since 0.4.0
 */
export class HostStopped extends Schema.TaggedClass<HostStopped>()("HostStopped", {
  operation: Schema.String,
  message: Schema.String
}) {}

/**
 * The reasons a {@link TaskStoreError} carries.
 *
 * @category errors
 * @since 0.4.0
 */
export const TaskStoreErrorReason = Schema.Union([StoreUnreachable, StoreRejected, StoreMisconfigured, HostStopped])

/**
 * @category errors
 * @since 0.4.0
 */
export type TaskStoreErrorReason = typeof TaskStoreErrorReason.Type

/**
 * A store operation failed; `reason` says why (a union, as `SqlError`'s),
 * `operation` what was tried, `isRetryable` whether trying again may help.
 *
 * **Example** (Telling an outage from a bad statement)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { TaskStore } from "effect-task-host"
 *
 * const load = Effect.gen(function*() {
 *   const store = yield* TaskStore
 *   return yield* store.load
 * }).pipe(
 *   Effect.catchTag("TaskStoreError", (error) =>
 *     error.reason._tag === "StoreUnreachable"
 *       ? Effect.logWarning(`database unreachable during ${error.operation}: ${error.message}`)
 *       : Effect.fail(error))
 * )
 * ```
 *
 * @category errors
 * @since 0.3.0
 */
export class TaskStoreError extends Schema.TaggedError<TaskStoreError>()("TaskStoreError", {
  reason: TaskStoreErrorReason
}) {
  /** What was tried: `migrate`, `load`, `read events`, `write`, `acquire lease`, `renew lease`, `release lease`, `start`. */
  get operation(): string {
    return this.reason.operation
  }

  override get message(): string {
    return this.reason.message
  }

  /** Whether trying again may help (the database was unreachable or timed out). */
  get isRetryable(): boolean {
    return this.reason._tag === "StoreUnreachable"
  }
}

/**
 * Another host holds the store's lease: two hosts never run one store's tasks
 * at once. `holder` names it; `expiresAt` is when its lease runs out unless it
 * renews it (epoch milliseconds).
 *
 * @category errors
 * @since 0.3.0
 */
export class LeaseHeld extends Schema.TaggedError<LeaseHeld>()("LeaseHeld", {
  holder: Schema.String,
  expiresAt: Schema.Int
}) {
  override get message(): string {
    return `the task store is leased to ${this.holder} until ${new Date(this.expiresAt).toISOString()}; ` +
      `another host runs its tasks, or one that stopped without releasing it (a crash): start with ` +
      `lease: { onHeld: "wait" } to wait until it is released or runs out`
  }
}

/**
 * A stored row no longer decodes (or contradicts its own key). It has been
 * moved to the quarantine table, out of the host's way; `table` and `key`
 * name the row, `message` says what is wrong with it.
 *
 * @category errors
 * @since 0.3.0
 */
export class CorruptRecord extends Schema.TaggedError<CorruptRecord>()("CorruptRecord", {
  table: Schema.String,
  key: Schema.String,
  message: Schema.String
}) {}

