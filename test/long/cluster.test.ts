/**
 * Failure injection on one machine: three runner processes
 * (examples/cluster/runner.ts) on a PostgreSQL database of their own, this
 * process as a client driving a workload across sessions, and in turn: a
 * runner paused (SIGSTOP) past its shard lock and resumed, a runner's
 * database connections terminated (`pg_terminate_backend`), a runner killed
 * (SIGKILL) and started again (a rolling restart of one). Then the
 * invariants, counted from the store: every acknowledged spawn ended, each
 * task with exactly one terminal event, every session's `seq` without a gap
 * (and no event written twice: its key is session and `seq`).
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { assert } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { BackgroundTaskHost } from "../../src/index.ts"
import * as TaskCluster from "../../src/TaskCluster.ts"
import { shardingConfig } from "../../examples/cluster/shared.ts"
import { describePg, PgTestDatabase, settings } from "../utils/postgres.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const basePort = 36_000 + Math.floor(Math.random() * 2_000)

describePg("cluster: failure injection (3 runners, PostgreSQL)", (it) => {
  it.effect("SIGSTOP past the lock, pg_terminate_backend, SIGKILL + restart: the invariants hold", () =>
    Effect.gen(function*() {
      if (settings._tag !== "Available") return yield* Effect.die(new Error(settings.reason))
      const { name } = yield* PgTestDatabase
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PGHOST: settings.host,
        PGPORT: String(settings.port),
        PGUSER: settings.user,
        PGPASSWORD: settings.password ?? "",
        PGDATABASE: name
      }
      const children = new Map<string, ChildProcess>()
      const logs: Array<string> = []
      const start = (runner: string, port: number) => {
        const child = spawn(process.execPath, [`${root}examples/cluster/runner.ts`], {
          env: { ...env, RUNNER_NAME: runner, RUNNER_PORT: String(port) },
          stdio: ["ignore", "pipe", "pipe"]
        })
        child.stdout!.on("data", (d: Buffer) => logs.push(...String(d).split("\n").map((l) => `${runner}: ${l}`)))
        child.stderr!.on("data", (d: Buffer) => logs.push(...String(d).split("\n").map((l) => `${runner}! ${l}`)))
        children.set(runner, child)
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
      }))
      start("runner-a", basePort)
      start("runner-b", basePort + 1)
      start("runner-c", basePort + 2)

      const client = TaskCluster.layerClient({ pollInterval: "200 millis" }).pipe(
        Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig })),
        Layer.provideMerge(PgClient.layer({
          host: settings.host,
          port: settings.port,
          username: settings.user,
          password: settings.password === undefined ? undefined : Redacted.make(settings.password),
          database: name,
          applicationName: "cluster test client"
        }))
      )

      const report = yield* Effect.gen(function*() {
        const host = yield* BackgroundTaskHost
        const sql = yield* SqlClient.SqlClient
        const session = yield* TaskCluster.TaskSession.client
        const owner = (s: string) => session(s).Wake().pipe(Effect.timeout("3 seconds"), Effect.retry({ times: 60 }))
        const sessions = Array.from({ length: 9 }, (_, i) => `fi-${i}`)
        const acknowledged: Array<string> = []
        const spawnRound = (round: number) =>
          Effect.forEach(sessions, (s) =>
            host.spawnManaged(s, {
              id: `${s}-r${round}`,
              kind: "subagent",
              producer: "work",
              input: { steps: 20, stepMs: 200 }
            }, TaskCluster.byProducer).pipe(
              Effect.tap((r) => Effect.sync(() => void acknowledged.push(r.id)))
            ), { concurrency: 3, discard: true })
        const placed = new Map<string, string>()
        for (const s of sessions) placed.set(s, yield* owner(s))
        yield* spawnRound(0)
        const failover: Array<{ fault: string; ms: number }> = []
        /** How long until every session of `runner` answers again (from anyone but a paused runner). */
        const recovered = (fault: string, runner: string, since: number) =>
          Effect.forEach([...placed].filter(([, r]) => r === runner).map(([s]) => s), (s) =>
            Effect.gen(function*() {
              while (true) {
                const r = yield* Effect.option(session(s).Wake().pipe(Effect.timeout("1 second")))
                if (Option.isSome(r) && r.value !== runner) {
                  placed.set(s, r.value)
                  return
                }
              }
            }), { concurrency: "unbounded", discard: true }).pipe(
            Effect.tap(() => Effect.sync(() => void failover.push({ fault, ms: Date.now() - since })))
          )

        // 1. SIGSTOP past the shard lock (5 s), then SIGCONT: the paused runner must write nothing more
        yield* Effect.sleep("1 second")
        const paused = children.get("runner-a")!
        paused.kill("SIGSTOP")
        const stoppedAt = Date.now()
        yield* recovered("SIGSTOP runner-a", "runner-a", stoppedAt)
        paused.kill("SIGCONT")
        yield* spawnRound(1)

        // 2. a runner's database connections terminated
        yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cluster runner-b'`
        yield* spawnRound(2)

        // 3. a runner killed, then started again (a rolling restart of one)
        const killedAt = Date.now()
        children.get("runner-c")!.kill("SIGKILL")
        yield* recovered("SIGKILL runner-c", "runner-c", killedAt)
        start("runner-c", basePort + 2)
        yield* spawnRound(3)

        const finals = yield* Effect.forEach(acknowledged, (id) => host.await(id).pipe(Effect.timeout("90 seconds")), {
          concurrency: "unbounded"
        })
        const terminal = yield* sql<{ task_id: string; n: number }>`SELECT task_id, COUNT(*)::int AS n
          FROM task_cluster_events WHERE tag IN ('Completed', 'Failed', 'Cancelled') GROUP BY task_id`
        const gaps = yield* sql<{ session_id: string }>`SELECT session_id FROM task_cluster_events GROUP BY session_id
          HAVING COUNT(*) <> MAX(seq) - MIN(seq) + 1`
        const fenced = logs.filter((l) => l.includes("another host has taken")).length
        return { acknowledged, finals, terminal, gaps, failover, fenced }
      }).pipe(Effect.provide(client))

      const once = report.terminal.filter((t) => t.n === 1).length
      const notEnded = report.finals.filter((r) => r.state !== "completed").map((r) => `${r.id}: ${r.state}`)
      console.log([
        `acknowledged spawns: ${report.acknowledged.length}, completed: ${report.finals.length - notEnded.length}`,
        `tasks with exactly one terminal event: ${once}/${report.acknowledged.length}`,
        `sessions with a seq gap: ${report.gaps.length}`,
        `stale commits or renewals refused (and the host stopped): ${report.fenced}`,
        ...report.failover.map((f) => `fail-over after ${f.fault}: ${f.ms} ms`)
      ].join("\n"))
      assert.deepStrictEqual(notEnded, [])
      assert.strictEqual(once, report.acknowledged.length)
      assert.strictEqual(report.terminal.length, report.acknowledged.length)
      assert.deepStrictEqual(report.gaps, [])
    }).pipe(Effect.scoped), 300_000)
}, { excludeTestServices: true })
