/**
 * The store's internals: what the host and a store say to each other (the
 * rows, the batches, the service shape), and the SQL implementation behind
 * `TaskStore.layerSql`. Applications pick a layer of `TaskStore.ts`; they
 * never call these.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import * as SqlError from "effect/sql/SqlError"
import { BackgroundTaskRecord, isTerminal } from "../BackgroundTask.ts"
import { BackgroundTaskEvent } from "../TaskEvent.ts"
import {
  CorruptRecord,
  LeaseHeld,
  StoreMisconfigured,
  StoreRejected,
  StoreUnreachable,
  TaskStoreError
} from "../TaskStoreError.ts"
import { rowWriters } from "./storeRows.ts"

/** Options of `TaskStore.layerSql`. */
export interface SqlStoreOptions {
  /** Prefix of the store's table names (default `task_host_`): letters, digits and `_`. */
  readonly tablePrefix?: string | undefined
}

/**
 * Who drives a stored task: `host` (a managed fiber), `external` (a cancel
 * effect), `caller` (`register`).
 *
 * @category models
 * @since 0.3.0
 */
export type TaskOwner = "host" | "external" | "caller"

/**
 * A record as the store holds it.
 *
 * @category models
 * @since 0.3.0
 */
export interface StoredTask {
  /** Registration order (the `seq` of its `Registered`): records load oldest first. */
  readonly order: number
  readonly owner: TaskOwner
  readonly record: BackgroundTaskRecord
  /**
   * Left live by a host that shut down in `release` mode (its fiber was
   * stopped, not crashed): the next holder resumes it without spending an
   * attempt. Any later write of the record clears it.
   */
  readonly released?: boolean | undefined
}

/**
 * One group commit: the events in `seq` order, the records to write (the
 * latest version of each) and the records to delete, as one transaction.
 *
 * @category models
 * @since 0.3.0
 */
export interface TaskStoreBatch {
  readonly events: ReadonlyArray<BackgroundTaskEvent>
  readonly puts: ReadonlyArray<StoredTask>
  readonly deletes: ReadonlyArray<{ readonly sessionId: string; readonly taskId: string }>
}

/**
 * What a store holds when a host starts: its records (oldest registration
 * first), the last event's `seq`, and the rows it had to quarantine.
 *
 * @category models
 * @since 0.3.0
 */
export interface StoredState {
  readonly tasks: ReadonlyArray<StoredTask>
  readonly lastSeq: number
  readonly quarantined: ReadonlyArray<CorruptRecord>
}

/**
 * The store's service. The host is its only writer; applications pick a
 * layer rather than call it.
 *
 * @category models
 * @since 0.3.0
 */
export interface TaskStoreService {
  /** Whether writes outlive the process. The memory store is not durable, and the host skips it entirely. */
  readonly durable: boolean
  /** Reads everything back; rows that no longer decode are quarantined and reported. */
  readonly load: Effect.Effect<StoredState, TaskStoreError>
  /**
   * Writes one batch in one transaction. With `leaseOwner`, the same
   * transaction checks (and renews) that lease first, so a host that lost
   * its lease writes nothing.
   */
  readonly write: (
    batch: TaskStoreBatch,
    lease: { readonly owner: string; readonly expiresAt: number } | undefined
  ) => Effect.Effect<void, TaskStoreError | LeaseHeld>
  /**
   * The stored events with `fromSeq < seq <= toSeq`, at most `limit`, in order;
   * rows that no longer decode are quarantined and reported in `quarantined`.
   */
  readonly events: (
    fromSeq: number,
    toSeq: number,
    limit: number
  ) => Effect.Effect<
    { readonly events: ReadonlyArray<BackgroundTaskEvent>; readonly quarantined: ReadonlyArray<CorruptRecord>; readonly lastRead: number },
    TaskStoreError
  >
  /**
   * Takes (or re-takes) the lease until `expiresAt`, returning its fencing
   * token (greater for every new holder); fails with `LeaseHeld` while
   * another owner's lease runs.
   */
  readonly acquireLease: (owner: string, now: number, expiresAt: number) => Effect.Effect<number, TaskStoreError | LeaseHeld>
  /** Extends the owner's lease; `false` when it no longer holds it. */
  readonly renewLease: (owner: string, expiresAt: number) => Effect.Effect<boolean, TaskStoreError>
  /** Gives the lease up (at shutdown), so the next host need not wait for it to expire. */
  readonly releaseLease: (owner: string) => Effect.Effect<void, TaskStoreError>
  /** The lowest stored event's `seq` minus 1: what was pruned (0 when nothing was). */
  readonly prunedThrough: Effect.Effect<number, TaskStoreError>
  /** Deletes the stored events with `seq <= throughSeq`, a bounded number per statement; returns how many. */
  readonly pruneEvents: (throughSeq: number) => Effect.Effect<number, TaskStoreError>
  /**
   * How far pruning by age may go: `through`, the highest `seq`, at most
   * `upTo`, such that every stored event up to it was committed before
   * `before` (epoch ms, by the host's `Clock`; the lowest stored `seq` minus
   * 1 when the first is younger), and `next`, when the first event after it
   * (up to `upTo`) was committed. Reads a bounded range of rows per statement.
   */
  readonly agedThrough: (
    before: number,
    upTo: number
  ) => Effect.Effect<{ readonly through: number; readonly next: number | undefined }, TaskStoreError>
}


