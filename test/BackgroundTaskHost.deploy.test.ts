/**
 * A deploy: a durable job runner in a child process
 * (`test/fixtures/deploy-child.ts`) is stopped with SIGTERM while its jobs
 * run, and started again. The default shutdown (`release`) leaves the jobs
 * live in the store, marked released, writes no end for them and gives the
 * lease up; the next process starts at once and resumes them with the same
 * attempt. The 20-restart version on SQLite and PostgreSQL is
 * `test/long/deploy.test.ts` (`npm run test:long`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { isTerminal } from "../src/index.ts"
import * as NodeSqliteClient from "../src/NodeSqliteClient.ts"
import { assertStoppedCleanly, checkAllDone, runChild } from "./utils/deploy.ts"
import { eventRows, taskRows, tempDir } from "./utils/store.ts"

const count = 300

describe("BackgroundTaskHost deploy (SIGTERM) on a SQLite file", () => {
  it.live("a job runner stopped while its jobs run: the jobs stay live, released; the next process resumes them and every job ends once, completed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("eth-deploy-")
      const target = `sqlite:${dir}/jobs.db`
      // stopped once every job is spawned: the long ones (up to 3 s) still run
      const first = yield* runChild({ target, count, stopWhen: (line) => line === `spawned ${count}` })
      assertStoppedCleanly(first, "first run")
      assert.isFalse(first.allDone)

      const afterStop = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* taskRows(sql)
        const released = yield* sql<{ readonly task_id: string; readonly released: unknown }>`
          SELECT task_id, released FROM task_host_tasks`.pipe(Effect.orDie)
        const events = yield* eventRows(sql)
        return { rows, released, events }
      }).pipe(Effect.provide(NodeSqliteClient.layer({ filename: `${dir}/jobs.db` })))
      assert.strictEqual(afterStop.rows.length, count)
      const live = afterStop.rows.filter((row) => !isTerminal(row.state as never))
      assert.isAbove(live.length, 0, "jobs were running at the stop")
      const releasedIds = new Set(afterStop.released.filter((row) => Number(row.released) === 1).map((row) => row.task_id))
      assert.deepStrictEqual(live.map((row) => row.task_id).filter((id) => !releasedIds.has(id)), [], "every live job is marked released")
      assert.deepStrictEqual(
        afterStop.events.filter(({ decoded }) => decoded._tag === "Cancelled" || decoded._tag === "Failed").length,
        0,
        "the stop ended nothing"
      )

      // the next process starts at once (the lease was given up) and resumes the live jobs
      const second = yield* runChild({ target, count, stopWhen: (line) => line === "all-done" })
      assertStoppedCleanly(second, "second run")
      assert.isTrue(second.allDone)
      const resumed = second.lines.filter((line) => line.startsWith("resume ")).map((line) => line.split(" ")[1])
      assert.deepStrictEqual([...resumed].sort(), live.map((row) => row.task_id).sort())
      yield* Effect.gen(function*() {
        yield* checkAllDone(yield* SqlClient.SqlClient, count, [first, second])
      }).pipe(
        Effect.provide(NodeSqliteClient.layer({ filename: `${dir}/jobs.db` }))
      )
    }), 60_000)
})
