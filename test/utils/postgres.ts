/**
 * PostgreSQL for tests: the server the global setup found
 * (`test/utils/postgres.global.ts`), a fresh database per test file,
 * `describePg`, which runs a block of tests against that database (or, when no
 * PostgreSQL is available, is one failing test saying why: never skipped), and
 * `PgServer`, a server of a test's own that the test may stop and start again.
 *
 * ```ts
 * describePg("TaskStore on PostgreSQL", (it) => {
 *   it.effect("writes a record", () => Effect.gen(function*() {
 *     const sql = yield* SqlClient.SqlClient
 *     ...
 *   }))
 * })
 * ```
 *
 * The database is created when the block's first test starts and dropped
 * (`WITH (FORCE)`) after its last one, so files running in parallel never share
 * tables. Tests inside one block share it: make table names or rows distinct,
 * or give each test its own database with `layerFreshDatabase`.
 *
 * Failure injection (an outage, a crashed database under several hosts) never
 * stops the run's server, which the other test files are using at the same
 * time: it starts a `PgServer` from the same binaries (the installed
 * PostgreSQL or the npm package's, whichever the run uses; also when the run
 * uses a server named by `PGHOST`):
 *
 * ```ts
 * it.effect("survives an outage", () => Effect.gen(function*() {
 *   const server = yield* makePgServer            // removed when the test's scope closes
 *   const sql = yield* PgClient.make(clientConfig(server.settings, server.settings.database))
 *   yield* server.stop()                          // or stop("immediate"): a crash
 *   yield* server.start                           // same port, same data
 * }).pipe(Effect.scoped))
 * ```
 */
import { PgClient } from "@effect/sql-pg"
import { describe, inject, it, layer, type Vitest } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, type Scope } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient, type SqlError } from "effect/sql"
import { randomBytes } from "node:crypto"
import { type BinariesKind, createCluster, type StopMode } from "./postgres.cluster.ts"
import { isCI, type PostgresBinaries, type PostgresSettings } from "./postgres.global.ts"

/** What the global setup found; `_tag: "Unavailable"` carries the reason. */
export const settings: PostgresSettings = inject("postgres")

/** The server binaries a `PgServer` is started from (the run's), or why there are none. */
export const binaries: PostgresBinaries = inject("postgresBinaries")

/** The name of the database a `layerFreshDatabase` layer created. */
export class PgTestDatabase extends Context.Service<PgTestDatabase, { readonly name: string }>()(
  "effect-task-host/test/PgTestDatabase"
) {}

/** What a PostgreSQL test block is given. */
export type PgServices = PgClient.PgClient | SqlClient.SqlClient | PgTestDatabase

/** Where a server accepts connections. */
export type Available = Extract<PostgresSettings, { _tag: "Available" }>

const available: Effect.Effect<Available> = Effect.suspend(() =>
  settings._tag === "Available"
    ? Effect.succeed(settings)
    : Effect.die(new Error(`PostgreSQL is not available: ${settings.reason}`))
)

/** `PgClient` settings for `database` on the test server. */
export const clientConfig = (server: Available, database: string): PgClient.PgPoolConfig => ({
  host: server.host,
  port: server.port,
  username: server.user,
  password: server.password === undefined ? undefined : Redacted.make(server.password),
  database,
  applicationName: "effect-task-host tests"
})

/**
 * `PgClient` and `SqlClient` connected to the server's own database
 * (`PGDATABASE`). Shared by every test file: prefer `layerFreshDatabase`.
 */
export const layerServerDatabase: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError> = Layer.unwrap(
  Effect.map(available, (server) => PgClient.layer(clientConfig(server, server.database)))
)

/** Runs `f` with a one-connection client to the server's own database, closed afterwards. */
const withAdmin = <A>(server: Available, f: (sql: PgClient.PgClient) => Effect.Effect<A, SqlError.SqlError>) =>
  PgClient.makeClient(clientConfig(server, server.database)).pipe(
    Effect.flatMap(f),
    Effect.scoped,
    Effect.provide(Reactivity.layer)
  )

/** A database name no other test file uses: `eth_<label>_<time>_<random>`, at most 63 characters. */
export const uniqueDatabaseName = (label: string): string => {
  const slug = label.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 32)
  return `eth_${slug}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`
}

/**
 * A new database, created when the layer is built and dropped when it is
 * released (after its pool has closed), with `PgClient`, `SqlClient` and
 * `PgTestDatabase` for it. `label` goes into the name, to tell in
 * `pg_database` which file made it.
 */