/** A stored record's or event's JSON text, decoded (the cluster's store reads the same columns). */
export const decodeRecord = Schema.decodeUnknownExit(Schema.fromJsonString(BackgroundTaskRecord))
export const decodeEvent = Schema.decodeUnknownExit(Schema.fromJsonString(BackgroundTaskEvent))

const owners: ReadonlyArray<string> = ["host", "external", "caller"]

/** The lease row's name: one lease per store. */
const leaseName = "host"

/** Rows per multi-row statement: well under SQLite's and PostgreSQL's parameter limits. */
const chunkSize = 500

export const chunks = <A>(items: ReadonlyArray<A>): Array<readonly [A, ...Array<A>]> => {
  const out: Array<readonly [A, ...Array<A>]> = []
  for (let i = 0; i < items.length; i += chunkSize) out.push(items.slice(i, i + chunkSize) as [A, ...Array<A>])
  return out
}

const mapNonEmpty = <A, B>(items: readonly [A, ...Array<A>], f: (a: A) => B): readonly [B, ...Array<B>] =>
  items.map(f) as unknown as readonly [B, ...Array<B>]

const causeMessage = (cause: unknown): string => {
  if (typeof cause === "object" && cause !== null && "message" in cause && typeof cause.message === "string") {
    return cause.message
  }
  return String(cause)
}

/**
 * Whether a `SqlError` says the database could not be reached: a retryable
 * reason (a connection refused or dropped, a timeout), or PostgreSQL's
 * "operator intervention" codes, sent while a server shuts down or starts
 * (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now),
 * which the driver does not mark retryable.
 */
const unreachable = (error: SqlError.SqlError): boolean => {
  if (error.isRetryable) return true
  const inner: unknown = error.reason.cause
  const code = typeof inner === "object" && inner !== null && "code" in inner ? inner.code : undefined
  return typeof code === "string" && /^57P0[123]$/.test(code)
}

/** A `SqlError`'s message with what the database or the socket said (`PgConnection: Query failed: the database system is shutting down (57P03)`). */
const sqlMessage = (error: SqlError.SqlError): string => {
  const inner: unknown = error.reason.cause
  const said = causeMessage(inner)
  const code = typeof inner === "object" && inner !== null && "code" in inner && typeof inner.code === "string"
    ? ` (${inner.code})`
    : ""
  return inner === undefined || said === error.message ? error.message : `${error.message}: ${said}${code}`
}

