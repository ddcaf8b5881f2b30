/**
 * The rows of a batch, as the SQL store writes them: the statements that
 * delete records, upsert records and insert events, one set per dialect.
 *
 * SQLite: multi-row statements of a few fixed sizes (`ladder`), so the client
 * prepares each size once and then finds it in its cache (preparing a
 * statement of a few hundred rows costs about as much as running it, and
 * almost every batch has a size of its own); each size's text is compiled
 * once, and a part's rows are bound as one flat array (no row objects).
 * PostgreSQL: one statement for a batch's records and events whatever its
 * size (a data-modifying `WITH`), and one for its deletes, the rows passed as
 * one array per column (`unnest`): one text, prepared once, one round trip.
 *
 * Owns nothing; `store.ts` calls it inside a write's transaction.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as Statement from "effect/sql/Statement"
import type { BackgroundTaskRecord } from "../BackgroundTask.ts"
import type { BackgroundTaskEvent } from "../TaskEvent.ts"
import { eventJson, recordJson } from "./wire.ts"

/** A record to write (the store's `StoredTask`). */
interface TaskRowInput {
  readonly order: number
  readonly owner: string
  readonly record: BackgroundTaskRecord
  readonly released?: boolean | undefined
}

/** A record to delete. */
interface DeleteInput {
  readonly sessionId: string
  readonly taskId: string
}

/** A record's row key: unambiguous for any two ids. */
export const keyOf = (sessionId: string, taskId: string) => JSON.stringify([sessionId, taskId])

/** Rows in the largest statement (SQLite): 512 rows of 8 columns, well under its 32,766 parameters. */
const largest = 512

/**
 * The parts of `count` rows, as `[offset, size]`: 512, 256, ... 1 rows,
 * largest first. A statement per part, of one of ten sizes, so a client that
 * caches prepared statements by their text prepares each size once.
 */
export const ladder = (count: number): Array<readonly [number, number]> => {
  const out: Array<readonly [number, number]> = []
  let size = largest
  for (let offset = 0; offset < count;) {
    while (size > count - offset) size >>= 1
    out.push([offset, size])
    offset += size
  }
  return out
}

/** `f(size)`, made once per size. */
const perSize = (f: (size: number) => string): (size: number) => string => {
  const made = new Map<number, string>()
  return (size) => {
    let text = made.get(size)
    if (text === undefined) made.set(size, text = f(size))
    return text
  }
}

/** A batch to write (the store's `TaskStoreBatch`). */
interface BatchInput {
  readonly events: ReadonlyArray<BackgroundTaskEvent>
  readonly puts: ReadonlyArray<TaskRowInput>
  readonly deletes: ReadonlyArray<DeleteInput>
}

/** The lease a write checks and renews. */
interface HeldLease {
  readonly owner: string
  readonly expiresAt: number
}

/**
 * Writes a batch, all or nothing: with `held`, only if that lease is renewed
 * in the same transaction (`false`, and nothing written, when it is not held);
 * `at` is the batch's commit time, kept with each event.
 */
export type BatchWriter = (batch: BatchInput, held: HeldLease | undefined, at: number) => Effect.Effect<boolean, unknown>

export interface StoreTables {
  readonly tasks: Statement.Identifier
  readonly events: Statement.Identifier
  readonly lease: Statement.Identifier
  /** The lease row's name. */
  readonly leaseName: string
}

export const batchWriter = (sql: SqlClient.SqlClient, tables: StoreTables, isPg: boolean): BatchWriter =>
  isPg ? pgWriter(sql, tables) : sqliteWriter(sql, tables)

/** The renewal of a lease: never shortened (a renewal computed earlier can land after a commit's later one). */
export const renewal = (
  sql: SqlClient.SqlClient,
  { lease, leaseName }: Pick<StoreTables, "lease" | "leaseName">,
  held: HeldLease
) =>
  sql<{ readonly owner: string }>`UPDATE ${lease}
    SET expires_at = CASE WHEN expires_at < ${held.expiresAt} THEN ${held.expiresAt} ELSE expires_at END
    WHERE name = ${leaseName} AND owner = ${held.owner} AND expires_at > 0 RETURNING owner`

