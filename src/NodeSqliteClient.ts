/**
 * An Effect SQL client (`SqlClient` from `effect/sql`) over Node's built-in
 * `node:sqlite`, for a SQLite database in a file or in memory. Reach for it to
 * give code written against the generic `SqlClient` (the durable task store,
 * `Migrator`, your own queries) a SQLite database without a native add-on.
 *
 * One connection is shared through a semaphore: statements run one at a
 * time, and a transaction holds the connection until it ends, so transactions
 * of concurrent fibers are serialized. Prepared statements are cached (LRU).
 * The database is closed when the client's scope closes. `node:sqlite` is
 * loaded only when a client is made.
 *
 * Import it from its own entry point, `effect-task-host/sqlite`. It has the
 * shape of Effect's SQLite clients (a service key of its own beside
 * `SqlClient`, and a `layer` that provides both), so moving to an official
 * `node:sqlite` client for effect 4.x, once one exists, is an import change.
 *
 * @since 0.3.0
 */
import { Context, Duration, Effect, Layer, Option, Semaphore, Stream } from "effect"
import type { Scope } from "effect"
import { Reactivity } from "effect/reactivity"
import { SqlClient, SqlError, Statement } from "effect/sql"
import type { SqlConnection } from "effect/sql"
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite"

/**
 * How to open the database, and how the client talks to it.
 *
 * - `filename`: a file path, or `":memory:"` for a private in-memory database.
 * - `readonly`: open read-only (the file must exist). Default `false`.
 * - `wal`: switch the database to write-ahead logging (`PRAGMA journal_mode = WAL`),
 *   so readers in other processes do not block the writer. Default `true`;
 *   `false` leaves the journal mode as it is. Not applied to a read-only database.
 * - `synchronous`: `PRAGMA synchronous`. Default `"FULL"` (a committed transaction
 *   survives a power loss); `"NORMAL"` is faster and, in WAL mode, can lose the
 *   last transactions on a power loss, never corrupt the file.
 * - `busyTimeout`: how long a statement waits for a lock held by another
 *   connection before failing with a `LockTimeoutError` (`PRAGMA busy_timeout`).
 *   Default 5 seconds.
 * - `prepareCacheSize`: how many prepared statements are kept (least recently
 *   used ones are dropped). Default 200; `0` prepares every statement anew.
 * - `transactionMode`: how `withTransaction` begins: `BEGIN IMMEDIATE` (default
 *   for a writable database: it takes the write lock at once, so two processes
 *   never deadlock upgrading their locks), `DEFERRED` (default when `readonly`)
 *   or `EXCLUSIVE`.
 * - `spanAttributes`: added to every query's span (`db.system.name` is `"sqlite"`).
 * - `transformResultNames` / `transformQueryNames`: rename columns in results /
 *   identifiers in queries, as in Effect's other SQL drivers (e.g. snake_case
 *   columns to camelCase fields).
 *
 * @category models
 * @since 0.3.0
 */
export interface NodeSqliteClientConfig {
  readonly filename: string
  readonly readonly?: boolean | undefined
  readonly wal?: boolean | undefined
  readonly synchronous?: "FULL" | "NORMAL" | "OFF" | undefined
  readonly busyTimeout?: Duration.Input | undefined
  readonly prepareCacheSize?: number | undefined
  readonly transactionMode?: "DEFERRED" | "IMMEDIATE" | "EXCLUSIVE" | undefined
  readonly spanAttributes?: Record<string, unknown> | undefined
  readonly transformResultNames?: ((name: string) => string) | undefined
  readonly transformQueryNames?: ((name: string) => string) | undefined
}

