/**
 * Scenario 7, durable lifecycle, in tasks per second (one op = one task's
 * whole lifecycle, durable):
 *
 * - host on SQLite: `spawnManaged` of N tasks whose body is `Effect.void`,
 *   256 calls in flight, on a SQLite file (WAL, synchronous=FULL) through
 *   `TaskStore.layerSql` and `NodeSqliteClient`; the clock stops when the
 *   store has committed the N-th `Completed` event. The store is wrapped to
 *   count its transactions (the group commit: tasks per transaction).
 * - host on PostgreSQL: the same through `@effect/sql-pg`.
 * - raw node:sqlite: a naive durable registry, one transaction per op: insert
 *   the record, update it to running, update it to completed (3 transactions
 *   per task), same file settings.
 * - BullMQ: a `redis-server` with an append-only file (appendfsync everysec)
 *   started here on 127.0.0.1; N no-op jobs added with `addBulk` (1,000 per
 *   call) and processed by a Worker (concurrency 50) until all completed.
 *   The baseline keeps the newest 10,000 completed jobs (`removeOnComplete:
 *   { count: 10_000 }`), the rule the host follows at its default retention
 *   (it keeps the newest 10,000 terminal records and deletes older ones from
 *   the store, with an `Evicted` event each): the same work, or the baseline
 *   would skip the deletes the host makes. BullMQ at its own default (every
 *   completed job kept) is measured beside it (info).
 *
 * Without redis-server the BullMQ part is skipped; without PostgreSQL (PGHOST
 * unset and no Debian binaries to start a cluster) the PostgreSQL part is
 * skipped. Each skip is named in the result.
 */
