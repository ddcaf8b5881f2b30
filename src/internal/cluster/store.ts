/**
 * The cluster's tables in the shared SQL database, and the per-session view
 * of them that each session's host writes through.
 *
 * Owns: the tables of a cluster (prefix `task_cluster_` by default, apart
 * from the single-node store's): `tasks` (one row per record, keyed by
 * session and id), `events` (keyed by session and that session's `seq`, with
 * `gseq`, the place in the global feed), `sessions` (one lease row per
 * session: its owner and its fencing token), `feed` (the global feed's
 * counter) and `quarantine`. Calls nothing but the `SqlClient`.
 *
 * Fencing: `forSession(id).acquireLease` takes the session's row once its
 * holder released it or let it run out, adding 1 to its token when the
 * owner changes. Every commit of that session checks (and renews), in its
 * own transaction, that the row still names this owner and token; a stale
 * owner writes nothing (`LeaseHeld`).
 *
 * Each commit of a session also counts itself on the session's row
 * (`writes`, in the statement that checks the lease, so the row lock orders
 * the session's commits), and every event and record row it writes carries
 * the writer's `token` and that `write_no`. A write from a stale owner would
 * be a row whose token is lower than one a previous write of its session
 * carried: that can be counted in the tables themselves (the long test does).
 *
 * The global feed: each commit that writes events bumps the `feed` row last
 * in its transaction and numbers its events from it. The row lock is held
 * until commit, so `gseq` is in commit order and has no gap: a reader that
 * has seen `gseq` N has seen everything below it. On PostgreSQL the commit
 * also sends `NOTIFY <prefix>feed` (a wake-up; the table is the truth).
 *
 * Locks: a commit holds its session's lease row, and the feed's row (which
 * every commit of the cluster takes), until it ends. A process paused in the
 * middle of one (SIGSTOP, a VM frozen, a partition) would hold them, and
 * stall every commit of the cluster, until it resumed: on PostgreSQL each
 * commit's transaction sets `idle_in_transaction_session_timeout`, so the
 * server ends it (nothing of it is written) once it has waited that long
 * for its process.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import { type BackgroundTaskRecord, isTerminal } from "../../BackgroundTask.ts"
import type { BackgroundTaskEvent } from "../../TaskEvent.ts"
import {
  CorruptRecord,
  LeaseHeld,
  StoreMisconfigured,
  TaskStoreError
} from "../../TaskStoreError.ts"
import {
  chunks,
  decodeEvent,
  decodeRecord,
  int,
  rowText,
  storeError,
  type StoredTask,
  storeFailures,
  type TaskOwner,
  type TaskStoreBatch,
  type TaskStoreService
} from "../store.ts"
import { eventJson, recordJson } from "../wire.ts"

/** The cluster's tables and reads. */
export interface ClusterStore {
  readonly prefix: string
  /** The channel a PostgreSQL commit notifies (`<prefix>feed`). */
  readonly channel: string
  /** The store one session's host writes through, fenced by the session's lease row. */
  readonly forSession: (sessionId: string) => TaskStoreService
  /** Every stored record with this id, in any session. */
  readonly recordsWithId: (taskId: string) => Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, TaskStoreError>
  /** The session's record with this id. */
  readonly record: (sessionId: string, taskId: string) => Effect.Effect<BackgroundTaskRecord | undefined, TaskStoreError>
  /**
   * The records (of one session, or all; live only unless `includeTerminal`)
   * with the feed's position and, for one session, that session's last
   * `seq`, read in one snapshot.
   */
  readonly snapshot: (
    sessionId: string | undefined,
    includeTerminal: boolean
  ) => Effect.Effect<
    { readonly records: ReadonlyArray<BackgroundTaskRecord>; readonly gseq: number; readonly sessionSeq: number },
    TaskStoreError
  >
  /** Events of the global feed with `gseq > after`, at most `limit`, in order. */
  readonly feed: (
    after: number,
    limit: number,
    sessionId: string | undefined
  ) => Effect.Effect<ReadonlyArray<{ readonly gseq: number; readonly event: BackgroundTaskEvent }>, TaskStoreError>
  /** The `gseq` of the event `seq` of a session (undefined when it was pruned or never written). */
  readonly gseqOf: (sessionId: string, seq: number) => Effect.Effect<number | undefined, TaskStoreError>
  /** The lowest `gseq` still stored minus 1 (0 when none was pruned). */
  readonly feedFloor: Effect.Effect<number, TaskStoreError>
  /** Sessions with live tasks whose lease has run out or was released: nobody runs them. */
  readonly orphanedSessions: (now: number, limit: number) => Effect.Effect<ReadonlyArray<string>, TaskStoreError>
  /** A session's lease row: owner, token, expiry. */
  readonly sessionLease: (
    sessionId: string
  ) => Effect.Effect<{ readonly owner: string; readonly token: number; readonly expiresAt: number } | undefined, TaskStoreError>
  /** Counts by state across the cluster, and the feed's position. */
  readonly counts: Effect.Effect<{ readonly byState: Record<string, number>; readonly gseq: number }, TaskStoreError>
}