/**
 * Opens the database and builds a `SqlClient` on it; the database is closed
 * when the scope closes.
 *
 * **Details**
 *
 * Parameters are bound as SQLite values: strings, numbers, bigints, `null`
 * and byte arrays as they are, `undefined` as `NULL`, booleans as `1`/`0`,
 * dates as ISO-8601 text. Any other value fails the query with a `SqlError`.
 * A primary-key violation fails with a `UniqueViolation` reason, as on
 * PostgreSQL. Foreign keys are enforced (`node:sqlite`'s default). After the
 * scope has closed, every query fails with a `ConnectionError` reason.
 *
 * A bad option (an empty filename, a negative `busyTimeout`, ...) fails with a
 * `SqlError` whose message names it; a file that cannot be opened fails with a
 * `ConnectionError` reason.
 *
 * **Gotchas**
 *
 * The one connection is leased for a whole `sql.stream` or transaction: a
 * query that is not part of the transaction (another fiber's, or one run
 * while consuming a stream outside a transaction) waits until it ends.
 * `node:sqlite` is synchronous: a statement blocks the Node.js thread while it
 * runs, and so does waiting up to `busyTimeout` for a lock that another process
 * holds. Keep statements short, and the busy timeout too when several
 * processes share a file.
 *
 * **Example** (A client in a scope)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Reactivity } from "effect/reactivity"
 * import * as NodeSqliteClient from "effect-task-host/sqlite"
 *
 * const count = Effect.gen(function*() {
 *   const sql = yield* NodeSqliteClient.make({ filename: ":memory:" })
 *   const rows = yield* sql<{ readonly n: number }>`SELECT 1 + 1 AS n`
 *   return rows[0]?.n
 * }).pipe(Effect.scoped, Effect.provide(Reactivity.layer))
 * ```
 *
 * @category constructors
 * @since 0.3.0
 */
export const make = (
  options: NodeSqliteClientConfig
): Effect.Effect<SqlClient.SqlClient, SqlError.SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const settings = yield* validate(options)
    const sqlite = yield* Effect.tryPromise({
      try: () => import("node:sqlite"),
      catch: (cause) =>
        new SqlError.SqlError({
          reason: new SqlError.ConnectionError({
            cause,
            message: `node:sqlite is not available in this Node.js (${process.version}): ${messageOf(cause)}`,
            operation: "open"
          })
        })
    })
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new sqlite.DatabaseSync(settings.filename, { readOnly: settings.readonly }),
        catch: (cause) => toSqlError(undefined, cause, "open", `cannot open ${settings.filename}`)
      }),
      (db) => Effect.sync(() => closeQuietly(db))
    )
    yield* Effect.try({
      try: () => {
        db.exec(`PRAGMA busy_timeout = ${settings.busyTimeoutMillis}`)
        if (settings.wal && !settings.readonly) db.exec("PRAGMA journal_mode = WAL")
        db.exec(`PRAGMA synchronous = ${settings.synchronous}`)
      },
      catch: (cause) => toSqlError(db, cause, "open", `cannot configure ${settings.filename}`)
    })

    const connection = makeConnection(db, settings.prepareCacheSize)
    yield* Effect.addFinalizer(() => Effect.sync(connection.clearCache))
    const semaphore = yield* Semaphore.make(1)
    const acquirers = SqlClient.makeSqliteAcquirers({
      connection: Effect.suspend(() => db.isOpen ? Effect.succeed(connection.connection) : Effect.fail(closedError())),
      semaphore,
      isTransaction: () => db.isOpen && db.isTransaction
    })
    return yield* SqlClient.make({
      ...acquirers,
      compiler: Statement.makeCompilerSqlite(settings.transformQueryNames),
      driver: "sqlite-node",
      spanAttributes: [...Object.entries(settings.spanAttributes), ["db.system.name", "sqlite"]],
      transformRows: settings.transformResultNames === undefined
        ? undefined
        : Statement.defaultTransforms(settings.transformResultNames).array,
      prepareTransactionControls: true,
      beginTransaction: `BEGIN ${settings.transactionMode}`,
      commit: "COMMIT",
      rollback: "ROLLBACK",
      savepoint: (name) => `SAVEPOINT ${name}`,
      releaseSavepoint: (name) => `RELEASE SAVEPOINT ${name}`,
      rollbackSavepoint: (name) => `ROLLBACK TO SAVEPOINT ${name}`
    })
  })

/**
 * A layer providing `SqlClient` on a SQLite database; the database is closed
 * when the layer is released.
 *
 * **When to use**
 *
 * To run code written against Effect's generic `SqlClient` on SQLite in a
 * Node.js process: one file (or `":memory:"`) per layer. `Reactivity` is
 * provided inside.
 *
 * **Example** (Querying SQLite through the generic SqlClient)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "effect/sql"
 * import * as NodeSqliteClient from "effect-task-host/sqlite"
 *
 * const SqliteLive = NodeSqliteClient.layer({ filename: "tasks.db", synchronous: "NORMAL" })
 *
 * const program = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql`CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`
 *   yield* sql`INSERT INTO notes ${sql.insert({ body: "hello" })}`
 *   return yield* sql<{ readonly id: number; readonly body: string }>`SELECT id, body FROM notes WHERE body = ${"hello"}`
 * }).pipe(Effect.provide(SqliteLive))
 * ```
 *
 * @see {@link make} for a client in a scope you own
 * @category layers
 * @since 0.3.0
 */
