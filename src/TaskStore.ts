/**
 * Where the host keeps its task records and events: in memory (the default)
 * or durably, in a SQL database through Effect's `SqlClient`.
 *
 * The host writes through the store: every record change and every event is
 * handed to it in the step that makes it, and with a durable store a call
 * returns only once its writes are committed. Concurrent writes share one
 * transaction (group commit). When a host starts on a durable store it takes
 * the store's lease, reads the records back, and resolves the tasks a
 * previous process left live (see `BackgroundTaskHost.layerStore`).
 *
 * Reach for `TaskStore.layerSql` when an application must not forget its
 * background work across a restart; any Effect SQL driver works (the package
 * ships `NodeSqliteClient` for SQLite files; `@effect/sql-pg` for PostgreSQL).
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as SqlClient from "effect/sql/SqlClient"
import { makeSql, type TaskStoreService } from "./internal/store.ts"
import type { TaskStoreError } from "./TaskStoreError.ts"

/**
 * The store the host writes its records and events through.
 *
 * **Example** (A host whose records survive a restart, in a SQLite file)
 *
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { BackgroundTaskHost, TaskStore } from "effect-task-host"
 * import * as NodeSqliteClient from "effect-task-host/sqlite"
 *
 * const HostLive = BackgroundTaskHost.layerStore({ lease: { ttl: "10 seconds" } }).pipe(
 *   Layer.provide(TaskStore.layerSql()),
 *   Layer.provide(NodeSqliteClient.layer({ filename: "tasks.db" }))
 * )
 *
 * const program = Effect.gen(function*() {
 *   const host = yield* BackgroundTaskHost
 *   return yield* host.list({ includeTerminal: true })
 * }).pipe(Effect.provide(HostLive))
 * ```
 *
 * @category services
 * @since 0.3.0
 */
export class TaskStore extends Context.Service<TaskStore, TaskStoreService>()("effect-task-host/TaskStore") {
  /**
   * Records and events in memory only: the host's default, today's behaviour.
   * A host on it keeps no history and recovers nothing.
   *
   * @category layers
   * @since 0.3.0
   */
  static readonly layerMemory: Layer.Layer<TaskStore> = Layer.succeed(TaskStore, {
    durable: false,
    load: Effect.succeed({ tasks: [], lastSeq: 0, quarantined: [] }),
    write: () => Effect.void,
    events: (fromSeq) => Effect.succeed({ events: [], quarantined: [], lastRead: fromSeq }),
    acquireLease: () => Effect.succeed(0),
    renewLease: () => Effect.succeed(true),
    releaseLease: () => Effect.void,
    prunedThrough: Effect.succeed(0),
    pruneEvents: () => Effect.succeed(0),
    agedThrough: () => Effect.succeed({ through: 0, next: undefined })
  })

  /**
   * A durable store in the database of the `SqlClient` it is given (SQLite
   * and PostgreSQL are tested). Its migrations run when the layer starts.
   * Records are stored in their wire form (snake_case JSON), events with
   * their `seq`.
   *
   * @category layers
   * @since 0.3.0
   */
  static readonly layerSql = (
    options?: TaskStoreSqlOptions
  ): Layer.Layer<TaskStore, TaskStoreError, SqlClient.SqlClient> => Layer.effect(TaskStore, makeSql(options))
}

/**
 * Options of `TaskStore.layerSql`.
 *
 * @category models
 * @since 0.3.0
 */
export interface TaskStoreSqlOptions {
  /** Prefix of the store's table names (default `task_host_`): letters, digits and `_`. */
  readonly tablePrefix?: string | undefined
}
