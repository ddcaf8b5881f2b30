/**
 * What a managed task knows about itself.
 *
 * The host provides `TaskContext` to every task started with `spawnManaged`:
 * `yield* TaskContext` inside the task to report progress, flip between
 * `running` and `waiting`, or learn that cancellation was requested (the
 * `cooperative` cancel policy relies on it: the task sees the request, cleans
 * up and returns, before the grace period ends and the host interrupts it).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { LiveState } from "./BackgroundTask.ts"

/**
 * The context of one managed task.
 *
 * **Example** (A monitor that stops when asked)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { TaskContext } from "effect-task-host"
 *
 * const monitor = Effect.gen(function*() {
 *   const ctx = yield* TaskContext
 *   let checks = 0
 *   while (!(yield* ctx.isCancelRequested)) {
 *     checks++
 *     yield* ctx.progress(`check ${checks} ok`)
 *     yield* Effect.sleep("1 second")
 *   }
 *   return `stopped after ${checks} checks`
 * })
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class TaskContext extends Context.Service<TaskContext, {
  /** The task's id. */
  readonly taskId: string
  /** The task's current session; it follows transfers. */
  readonly sessionId: Effect.Effect<string>
  /** Publishes a `Progress` event; a no-op once the task's record is terminal. */
  readonly progress: (message: string) => Effect.Effect<void>
  /** Flips the record between `running` and `waiting` (a no-op after a cancel request). */
  readonly setLiveState: (state: LiveState) => Effect.Effect<void>
  /** Completes, with the reason, once cancellation of the task is requested. */
  readonly cancelRequested: Effect.Effect<Option.Option<string>>
  /** Whether cancellation of the task has been requested. */
  readonly isCancelRequested: Effect.Effect<boolean>
  /**
   * The host's fencing token: on a durable store, a number that grows with
   * every new holder of the store's lease (0 in memory). Pass it to what the
   * task writes to, which should refuse a token lower than one it has seen:
   * a host that lost its lease stops its tasks, but an effect already in
   * flight can still land, and the token lets its target tell. Read past the
   * lease's expiry (the process was paused, the machine slept), it first
   * confirms the lease in the store; a lease another host took meanwhile
   * stops the host, and the task with it, instead of handing out the token.
   */
  readonly fencingToken: Effect.Effect<number>
}>()("effect-task-host/TaskContext") {}
