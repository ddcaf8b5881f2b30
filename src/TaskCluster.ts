/**
 * The background task host on several processes, built on Effect's cluster
 * (`effect/cluster`): each session is an entity placed on one runner, which
 * runs a durable host of its own for it; every process (runner or client)
 * gets the same `BackgroundTaskHost` service, whose calls are routed to the
 * session's owner. The cluster's SQL database (PostgreSQL) is the truth:
 * records, events, and a lease row per session whose fencing token grows
 * each time a runner takes the session.
 *
 * Reach for it when one process is not enough: more sessions than one
 * machine runs, or no downtime when a machine dies. See
 * docs/cluster.md for what each process needs and what is promised.
 *
 * @since 0.5.0
 */
import { hostname } from "node:os"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Sharding } from "effect/cluster"
import type * as SqlClient from "effect/sql/SqlClient"
import { BackgroundTaskHost } from "./BackgroundTaskHost.ts"
import { FeedSignal } from "./internal/cluster/feed.ts"
import * as ClusterProtocol from "./internal/cluster/protocol.ts"
import * as Router from "./internal/cluster/router.ts"
import { type LocalSession, runnerLayers } from "./internal/cluster/runner.ts"
import * as ClusterStore from "./internal/cluster/store.ts"
import { optionsOf, storeOptionsOf } from "./internal/options.ts"
import type {
  BackgroundTaskHostOptions,
  BackgroundTaskHostStoreOptions,
  ExternalRecoveryHandler,
  RecoveryHandler
} from "./internal/service.ts"
import { InvalidOptions } from "./PluginError.ts"
import type { TaskContext } from "./TaskContext.ts"
import type { TaskStoreError } from "./TaskStoreError.ts"

/**
 * The entity behind a cluster host: one per session, keyed by the session
 * id. Exposed for tests (`Entity.makeTestClient`) and tools; applications
 * use `BackgroundTaskHost`.
 *
 * @category entities
 * @since 0.5.0
 */
export const TaskSession = ClusterProtocol.TaskSession

/**
 * The body to pass to a cluster host's `spawnManaged` when the task is to be
 * built on the runner that owns the session by its producer's handler
 * (`handlers`), from the registration's `input`: a task's body cannot cross
 * processes.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { BackgroundTaskHost } from "effect-task-host"
 * import * as TaskCluster from "effect-task-host/cluster"
 *
 * const crawl = (url: string) =>
 *   Effect.gen(function*() {
 *     const host = yield* BackgroundTaskHost
 *     return yield* host.spawnManaged(
 *       "s-1",
 *       { id: "crawl-1", kind: "subagent", producer: "crawler", input: { url } },
 *       TaskCluster.byProducer
 *     )
 *   })
 * ```
 *
 * @category constructors
 * @since 0.5.0
 */
export const byProducer: Effect.Effect<never, never> = Router.byProducer as Effect.Effect<never, never>

/**
 * Options of a cluster's processes (`layer`, `layerClient`).
 *
 * @category models
 * @since 0.5.0
 */
export interface TaskClusterClientOptions<RL = never> {
  /** Prefix of the cluster's tables (default `task_cluster_`). */
  readonly tablePrefix?: string | undefined
  /**
   * A notification stream for a channel (PostgreSQL: `PgClient.listen`): each
   * notification wakes the process's `subscribe` / `watch` / `await` readers
   * at once. Without it they poll.
   */
  readonly listen?: ((channel: string) => Stream.Stream<string, unknown, RL>) | undefined
  /** How often readers look at the store when nothing woke them (default 1 second with `listen`, 200 ms without). */
  readonly pollInterval?: Duration.Input | undefined
  /**
   * PostgreSQL: how long a commit's transaction may wait for its runner
   * between statements before the server ends it, writing nothing of it
   * (`idle_in_transaction_session_timeout`; default 2 seconds). A commit
   * holds its session's lease row and the row of the global feed, which
   * every commit takes: a runner paused in the middle of one (SIGSTOP, a
   * frozen VM) would otherwise stall every commit of the cluster until it
   * resumed. Keep it well above the longest pause of a healthy runner's
   * event loop; `Infinity` sets no limit.
   */
  readonly transactionIdleTimeout?: Duration.Input | undefined
}

/**
 * Options of a runner (`layer`).
 *
 * @category models
 * @since 0.5.0
 */
export interface TaskClusterOptions<R = never, RL = never> extends BackgroundTaskHostOptions, TaskClusterClientOptions<RL> {
  /**
   * Handlers by producer: the body of a task spawned through the cluster
   * (`spawnManaged(…, TaskCluster.byProducer)`) and of a task a failed or
   * stopped runner left live (recovery, as `layerStore`'s `recovery`).
   */
  readonly handlers?: { readonly [producer: string]: RecoveryHandler<R> } | undefined
  /** As `layerStore`'s `recoverExternal`; also the cancel effect of an external task registered through the cluster. */
  readonly recoverExternal?: { readonly [producer: string]: ExternalRecoveryHandler<R> } | undefined
  /**
   * The session's lease row: renewed every `renewEvery` (default a third of
   * `ttl`) for `ttl` more (default 10 seconds). A session whose runner died is
   * taken by the next one once it runs out: keep `ttl` at most the cluster's
   * `shardLockExpiration`, so it has run out when the shard moves.
   */
  readonly sessionLease?: { readonly ttl?: Duration.Input | undefined; readonly renewEvery?: Duration.Input | undefined } | undefined
  /** As `layerStore`'s (the mode is always `release`: a stopping runner hands its sessions over). */
  readonly shutdown?: { readonly drain?: Duration.Input | undefined; readonly flushTimeout?: Duration.Input | undefined } | undefined
  /** Stored events kept per session (as `layerStore`'s `eventRetention`). */
  readonly eventRetention?: BackgroundTaskHostStoreOptions["eventRetention"]
  /** A session without live tasks is passivated after this long without a call (default 1 minute). */
  readonly maxIdleTime?: Duration.Input | undefined
  /** How often one runner looks for sessions with live tasks that nobody runs (default 5 seconds). */
  readonly orphanScan?: Duration.Input | undefined
  /** This runner's name (default host name, pid and a random suffix). */
  readonly runnerName?: string | undefined
}

