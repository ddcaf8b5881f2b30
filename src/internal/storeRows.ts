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
 * Under a lease (every commit of a host), the whole batch is one statement
 * (`leased`): the lease's renewal, the deletes, records and events, with no
 * `BEGIN` or `COMMIT` (a statement is its own transaction): one round trip.
 *
 * Owns nothing; `store.ts` calls it (inside a write's transaction, but for
 * `leased`).
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

/** The statements that write a batch's rows, on `tasks` and `events`; `at` is the batch's commit time. */
export interface RowWriters {
  /**
   * PostgreSQL only: the whole batch under a lease as ONE statement, which
   * is its own transaction (no `BEGIN`, no `COMMIT`: one round trip): the
   * lease renewed (a data-modifying `WITH`, the lease row locked), then the
   * deletes, records and events, each written only if the renewal found the
   * lease; returns whether it did (`false`: nothing was written).
   */
  readonly leased?: (
    batch: {
      readonly puts: ReadonlyArray<TaskRowInput>
      readonly events: ReadonlyArray<BackgroundTaskEvent>
      readonly deletes: ReadonlyArray<DeleteInput>
    },
    lease: { readonly owner: string; readonly expiresAt: number },
    at: number
  ) => Effect.Effect<boolean, unknown>
  readonly deletes: (deletes: ReadonlyArray<DeleteInput>) => Effect.Effect<unknown, unknown>
  /** The records, then the events. */
  readonly rows: (
    puts: ReadonlyArray<TaskRowInput>,
    events: ReadonlyArray<BackgroundTaskEvent>,
    at: number
  ) => Effect.Effect<unknown, unknown>
}

export const rowWriters = (
  sql: SqlClient.SqlClient,
  tables: { readonly tasks: Statement.Identifier; readonly events: Statement.Identifier },
  isPg: boolean,
  lease?: { readonly table: Statement.Identifier; readonly name: string }
): RowWriters => isPg ? pgWriters(sql, tables, lease) : sqliteWriters(sql, tables)

const sqliteWriters = (
  sql: SqlClient.SqlClient,
  { events, tasks }: { readonly tasks: Statement.Identifier; readonly events: Statement.Identifier }
): RowWriters => {
  // `bind` sets a row's `width` parameters from `at`: the array is made at its size, not grown
  const parts = <A>(
    items: ReadonlyArray<A>,
    width: number,
    text: (size: number) => string,
    bind: (params: Array<unknown>, at: number, item: A) => void
  ) =>
    items.length === 0 ? Effect.void : Effect.forEach(ladder(items.length), ([offset, size]) => {
      const params = new Array<unknown>(size * width)
      for (let i = 0; i < size; i++) bind(params, i * width, items[offset + i]!)
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
  return {
    deletes: (deletes) => parts(deletes, 1, deleteText, (params, at, d) => void (params[at] = keyOf(d.sessionId, d.taskId))),
    rows: (puts, list, committedAt) =>
      Effect.andThen(
        parts(puts, 8, putText, (params, at, { order, owner, record, released }) => {
          params[at] = keyOf(record.scope.sessionId, record.id)
          params[at + 1] = record.scope.sessionId
          params[at + 2] = record.id
          params[at + 3] = order
          params[at + 4] = owner
          params[at + 5] = record.state
          params[at + 6] = recordJson(record)
          params[at + 7] = released === true ? 1 : 0
        }),
        parts(list, 6, eventText, (params, at, event) => {
          params[at] = event.seq
          params[at + 1] = event.sessionId
          params[at + 2] = "taskId" in event ? event.taskId : null
          params[at + 3] = event._tag
          params[at + 4] = eventJson(event)
          params[at + 5] = committedAt
        })
      )
  }
}

const pgWriters = (
  sql: SqlClient.SqlClient,
  { events, tasks }: { readonly tasks: Statement.Identifier; readonly events: Statement.Identifier },
  lease: { readonly table: Statement.Identifier; readonly name: string } | undefined
): RowWriters => {
  const putKeys = (puts: ReadonlyArray<TaskRowInput>) => puts.map(({ record }) => keyOf(record.scope.sessionId, record.id))
  // `guard`: the rows are written only if the lease was renewed (`held`, a `WITH` before them)
  const taskColumns = (puts: ReadonlyArray<TaskRowInput>, keys = putKeys(puts), guard = false) => {
    const sessions: Array<string> = [], ids: Array<string> = [], orders: Array<number> = []
    const owners: Array<string> = [], states: Array<string> = [], records: Array<string> = [], released: Array<number> = []
    for (const put of puts) {
      const { record } = put
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
        ${owners}::text[], ${states}::text[], ${records}::text[], ${released}::integer[])
      ${guard ? sql.literal("WHERE EXISTS (SELECT 1 FROM held)") : sql.literal("")}
      ON CONFLICT (task_key) DO UPDATE SET ord = excluded.ord, owner = excluded.owner,
        state = excluded.state, record = excluded.record, released = excluded.released`
  }
  const eventColumns = (list: ReadonlyArray<BackgroundTaskEvent>, at: number, guard = false) => {
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
        AS row (seq, session_id, task_id, tag, event)
      ${guard ? sql.literal("WHERE EXISTS (SELECT 1 FROM held)") : sql.literal("")}`
  }
  const leased: RowWriters["leased"] = lease === undefined ? undefined : ({ deletes, events: list, puts }, held, at) => {
    const written = putKeys(puts)
    // a record both deleted and put is put (as when the deletes come first): two parts of one
    // statement must not change the same row
    let gone = deletes.map((d) => keyOf(d.sessionId, d.taskId))
    if (gone.length > 0 && written.length > 0) {
      const put = new Set(written)
      gone = gone.filter((key) => !put.has(key))
    }
    // each part only when it has rows (an empty one would still be planned and run)
    const parts: Array<Statement.Fragment> = []
    if (gone.length > 0) {
      parts.push(sql`, deleted AS (DELETE FROM ${tasks}
        WHERE task_key = ANY(${gone}::text[]) AND EXISTS (SELECT 1 FROM held))`)
    }
    if (puts.length > 0) parts.push(sql`, written AS (${taskColumns(puts, written, true)})`)
    if (list.length > 0) parts.push(sql`, logged AS (${eventColumns(list, at, true)})`)
    // never shortened: a renewal computed earlier can land after a commit's later one
    return Effect.map(
      sql<{ readonly held: unknown }>`WITH held AS (UPDATE ${lease.table}
        SET expires_at = CASE WHEN expires_at < ${held.expiresAt} THEN ${held.expiresAt} ELSE expires_at END
        WHERE name = ${lease.name} AND owner = ${held.owner} AND expires_at > 0 RETURNING 1)${
        sql.join("", false, "")(parts)
      } SELECT EXISTS (SELECT 1 FROM held) AS held`,
      ([row]) => row?.held === true
    )
  }
  return {
    ...(leased === undefined ? {} : { leased }),
    deletes: (deletes) =>
      deletes.length === 0 ? Effect.void : sql`DELETE FROM ${tasks}
        WHERE task_key = ANY(${deletes.map((d) => keyOf(d.sessionId, d.taskId))}::text[])`,
    rows: (puts, list, at) =>
      puts.length === 0
        ? list.length === 0 ? Effect.void : eventColumns(list, at)
        : list.length === 0
        ? taskColumns(puts)
        // one round trip: the records, and the events beside them
        : sql`WITH written AS (${taskColumns(puts)}) ${eventColumns(list, at)}`
  }
}