export const layer = (
  options: NodeSqliteClientConfig
): Layer.Layer<NodeSqliteClient | SqlClient.SqlClient, SqlError.SqlError> =>
  Layer.effectContext(
    Effect.map(make(options), (client) =>
      Context.make(NodeSqliteClient, Object.assign(Object.create(client) as SqlClient.SqlClient, { config: options })).pipe(
        Context.add(SqlClient.SqlClient, client)
      ))
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * The client as a service of its own: an Effect `SqlClient` that also says
 * how it was opened. `layer` provides it together with `SqlClient`.
 *
 * @category models
 * @since 0.4.0
 */
export interface NodeSqliteClientService extends SqlClient.SqlClient {
  readonly config: NodeSqliteClientConfig
}

/**
 * The service key of a `node:sqlite` client, beside the generic `SqlClient`.
 *
 * **Example** (Reading the file name of the database in use)
 *
 * ```ts
 * import { Effect } from "effect"
 * import * as NodeSqliteClient from "effect-task-host/sqlite"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* NodeSqliteClient.NodeSqliteClient
 *   return client.config.filename
 * }).pipe(Effect.provide(NodeSqliteClient.layer({ filename: ":memory:" })))
 * ```
 *
 * @category services
 * @since 0.4.0
 */
export class NodeSqliteClient extends Context.Service<NodeSqliteClient, NodeSqliteClientService>()(
  "effect-task-host/NodeSqliteClient"
) {}

// internal

interface Settings {
  readonly filename: string
  readonly readonly: boolean
  readonly wal: boolean
  readonly synchronous: "FULL" | "NORMAL" | "OFF"
  readonly busyTimeoutMillis: number
  readonly prepareCacheSize: number
  readonly transactionMode: "DEFERRED" | "IMMEDIATE" | "EXCLUSIVE"
  readonly spanAttributes: Record<string, unknown>
  readonly transformResultNames: ((name: string) => string) | undefined
  readonly transformQueryNames: ((name: string) => string) | undefined
}

/** SQLite's largest busy timeout (a C int of milliseconds). */
const maxBusyTimeoutMillis = 2_147_483_647
/** Rows read from the statement's iterator per stream chunk. */
const streamChunkSize = 128

const synchronousModes = ["FULL", "NORMAL", "OFF"] as const
const transactionModes = ["DEFERRED", "IMMEDIATE", "EXCLUSIVE"] as const

const validate = (options: NodeSqliteClientConfig): Effect.Effect<Settings, SqlError.SqlError> =>
  Effect.suspend(() => {
    const invalid = (message: string) =>
      Effect.fail(
        new SqlError.SqlError({
          reason: new SqlError.UnknownError({
            cause: new TypeError(message),
            message: `NodeSqliteClient: ${message}`,
            operation: "configure"
          })
        })
      )
    if (typeof options !== "object" || options === null) return invalid("options must be an object")
    const { filename } = options
    if (typeof filename !== "string" || filename.trim() === "") {
      return invalid(`filename must be a file path or ":memory:", got ${JSON.stringify(filename) ?? String(filename)}`)
    }
    const synchronous = options.synchronous ?? "FULL"
    if (!synchronousModes.includes(synchronous)) {
      return invalid(`synchronous must be one of ${synchronousModes.join(", ")}, got ${String(synchronous)}`)
    }
    const readonly = options.readonly ?? false
    const transactionMode = options.transactionMode ?? (readonly ? "DEFERRED" : "IMMEDIATE")
    if (!transactionModes.includes(transactionMode)) {
      return invalid(`transactionMode must be one of ${transactionModes.join(", ")}, got ${String(transactionMode)}`)
    }
    const busyTimeout = Duration.fromInput(options.busyTimeout ?? "5 seconds")
    const busyTimeoutMillis = Option.isSome(busyTimeout) ? Duration.toMillis(busyTimeout.value) : Number.NaN
    if (!(busyTimeoutMillis >= 0 && busyTimeoutMillis <= maxBusyTimeoutMillis)) {
      return invalid(`busyTimeout must be a duration from 0 to ${maxBusyTimeoutMillis} millis, got ${String(options.busyTimeout)}`)
    }
    const prepareCacheSize = options.prepareCacheSize ?? 200
    if (!Number.isSafeInteger(prepareCacheSize) || prepareCacheSize < 0) {
      return invalid(`prepareCacheSize must be a non-negative integer, got ${String(prepareCacheSize)}`)
    }
    for (const key of ["transformResultNames", "transformQueryNames"] as const) {
      if (options[key] !== undefined && typeof options[key] !== "function") {
        return invalid(`${key} must be a function from name to name`)
      }
    }
    return Effect.succeed({
      filename,
      readonly,
      wal: options.wal ?? true,
      synchronous,
      busyTimeoutMillis: Math.ceil(busyTimeoutMillis),
      prepareCacheSize,
      transactionMode,
      spanAttributes: options.spanAttributes ?? {},
      transformResultNames: options.transformResultNames,
      transformQueryNames: options.transformQueryNames
    })
  })

type TransformRows = (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined

const makeConnection = (db: DatabaseSync, cacheSize: number) => {
  // insertion order is recency order: a hit moves the statement to the end
  const cache = new Map<string, StatementSync>()
  const prepared = (sql: string): StatementSync => {
    const hit = cache.get(sql)
    if (hit !== undefined) {
      cache.delete(sql)
      cache.set(sql, hit)
      return hit
    }
    const statement = db.prepare(sql)
    if (cacheSize > 0) {
      cache.set(sql, statement)
      if (cache.size > cacheSize) cache.delete(cache.keys().next().value!)
    }
    return statement
  }

  type Mode = "rows" | "raw" | "values"
  interface RunResult {
    readonly changes: number | bigint
    readonly lastInsertRowid: number | bigint
  }
  /** Rows as objects (`rows`) or arrays (`values`); `raw`: the statement's changes when it returns no rows. */
  const run = (
    sql: string,
    params: ReadonlyArray<unknown>,
    mode: Mode,
    prepare: (sql: string) => StatementSync
  ): Effect.Effect<ReadonlyArray<object> | RunResult, SqlError.SqlError> =>
    Effect.flatMap(SqlClient.SafeIntegers, (safeIntegers) =>
      Effect.try({
        try: () => {
          const values = bindable(params)
          const statement = prepare(sql)
          statement.setReadBigInts(safeIntegers)
          statement.setReturnArrays(mode === "values")
          if (statement.columns().length > 0) return statement.all(...values)
          const changes = statement.run(...values)
          return mode === "raw" ? { changes: changes.changes, lastInsertRowid: changes.lastInsertRowid } : []
        },
        catch: (cause) => toSqlError(db, cause, "execute", undefined)
      }))

  /** Rows (the `rows` and `values` modes never give a `RunResult`). */
  const rows = (effect: Effect.Effect<ReadonlyArray<object> | RunResult, SqlError.SqlError>) =>
    effect as Effect.Effect<ReadonlyArray<object>, SqlError.SqlError>

  const withTransform = (effect: Effect.Effect<ReadonlyArray<object>, SqlError.SqlError>, transformRows: TransformRows) =>
    transformRows === undefined ? effect : Effect.map(effect, transformRows)

  const unprepared = (sql: string) => db.prepare(sql)

  const connection: SqlConnection.Connection = {
    execute: (sql, params, transformRows) => withTransform(rows(run(sql, params, "rows", prepared)), transformRows),
    executeRaw: (sql, params) => run(sql, params, "raw", prepared),
    executeValues: (sql, params) =>
      rows(run(sql, params, "values", prepared)) as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError.SqlError>,
    executeValuesUnprepared: (sql, params) =>
      rows(run(sql, params, "values", unprepared)) as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError.SqlError>,
    executeUnprepared: (sql, params, transformRows) =>
      withTransform(rows(run(sql, params, "rows", unprepared)), transformRows),
    executeStream: (sql, params, transformRows) =>
      Stream.unwrap(Effect.gen(function*() {
        const safeIntegers = yield* SqlClient.SafeIntegers
        // a statement of its own: a cached one could be reset under the iterator
        const rows = yield* Effect.acquireRelease(
          Effect.try({
            try: () => {
              const values = bindable(params)
              const statement = db.prepare(sql)
              statement.setReadBigInts(safeIntegers)
              return statement.iterate(...values)
            },
            catch: (cause) => toSqlError(db, cause, "stream", undefined)
          }),
          (rows) => Effect.sync(() => returnQuietly(rows))
        )
        const pull = Effect.try({
          try: () => {
            const chunk: Array<object> = []
            while (chunk.length < streamChunkSize) {
              const next = rows.next()
              if (next.done === true) break
              chunk.push(next.value)
            }
            return chunk
          },
          catch: (cause) => toSqlError(db, cause, "stream", undefined)
        })
        return Stream.paginate(undefined, () =>
          Effect.map(pull, (chunk) =>
            [
              transformRows === undefined ? chunk : transformRows(chunk),
              chunk.length < streamChunkSize ? Option.none() : Option.some(undefined)
            ] as const))
      }))
  }
  return { connection, clearCache: () => cache.clear() }
}

/**
 * The parameters as `node:sqlite` binds them; throws on a value SQLite cannot
 * hold. The array itself when each of its values is bound as it is (no copy
 * of a large statement's parameters).
 */
const bindable = (params: ReadonlyArray<unknown>): ReadonlyArray<SQLInputValue> => {
  for (let i = 0; i < params.length; i++) {
    const value = params[i]
    switch (typeof value) {
      case "string":
      case "number":
      case "bigint":
        continue
      case "object":
        if (value === null) continue
    }
    return converted(params)
  }
  return params as ReadonlyArray<SQLInputValue>
}

const converted = (params: ReadonlyArray<unknown>): Array<SQLInputValue> =>
  params.map((value, i): SQLInputValue => {
    switch (typeof value) {
      case "string":
      case "number":
      case "bigint":
        return value
      case "boolean":
        return value ? 1 : 0
      case "undefined":
        return null
      case "object":
        if (value === null) return null
        if (ArrayBuffer.isView(value)) return value as NodeJS.ArrayBufferView
        if (value instanceof Date) return value.toISOString()
    }
    const kind = typeof value === "object" && value !== null ? value.constructor?.name ?? "object" : typeof value
    throw new TypeError(
      `cannot bind parameter ${i + 1}: a value of type ${kind} is not a SQLite value (use a string, number, bigint, boolean, Date, Uint8Array or null)`
    )
  })

// extended result codes of node:sqlite's `errcode` that effect's classifier does not map as we need
const SQLITE_ERROR = 1
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555
const SQLITE_CONSTRAINT_ROWID = 2579

const toSqlError = (
  db: DatabaseSync | undefined,
  cause: unknown,
  operation: string,
  context: string | undefined
): SqlError.SqlError => {
  const detail = messageOf(cause)
  const message = context === undefined ? detail : `${context}: ${detail}`
  const errcode = typeof cause === "object" && cause !== null && "errcode" in cause && typeof cause.errcode === "number"
    ? cause.errcode
    : undefined
  if (db !== undefined && !db.isOpen) return closedError(cause)
  if (errcode === SQLITE_CONSTRAINT_PRIMARYKEY || errcode === SQLITE_CONSTRAINT_ROWID) {
    // a duplicate key, as PostgreSQL reports it
    const constraint = /constraint failed: (.+)$/.exec(detail)?.[1] ?? "unknown"
    return new SqlError.SqlError({ reason: new SqlError.UniqueViolation({ cause, message, operation, constraint }) })
  }
  if (errcode === SQLITE_ERROR && /syntax error|incomplete input|unrecognized token/.test(detail)) {
    return new SqlError.SqlError({ reason: new SqlError.SqlSyntaxError({ cause, message, operation }) })
  }
  // effect's classifier reads SQLite's result code from `errno` (node:sqlite calls it `errcode`)
  const classified = errcode !== undefined && typeof cause === "object" && cause !== null && !("errno" in cause)
    ? Object.assign(cause, { errno: errcode })
    : cause
  return new SqlError.SqlError({ reason: SqlError.classifySqliteError(classified, { message, operation }) })
}

const closedError = (cause?: unknown) =>
  new SqlError.SqlError({
    reason: new SqlError.ConnectionError({
      cause: cause ?? new Error("the database is closed"),
      message: "the database is closed (its NodeSqliteClient scope has ended)",
      operation: "execute"
    })
  })

const messageOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

const closeQuietly = (db: DatabaseSync) => {
  if (db.isOpen) db.close()
}

const returnQuietly = (rows: Iterator<unknown>) => {
  try {
    rows.return?.()
  } catch {
    // the database was closed under the stream; its statements are already finalized
  }
}