/**
 * SQLite: one transaction (the lease renewed first), its statements of a few
 * fixed sizes.
 */
const sqliteWriter = (sql: SqlClient.SqlClient, tables: StoreTables): BatchWriter => {
  const { events, tasks } = tables
  const parts = <A>(
    items: ReadonlyArray<A>,
    text: (size: number) => string,
    bind: (params: Array<unknown>, item: A) => void
  ) =>
    items.length === 0 ? Effect.void : Effect.forEach(ladder(items.length), ([offset, size]) => {
      const params: Array<unknown> = []
      for (let i = offset; i < offset + size; i++) bind(params, items[i]!)
      return sql.unsafe(text(size), params)
    }, { discard: true })
  // the texts are compiled by the client's own compiler, from rows of placeholders
  const placeholders = <A>(size: number, row: A) =>
    Array.from({ length: size }, () => row) as unknown as readonly [A, ...Array<A>]
  const deleteText = perSize((size) =>
    sql`DELETE FROM ${tasks} WHERE ${sql.in("task_key", Array.from({ length: size }, () => ""))}`.compile()[0]
  )
  const putText = perSize((size) =>
    sql`INSERT INTO ${tasks} ${
      sql.insert(
        placeholders(size, { task_key: "", session_id: "", task_id: "", ord: 0, owner: "", state: "", record: "", released: 0 })
      )
    } ON CONFLICT (task_key) DO UPDATE SET ord = excluded.ord, owner = excluded.owner,
      state = excluded.state, record = excluded.record, released = excluded.released`.compile()[0]
  )
  const eventText = perSize((size) =>
    sql`INSERT INTO ${events} ${
      sql.insert(placeholders(size, { seq: 0, session_id: "", task_id: "", tag: "", event: "", at: 0 }))
    }`.compile()[0]
  )
  const deletes = (list: ReadonlyArray<DeleteInput>) =>
    parts(list, deleteText, (params, d) => void params.push(keyOf(d.sessionId, d.taskId)))
  const puts = (list: ReadonlyArray<TaskRowInput>) =>
    parts(list, putText, (params, { order, owner, record, released }) =>
      void params.push(
        keyOf(record.scope.sessionId, record.id),
        record.scope.sessionId,
        record.id,
        order,
        owner,
        record.state,
        recordJson(record),
        released === true ? 1 : 0
      ))
  const eventRows = (list: ReadonlyArray<BackgroundTaskEvent>, at: number) =>
    parts(list, eventText, (params, event) =>
      void params.push(
        event.seq,
        event.sessionId,
        "taskId" in event ? event.taskId : null,
        event._tag,
        eventJson(event),
        at
      ))
  return (batch, held, at) =>
    Effect.gen(function*() {
      if (held !== undefined && (yield* renewal(sql, tables, held)).length !== 1) return false
      yield* deletes(batch.deletes)
      yield* puts(batch.puts)
      yield* eventRows(batch.events, at)
      return true
    }).pipe(sql.withTransaction)
}

/**
 * PostgreSQL: one statement, so one round trip and no BEGIN or COMMIT (a
 * statement is a transaction of its own): the lease renewed, and the deletes,
 * records and events written only if it was (data-modifying WITH queries,
 * each part's rows as one array per column).
 */
