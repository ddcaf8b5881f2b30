/**
 * The background task host: the service an agent or plugin runtime uses to
 * run work beside a conversation and keep it visible and controllable.
 *
 * Tasks are Effect fibers owned by the host's layer (`spawnManaged`,
 * `spawnHidden`) or work owned elsewhere that the host only records
 * (`register`, `registerExternal`). Each has a record in the registry
 * (`get`, `list`), a lifecycle with typed, checked moves (`update`,
 * `complete`, `requestCancel`), and events on a live `Stream` (`subscribe`).
 * Closing the layer cancels everything that still runs: nothing outlives it.
 *
 * Reach for it when background work must be listed, watched, cancelled or
 * handed to another session. For a fire-and-forget fiber with no record,
 * `Effect.forkScoped` or a `FiberSet` is enough.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { TaskContext } from "./TaskContext.ts"
import * as internal from "./internal/host.ts"
import type {
  BackgroundTaskHostOptions,
  BackgroundTaskHostService,
  BackgroundTaskHostStoreOptions
} from "./internal/service.ts"
import type { InvalidOptions } from "./PluginError.ts"
import { type LeaseHeld, type TaskStoreError } from "./TaskStoreError.ts"
import { TaskStore } from "./TaskStore.ts"

export type {
  AwaitOptions,
  BackgroundTaskHostOptions,
  BackgroundTaskHostService,
  BackgroundTaskHostStoreOptions,
  BackgroundTaskSession,
  RecoveryHandler,
  RecoveryDecision,
  ExternalRecoveryHandler,
  RecoveryReport,
  RegisterError,
  SessionOptions,
  SubscribeOptions,
  TaskTree,
  TaskWatch,
  WatchOptions
} from "./internal/service.ts"

/**
 * The background task host service.
 *
 * **Example** (Spawning, watching and cancelling a task)
 *
 * ```ts
 * import { Effect, Fiber, Stream } from "effect"
 * import { BackgroundTaskHost, TaskContext } from "effect-task-host"
 *
 * const program = Effect.gen(function*() {
 *   const host = yield* BackgroundTaskHost
 *   const events = yield* host.subscribe({ sessionId: "s-1" })
 *   const watcher = yield* Effect.forkChild(
 *     Stream.runCollect(Stream.takeUntil(events, (e) => e._tag === "Cancelled"))
 *   )
 *   yield* host.spawnManaged("s-1", { id: "monitor-1", kind: "monitor", producer: "demo" },
 *     Effect.gen(function*() {
 *       const ctx = yield* TaskContext
 *       yield* ctx.progress("watching")
 *       yield* Effect.never
 *     }))
 *   yield* host.cancelManaged("s-1", "monitor-1")
 *   // Registered, Cancelled (and Progress, if the task got to run before the cancel)
 *   return yield* Fiber.join(watcher)
 * }).pipe(Effect.scoped, Effect.provide(BackgroundTaskHost.layer))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class BackgroundTaskHost extends Context.Service<BackgroundTaskHost, BackgroundTaskHostService>()(
  "effect-task-host/BackgroundTaskHost"
) {
  /**
   * The local, in-memory host with default options. Closing the layer cancels
   * every live task (with events) and ends every subscriber's stream.
   *
   * @category layers
   * @since 0.1.0
   */
  static readonly layer: Layer.Layer<BackgroundTaskHost> = Layer.effect(
    BackgroundTaskHost,
    Effect.orDie(internal.make({})) // the defaults are valid
  )

  /**
   * The local host with options. Invalid options (a negative or unreadable
   * duration, a count that is not a non-negative integer, a buffer under 1, a
   * concurrency limit under 1 or for an unknown kind, a `retry.schedule` that
   * is not a `Schedule`) fail the layer with `InvalidOptions` naming the option.
   *
   * @category layers
   * @since 0.1.0
   */
  static readonly layerWith = (
    options: BackgroundTaskHostOptions
  ): Layer.Layer<BackgroundTaskHost, InvalidOptions> => Layer.effect(BackgroundTaskHost, internal.make(options))

  /**
   * A host that writes through the `TaskStore` it is given. With a durable
   * store (`TaskStore.layerSql`) every call returns once its writes are
   * committed, and the layer, before it is ready: takes the store's lease,
   * reads the records back and resolves the tasks a previous process left
   * live (see {@link BackgroundTaskHostStoreOptions}). It fails with
   * `LeaseHeld` while another host holds the store, `TaskStoreError` when
   * the store cannot be read, `InvalidOptions` for an invalid option.
   *
   * @category layers
   * @since 0.3.0
   */
  static readonly layerStore = <R = never>(
    options: BackgroundTaskHostStoreOptions<R> = {}
  ): Layer.Layer<BackgroundTaskHost, InvalidOptions | TaskStoreError | LeaseHeld, TaskStore | Exclude<R, TaskContext | Scope.Scope>> =>
    Layer.effect(
      BackgroundTaskHost,
      Effect.gen(function*() {
        const store = yield* TaskStore
        // the recovery handlers' requirements: re-run tasks run with the layer's context
        yield* Effect.context<Exclude<R, TaskContext | Scope.Scope>>()
        return yield* internal.makeWith(options as BackgroundTaskHostStoreOptions<unknown>, store)
      })
    )
}

/**
 * The local, in-memory implementation of {@link BackgroundTaskHost}: tasks are
 * fibers supervised by the layer's scope, records live in memory.
 *
 * @category layers
 * @since 0.1.0
 */
export const LocalBackgroundTaskHost: {
  readonly layer: Layer.Layer<BackgroundTaskHost>
  readonly layerWith: (options: BackgroundTaskHostOptions) => Layer.Layer<BackgroundTaskHost, InvalidOptions>
} = {
  layer: BackgroundTaskHost.layer,
  layerWith: BackgroundTaskHost.layerWith
}
