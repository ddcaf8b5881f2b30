/**
 * Deploys, twenty in a row: a durable job runner in a child
 * process (`test/fixtures/deploy-child.ts`) with 1,000 jobs of mixed
 * durations is stopped with SIGTERM at a random moment and started again,
 * twenty times, then run until every job has ended. Every job must end
 * exactly once, `completed`, on its first attempt (a stop is not an attempt),
 * none lost, with no `seq` missing; every stop must let the next process start
 * at once (no `LeaseHeld`). On a SQLite file and on PostgreSQL.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeSqliteClient from "../../src/NodeSqliteClient.ts"
import { assertStoppedCleanly, type ChildRun, checkAllDone, runChild } from "../utils/deploy.ts"
import { describePg, PgTestDatabase, settings } from "../utils/postgres.ts"
import { tempDir } from "../utils/store.ts"

const count = 1_000
const stops = 20

/** Twenty runs stopped at random moments (from just after start to a few seconds in), then one to the end. */
const deploys = (target: string, env: NodeJS.ProcessEnv) =>
  Effect.gen(function*() {
    const runs: Array<ChildRun> = []
    for (let i = 0; i < stops; i++) {
      const afterMs = Math.floor(Math.random() * 3_000)
      const run = yield* runChild({ target, count, env, afterMs, stopWhen: (line) => line === null || line === "all-done" })
      assertStoppedCleanly(run, `run ${i + 1} (stopped ${afterMs} ms after ready)`)
      runs.push(run)
    }
    const last = yield* runChild({ target, count, env, stopWhen: (line) => line === "all-done", timeoutMs: 120_000 })
    assertStoppedCleanly(last, "the last run")
    assert.isTrue(last.allDone, last.stderr)
    runs.push(last)
    return runs
  })

describe("deploys (SIGTERM, 20 restarts) on a SQLite file", () => {
  it.live("1,000 jobs: each ends exactly once, completed, on its first attempt, none lost", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("eth-deploys-")
      const runs = yield* deploys(`sqlite:${dir}/jobs.db`, process.env)
      yield* Effect.gen(function*() {
        yield* checkAllDone(yield* SqlClient.SqlClient, count, runs)
      }).pipe(Effect.provide(NodeSqliteClient.layer({ filename: `${dir}/jobs.db` })))
    }), 600_000)
})

describePg(
  "deploys (SIGTERM, 20 restarts) on PostgreSQL",
  (it) => {
    it.effect("1,000 jobs: each ends exactly once, completed, on its first attempt, none lost", () =>
      Effect.gen(function*() {
        if (settings._tag !== "Available") return yield* Effect.die(new Error(settings.reason))
        const { name } = yield* PgTestDatabase
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          PGHOST: settings.host,
          PGPORT: String(settings.port),
          PGUSER: settings.user
        }
        if (settings.password === undefined) delete env["PGPASSWORD"]
        else env["PGPASSWORD"] = settings.password
        const runs = yield* deploys(`pg:${name}`, env)
        yield* checkAllDone(yield* SqlClient.SqlClient, count, runs)
      }), 600_000)
  },
  { excludeTestServices: true }
)
