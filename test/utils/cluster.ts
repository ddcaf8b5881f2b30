/**
 * Counting what a cluster's tables say about its writers (fast and long
 * cluster tests). Every event and record row carries the token of the
 * session's owner that wrote it and that commit's number on the session's
 * row (`write_no`, ordered by the row's lock). A write from a stale owner is
 * a row whose token is lower than a token a previous write of the same
 * session carried.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"

export interface WriterAudit {
  /** Event rows written by a stale owner. */
  readonly staleEvents: number
  /** Record rows (their last write) written by a stale owner. */
  readonly staleRecords: number
  /** Rows that carry a writer's token (all of them, unless a write went around the session's row). */
  readonly stamped: number
  readonly rows: number
  /** The tokens that wrote, per session (e.g. `{ "s-1": [1, 2] }`: two owners in turn). */
  readonly tokens: Readonly<Record<string, ReadonlyArray<number>>>
}

export const auditWriters = (sql: SqlClient.SqlClient, prefix = "task_cluster_"): Effect.Effect<WriterAudit, unknown> =>
  Effect.gen(function*() {
    const events = sql(`${prefix}events`)
    const tasks = sql(`${prefix}tasks`)
    // each row against the highest token any earlier write of its session carried (rows of one
    // commit share a token; were two tokens ever given one write_no, the lower one counts as later)
    const stale = yield* sql<{ readonly kind: string; readonly n: unknown }>`
      WITH w AS (
        SELECT session_id, write_no, token, 'event' AS kind FROM ${events}
        UNION ALL SELECT session_id, write_no, token, 'record' AS kind FROM ${tasks}
      ), m AS (
        SELECT kind, token, MAX(token) OVER (
          PARTITION BY session_id ORDER BY write_no, token DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS before FROM w
      )
      SELECT kind, COUNT(*) AS n FROM m WHERE before > token GROUP BY kind`
    const count = (kind: string) => Number(stale.find((r) => r.kind === kind)?.n ?? 0)
    const [totals] = yield* sql<{ readonly rows: unknown; readonly stamped: unknown }>`
      SELECT COUNT(*) AS rows, SUM(CASE WHEN token > 0 AND write_no > 0 THEN 1 ELSE 0 END) AS stamped FROM (
        SELECT token, write_no FROM ${events} UNION ALL SELECT token, write_no FROM ${tasks}
      ) r`
    const writers = yield* sql<{ readonly session_id: string; readonly token: unknown }>`
      SELECT DISTINCT session_id, token FROM ${events} ORDER BY session_id, token`
    const tokens: Record<string, Array<number>> = {}
    for (const w of writers) (tokens[w.session_id] ??= []).push(Number(w.token))
    return {
      staleEvents: count("event"),
      staleRecords: count("record"),
      stamped: Number(totals?.stamped ?? 0),
      rows: Number(totals?.rows ?? 0),
      tokens
    }
  })