/** A failure of `operation` as a `TaskStoreError`: an unreachable database is told apart from a refused statement. */
export const storeError = (operation: string) => (cause: unknown) => {
  const message = SqlError.isSqlError(cause) ? sqlMessage(cause) : causeMessage(cause)
  if (SqlError.isSqlError(cause)) {
    return new TaskStoreError({
      reason: unreachable(cause)
        ? new StoreUnreachable({ operation, message })
        : operation === "migrate"
        ? new StoreMisconfigured({ operation, message })
        : new StoreRejected({ operation, message })
    })
  }
  return new TaskStoreError({
    reason: operation === "migrate"
      ? new StoreMisconfigured({ operation, message })
      : new StoreRejected({ operation, message })
  })
}

/**
 * `operation`'s failures as `TaskStoreError`s (a `LeaseHeld` kept as it
 * is). A transaction whose connection dropped dies rather than fails: its
 * ROLLBACK fails too, and `withTransaction` makes that a defect. Such a
 * defect is a `SqlError` of the store, not a bug: it becomes the store's
 * error like the statement's own (unreachable if either part says so), so
 * the host can tell an outage and ride it out. Interruptions and other
 * defects stay as they are (the failures beside them dropped).
 */
export const storeFailures = (operation: string) =>
<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, TaskStoreError | Extract<E, LeaseHeld>> =>
  Effect.catchCause(effect, (cause): Effect.Effect<never, TaskStoreError | Extract<E, LeaseHeld>> => {
    // an interruption or another defect stays as it is (without the failures beside it)
    const other = cause.reasons.filter((reason) =>
      Cause.isInterruptReason(reason) || (Cause.isDieReason(reason) && !SqlError.isSqlError(reason.defect))
    )
    if (other.length > 0) return Effect.failCause(Cause.fromReasons(other) as Cause.Cause<never>)
    const errors = cause.reasons.map((reason) => Cause.isFailReason(reason) ? reason.error : (reason as Cause.Die).defect)
    const lease = errors.find((error) => error instanceof LeaseHeld)
    if (lease !== undefined) return Effect.fail(lease as Extract<E, LeaseHeld>)
    const first = errors.find((error) => SqlError.isSqlError(error) && unreachable(error)) ?? errors[0]
    return Effect.fail(storeError(operation)(first))
  })

/** A row as text, for the quarantine: PostgreSQL's `bigint` columns may arrive as `BigInt`. */
export const rowText = (row: object): string =>
  JSON.stringify(row, (_, value) => typeof value === "bigint" ? value.toString() : value)

/** An integer column: PostgreSQL's `bigint` arrives as a string or a `BigInt`. */
export const int = (value: unknown): number => typeof value === "number" ? value : Number(value)

interface TaskRow {
  readonly task_key: string
  readonly session_id: string
  readonly task_id: string
  readonly ord: unknown
  readonly owner: string
  readonly record: string
  readonly released: unknown
}

interface EventRow {
  readonly seq: unknown
  readonly event: string
}

