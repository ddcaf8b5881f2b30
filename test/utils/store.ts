/**
 * Test helpers for the durable store: "a store backend" (a fresh SQLite file
 * or a fresh PostgreSQL database per test), a block of tests run once per
 * backend (`describeStores`), a host on a database that the test closes
 * itself, and readers of the store's tables.
 *
 * ```ts
 * describeStores("TaskStore", (test, backend) => {
 *   test("writes a record", () => Effect.gen(function*() {
 *     const db = yield* backend.fresh
 *     const { host } = yield* startHost(db.sql)
 *     ...
 *   }))
 * })
 * ```
 *
 * The hosts and stores of one test share the database's one client `db.sql`
 * (SQLite: one connection, so transactions never wait for each other's file
 * lock, which `node:sqlite` would wait for with the thread blocked);
 * `db.connect` opens another, as a new process would.
 */
import { PgClient } from "@effect/sql-pg"
import { describe, it, type Vitest } from "@effect/vitest"
import {
  Context,
  DateTime,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Schema,
  Scope,
  Stream
} from "effect"
import { Reactivity } from "effect/reactivity"
import { SqlClient } from "effect/sql"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  BackgroundTaskEvent,
  BackgroundTaskHost,
  type BackgroundTaskHostStoreOptions,
  BackgroundTaskRecord,
  type LeaseHeld,
  type InvalidOptions,
  type SubscriptionEvent,
  type TaskKind,
  type TaskState,
  TaskStore,
  type TaskStoreError,
} from "../../src/index.ts"
import type { TaskStoreService } from "../../src/internal/store.ts"
import * as NodeSqliteClient from "../../src/NodeSqliteClient.ts"
import { clientConfig, describePg, layerFreshDatabase, PgTestDatabase, settings } from "./postgres.ts"

// -----------------------------------------------------------------------------
// backends
// -----------------------------------------------------------------------------

/** One empty database, for one test. */
export interface TestDatabase {
  /** A client open for the whole test: direct queries, and the stores of the test's hosts. */
  readonly sql: SqlClient.SqlClient
  /** Opens another client on the same database, closed with the current scope (a new process's view). */
  readonly connect: Effect.Effect<SqlClient.SqlClient, never, Scope.Scope>
}

/** A database engine the store is tested on. */
export interface StoreBackend {
  readonly name: "SQLite" | "PostgreSQL"
  /** A new, empty database, dropped (or deleted) when the current scope closes. */
  readonly fresh: Effect.Effect<TestDatabase, never, Scope.Scope>
  /** The names of the tables in the database (the test's own), sorted. */
  readonly tables: (sql: SqlClient.SqlClient) => Effect.Effect<ReadonlyArray<string>>
  /** A table's column names, in order. */
  readonly columns: (sql: SqlClient.SqlClient, table: string) => Effect.Effect<ReadonlyArray<string>>
}