const owners: ReadonlyArray<string> = ["host", "external", "caller"]
const liveStates = ["pending", "running", "waiting", "cancel_requested"] as const
/** Seqs read per statement while looking for the age floor. */
const agePage = 5_000

interface TaskRow {
  readonly session_id: string
  readonly task_id: string
  readonly ord: unknown
  readonly owner: string
  readonly record: string
  readonly released: unknown
}

/** Makes the cluster's tables (migrations under `<prefix>migrations`) and returns the store. */
export const make = (options?: {
  readonly tablePrefix?: string | undefined
  /**
   * PostgreSQL: how long a commit's transaction may wait for its process
   * between statements before the server ends it (default 2 seconds); see
   * "Locks" above.
   */
  readonly transactionIdleTimeoutMillis?: number | undefined
}): Effect.Effect<
  ClusterStore,
  TaskStoreError,
  SqlClient.SqlClient
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const prefix = options?.tablePrefix ?? "task_cluster_"
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(prefix)) {
      return yield* Effect.fail(
        new TaskStoreError({
          reason: new StoreMisconfigured({
            operation: "start",
            message: `tablePrefix must be letters, digits and _, not starting with a digit; got ${JSON.stringify(prefix)}`
          })
        })
      )
    }
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
    // 0 is PostgreSQL's "no limit"
    const idleTimeout = Math.max(0, Math.round(options?.transactionIdleTimeoutMillis ?? 2_000))
    const tasks = sql(`${prefix}tasks`)
    const events = sql(`${prefix}events`)
    const sessions = sql(`${prefix}sessions`)
    const feedRow = sql(`${prefix}feed`)
    const quarantine = sql(`${prefix}quarantine`)
    const channel = `${prefix}feed`

    const migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
      "1_cluster_tables": Effect.gen(function*() {
        yield* sql`CREATE TABLE ${tasks} (
          session_id TEXT NOT NULL,
          task_id TEXT NOT NULL,
          ord BIGINT NOT NULL,
          owner TEXT NOT NULL,
          state TEXT NOT NULL,
          record TEXT NOT NULL,
          released INTEGER NOT NULL DEFAULT 0,
          PRIMARY KEY (session_id, task_id)
        )`
        yield* sql`CREATE INDEX ${sql(`${prefix}tasks_task_id`)} ON ${tasks} (task_id)`
        yield* sql`CREATE INDEX ${sql(`${prefix}tasks_state`)} ON ${tasks} (state, session_id)`
        yield* sql`CREATE TABLE ${events} (
          session_id TEXT NOT NULL,
          seq BIGINT NOT NULL,
          gseq BIGINT NOT NULL,
          task_id TEXT,
          tag TEXT NOT NULL,
          event TEXT NOT NULL,
          PRIMARY KEY (session_id, seq)
        )`
        yield* sql`CREATE UNIQUE INDEX ${sql(`${prefix}events_gseq`)} ON ${events} (gseq)`
        yield* sql`CREATE TABLE ${sessions} (
          session_id TEXT PRIMARY KEY,
          owner TEXT NOT NULL,
          token BIGINT NOT NULL,
          expires_at BIGINT NOT NULL,
          acquired_at BIGINT NOT NULL
        )`
        yield* sql`CREATE TABLE ${feedRow} (name TEXT PRIMARY KEY, last BIGINT NOT NULL)`
        yield* sql`INSERT INTO ${feedRow} (name, last) VALUES ('events', 0)`
        yield* sql`CREATE TABLE ${quarantine} (
          source TEXT NOT NULL,
          row_key TEXT NOT NULL,
          data TEXT NOT NULL,
          error TEXT NOT NULL,
          quarantined_at BIGINT NOT NULL
        )`
      }),
      // the writer's token and the session's commit number on every row it writes (see "Fencing" above)
      "2_writer_token": Effect.gen(function*() {
        yield* sql`ALTER TABLE ${sessions} ADD COLUMN writes BIGINT NOT NULL DEFAULT 0`
        for (const table of [tasks, events]) {
          yield* sql`ALTER TABLE ${table} ADD COLUMN token BIGINT NOT NULL DEFAULT 0`
          yield* sql`ALTER TABLE ${table} ADD COLUMN write_no BIGINT NOT NULL DEFAULT 0`
        }
      }),
      // when each event was committed (epoch ms, by the runner's Clock), for pruning by age; older rows count from now
      "3_event_time": Effect.gen(function*() {
        yield* sql`ALTER TABLE ${events} ADD COLUMN at BIGINT NOT NULL DEFAULT 0`
        yield* sql`UPDATE ${events} SET at = ${yield* Clock.currentTimeMillis}`
      })
    }
    yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: `${prefix}migrations` }).pipe(
      Effect.mapError(storeError("migrate"))
    )

    const quarantineRows = (source: string, rows: ReadonlyArray<{ key: string; data: string; error: string }>) =>
      rows.length === 0 ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.forEach(rows, (row) =>
          sql`INSERT INTO ${quarantine} ${
            sql.insert({ source, row_key: row.key, data: row.data, error: row.error, quarantined_at: now })
          }`, { discard: true }))

    /** Decodes task rows; the ones that no longer decode are quarantined (and their rows deleted). */
    const decodeRows = (rows: ReadonlyArray<TaskRow>) =>
      Effect.gen(function*() {
        const good: Array<{ row: TaskRow; record: BackgroundTaskRecord }> = []
        const bad: Array<{ key: string; data: string; error: string; row: TaskRow }> = []
        for (const row of rows) {
          const decoded = decodeRecord(row.record)
          const problem = Exit.isFailure(decoded)
            ? "the record does not decode"
            : decoded.value.id !== row.task_id || decoded.value.scope.sessionId !== row.session_id
            ? "the record contradicts its row's key"
            : !owners.includes(row.owner)
            ? `unknown owner ${JSON.stringify(row.owner)}`
            : undefined
          if (problem === undefined && Exit.isSuccess(decoded)) good.push({ row, record: decoded.value })
          else {
            bad.push({ key: JSON.stringify([row.session_id, row.task_id]), data: rowText(row), error: problem!, row })
          }
        }
        if (bad.length > 0) {
          yield* Effect.gen(function*() {
            yield* quarantineRows("tasks", bad)
            for (const b of bad) {
              yield* sql`DELETE FROM ${tasks} WHERE session_id = ${b.row.session_id} AND task_id = ${b.row.task_id}`
            }
          }).pipe(sql.withTransaction)
        }
        return {
          good,
          quarantined: bad.map((b) => new CorruptRecord({ table: `${prefix}tasks`, key: b.key, message: b.error }))
        }
      })

    const decodeEvents = (rows: ReadonlyArray<{ readonly gseq: unknown; readonly seq: unknown; readonly event: string }>) => {
      const out: Array<{ gseq: number; seq: number; event: BackgroundTaskEvent | undefined }> = []
      for (const row of rows) {
        const decoded = decodeEvent(row.event)
        out.push({
          gseq: int(row.gseq),
          seq: int(row.seq),
          event: Exit.isSuccess(decoded) && decoded.value.seq === int(row.seq) ? decoded.value : undefined
        })
      }
      return out
    }

    const lastGseq = Effect.map(
      sql<{ readonly last: unknown }>`SELECT last FROM ${feedRow} WHERE name = 'events'`,
      ([row]) => row === undefined ? 0 : int(row.last)
    )

    const forSession = (sessionId: string): TaskStoreService => {
      let held: { readonly owner: string; readonly token: number } | undefined
      const renew = (owner: string, expiresAt: number) =>
        Effect.map(
          sql<{ readonly token: unknown }>`UPDATE ${sessions}
            SET expires_at = CASE WHEN expires_at < ${expiresAt} THEN ${expiresAt} ELSE expires_at END
            WHERE session_id = ${sessionId} AND owner = ${owner} AND token = ${held?.token ?? -1} AND expires_at > 0
            RETURNING token`,
          (rows) => rows.length === 1
        )
      /**
       * A commit's check: renews the lease if this owner and token still hold
       * it, and counts the commit on the session's row (whose lock orders the
       * session's commits until this one ends). Undefined when it is not held.
       */
      const checkAndCount = (lease: { readonly owner: string; readonly expiresAt: number } | undefined) =>
        Effect.map(
          lease === undefined
            ? sql<{ readonly token: unknown; readonly writes: unknown }>`UPDATE ${sessions} SET writes = writes + 1
              WHERE session_id = ${sessionId} RETURNING token, writes`
            : sql<{ readonly token: unknown; readonly writes: unknown }>`UPDATE ${sessions}
              SET expires_at = CASE WHEN expires_at < ${lease.expiresAt} THEN ${lease.expiresAt} ELSE expires_at END,
                writes = writes + 1
              WHERE session_id = ${sessionId} AND owner = ${lease.owner} AND token = ${held?.token ?? -1} AND expires_at > 0
              RETURNING token, writes`,
          ([row]) =>
            row === undefined
              ? lease === undefined ? { token: held?.token ?? 0, writeNo: 0 } : undefined
              : { token: int(row.token), writeNo: int(row.writes) }
        )
      const holder = Effect.map(
        sql<{ readonly owner: string; readonly expires_at: unknown }>`SELECT owner, expires_at FROM ${sessions}
          WHERE session_id = ${sessionId}`,
        ([row]) => new LeaseHeld({ holder: row?.owner ?? "nobody", expiresAt: row === undefined ? 0 : int(row.expires_at) })
      )
      const lowestSeq = Effect.map(
        sql<{ readonly seq: unknown }>`SELECT MIN(seq) AS seq FROM ${events} WHERE session_id = ${sessionId}`,
        ([row]) => row?.seq === null || row?.seq === undefined ? undefined : int(row.seq)
      )
      return {
        durable: true,
        load: Effect.gen(function*() {
          const rows = yield* sql<TaskRow>`SELECT session_id, task_id, ord, owner, record, released FROM ${tasks}
            WHERE session_id = ${sessionId} ORDER BY ord`
          const [last] = yield* sql<{ readonly seq: unknown }>`SELECT MAX(seq) AS seq FROM ${events}
            WHERE session_id = ${sessionId}`
          let lastSeq = last?.seq === null || last?.seq === undefined ? 0 : int(last.seq)
          const { good, quarantined } = yield* decodeRows(rows)
          const loaded: Array<StoredTask> = []
          for (const { record, row } of good) {
            lastSeq = Math.max(lastSeq, record.revision, int(row.ord))
            loaded.push({ order: int(row.ord), owner: row.owner as TaskOwner, record, released: int(row.released) === 1 })
          }
          return { tasks: loaded, lastSeq, quarantined }
        }).pipe(Effect.mapError(storeError("load"))),
        write: (batch: TaskStoreBatch, lease) =>
          Effect.gen(function*() {
            // a paused process must not hold the session's row and the feed's row (see "Locks")
            // when the batch is committed, for pruning by age
            const at = yield* Clock.currentTimeMillis
            if (isPg) yield* sql`SELECT set_config('idle_in_transaction_session_timeout', ${String(idleTimeout)}, true)`
            const writer = yield* checkAndCount(lease)
            if (writer === undefined) return yield* Effect.fail(yield* holder)
            const stamp = { token: writer.token, write_no: writer.writeNo }
            for (const part of chunks(batch.deletes)) {
              for (const d of part) yield* sql`DELETE FROM ${tasks} WHERE session_id = ${d.sessionId} AND task_id = ${d.taskId}`
            }
            for (const part of chunks(batch.puts)) {
              yield* sql`INSERT INTO ${tasks} ${
                sql.insert(part.map(({ order, owner, record, released }) => ({
                  session_id: record.scope.sessionId,
                  task_id: record.id,
                  ord: order,
                  owner,
                  state: record.state,
                  record: recordJson(record),
                  released: released === true ? 1 : 0,
                  ...stamp
                })) as unknown as readonly [Record<string, unknown>, ...Array<Record<string, unknown>>])
              } ON CONFLICT (session_id, task_id) DO UPDATE SET ord = excluded.ord, owner = excluded.owner,
                state = excluded.state, record = excluded.record, released = excluded.released,
                token = excluded.token, write_no = excluded.write_no`
            }
            if (batch.events.length === 0) return
            // last in the transaction: the feed's row lock is held only until the commit
            const [bumped] = yield* sql<{ readonly last: unknown }>`UPDATE ${feedRow} SET last = last + ${batch.events.length}
              WHERE name = 'events' RETURNING last`
            const first = int(bumped!.last) - batch.events.length + 1
            let i = 0
            for (const part of chunks(batch.events)) {
              yield* sql`INSERT INTO ${events} ${
                sql.insert(part.map((event) => ({
                  session_id: event.sessionId,
                  seq: event.seq,
                  gseq: first + i++,
                  task_id: "taskId" in event ? event.taskId : null,
                  tag: event._tag,
                  event: eventJson(event),
                  at,
                  ...stamp
                })) as unknown as readonly [Record<string, unknown>, ...Array<Record<string, unknown>>])
              }`
            }
            if (isPg) yield* sql`SELECT pg_notify(${channel}, ${String(first + batch.events.length - 1)})`
          }).pipe(sql.withTransaction, storeFailures("write")),
        events: (fromSeq, toSeq, limit) =>
          Effect.gen(function*() {
            const rows = yield* sql<{ readonly gseq: unknown; readonly seq: unknown; readonly event: string }>`
              SELECT gseq, seq, event FROM ${events}
              WHERE session_id = ${sessionId} AND seq > ${fromSeq} AND seq <= ${toSeq} ORDER BY seq LIMIT ${limit}`
            const decoded = decodeEvents(rows)
            const bad = decoded.filter((row) => row.event === undefined)
            return {
              events: decoded.flatMap((row) => row.event === undefined ? [] : [row.event]),
              quarantined: bad.map((row) =>
                new CorruptRecord({ table: `${prefix}events`, key: `${sessionId}/${row.seq}`, message: "the event does not decode" })
              ),
              lastRead: decoded.length === 0 ? fromSeq : decoded[decoded.length - 1]!.seq
            }
          }).pipe(Effect.mapError(storeError("read events"))),
        acquireLease: (owner, now, expiresAt) =>
          Effect.gen(function*() {
            // free once released (expires_at = 0) or run out: a stale owner that still runs holds it until then
            const [row] = yield* sql<{ readonly token: unknown }>`INSERT INTO ${sessions} ${
              sql.insert({ session_id: sessionId, owner, token: 1, expires_at: expiresAt, acquired_at: now })
            } ON CONFLICT (session_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
              acquired_at = excluded.acquired_at,
              token = CASE WHEN ${sessions}.owner = excluded.owner THEN ${sessions}.token ELSE ${sessions}.token + 1 END
              WHERE ${sessions}.expires_at <= ${now} OR ${sessions}.owner = excluded.owner
              RETURNING token`
            if (row === undefined) return yield* Effect.fail(yield* holder)
            const token = int(row.token)
            held = { owner, token }
            return token
          }).pipe(Effect.catch((error) => Effect.fail(error instanceof LeaseHeld ? error : storeError("acquire lease")(error)))),
        renewLease: (owner, expiresAt) => renew(owner, expiresAt).pipe(Effect.mapError(storeError("renew lease"))),
        releaseLease: (owner) =>
          sql`UPDATE ${sessions} SET expires_at = 0
            WHERE session_id = ${sessionId} AND owner = ${owner} AND token = ${held?.token ?? -1}`.pipe(
            Effect.asVoid,
            Effect.mapError(storeError("release lease"))
          ),
        prunedThrough: Effect.map(lowestSeq, (lowest) => lowest === undefined ? 0 : lowest - 1).pipe(
          Effect.mapError(storeError("read events"))
        ),
        pruneEvents: (throughSeq) =>
          Effect.map(
            sql<{ readonly seq: unknown }>`DELETE FROM ${events} WHERE session_id = ${sessionId} AND seq <= ${throughSeq} RETURNING seq`,
            (rows) => rows.length
          ).pipe(Effect.mapError(storeError("prune events"))),
        // walks up the session's events a page of seqs at a time, to the first committed at or after `before`
        agedThrough: (before, upTo) =>
          Effect.gen(function*() {
            const lowest = yield* lowestSeq
            if (lowest === undefined) return { through: 0, next: undefined }
            for (let from = lowest; from <= upTo; from += agePage) {
              const to = Math.min(upTo, from + agePage - 1)
              const [young] = yield* sql<{ readonly seq: unknown; readonly at: unknown }>`SELECT seq, at FROM ${events}
                WHERE session_id = ${sessionId} AND seq >= ${from} AND seq <= ${to} AND at >= ${before}
                ORDER BY seq LIMIT 1`
              if (young !== undefined) return { through: int(young.seq) - 1, next: int(young.at) }
            }
            return { through: Math.max(lowest - 1, upTo), next: undefined }
          }).pipe(Effect.mapError(storeError("read events")))
      }
    }

    const readRecords = (rows: ReadonlyArray<TaskRow>) =>
      Effect.map(decodeRows(rows), ({ good }) => good.map((g) => g.record))

    const store: ClusterStore = {
      prefix,
      channel,
      forSession,
      recordsWithId: (taskId) =>
        sql<TaskRow>`SELECT session_id, task_id, ord, owner, record, released FROM ${tasks} WHERE task_id = ${taskId}`.pipe(
          Effect.flatMap(readRecords),
          Effect.mapError(storeError("read"))
        ),
      record: (sessionId, taskId) =>
        sql<TaskRow>`SELECT session_id, task_id, ord, owner, record, released FROM ${tasks}
          WHERE session_id = ${sessionId} AND task_id = ${taskId}`.pipe(
          Effect.flatMap(readRecords),
          Effect.map((records) => records[0]),
          Effect.mapError(storeError("read"))
        ),
      snapshot: (sessionId, includeTerminal) =>
        Effect.gen(function*() {
          // one snapshot: the records as of the feed's position
          if (isPg) yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`
          const gseq = yield* lastGseq
          const where = sessionId === undefined
            ? includeTerminal ? sql`1 = 1` : sql`${sql.in("state", liveStates)}`
            : includeTerminal
            ? sql`session_id = ${sessionId}`
            : sql`session_id = ${sessionId} AND ${sql.in("state", liveStates)}`
          const rows = yield* sql<TaskRow>`SELECT session_id, task_id, ord, owner, record, released FROM ${tasks}
            WHERE ${where} ORDER BY session_id, ord`
          let sessionSeq = 0
          if (sessionId !== undefined) {
            const [last] = yield* sql<{ readonly seq: unknown }>`SELECT MAX(seq) AS seq FROM ${events}
              WHERE session_id = ${sessionId}`
            sessionSeq = last?.seq === null || last?.seq === undefined ? 0 : int(last.seq)
          }
          const records = yield* readRecords(rows)
          for (const record of records) if (sessionId !== undefined) sessionSeq = Math.max(sessionSeq, record.revision)
          return { records, gseq, sessionSeq }
        }).pipe(sql.withTransaction, Effect.mapError(storeError("read"))),
      feed: (after, limit, sessionId) =>
        (sessionId === undefined
          ? sql<{ readonly gseq: unknown; readonly seq: unknown; readonly event: string }>`SELECT gseq, seq, event FROM ${events}
              WHERE gseq > ${after} ORDER BY gseq LIMIT ${limit}`
          : sql<{ readonly gseq: unknown; readonly seq: unknown; readonly event: string }>`SELECT gseq, seq, event FROM ${events}
              WHERE gseq > ${after} AND session_id = ${sessionId} ORDER BY gseq LIMIT ${limit}`).pipe(
          Effect.map((rows) =>
            decodeEvents(rows).flatMap((row) => row.event === undefined ? [] : [{ gseq: row.gseq, event: row.event }])
          ),
          Effect.mapError(storeError("read events"))
        ),
      gseqOf: (sessionId, seq) =>
        sql<{ readonly gseq: unknown }>`SELECT gseq FROM ${events} WHERE session_id = ${sessionId} AND seq = ${seq}`.pipe(
          Effect.map(([row]) => row === undefined ? undefined : int(row.gseq)),
          Effect.mapError(storeError("read events"))
        ),
      feedFloor: Effect.gen(function*() {
        const [row] = yield* sql<{ readonly gseq: unknown }>`SELECT MIN(gseq) AS gseq FROM ${events}`
        if (row?.gseq !== null && row?.gseq !== undefined) return int(row.gseq) - 1
        return yield* lastGseq
      }).pipe(Effect.mapError(storeError("read events"))),
      orphanedSessions: (now, limit) =>
        sql<{ readonly session_id: string }>`SELECT DISTINCT t.session_id AS session_id FROM ${tasks} t
          LEFT JOIN ${sessions} s ON s.session_id = t.session_id
          WHERE ${sql.in("t.state", liveStates)} AND (s.session_id IS NULL OR s.expires_at <= ${now})
          LIMIT ${limit}`.pipe(
          Effect.map((rows) => rows.map((row) => row.session_id)),
          Effect.mapError(storeError("read"))
        ),
      sessionLease: (sessionId) =>
        sql<{ readonly owner: string; readonly token: unknown; readonly expires_at: unknown }>`SELECT owner, token, expires_at
          FROM ${sessions} WHERE session_id = ${sessionId}`.pipe(
          Effect.map(([row]) =>
            row === undefined ? undefined : { owner: row.owner, token: int(row.token), expiresAt: int(row.expires_at) }
          ),
          Effect.mapError(storeError("read"))
        ),
      counts: Effect.gen(function*() {
        const rows = yield* sql<{ readonly state: string; readonly n: unknown }>`SELECT state, COUNT(*) AS n FROM ${tasks}
          GROUP BY state`
        const byState: Record<string, number> = {}
        for (const row of rows) byState[row.state] = int(row.n)
        return { byState, gseq: yield* lastGseq }
      }).pipe(Effect.mapError(storeError("read")))
    }
    return store
  })

/** Whether a stored state is live. */
export const isLiveState = (state: string): boolean => !isTerminal(state as never)