const duration = (option: string, input: Duration.Input | undefined, fallback: Duration.Duration) =>
  Effect.suspend(() => {
    if (input === undefined) return Effect.succeed(fallback)
    const d = Duration.fromInput(input)
    return d._tag === "Some" && Duration.isGreaterThan(d.value, Duration.zero)
      ? Effect.succeed(d.value)
      : Effect.fail(new InvalidOptions({ option, message: `${option} must be a positive duration` }))
  })

const reader = <RL>(options: TaskClusterClientOptions<RL>) =>
  Effect.gen(function*() {
    const idle = yield* duration("transactionIdleTimeout", options.transactionIdleTimeout, Duration.seconds(2))
    const store = yield* ClusterStore.make({
      tablePrefix: options.tablePrefix,
      // 0: PostgreSQL's "no limit"
      transactionIdleTimeoutMillis: Duration.isFinite(idle) ? Duration.toMillis(idle) : 0
    })
    const poll = yield* duration(
      "pollInterval",
      options.pollInterval,
      options.listen === undefined ? Duration.millis(200) : Duration.seconds(1)
    )
    const signal = new FeedSignal(poll)
    yield* Effect.addFinalizer(() => Effect.sync(() => signal.close()))
    if (options.listen !== undefined) yield* signal.follow(options.listen, store.channel)
    return { store, signal }
  })

/**
 * A runner of the cluster: runs the sessions the cluster places here (each
 * with its own durable host, its recovery at fail-over, its fencing) and
 * provides `BackgroundTaskHost`, routed. Needs `Sharding` (a runner's
 * cluster layer, e.g. `NodeClusterSocket.layer({ storage: "sql" })`) and the
 * `SqlClient` of the shared database.
 *
 * @category layers
 * @since 0.5.0
 */
export const layer = <R = never, RL = never>(
  options: TaskClusterOptions<R, RL> = {}
): Layer.Layer<
  BackgroundTaskHost,
  InvalidOptions | TaskStoreError,
  Sharding.Sharding | SqlClient.SqlClient | Exclude<R, TaskContext | Scope.Scope> | RL
> =>
  Layer.effect(
    BackgroundTaskHost,
    Effect.gen(function*() {
      const ttl = yield* duration("sessionLease.ttl", options.sessionLease?.ttl, Duration.seconds(10))
      const hostOptions: BackgroundTaskHostStoreOptions<unknown> = {
        ...options,
        lease: {
          ttl,
          renewEvery: options.sessionLease?.renewEvery ?? Duration.divideUnsafe(ttl, 3)
        },
        recovery: options.handlers as BackgroundTaskHostStoreOptions<unknown>["recovery"],
        recoverExternal: options.recoverExternal as BackgroundTaskHostStoreOptions<unknown>["recoverExternal"],
        shutdown: { ...options.shutdown, mode: "release" },
        eventRetention: options.eventRetention
      }
      // checked once here, so a session never fails to start on a bad option
      yield* optionsOf(hostOptions)
      yield* storeOptionsOf(hostOptions)
      const maxIdleTime = yield* duration("maxIdleTime", options.maxIdleTime, Duration.minutes(1))
      const scanEvery = yield* duration("orphanScan", options.orphanScan, Duration.seconds(5))
      const { signal, store } = yield* reader(options)
      const runnerName = options.runnerName ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`
      const sessions = new Map<string, LocalSession>()
      yield* Layer.build(runnerLayers({
        store,
        sessions,
        hostOptions,
        handlers: (options.handlers ?? {}) as { readonly [producer: string]: RecoveryHandler<unknown> },
        recoverExternal: (options.recoverExternal ?? {}) as { readonly [producer: string]: ExternalRecoveryHandler<unknown> },
        maxIdleTime,
        runnerName
      }, scanEvery))
      return yield* Router.make({ store, signal, sessions, runnerName })
    })
  ) as never

/**
 * A process that runs no session (an API server, a CLI): the same
 * `BackgroundTaskHost`, every write routed to the session's runner, reads
 * from the store. A task body cannot run here: spawn with `byProducer`.
 * Needs `Sharding` (`NodeClusterSocket.layer({ clientOnly: true, storage: "sql" })`)
 * and the `SqlClient` of the shared database.
 *
 * @category layers
 * @since 0.5.0
 */
export const layerClient = <RL = never>(
  options: TaskClusterClientOptions<RL> = {}
): Layer.Layer<BackgroundTaskHost, InvalidOptions | TaskStoreError, Sharding.Sharding | SqlClient.SqlClient | RL> =>
  Layer.effect(
    BackgroundTaskHost,
    Effect.gen(function*() {
      const { signal, store } = yield* reader(options)
      return yield* Router.make({ store, signal, sessions: new Map(), runnerName: undefined })
    })
  )