const pgWriter = (sql: SqlClient.SqlClient, tables: StoreTables): BatchWriter => {
  const { events, tasks } = tables
  const taskColumns = (puts: ReadonlyArray<TaskRowInput>, guard: Statement.Fragment) => {
    const keys: Array<string> = [], sessions: Array<string> = [], ids: Array<string> = [], orders: Array<number> = []
    const owners: Array<string> = [], states: Array<string> = [], records: Array<string> = [], released: Array<number> = []
    for (const put of puts) {
      const { record } = put
      keys.push(keyOf(record.scope.sessionId, record.id))
      sessions.push(record.scope.sessionId)
      ids.push(record.id)
      orders.push(put.order)
      owners.push(put.owner)
      states.push(record.state)
      records.push(recordJson(record))
      released.push(put.released === true ? 1 : 0)
    }
    return sql`INSERT INTO ${tasks} (task_key, session_id, task_id, ord, owner, state, record, released)
      SELECT * FROM unnest(${keys}::text[], ${sessions}::text[], ${ids}::text[], ${orders}::bigint[],
        ${owners}::text[], ${states}::text[], ${records}::text[], ${released}::integer[]) ${guard}
      ON CONFLICT (task_key) DO UPDATE SET ord = excluded.ord, owner = excluded.owner,
        state = excluded.state, record = excluded.record, released = excluded.released`
  }
  const eventColumns = (list: ReadonlyArray<BackgroundTaskEvent>, at: number, guard: Statement.Fragment) => {
    const seqs: Array<number> = [], sessions: Array<string> = [], ids: Array<string> = [], tags: Array<string> = []
    const texts: Array<string> = []
    for (const event of list) {
      seqs.push(event.seq)
      sessions.push(event.sessionId)
      // an id is never empty: '' stands for "no task" (an array of nothing but NULLs has no type to bind)
      ids.push("taskId" in event ? event.taskId : "")
      tags.push(event._tag)
      texts.push(eventJson(event))
    }
    return sql`INSERT INTO ${events} (seq, session_id, task_id, tag, event, at)
      SELECT seq, session_id, NULLIF(task_id, ''), tag, event, ${at}::bigint
      FROM unnest(${seqs}::bigint[], ${sessions}::text[], ${ids}::text[], ${tags}::text[], ${texts}::text[])
        AS row (seq, session_id, task_id, tag, event) ${guard}`
  }
  const deleteRows = (keys: ReadonlyArray<string>, guarded: boolean) =>
    sql`DELETE FROM ${tasks} WHERE task_key = ANY(${keys}::text[]) ${sql.literal(guarded ? "AND EXISTS (SELECT 1 FROM renewed)" : "")}`
  return (batch, held, at) => {
    // with a lease, every part is written only if it was renewed
    const guard = sql.literal(held === undefined ? "" : "WHERE EXISTS (SELECT 1 FROM renewed)")
    const parts: Array<Statement.Fragment> = []
    if (held !== undefined) parts.push(sql`renewed AS (${renewal(sql, tables, held)})`)
    // the sub-statements of one statement run on one snapshot, so a row must not be both deleted and written:
    // a record put in the same batch is not deleted first (the put replaces every column its key does not fix)
    const putKeys = new Set<string>()
    for (const put of batch.puts) putKeys.add(keyOf(put.record.scope.sessionId, put.record.id))
    const deleted = batch.deletes.map((d) => keyOf(d.sessionId, d.taskId)).filter((key) => !putKeys.has(key))
    if (deleted.length > 0) parts.push(sql`deleted AS (${deleteRows(deleted, held !== undefined)})`)
    if (batch.puts.length > 0) parts.push(sql`written AS (${taskColumns(batch.puts, guard)})`)
    if (batch.events.length > 0) parts.push(sql`logged AS (${eventColumns(batch.events, at, guard)})`)
    if (parts.length === 0) return Effect.succeed(true)
    const result = held === undefined ? sql`SELECT 1 AS renewed` : sql`SELECT COUNT(*) AS renewed FROM renewed`
    return Effect.map(
      sql<{ readonly renewed: unknown }>`WITH ${sql.csv(parts)} ${result}`,
      ([row]) => Number(row?.renewed) === 1
    )
  }
}
