/**
 * PostgreSQL for tests: the server the global setup found
 * (`test/utils/postgres.global.ts`), a fresh database per test file, and
 * `describePg`, which runs a block of tests against that database or, only
 * outside CI and only when no PostgreSQL is available, reports them skipped
 * with the reason.
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
 */
import { PgClient } from "@effect/sql-pg"
import { describe, inject, it, layer, type Vitest } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient, type SqlError } from "effect/sql"
import { randomBytes } from "node:crypto"
import { isCI, type PostgresSettings } from "./postgres.global.ts"

/** What the global setup found; `_tag: "Unavailable"` carries the reason. */
export const settings: PostgresSettings = inject("postgres")

/** The name of the database a `layerFreshDatabase` layer created. */
export class PgTestDatabase extends Context.Service<PgTestDatabase, { readonly name: string }>()(
  "effect-task-host/test/PgTestDatabase"
) {}

/** What a PostgreSQL test block is given. */
export type PgServices = PgClient.PgClient | SqlClient.SqlClient | PgTestDatabase

type Available = Extract<PostgresSettings, { _tag: "Available" }>

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