export const layerFreshDatabase = (label: string): Layer.Layer<PgServices, SqlError.SqlError> =>
  Layer.effectContext(Effect.gen(function*() {
    const server = yield* available
    const name = uniqueDatabaseName(label)
    yield* Effect.acquireRelease(
      withAdmin(server, (sql) => sql.unsafe(`CREATE DATABASE "${name}"`)),
      () =>
        withAdmin(server, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).pipe(
          Effect.orDie
        )
    )
    const client = yield* PgClient.make(clientConfig(server, name))
    return Context.make(PgClient.PgClient, client).pipe(
      Context.add(SqlClient.SqlClient, client),
      Context.add(PgTestDatabase, PgTestDatabase.of({ name }))
    )
  })).pipe(Layer.provide(Reactivity.layer))

export interface DescribePgOptions {
  /** Run the block with the live clock and console instead of `TestClock` and `TestConsole` (shared by the block's tests). */
  readonly excludeTestServices?: boolean
  readonly timeout?: number
}

/**
 * A `describe` block whose tests run against a fresh database
 * (`layerFreshDatabase(name)`). Without PostgreSQL the block is one failing
 * test that says why and how to get a server: the PostgreSQL tests are never
 * skipped (in CI the global setup fails first).
 */
export const describePg = (
  name: string,
  f: (it: Vitest.MethodsNonLive<PgServices>) => void,
  options: DescribePgOptions = {}
): void => {
  if (settings._tag === "Unavailable") {
    if (isCI()) throw new Error(`CI is set but PostgreSQL is not available: ${settings.reason}`)
    const reason = settings.reason
    describe(name, () => {
      it("needs PostgreSQL", () => {
        throw new Error(`PostgreSQL is not available: ${reason}`)
      })
    })
    return
  }
  layer(layerFreshDatabase(name), {
    excludeTestServices: options.excludeTestServices ?? false,
    ...(options.timeout === undefined ? {} : { timeout: options.timeout })
  })(name, f)
}

/**
 * A PostgreSQL server of a test's own, to stop and start again: an outage, a
 * database crash under hosts in other processes. Made by `makePgServer` (or
 * `PgServer.layer`) from the binaries the run uses, on 127.0.0.1 and a port of
 * its own that it keeps across restarts, with a role that may create databases
 * and a database of its own (`settings.database`). Clients see a stop as
 * connection errors; new connections succeed once `start` has returned.
 */
export class PgServer extends Context.Service<PgServer, {
  /** Where to connect (`clientConfig(server.settings, server.settings.database)`). */
  readonly settings: Available
  /** Which binaries it runs: the installed PostgreSQL or the npm package's. */
  readonly kind: BinariesKind
  /** The server's version, e.g. `18.4`. */
  readonly version: string
  /**
   * Stops the server, keeping its data; returns once it has exited. `fast`
   * (default) disconnects the clients and checkpoints; `immediate` is a crash:
   * the next start recovers from the WAL. Stopping a stopped server does nothing.
   */
  readonly stop: (mode?: StopMode) => Effect.Effect<void>
  /** Starts the stopped server on the same port with the same data; returns once it accepts connections. */
  readonly start: Effect.Effect<void>
  /** Whether the server is running. */
  readonly isRunning: Effect.Effect<boolean>
}>()("effect-task-host/test/PgServer") {
  /** `makePgServer` as a layer: started when built, removed when released. */
  static readonly layer: Layer.Layer<PgServer> = Layer.effect(PgServer, Effect.suspend(() => makePgServer))
}

/**
 * Starts a `PgServer`; it is stopped and its directory deleted when the scope
 * closes. Dies saying why if the run has no server binaries (the test fails,
 * it is never skipped). Starting takes about a second (`initdb`).
 */
export const makePgServer: Effect.Effect<PgServer["Service"], never, Scope.Scope> = Effect.gen(function*() {
  if (binaries._tag === "Missing") {
    return yield* Effect.die(new Error(`no PostgreSQL server binaries to start a server for this test: ${binaries.reason}`))
  }
  const found = binaries.binaries
  const cluster = yield* Effect.acquireRelease(
    Effect.promise(() => createCluster(found)),
    (cluster) => Effect.promise(() => cluster.remove())
  )
  return PgServer.of({
    settings: {
      _tag: "Available",
      kind: found.kind,
      source: `a server of the test's own: PostgreSQL ${found.version} from ${found.origin}, in ${cluster.dir}`,
      host: cluster.host,
      port: cluster.port,
      user: cluster.user,
      password: cluster.password,
      database: cluster.database
    },
    kind: found.kind,
    version: found.version,
    stop: (mode) => Effect.promise(() => cluster.stop(mode)),
    start: Effect.promise(() => cluster.start()),
    isRunning: Effect.promise(() => cluster.isRunning())
  })
})