import { PgClient } from "@effect/sql-pg"
import { Queue, Worker } from "bullmq"
import { Context, Deferred, Effect, Exit, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { TaskStore } from "../../src/index.ts"
import type { TaskStoreService } from "../../src/internal/store.ts"
import * as NodeSqliteClient from "../../src/NodeSqliteClient.ts"
import {
  check,
  type GroupResult,
  measure,
  medianOf,
  runNumber,
  type Settings,
  type SkippedPart,
  timed,
  type Variant
} from "../harness.ts"
import { withStoreHost } from "../host.ts"
import {
  durableTempDir,
  findPostgres,
  findRedis,
  type PostgresConfig,
  type PostgresServer,
  type RedisServer,
  startPostgres,
  startRedis
} from "../servers.ts"

const session = "bench"
/** `spawnManaged` calls in flight, the same for every host variant. */
const hostConcurrency = 256
/** BullMQ: jobs per `addBulk` call, and the Worker's concurrency. */
const bulkSize = 1_000
const workerConcurrency = 50

const hostSqlite = "host on SQLite (group commit)"
const hostPg = "host on PostgreSQL (group commit)"
const rawSqlite = "raw node:sqlite, 1 transaction per op"
const bullmq = "BullMQ + Redis (AOF everysec), the newest 10,000 completed jobs kept"
const bullmqKeepAll = "BullMQ + Redis (AOF everysec), every completed job kept (its default; info)"
/** The terminal records the host keeps at its default retention; the baseline keeps as many completed jobs. */
const hostRetention = 10_000

const opsPerSecond = (n: number, ms: number) => n / (ms / 1000)

// -- the host on a durable store --------------------------------------------------

/** Transactions the store committed during the timed part of each run. */
type Tally = Array<number>

/**
 * `TaskStore.layerSql`, with its `write` (one call = one transaction)
 * counted; `allCommitted` is completed once the n-th `Completed` event is in
 * a committed transaction.
 */
const countingStore = (
  n: number,
  tablePrefix: string,
  counter: { commits: number },
  allCommitted: Deferred.Deferred<void>
): Layer.Layer<TaskStore, unknown, SqlClient.SqlClient> =>
  Layer.effect(
    TaskStore,
    Effect.gen(function*() {
      const store = yield* TaskStore
      let completed = 0
      const service: TaskStoreService = {
        ...store,
        write: (batch, lease) =>
          Effect.tap(store.write(batch, lease), () =>
            Effect.sync(() => {
              counter.commits++
              for (const event of batch.events) if (event._tag === "Completed") completed++
              if (completed >= n) Deferred.doneUnsafe(allCommitted, Exit.void)
            }))
      }
      return service
    })
  ).pipe(Layer.provide(TaskStore.layerSql({ tablePrefix })))

const storeTables = (prefix: string) =>
  ["tasks", "events", "lease", "quarantine", "migrations"].map((t) => `${prefix}${t}`)

/**
 * One run of the host on the database `client` opens: N `spawnManaged`
 * (`hostConcurrency` in flight) until the n-th `Completed` is committed; then
 * the database is checked. Returns tasks per second.
 */
const hostRun = (
  n: number,
  client: Layer.Layer<SqlClient.SqlClient, unknown>,
  tablePrefix: string,
  tally: Tally,
  dropTables: boolean
) =>
  Effect.scoped(Effect.gen(function*() {
    const sql = Context.get(yield* Effect.orDie(Layer.build(client)), SqlClient.SqlClient)
    const allCommitted = yield* Deferred.make<void>()
    const counter = { commits: 0 }
    const store = countingStore(n, tablePrefix, counter, allCommitted).pipe(
      Layer.provide(Layer.succeed(SqlClient.SqlClient, sql))
    )
    const ids = Array.from({ length: n }, (_, i) => `t-${i}`)
    const ms = yield* withStoreHost(store, (host) =>
      Effect.gen(function*() {
        const before = counter.commits
        const ms = yield* timed(Effect.andThen(
          Effect.forEach(
            ids,
            (id) => host.spawnManaged(session, { id, kind: "other", producer: "bench" }, Effect.void),
            { concurrency: hostConcurrency, discard: true }
          ),
          Deferred.await(allCommitted)
        ))
        tally.push(counter.commits - before)
        // checked once, after the clock stopped, in the database itself
        const events = sql(`${tablePrefix}events`)
        const tasks = sql(`${tablePrefix}tasks`)
        const byTag = yield* sql<{ readonly tag: string; readonly n: unknown }>`SELECT tag, COUNT(*) AS n FROM ${events}
          WHERE tag IN ('Registered', 'Completed') GROUP BY tag`
        const count = (tag: string) => Number(byTag.find((row) => row.tag === tag)?.n ?? 0)
        check(count("Registered") === n && count("Completed") === n, `the store holds ${n} Registered and Completed events`)
        const [open] = yield* sql<{ readonly n: unknown }>`SELECT COUNT(*) AS n FROM ${tasks} WHERE state <> 'completed'`
        check(Number(open?.n) === 0, "every stored record is completed")
        return ms
      }).pipe(Effect.orDie))
    if (dropTables) {
      for (const table of storeTables(tablePrefix)) yield* Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
    }
    return opsPerSecond(n, ms)
  }))

const sqliteFiles = (file: string) => [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]

let runs = 0

const hostSqliteRun = (n: number, dir: string, tally: Tally) =>
  Effect.suspend(() => {
    const file = join(dir, `host-${++runs}.db`)
    return hostRun(n, NodeSqliteClient.layer({ filename: file, wal: true, synchronous: "FULL" }), "task_host_", tally, false)
      .pipe(Effect.ensuring(Effect.sync(() => sqliteFiles(file).forEach((f) => rmSync(f, { force: true })))))
  })

const pgLayer = (config: PostgresConfig) =>
  PgClient.layer({
    host: config.host,
    port: config.port,
    username: config.username,
    database: config.database,
    ...(config.password !== undefined ? { password: Redacted.make(config.password) } : {})
  })

const hostPgRun = (n: number, config: PostgresConfig, tally: Tally) =>
  Effect.suspend(() =>
    // tables of its own, dropped after: the server may be someone else's
    hostRun(n, pgLayer(config), `bench7_${process.pid}_${++runs}_`, tally, true)
  )

// -- baseline: raw node:sqlite, one transaction per op ---------------------------

const noop = async (): Promise<void> => {}

/** What a naive durable registry does: every state change is its own transaction. */
const rawSqliteRun = async (n: number, dir: string): Promise<number> => {
  const file = join(dir, `raw-${++runs}.db`)
  const db = new DatabaseSync(file)
  try {
    db.exec("PRAGMA journal_mode = WAL")
    db.exec("PRAGMA synchronous = FULL")
    db.exec("CREATE TABLE tasks (task_key TEXT PRIMARY KEY, state TEXT NOT NULL, record TEXT NOT NULL)")
    const insert = db.prepare("INSERT INTO tasks (task_key, state, record) VALUES (?, ?, ?)")
    const update = db.prepare("UPDATE tasks SET state = ?, record = ? WHERE task_key = ?")
    const inTransaction = (f: () => void) => {
      db.exec("BEGIN IMMEDIATE")
      try {
        f()
        db.exec("COMMIT")
      } catch (error) {
        db.exec("ROLLBACK")
        throw error
      }
    }
    const start = performance.now()
    for (let i = 0; i < n; i++) {
      const id = `t-${i}`
      const key = JSON.stringify([session, id])
      const createdAt = new Date().toISOString()
      // the host's record, in the same wire form
      const record = {
        id,
        kind: "other",
        producer: "bench",
        scope: { session_id: session },
        parent_task_id: null,
        child_session_id: null,
        state: "pending",
        cancel_policy: "cooperative",
        close_policy: "keep",
        attempt: { attempt: 0, max_attempts: null, idempotency_key: null },
        result: null as { summary: null } | null,
        failure: null,
        created_at: createdAt,
        updated_at: createdAt,
        completed_at: null as string | null,
        revision: 1
      }
      inTransaction(() => insert.run(key, record.state, JSON.stringify(record)))
      record.state = "running"
      record.updated_at = new Date().toISOString()
      record.revision++
      inTransaction(() => update.run(record.state, JSON.stringify(record), key))
      await noop()
      record.state = "completed"
      record.result = { summary: null }
      record.updated_at = record.completed_at = new Date().toISOString()
      record.revision++
      inTransaction(() => update.run(record.state, JSON.stringify(record), key))
    }
    const ms = performance.now() - start
    const row = db.prepare("SELECT COUNT(*) AS n FROM tasks WHERE state = 'completed'").get() as { n: number }
    check(row.n === n, `raw node:sqlite holds ${n} completed rows`)
    return opsPerSecond(n, ms)
  } finally {
    db.close()
    sqliteFiles(file).forEach((f) => rmSync(f, { force: true }))
  }
}

/** The SQLite library and the settings the raw baseline actually got. */
const sqliteFacts = (dir: string) => {
  const file = join(dir, "facts.db")
  const db = new DatabaseSync(file)
  try {
    const journal = (db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string }).journal_mode
    db.exec("PRAGMA synchronous = FULL")
    const synchronous = (db.prepare("PRAGMA synchronous").get() as { synchronous: number }).synchronous
    const version = (db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v
    check(journal === "wal" && synchronous === 2, `SQLite runs WAL with synchronous=FULL (got ${journal}, ${synchronous})`)
    return version
  } finally {
    db.close()
    sqliteFiles(file).forEach((f) => rmSync(f, { force: true }))
  }
}

// -- baseline: BullMQ on Redis with an append-only file ---------------------------

/**
 * Adds N no-op jobs (`addBulk`, `bulkSize` per call) and waits until a Worker
 * has completed them all; with `keep`, Redis keeps only the newest `keep`
 * completed jobs (BullMQ deletes older ones as jobs complete).
 */
const bullmqRun = async (n: number, redis: RedisServer, keep: number | undefined): Promise<number> => {
  const name = `bench-${++runs}`
  const connection = { host: redis.host, port: redis.port, maxRetriesPerRequest: null }
  const queue = new Queue(name, {
    connection,
    ...(keep === undefined ? {} : { defaultJobOptions: { removeOnComplete: { count: keep } } })
  })
  let completed = 0
  let settle: { resolve: () => void; reject: (error: Error) => void } | undefined
  const allCompleted = new Promise<void>((resolve, reject) => (settle = { resolve, reject }))
  const worker = new Worker(name, noop, { connection, concurrency: workerConcurrency })
  worker.on("completed", () => {
    if (++completed === n) settle!.resolve()
  })
  worker.on("failed", (_job, error) => settle!.reject(new Error(`a no-op BullMQ job failed: ${error.message}`)))
  worker.on("error", (error) => settle!.reject(error))
  try {
    await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()])
    const start = performance.now()
    for (let i = 0; i < n; i += bulkSize) {
      const jobs = []
      for (let k = i; k < Math.min(n, i + bulkSize); k++) {
        jobs.push({ name: "noop", data: { id: `t-${k}`, kind: "other", producer: "bench" } })
      }
      await queue.addBulk(jobs)
    }
    await allCompleted
    const ms = performance.now() - start
    const counts = await queue.getJobCounts("completed")
    const held = keep === undefined ? n : Math.min(n, keep)
    check(counts["completed"] === held, `Redis holds ${held} completed jobs (got ${counts["completed"]})`)
    return opsPerSecond(n, ms)
  } finally {
    await worker.close()
    // the next run starts from an empty Redis
    await queue.obliterate({ force: true })
    await queue.close()
  }
}

