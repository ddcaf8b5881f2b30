/**
 * Failure injection on one machine: three runner processes
 * (examples/cluster/runner.ts) on a PostgreSQL database of their own, this
 * process as a client driving a workload across sessions, and in turn: a
 * runner paused (SIGSTOP) past its shard lock and resumed, a runner's
 * database connections terminated (`pg_terminate_backend`), a runner killed
 * (SIGKILL) and started again, then a rolling restart: every runner in turn
 * stopped with SIGTERM (it hands its sessions over) and started again, while
 * the client keeps spawning tasks and cancelling some. Then the invariants,
 * counted from the store: every acknowledged spawn ended (cancelled if its
 * cancel was acknowledged, else completed), each task with exactly one
 * terminal event, every session's `seq` without a gap (and no event written
 * twice: its key is session and `seq`), and no row written by a stale owner
 * (each row carries its writer's token: test/utils/cluster.ts). Fail-over
 * and handover times are printed per fault and per runner.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { assert } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { type BackgroundTaskRecord, BackgroundTaskHost } from "../../src/index.ts"
import { defaultSchedule, delivered } from "../../src/internal/cluster/delivery.ts"
import * as TaskCluster from "../../src/TaskCluster.ts"
import { shardingConfig } from "../../examples/cluster/shared.ts"
import { auditWriters } from "../utils/cluster.ts"
import { describePg, PgTestDatabase, settings } from "../utils/postgres.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const basePort = 36_000 + Math.floor(Math.random() * 2_000)
const runnerNames = ["runner-a", "runner-b", "runner-c"] as const
const portOf = (runner: string) => basePort + runnerNames.indexOf(runner as (typeof runnerNames)[number])

const exited = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
  })

describePg("cluster: failure injection (3 runners, PostgreSQL)", (it) => {
  it.effect("SIGSTOP past the lock, pg_terminate_backend, SIGKILL + restart, a rolling restart: the invariants hold", () =>
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
      const began = Date.now()
      /** Where the test is, as it goes (a hang names its stage); the runners' last lines when it fails. */
      const stage = (what: string) => Effect.sync(() => process.stderr.write(`[cluster test +${((Date.now() - began) / 1000).toFixed(1)} s] ${what}\n`))
      const within = <A, E, R>(what: string, ms: number, effect: Effect.Effect<A, E, R>) =>
        effect.pipe(Effect.timeoutOrElse({
          duration: ms,
          orElse: () => Effect.die(new Error(`${what}: not done within ${ms} ms`))
        }))
      const start = (runner: string) => {
        const child = spawn(process.execPath, [`${root}examples/cluster/runner.ts`], {
          env: { ...env, RUNNER_NAME: runner, RUNNER_PORT: String(portOf(runner)) },
          stdio: ["ignore", "pipe", "pipe"]
        })
        child.stdout!.on("data", (d: Buffer) => logs.push(...String(d).split("\n").map((l) => `${runner}: ${l}`)))
        child.stderr!.on("data", (d: Buffer) => logs.push(...String(d).split("\n").map((l) => `${runner}! ${l}`)))
        children.set(runner, child)
      }
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
        })
      )
      for (const runner of runnerNames) start(runner)

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
        yield* stage("client up")
        const host = yield* BackgroundTaskHost
        const sql = yield* SqlClient.SqlClient
        const session = yield* TaskCluster.TaskSession.client
        /** `Wake` as the host's router sends it: an interruption on the cluster's side is sent again, not the test's end. */
        const wake = (s: string) =>
          delivered(session(s).Wake(), { sessionId: s, tag: "Wake", requestId: undefined }, {
            schedule: defaultSchedule,
            reopen: () => Effect.succeed(false)
          })
        const owner = (s: string) => wake(s).pipe(Effect.timeout("3 seconds"), Effect.retry({ times: 60 }))
        const sessions = Array.from({ length: 12 }, (_, i) => `fi-${i}`)
        const acknowledged: Array<string> = []
        /** Tasks whose cancel was acknowledged while they were live (they must end cancelled), or only sent. */
        const cancelled = new Set<string>()
        const cancelSent = new Set<string>()
        const spawnTask = (s: string, id: string, steps: number) =>
          host.spawnManaged(s, { id, kind: "subagent", producer: "work", input: { steps, stepMs: 200 } }, TaskCluster.byProducer)
            .pipe(Effect.tap((r) => Effect.sync(() => void acknowledged.push(r.id))))
        const spawnRound = (round: number) =>
          within(
            `spawn round ${round}`,
            90_000,
            Effect.forEach(sessions, (s) => spawnTask(s, `${s}-r${round}`, 20), { concurrency: 3, discard: true })
          ).pipe(Effect.andThen(stage(`spawn round ${round} acknowledged`)))
        const placed = new Map<string, string>()
        const place = within(
          "placing the sessions",
          120_000,
          Effect.forEach(sessions, (s) => Effect.map(owner(s), (r) => void placed.set(s, r)), { concurrency: 4, discard: true })
        )
        /** Until the runner's lock connection holds shard locks (PostgreSQL advisory locks): it runs sessions. */
        const holdsShards = (runner: string) =>
          Effect.gen(function*() {
            const deadline = Date.now() + 60_000
            while (true) {
              const [row] = yield* sql<{ n: number }>`SELECT COUNT(*)::int AS n FROM pg_locks l
                JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
                  AND a.application_name = ${`cluster ${runner}`}`
              if ((row?.n ?? 0) > 0) return
              if (Date.now() > deadline) return yield* Effect.die(new Error(`${runner} holds no shard 60 s after it started`))
              yield* Effect.sleep("200 millis")
            }
          })

        /** The runner holding the most sessions now. */
        const busiest = Effect.map(place, () => {
          const count = new Map<string, number>()
          for (const r of placed.values()) count.set(r, (count.get(r) ?? 0) + 1)
          return [...count].sort((a, b) => b[1] - a[1])[0]![0]
        })
        // every runner has joined (holds shards) before the sessions are placed
        for (const r of runnerNames) yield* holdsShards(r)
        yield* place
        yield* spawnRound(0)
        const failover: Array<{ fault: string; ms: number; sessions: number }> = []
        /** How long until every session of `runner` answers again from another runner. */
        const recovered = (fault: string, runner: string, since: number) => {
          const lost = [...placed].filter(([, r]) => r === runner).map(([s]) => s)
          const last = new Map<string, string>()
          return Effect.forEach(lost, (s) =>
            Effect.gen(function*() {
              while (true) {
                const r = yield* Effect.option(wake(s).pipe(Effect.timeout("1 second")))
                last.set(s, Option.getOrElse(r, () => "no answer within 1 s"))
                if (Option.isSome(r) && r.value !== runner) {
                  placed.set(s, r.value)
                  return
                }
              }
            }), { concurrency: "unbounded", discard: true }).pipe(
            Effect.timeoutOrElse({
              duration: 90_000,
              orElse: () =>
                Effect.flatMap(
                  // what holds the shards: the runner's connections and their advisory locks
                  sql<Record<string, unknown>>`SELECT a.pid, a.state, a.backend_xid IS NOT NULL AS has_xid, a.xact_start,
                    a.state_change, a.wait_event_type, a.wait_event, left(a.query, 160) AS query,
                    (SELECT COUNT(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)::int AS advisory
                    FROM pg_stat_activity a WHERE a.datname = current_database() AND a.application_name = ${`cluster ${runner}`}`,
                  (connections) =>
                    Effect.die(new Error(`after ${fault}, sessions of ${runner} still not answering from another runner after 90 s: ${
                      [...last].map(([s, r]) => `${s}: ${r}`).join(", ")
                    }; ${runner}'s connections: ${JSON.stringify(connections)}`))
                )
            }),
            Effect.tap(() => Effect.sync(() => void failover.push({ fault, ms: Date.now() - since, sessions: lost.length }))),
            Effect.tap(() => stage(`${fault}: its ${lost.length} sessions answer from other runners`))
          )
        }
        // 1. SIGSTOP past the shard lock (5 s), then SIGCONT: the paused runner must write nothing more
        yield* Effect.sleep("1 second")
        const pausedName = yield* busiest
        const paused = children.get(pausedName)!
        paused.kill("SIGSTOP")
        yield* recovered(`SIGSTOP ${pausedName}`, pausedName, Date.now())
        paused.kill("SIGCONT")
        yield* spawnRound(1)

        // 2. a runner's database connections terminated
        const cutName = yield* busiest
        yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${`cluster ${cutName}`}`
        yield* spawnRound(2)

        // 3. a runner killed, then started again
        const killedName = yield* busiest
        children.get(killedName)!.kill("SIGKILL")
        yield* recovered(`SIGKILL ${killedName}`, killedName, Date.now())
        start(killedName)
        yield* spawnRound(3)

        // 4. a rolling restart while the client keeps spawning (and cancelling every third task)
        let n = 0
        let stopping = false
        const driver = yield* Effect.forkChild(Effect.whileLoop({
          while: () => !stopping,
          step: () => void 0,
          body: () => Effect.gen(function*() {
            const i = n++
            const s = sessions[i % sessions.length]!
            const id = `${s}-roll-${i}`
            const spawned = yield* Effect.option(spawnTask(s, id, 10).pipe(Effect.timeout("30 seconds")))
            if (Option.isSome(spawned) && i % 3 === 0) {
              yield* Effect.forkChild(Effect.gen(function*() {
                yield* Effect.sleep("300 millis")
                cancelSent.add(id)
                const r = yield* Effect.option(host.requestCancel(id, "rolling restart").pipe(Effect.timeout("30 seconds")))
                if (Option.isSome(r) && (r.value.state === "cancel_requested" || r.value.state === "cancelled")) cancelled.add(id)
              }))
            }
            yield* Effect.sleep("100 millis")
          })
        }))
        const handover: Array<{ runner: string; ms: number; sessions: number; exitMs: number; backMs: number }> = []
        for (const runner of runnerNames) {
          for (const r of runnerNames) yield* holdsShards(r)
          yield* place
          const child = children.get(runner)!
          const stoppedAt = Date.now()
          child.kill("SIGTERM")
          const sessionsHeld = [...placed].filter(([, r]) => r === runner).length
          const [, exitMs] = yield* Effect.all([
            recovered(`SIGTERM ${runner}`, runner, stoppedAt),
            Effect.map(Effect.promise(() => exited(child)), () => Date.now() - stoppedAt)
          ], { concurrency: "unbounded" })
          const ms = failover[failover.length - 1]!.ms
          const restartedAt = Date.now()
          start(runner)
          yield* holdsShards(runner)
          yield* stage(`${runner} started again and holds shards`)
          handover.push({ runner, ms, sessions: sessionsHeld, exitMs, backMs: Date.now() - restartedAt })
        }
        yield* stage(`rolling restart done; stopping the workload (${acknowledged.length} spawns acknowledged)`)
        // the spawns in flight end first (acknowledged, or failed): no task is left half-asked
        stopping = true
        yield* within("stopping the workload", 60_000, Fiber.join(driver))
        yield* stage("awaiting every acknowledged task")

        const finals = yield* Effect.forEach(acknowledged, (id) => host.await(id).pipe(Effect.timeout("90 seconds")), {
          concurrency: "unbounded"
        })
        // every task in the store: a spawn that failed (timed out) may have registered one too
        const unacknowledged = (yield* sql<{ task_id: string }>`SELECT task_id FROM task_cluster_tasks`)
          .map((t) => t.task_id).filter((id) => !acknowledged.includes(id))
        yield* Effect.forEach(unacknowledged, (id) => host.await(id).pipe(Effect.timeout("90 seconds")), {
          concurrency: "unbounded",
          discard: true
        })
        const stored = yield* sql<{ task_id: string; state: string }>`SELECT task_id, state FROM task_cluster_tasks`
        const terminal = yield* sql<{ task_id: string; n: number }>`SELECT task_id, COUNT(*)::int AS n
          FROM task_cluster_events WHERE tag IN ('Completed', 'Failed', 'Cancelled') GROUP BY task_id`
        const gaps = yield* sql<{ session_id: string }>`SELECT session_id FROM task_cluster_events GROUP BY session_id
          HAVING COUNT(*) <> MAX(seq) - MIN(seq) + 1`
        const audit = yield* auditWriters(sql)
        yield* stage("counted")
        const fenced = logs.filter((l) => l.includes("another host has taken")).length
        return { faults: { paused: pausedName, cut: cutName, killed: killedName }, acknowledged, cancelled, cancelSent, finals, stored, terminal, gaps, failover, handover, fenced, audit }
      }).pipe(
        Effect.provide(client),
        Effect.tapCause(() => Effect.sync(() => process.stderr.write(`the runners' last lines:\n${logs.slice(-120).join("\n")}\n`)))
      )

      // cancelled if its cancel was acknowledged; either if it was sent without an answer; else completed
      const expected = (r: BackgroundTaskRecord): ReadonlyArray<string> =>
        report.cancelled.has(r.id) ? ["cancelled"] : report.cancelSent.has(r.id) ? ["completed", "cancelled"] : ["completed"]
      const wrongEnd = report.finals.filter((r) => !expected(r).includes(r.state))
        .map((r) => `${r.id}: ${r.state}, expected ${expected(r).join(" or ")}`)
      const terminalOf = new Map(report.terminal.map((t) => [t.task_id, t.n]))
      const notOnce = report.stored.filter((t) => terminalOf.get(t.task_id) !== 1).map((t) => `${t.task_id}: ${terminalOf.get(t.task_id) ?? 0}`)
      const sessionsRetaken = Object.values(report.audit.tokens).filter((tokens) => tokens.length > 1).length
      console.log([
        `acknowledged spawns: ${report.acknowledged.length} (${report.cancelled.size} with an acknowledged cancel), ` +
        `ended as expected: ${report.finals.length - wrongEnd.length}`,
        `tasks in the store: ${report.stored.length}, with exactly one terminal event: ${report.stored.length - notOnce.length}`,
        `sessions with a seq gap: ${report.gaps.length}`,
        `rows written by a stale owner: ${report.audit.staleEvents} events, ${report.audit.staleRecords} records ` +
        `(of ${report.audit.rows} rows, ${report.audit.stamped} carrying their writer's token; ` +
        `${sessionsRetaken} sessions written by more than one owner in turn)`,
        `stale commits or renewals refused (and the host stopped): ${report.fenced}`,
        `pg_terminate_backend of ${report.faults.cut}'s connections`,
        ...report.failover.filter((f) => !f.fault.startsWith("SIGTERM")).map((f) =>
          `fail-over after ${f.fault}: ${f.ms} ms (${f.sessions} sessions)`
        ),
        ...report.handover.map((h) =>
          `rolling restart, ${h.runner}: SIGTERM to its ${h.sessions} sessions answering elsewhere ${h.ms} ms, ` +
          `exited after ${h.exitMs} ms, started again and holding shards after ${h.backMs} ms`
        )
      ].join("\n"))
      assert.deepStrictEqual(wrongEnd, [])
      assert.deepStrictEqual(notOnce, [])
      assert.includeMembers(report.stored.map((t) => t.task_id), report.acknowledged)
      assert.deepStrictEqual(report.gaps, [])
      assert.strictEqual(report.audit.staleEvents, 0)
      assert.strictEqual(report.audit.staleRecords, 0)
      assert.strictEqual(report.audit.stamped, report.audit.rows)
      // the faults did move sessions: the count above looked at writes by successive owners
      assert.isAbove(sessionsRetaken, 0)
      // each injected fault hit a runner that held sessions (each picks the busiest runner)
      for (const f of report.failover) if (!f.fault.startsWith("SIGTERM")) assert.isAbove(f.sessions, 0, f.fault)
      // the rolling restart stops every runner in turn, whatever it holds by then (the shard manager may
      // have moved all of a runner's sessions away meanwhile), and hands sessions over
      assert.isAbove(report.handover.reduce((n, h) => n + h.sessions, 0), 0)
      assert.lengthOf(report.handover, runnerNames.length)
    }).pipe(Effect.scoped), 420_000)
}, { excludeTestServices: true })