export const makeSql = (options?: SqlStoreOptions): Effect.Effect<TaskStoreService, TaskStoreError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const prefix = options?.tablePrefix ?? "task_host_"
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
    const tasks = sql(`${prefix}tasks`)
    const events = sql(`${prefix}events`)
    const lease = sql(`${prefix}lease`)
    const quarantine = sql(`${prefix}quarantine`)
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })

    // -- migrations -------------------------------------------------------------

    const migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
      "1_tasks_events_lease": Effect.gen(function*() {
        yield* sql`CREATE TABLE ${tasks} (
          task_key TEXT PRIMARY KEY,
          session_id TEXT NOT NULL,
          task_id TEXT NOT NULL,
          ord BIGINT NOT NULL,
          owner TEXT NOT NULL,
          state TEXT NOT NULL,
          record TEXT NOT NULL
        )`
        yield* sql`CREATE TABLE ${events} (
          seq BIGINT PRIMARY KEY,
          session_id TEXT NOT NULL,
          task_id TEXT,
          tag TEXT NOT NULL,
          event TEXT NOT NULL
        )`
        yield* sql`CREATE TABLE ${lease} (
          name TEXT PRIMARY KEY,
          owner TEXT NOT NULL,
          expires_at BIGINT NOT NULL,
          acquired_at BIGINT NOT NULL
        )`
        yield* isPg
          ? sql`CREATE TABLE ${quarantine} (
              id BIGSERIAL PRIMARY KEY,
              source TEXT NOT NULL,
              row_key TEXT NOT NULL,
              data TEXT NOT NULL,
              error TEXT NOT NULL,
              quarantined_at BIGINT NOT NULL
            )`
          : sql`CREATE TABLE ${quarantine} (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              source TEXT NOT NULL,
              row_key TEXT NOT NULL,
              data TEXT NOT NULL,
              error TEXT NOT NULL,
              quarantined_at BIGINT NOT NULL
            )`
      }),
      // a graceful stop in `release` mode leaves its live tasks marked, to be resumed without spending an attempt
      "2_released": Effect.gen(function*() {
        yield* sql`ALTER TABLE ${tasks} ADD COLUMN released INTEGER NOT NULL DEFAULT 0`
      }),
      // the fencing token: grows with every new holder (a released lease keeps its row, and its token)
      "3_lease_token": Effect.gen(function*() {
        yield* sql`ALTER TABLE ${lease} ADD COLUMN token BIGINT NOT NULL DEFAULT 0`
      }),
      // when each event was committed (epoch ms), for pruning by age; the events stored before
      // count from now, so they are kept at least as long as the retention says
      "4_event_time": Effect.gen(function*() {
        yield* sql`ALTER TABLE ${events} ADD COLUMN at BIGINT NOT NULL DEFAULT 0`
        yield* sql`UPDATE ${events} SET at = ${yield* Clock.currentTimeMillis}`
      })
    }
    yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: `${prefix}migrations` }).pipe(
      Effect.mapError(storeError("migrate"))
    )

    // -- reads ------------------------------------------------------------------

    /** Moves rows that no longer decode out of the way, in one transaction. */
    const quarantineRows = (
      source: "tasks" | "events",
      rows: ReadonlyArray<{ readonly key: string; readonly data: string; readonly error: CorruptRecord }>
    ) =>
      // nothing to move: no transaction (an empty one would still take the write lock)
      rows.length === 0 ? Effect.void : Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        for (const part of chunks(rows)) {
          yield* sql`INSERT INTO ${quarantine} ${
            sql.insert(mapNonEmpty(part, ({ data, error, key }) => ({
              source,
              row_key: key,
              data,
              error: error.message,
              quarantined_at: now
            })))
          }`
          yield* source === "tasks"
            ? sql`DELETE FROM ${tasks} WHERE ${sql.in("task_key", part.map((row) => row.key))}`
            : sql`DELETE FROM ${events} WHERE ${sql.in("seq", part.map((row) => Number(row.key)))}`
        }
      }).pipe(sql.withTransaction)

    const load: Effect.Effect<StoredState, TaskStoreError> = Effect.gen(function*() {
      const rows = yield* sql<TaskRow>`SELECT task_key, session_id, task_id, ord, owner, record, released FROM ${tasks} ORDER BY ord`
      const [last] = yield* sql<{ readonly seq: unknown }>`SELECT MAX(seq) AS seq FROM ${events}`
      let lastSeq = last?.seq === null || last?.seq === undefined ? 0 : int(last.seq)
      const loaded: Array<StoredTask> = []
      const bad: Array<{ key: string; data: string; error: CorruptRecord }> = []
      const liveIds = new Map<string, string>()
      for (const row of rows) {
        const corrupt = (message: string) =>
          bad.push({
            key: row.task_key,
            data: rowText(row),
            error: new CorruptRecord({ table: `${prefix}tasks`, key: row.task_key, message })
          })
        const decoded = decodeRecord(row.record)
        if (Exit.isFailure(decoded)) {
          corrupt(`the record does not decode: ${causeMessage(squash(decoded))}`)
          continue
        }
        const record = decoded.value
        if (record.id !== row.task_id || record.scope.sessionId !== row.session_id) {
          corrupt(`the record is ${record.id} in ${record.scope.sessionId}, but its row is ${row.task_id} in ${row.session_id}`)
          continue
        }
        if (!owners.includes(row.owner)) {
          corrupt(`unknown owner ${JSON.stringify(row.owner)}`)
          continue
        }
        const order = int(row.ord)
        if (!Number.isSafeInteger(order)) {
          corrupt(`ord is not an integer: ${JSON.stringify(row.ord)}`)
          continue
        }
        if (!isTerminal(record.state)) {
          const other = liveIds.get(record.id)
          if (other !== undefined) {
            corrupt(`a second live record with id ${record.id} (the first is in session ${other})`)
            continue
          }
          liveIds.set(record.id, record.scope.sessionId)
        }
        lastSeq = Math.max(lastSeq, record.revision, order)
        loaded.push({ order, owner: row.owner as TaskOwner, record, released: int(row.released) === 1 })
      }
      yield* quarantineRows("tasks", bad)
      return { tasks: loaded, lastSeq, quarantined: bad.map((row) => row.error) }
    }).pipe(storeFailures("load"))

    const readEvents = (fromSeq: number, toSeq: number, limit: number) =>
      Effect.gen(function*() {
        const rows = yield* sql<EventRow>`SELECT seq, event FROM ${events}
          WHERE seq > ${fromSeq} AND seq <= ${toSeq} ORDER BY seq LIMIT ${limit}`
        const decoded: Array<BackgroundTaskEvent> = []
        const bad: Array<{ key: string; data: string; error: CorruptRecord }> = []
        let lastRead = fromSeq
        for (const row of rows) {
          const seq = int(row.seq)
          lastRead = seq
          const event = decodeEvent(row.event)
          if (Exit.isSuccess(event) && event.value.seq === seq) {
            decoded.push(event.value)
            continue
          }
          const message = Exit.isSuccess(event)
            ? `the event's seq is ${event.value.seq}, its row's ${seq}`
            : `the event does not decode: ${causeMessage(squash(event))}`
          bad.push({
            key: String(seq),
            data: rowText(row),
            error: new CorruptRecord({ table: `${prefix}events`, key: String(seq), message })
          })
        }
        yield* quarantineRows("events", bad)
        return { events: decoded, quarantined: bad.map((row) => row.error), lastRead }
      }).pipe(storeFailures("read events"))

    // -- writes -----------------------------------------------------------------

    const renew = (owner: string, expiresAt: number) =>
      Effect.map(
        // never shortened: a renewal computed earlier can land after a commit's later one
        sql<{ readonly owner: string }>`UPDATE ${lease}
          SET expires_at = CASE WHEN expires_at < ${expiresAt} THEN ${expiresAt} ELSE expires_at END
          WHERE name = ${leaseName} AND owner = ${owner} AND expires_at > 0 RETURNING owner`,
        (rows) => rows.length === 1
      )

    const holder = sql<{ readonly owner: string; readonly expires_at: unknown }>`SELECT owner, expires_at FROM ${lease}
      WHERE name = ${leaseName}`

    const writes = rowWriters(sql, { tasks, events }, isPg, { table: lease, name: leaseName })
    const leaseHeld = Effect.flatMap(holder, ([row]) =>
      Effect.fail(new LeaseHeld({ holder: row?.owner ?? "nobody", expiresAt: row === undefined ? 0 : int(row.expires_at) })))

    const write = (batch: TaskStoreBatch, held: { readonly owner: string; readonly expiresAt: number } | undefined) =>
      Effect.flatMap(
        // when the batch is committed, for pruning by age
        Clock.currentTimeMillis,
        (at) =>
          held !== undefined && writes.leased !== undefined
            // PostgreSQL, under a lease: one statement, its own transaction, the lease checked in it
            ? Effect.flatMap(writes.leased(batch, held, at), (written) => written ? Effect.void : leaseHeld)
            : Effect.gen(function*() {
              if (held !== undefined && !(yield* renew(held.owner, held.expiresAt))) return yield* leaseHeld
              yield* writes.deletes(batch.deletes)
              yield* writes.rows(batch.puts, batch.events, at)
            }).pipe(sql.withTransaction)
      ).pipe(storeFailures("write"))

    const acquireLease = (owner: string, now: number, expiresAt: number) =>
      Effect.gen(function*() {
        const taken = yield* sql<{ readonly owner: string; readonly token: unknown }>`INSERT INTO ${lease} ${
          sql.insert({ name: leaseName, owner, expires_at: expiresAt, acquired_at: now, token: 1 })
        } ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
          acquired_at = excluded.acquired_at,
          token = CASE WHEN ${lease}.owner = excluded.owner THEN ${lease}.token ELSE ${lease}.token + 1 END
          WHERE ${lease}.expires_at <= ${now} OR ${lease}.owner = excluded.owner
          RETURNING owner, token`
        if (taken.length === 1) return int(taken[0]!.token)
        const [row] = yield* holder
        return yield* Effect.fail(
          new LeaseHeld({ holder: row?.owner ?? "nobody", expiresAt: row === undefined ? 0 : int(row.expires_at) })
        )
      }).pipe(Effect.catch((error) => Effect.fail(error instanceof LeaseHeld ? error : storeError("acquire lease")(error))))

    /** Rows deleted per statement when pruning, so a writer never waits long behind it. */
    const prunePage = 5_000
    const lowestSeq = Effect.map(
      sql<{ readonly seq: unknown }>`SELECT MIN(seq) AS seq FROM ${events}`,
      ([row]) => row?.seq === null || row?.seq === undefined ? undefined : int(row.seq)
    )
    const pruneEvents = (throughSeq: number) =>
      Effect.gen(function*() {
        let deleted = 0
        while (true) {
          const lowest = yield* lowestSeq
          if (lowest === undefined || lowest > throughSeq) return deleted
          const upTo = Math.min(throughSeq, lowest + prunePage - 1)
          yield* sql`DELETE FROM ${events} WHERE seq <= ${upTo}`
          deleted += upTo - lowest + 1
        }
      }).pipe(Effect.mapError(storeError("prune events")))

    /** Walks up from the lowest stored event a page of seqs at a time, to the first one committed at or after `before`. */
    const agedThrough = (before: number, upTo: number) =>
      Effect.gen(function*() {
        const lowest = yield* lowestSeq
        if (lowest === undefined) return { through: 0, next: undefined }
        let from = lowest
        while (from <= upTo) {
          const to = Math.min(upTo, from + prunePage - 1)
          const [young] = yield* sql<{ readonly seq: unknown; readonly at: unknown }>`SELECT seq, at FROM ${events}
            WHERE seq >= ${from} AND seq <= ${to} AND at >= ${before} ORDER BY seq LIMIT 1`
          if (young !== undefined) return { through: int(young.seq) - 1, next: int(young.at) }
          from = to + 1
        }
        return { through: Math.max(lowest - 1, upTo), next: undefined }
      }).pipe(Effect.mapError(storeError("read events")))

    const service: TaskStoreService = {
      durable: true,
      pruneEvents,
      agedThrough,
      // pruning keeps at least the last event, so no event means none was ever written
      prunedThrough: Effect.map(lowestSeq, (lowest) => lowest === undefined ? 0 : lowest - 1).pipe(
        Effect.mapError(storeError("read events"))
      ),
      load,
      write,
      events: readEvents,
      acquireLease,
      renewLease: (owner, expiresAt) => renew(owner, expiresAt).pipe(Effect.mapError(storeError("renew lease"))),
      releaseLease: (owner) =>
        // expired at once, the row (and its token) kept: the next holder's token is greater
        sql`UPDATE ${lease} SET expires_at = 0 WHERE name = ${leaseName} AND owner = ${owner}`.pipe(
          Effect.asVoid,
          Effect.mapError(storeError("release lease"))
        )
    }
    return service
  })

/** A failed decode's error (a `SchemaError`, whose message names the bad field). */
const squash = (exit: Exit.Failure<unknown, unknown>): unknown =>
  Option.getOrElse(Exit.findErrorOption(exit), () => exit.cause)