// -- the group --------------------------------------------------------------------

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length === 0 ? Number.NaN : sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const run = async (settings: Settings): Promise<GroupResult> => {
  const n = settings.quick ? 100 : 20_000
  const { dir, remove, where } = durableTempDir("effect-task-host-bench-durable-")
  const skips: Array<SkippedPart> = []
  let redis: RedisServer | undefined
  let postgres: PostgresServer | undefined
  try {
    const sqliteVersion = sqliteFacts(dir)
    const redisFound = findRedis()
    if ("absent" in redisFound) {
      skips.push({
        part: "BullMQ + Redis (AOF everysec)",
        reason: redisFound.absent,
        ratios: ["sqlite-vs-bullmq", "pg-vs-bullmq", "sqlite-vs-bullmq-keep-all", "pg-vs-bullmq-keep-all"]
      })
    } else {
      redis = await startRedis(redisFound.path)
    }
    const pgFound = findPostgres()
    if ("absent" in pgFound) {
      skips.push({ part: hostPg, reason: pgFound.absent, ratios: ["pg-vs-bullmq", "pg-vs-bullmq-keep-all"] })
    } else {
      postgres = "env" in pgFound
        ? { config: pgFound.env, source: "the server the PG* environment names", stop: async () => {} }
        : await startPostgres(pgFound.script)
    }
    for (const skip of skips) process.stderr.write(`  7 durable: skipping ${skip.part}: ${skip.reason}\n`)

    const pgFacts = postgres === undefined ? undefined : await Effect.runPromise(pgSettings(postgres.config))
    const sqliteTally: Tally = []
    const pgTally: Tally = []
    const variants: Array<Variant> = [
      { name: hostSqlite, role: "host", run: () => runNumber(hostSqliteRun(n, dir, sqliteTally)) },
      { name: rawSqlite, role: "baseline", run: () => rawSqliteRun(n, dir) }
    ]
    if (postgres !== undefined) {
      const config = postgres.config
      variants.push({ name: hostPg, role: "host", run: () => runNumber(hostPgRun(n, config, pgTally)) })
    }
    if (redis !== undefined) {
      const server = redis
      variants.push({ name: bullmq, role: "baseline", run: () => bullmqRun(n, server, hostRetention) })
      variants.push({ name: bullmqKeepAll, role: "info", run: () => bullmqRun(n, server, undefined) })
    }
    const results = await measure("7 durable lifecycle", settings, variants)

    const ratios: Array<{ id: string; label: string; value: number }> = []
    const ratio = (id: string, label: string, over: string, under: string) =>
      ratios.push({ id, label, value: medianOf(results, over) / medianOf(results, under) })
    ratio("sqlite-vs-raw", "host on SQLite ops/s / raw node:sqlite ops/s", hostSqlite, rawSqlite)
    if (redis !== undefined) {
      ratio("sqlite-vs-bullmq", "host on SQLite ops/s / BullMQ (the newest 10,000 completed jobs kept) ops/s", hostSqlite, bullmq)
      if (postgres !== undefined) ratio("pg-vs-bullmq", "host on PostgreSQL ops/s / BullMQ (the newest 10,000 completed jobs kept) ops/s", hostPg, bullmq)
      ratio(
        "sqlite-vs-bullmq-keep-all",
        "info: host on SQLite ops/s / BullMQ keeping every completed job (its default) ops/s",
        hostSqlite,
        bullmqKeepAll
      )
      if (postgres !== undefined) {
        ratio(
          "pg-vs-bullmq-keep-all",
          "info: host on PostgreSQL ops/s / BullMQ keeping every completed job (its default) ops/s",
          hostPg,
          bullmqKeepAll
        )
      }
    }

    // the runs of the measured repetitions (the warm-up run is the first)
    const measured = (tally: Tally) => tally.slice(tally.length - settings.reps)
    const sqliteCommits = median(measured(sqliteTally))
    const pgCommits = median(measured(pgTally))
    const params: Record<string, number | string> = {
      n,
      hostConcurrency,
      sqlite: `${sqliteVersion}, WAL, synchronous=FULL, files in ${where}`,
      sqliteCommitsPerRun: sqliteCommits,
      tasksPerSqliteCommit: Number((n / sqliteCommits).toFixed(1))
    }
    if (postgres !== undefined && pgFacts !== undefined) {
      params["postgres"] = `${pgFacts}, ${postgres.source}`
      params["pgCommitsPerRun"] = pgCommits
      params["tasksPerPgCommit"] = Number((n / pgCommits).toFixed(1))
    }
    if (redis !== undefined) {
      params["redis"] = `${redis.version}, appendonly yes, appendfsync everysec, no RDB snapshots`
      params["bullmqAddBulk"] = bulkSize
      params["bullmqWorkerConcurrency"] = workerConcurrency
    }
    const notes = [
      "ops/s = N / seconds, one op being a task's whole lifecycle; higher is better",
      `host: ${hostConcurrency} spawnManaged calls in flight (body Effect.void); each returns once its registration is committed; ` +
      "the clock stops when the store has committed the N-th Completed event (a wrapper around the store's write counts its transactions); " +
      "then the database is checked for N Registered and N Completed events and no record left open",
      `group commit: median ${fmtInt(sqliteCommits)} transactions for ${fmtInt(n)} tasks on SQLite ` +
      `(${(sqliteCommits / n).toFixed(4)} per task)` +
      (postgres !== undefined ? `, ${fmtInt(pgCommits)} on PostgreSQL (${(pgCommits / n).toFixed(4)} per task)` : "") +
      "; the raw baseline makes 3 per task",
      "host default retention (10,000 terminal records): beyond that the oldest records are evicted (deleted from the store, with an Evicted event)",
      "raw node:sqlite: sequential insert / update running / update completed, each its own BEGIN IMMEDIATE … COMMIT, " +
      "record as the host's wire JSON, no events (better-sqlite3 is not measured: it cannot be installed here without network access to GitHub)",
      ...(redis !== undefined
        ? [
          `BullMQ: a running Worker (concurrency ${workerConcurrency}); the N jobs are added with addBulk, ${fmtInt(bulkSize)} per call, one call at a time; ` +
          "the clock stops when the Worker has reported N completed. The baseline keeps the newest " +
          `${fmtInt(hostRetention)} completed jobs (removeOnComplete: { count: ${fmtInt(hostRetention)} }), as the host keeps ` +
          `the newest ${fmtInt(hostRetention)} terminal records at its default retention (deleting older ones from the store); ` +
          "BullMQ keeping every completed job (its default) is measured beside it (info). " +
          "Durability differs: Redis fsyncs its append-only file once a second (up to a second of acknowledged jobs can be lost), " +
          "the host's call returns after its transaction is fsynced"
        ]
        : [])
    ]
    const title = `Durable lifecycle: N = ${fmtInt(n)} tasks${settings.quick ? "" : " (not 100k: time budget)"} ` +
      "added, run (no-op) and completed, durably — host on SQLite (file) and PostgreSQL with group commit " +
      "vs raw node:sqlite one transaction per op and BullMQ + Redis (AOF, appendfsync everysec)"
    return {
      group: "durable",
      scenarios: [{
        id: "durable",
        scenario: 7,
        group: "durable",
        title,
        unit: "ops/s",
        params,
        variants: results,
        ratios,
        notes,
        ...(redis !== undefined
          ? {
            fairness: [{
              baseline: bullmq,
              why: `it keeps what the host keeps: the newest ${fmtInt(hostRetention)} completed jobs, deleting older ones as ` +
                `jobs complete, as the host at its default retention keeps the newest ${fmtInt(hostRetention)} terminal ` +
                "records and deletes older ones from the store; at BullMQ's default (every job kept) it would skip the deletes"
            }]
          }
          : {}),
        ...(skips.length > 0 ? { skippedParts: skips } : {})
      }]
    }
  } finally {
    await redis?.stop()
    await postgres?.stop()
    remove()
  }
}

const fmtInt = (x: number) => Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-"

/** The PostgreSQL version and its durability settings, as the server reports them. */
const pgSettings = (config: PostgresConfig) =>
  Effect.scoped(Effect.gen(function*() {
    const sql = Context.get(yield* Layer.build(pgLayer(config)), SqlClient.SqlClient)
    const [row] = yield* sql<{ readonly version: string; readonly fsync: string; readonly commit: string }>`SELECT
      current_setting('server_version') AS version, current_setting('fsync') AS fsync,
      current_setting('synchronous_commit') AS commit`
    return `PostgreSQL ${row?.version}, fsync=${row?.fsync}, synchronous_commit=${row?.commit}`
  }))