/** A directory under the OS temp dir, removed when the current scope closes. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const openSqlite = (filename: string) =>
  NodeSqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer), Effect.orDie)

/** A SQLite file in a temp directory of its own (`NodeSqliteClient`). */
export const sqliteBackend: StoreBackend = {
  name: "SQLite",
  fresh: Effect.gen(function*() {
    const dir = yield* tempDir("task-store-")
    const filename = join(dir, "tasks.db")
    const sql = yield* openSqlite(filename)
    return { sql, connect: openSqlite(filename) }
  }),
  tables: (sql) =>
    sql<{ readonly name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'
      AND name NOT LIKE 'sqlite_%' ORDER BY name`.pipe(
      Effect.map((rows) => rows.map((row) => row.name)),
      Effect.orDie
    ),
  columns: (sql, table) =>
    sql<{ readonly name: string }>`SELECT name FROM pragma_table_info(${table}) ORDER BY cid`.pipe(
      Effect.map((rows) => rows.map((row) => row.name)),
      Effect.orDie
    )
}

/** A fresh database on the test PostgreSQL server (`@effect/sql-pg`). */
export const postgresBackend: StoreBackend = {
  name: "PostgreSQL",
  fresh: Effect.gen(function*() {
    const context = yield* Layer.build(layerFreshDatabase("task store")).pipe(Effect.orDie)
    const sql = Context.get(context, SqlClient.SqlClient)
    const { name } = Context.get(context, PgTestDatabase)
    const connect = Effect.suspend(() => {
      if (settings._tag !== "Available") return Effect.die(new Error(`PostgreSQL is not available: ${settings.reason}`))
      return PgClient.make(clientConfig(settings, name)).pipe(
        Effect.map((client): SqlClient.SqlClient => client),
        Effect.provide(Reactivity.layer),
        Effect.orDie
      )
    })
    return { sql, connect }
  }),
  tables: (sql) =>
    sql<{ readonly name: string }>`SELECT tablename AS name FROM pg_tables
      WHERE schemaname = current_schema() ORDER BY tablename`.pipe(
      Effect.map((rows) => rows.map((row) => row.name)),
      Effect.orDie
    ),
  columns: (sql, table) =>
    sql<{ readonly name: string }>`SELECT column_name AS name FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = ${table} ORDER BY ordinal_position`.pipe(
      Effect.map((rows) => rows.map((row) => row.name)),
      Effect.orDie
    )
}

/**
 * Runs a block of tests once per backend: `"<name> (SQLite)"` and
 * `"<name> (PostgreSQL)"` (reported skipped, with the reason, where no
 * PostgreSQL is available outside CI: see `describePg`). Each test makes its
 * own database with `backend.fresh`.
 */
export const describeStores = (
  name: string,
  body: (test: Vitest.Test<Scope.Scope>, backend: StoreBackend) => void
): void => {
  describe(`${name} (SQLite)`, () => body(it.effect, sqliteBackend))
  describePg(`${name} (PostgreSQL)`, (it) => body(it.effect, postgresBackend))
}

// -----------------------------------------------------------------------------
// hosts and stores
// -----------------------------------------------------------------------------

/** The SQL store on a client, as a layer (the client is not closed with it). */
export const sqlStore = (
  sql: SqlClient.SqlClient,
  options?: { readonly tablePrefix?: string }
): Layer.Layer<TaskStore, TaskStoreError> =>
  TaskStore.layerSql(options).pipe(Layer.provide(Layer.succeed(SqlClient.SqlClient, sql)))

/** The SQL store's service on a client, built in the current scope. */
export const makeStore = (sql: SqlClient.SqlClient, options?: { readonly tablePrefix?: string }) =>
  Layer.build(sqlStore(sql, options)).pipe(Effect.map((context) => Context.get(context, TaskStore)))

export interface StoreHost {
  readonly host: BackgroundTaskHost["Service"]
  /** Closes the host's layer (shutdown: live tasks cancelled, written, lease released). */
  readonly close: Effect.Effect<void>
  /** Closes the host, then returns every event it published after it started, in order. */
  readonly events: Effect.Effect<ReadonlyArray<SubscriptionEvent>>
}

/**
 * A host (`BackgroundTaskHost.layerStore`) on `store` (default: the SQL store
 * on `sql`), in a scope the test closes itself (and that the test's scope
 * closes otherwise); fails as the layer does.
 */
export const startHost = (
  sql: SqlClient.SqlClient,
  options: BackgroundTaskHostStoreOptions = {},
  store: Layer.Layer<TaskStore, TaskStoreError> = sqlStore(sql)
): Effect.Effect<StoreHost, InvalidOptions | TaskStoreError | LeaseHeld, Scope.Scope> =>
  startHostOn(BackgroundTaskHost.layerStore({ subscriberBuffer: 1_000_000, ...options }).pipe(Layer.provide(store)))

/** `startHost` for any host layer. */
export const startHostOn = <E>(
  layer: Layer.Layer<BackgroundTaskHost, E>
): Effect.Effect<StoreHost, E, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    const host = Context.get(context, BackgroundTaskHost)
    // the subscription has its own scope, closed after the host's, so the
    // collector reads the shutdown's events too
    const subscriptionScope = yield* Scope.fork(yield* Effect.scope)
    const stream = yield* host.subscribe().pipe(Scope.provide(subscriptionScope), Effect.orDie)
    const collector = yield* Effect.forkDetach(Stream.runCollect(stream))
    const close = Scope.close(scope, Exit.void)
    const events = close.pipe(
      Effect.andThen(Fiber.join(collector)),
      Effect.ensuring(Scope.close(subscriptionScope, Exit.void))
    )
    return { host, close, events }
  })

/** Builds a host layer in a scope of its own and returns how it ended: a started host is closed at once. */
export const startExit = <E>(layer: Layer.Layer<BackgroundTaskHost, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(Layer.buildWithScope(layer, scope))
    yield* Scope.close(scope, Exit.void)
    return exit
  })

// -----------------------------------------------------------------------------
// records and events as the previous process would have left them
// -----------------------------------------------------------------------------

export interface RecordSpec {
  readonly id: string
  readonly sessionId?: string
  readonly kind?: TaskKind
  readonly producer?: string
  readonly state: TaskState
  readonly attempt?: number
  readonly maxAttempts?: number
  readonly idempotencyKey?: string
  readonly parentTaskId?: string
  /** The `seq` of its `Registered` (and its `revision`). */
  readonly seq: number
  /** Epoch millis of `createdAt` / `updatedAt`. */
  readonly at?: number
}

/** A record in the shape the host writes, for writing straight into a store. */
export const recordOf = (spec: RecordSpec): BackgroundTaskRecord => {
  const at = DateTime.makeUnsafe(spec.at ?? 0)
  const terminal = spec.state === "completed" || spec.state === "failed" || spec.state === "cancelled"
  return {
    id: spec.id,
    kind: spec.kind ?? "subagent",
    producer: spec.producer ?? "test",
    scope: { sessionId: spec.sessionId ?? "s-old" },
    parentTaskId: Option.fromUndefinedOr(spec.parentTaskId),
    childSessionId: Option.none(),
    state: spec.state,
    cancelPolicy: "cooperative",
    closePolicy: "keep",
    attempt: {
      attempt: spec.attempt ?? 0,
      maxAttempts: Option.fromUndefinedOr(spec.maxAttempts),
      idempotencyKey: Option.fromUndefinedOr(spec.idempotencyKey)
    },
    result: spec.state === "completed" ? Option.some({ summary: Option.some("done before") }) : Option.none(),
    failure: Option.none(),
    createdAt: at,
    updatedAt: at,
    completedAt: terminal ? Option.some(at) : Option.none(),
    progress: Option.none(),
    revision: spec.seq
  }
}

/** The `Registered` event of a record (numbered by its `revision`). */
export const registeredOf = (record: BackgroundTaskRecord): BackgroundTaskEvent => ({
  _tag: "Registered",
  seq: record.revision,
  taskId: record.id,
  sessionId: record.scope.sessionId,
  kind: record.kind,
  record
})

// -----------------------------------------------------------------------------
// the tables
// -----------------------------------------------------------------------------

export const encodeRecord = Schema.encodeSync(BackgroundTaskRecord)
export const encodeEvent = Schema.encodeSync(BackgroundTaskEvent)
const decodeEventJson = Schema.decodeUnknownSync(Schema.fromJsonString(BackgroundTaskEvent))

/** A record's row key in the tasks table. */
export const taskKey = (sessionId: string, taskId: string) => JSON.stringify([sessionId, taskId])

export interface TaskRow {
  readonly task_key: string
  readonly session_id: string
  readonly task_id: string
  readonly ord: number
  readonly owner: string
  readonly state: string
  /** The `record` column, parsed. */
  readonly record: unknown
}

export interface EventRow {
  readonly seq: number
  readonly session_id: string
  readonly task_id: string | null
  readonly tag: string
  /** The `event` column, parsed. */
  readonly event: unknown
  /** The `event` column, decoded. */
  readonly decoded: BackgroundTaskEvent
}

/** Every row of the tasks table, by `ord`. */
export const taskRows = (sql: SqlClient.SqlClient, prefix = "task_host_") =>
  sql<{
    readonly task_key: string
    readonly session_id: string
    readonly task_id: string
    readonly ord: unknown
    readonly owner: string
    readonly state: string
    readonly record: string
  }>`SELECT task_key, session_id, task_id, ord, owner, state, record FROM ${sql(`${prefix}tasks`)} ORDER BY ord`.pipe(
    Effect.map((rows): ReadonlyArray<TaskRow> =>
      rows.map((row) => ({
        task_key: row.task_key,
        session_id: row.session_id,
        task_id: row.task_id,
        ord: Number(row.ord),
        owner: row.owner,
        state: row.state,
        record: JSON.parse(row.record)
      }))
    ),
    Effect.orDie
  )

/** Every row of the events table, by `seq`. */
export const eventRows = (sql: SqlClient.SqlClient, prefix = "task_host_") =>
  sql<{
    readonly seq: unknown
    readonly session_id: string
    readonly task_id: string | null
    readonly tag: string
    readonly event: string
  }>`SELECT seq, session_id, task_id, tag, event FROM ${sql(`${prefix}events`)} ORDER BY seq`.pipe(
    Effect.map((rows): ReadonlyArray<EventRow> =>
      rows.map((row) => ({
        seq: Number(row.seq),
        session_id: row.session_id,
        task_id: row.task_id,
        tag: row.tag,
        event: JSON.parse(row.event),
        decoded: decodeEventJson(row.event)
      }))
    ),
    Effect.orDie
  )

export interface QuarantineRow {
  readonly source: string
  readonly row_key: string
  readonly data: string
  readonly error: string
}

/** Every row of the quarantine table, in the order they were quarantined. */
export const quarantineRows = (sql: SqlClient.SqlClient, prefix = "task_host_") =>
  sql<QuarantineRow>`SELECT source, row_key, data, error FROM ${sql(`${prefix}quarantine`)} ORDER BY id`.pipe(
    Effect.map((rows) => rows.map(({ data, error, row_key, source }) => ({ source, row_key, data, error }))),
    Effect.orDie
  )

export interface LeaseRow {
  readonly owner: string
  readonly expires_at: number
  readonly acquired_at: number
}

/** The lease row, if there is one. */
export const leaseRow = (sql: SqlClient.SqlClient, prefix = "task_host_") =>
  sql<{ readonly name: string; readonly owner: string; readonly expires_at: unknown; readonly acquired_at: unknown }>`
    SELECT name, owner, expires_at, acquired_at FROM ${sql(`${prefix}lease`)}`.pipe(
    Effect.map((rows): Option.Option<LeaseRow> => {
      if (rows.length > 1) throw new Error(`more than one lease row: ${JSON.stringify(rows)}`)
      const row = rows[0]
      return row === undefined ? Option.none() : Option.some({
        owner: row.owner,
        expires_at: Number(row.expires_at),
        acquired_at: Number(row.acquired_at)
      })
    }),
    Effect.orDie
  )

/** The store's service, wrapped: `f` gets the real one and returns the one the host sees. */
export const wrapStore = (
  inner: Layer.Layer<TaskStore, TaskStoreError>,
  f: (store: TaskStoreService) => TaskStoreService
): Layer.Layer<TaskStore, TaskStoreError> =>
  Layer.effect(TaskStore, Effect.gen(function*() {
    return f(yield* TaskStore)
  })).pipe(Layer.provide(inner))
