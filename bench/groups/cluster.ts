/**
 * Scenario 8, the cluster (`effect-task-host/cluster`) with 1, 2 and 4
 * runner processes against the single-node PostgreSQL host, on the same
 * PostgreSQL server in the same run:
 *
 * - spawn → `Registered`: a client process (this one) spawns a task by
 *   producer (`noop`) into one of 8 sessions spread over the runners; the
 *   time until its `Registered` event reaches the client's `watch` (the
 *   store's feed, woken by `LISTEN/NOTIFY`). One spawn at a time.
 * - cancel → `Cancelled`: `requestCancel(taskId)` from the client of a
 *   `forever` task running on a runner (the call finds the session in the
 *   store and goes to its owner); the time until `Cancelled` reaches the
 *   client's watch. One at a time.
 * - events/s: 8 `burst` tasks (one per session, so spread over the
 *   runners) each reporting progress as fast as it can; events per second
 *   reaching the client's watch, from the first spawn to the last event.
 * - fail-over: a `forever` task in every session, the runner holding the
 *   most sessions killed with SIGKILL; the time until every one of its
 *   sessions answers (`Wake`) from another runner, its task recovered.
 *   Not with 1 runner (no other runner). The single-node baseline: a host
 *   process killed with SIGKILL and a standby process waiting for its
 *   lease (`onHeld: "wait"`, the same 4-second ttl as a session's lease),
 *   until the standby holds the lease and has recovered the task.
 *
 * The single-node host runs in this process for the first three (its
 * caller, its watch and its host in one process: what the cluster's
 * routing, persisted messages and cross-process reads cost). The runners
 * are bench/cluster/runner.ts (the cluster example's timings: shard lock
 * 5 s, refresh 1 s, entity message poll 500 ms; session lease 4 s). Each
 * configuration gets a database of its own on the server, dropped after.
 *
 * In every full run; a `--quick` run leaves it out unless it is named
 * (`npm run bench -- --quick --only cluster`): see bench/groups.ts. Without
 * PostgreSQL, or when its user may not create databases, the scenario is
 * skipped, naming why.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Cause, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Redacted, type Scope, Stream } from "effect"
import { SqlClient } from "effect/sql"
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import { fileURLToPath } from "node:url"
import { shardingConfig } from "../../examples/cluster/shared.ts"
import { BackgroundTaskHost, type SubscriptionEvent, TaskStore } from "../../src/index.ts"
import * as TaskCluster from "../../src/TaskCluster.ts"
import { handlers } from "../cluster/producers.ts"
import { check, fmt, type GroupResult, type ScenarioResult, type Settings, type VariantResult } from "../harness.ts"
import { findPostgres, freePort, onExit, type PostgresConfig, type PostgresServer, startPostgres } from "../servers.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
type Host = BackgroundTaskHost["Service"]

const single = "single-node host on PostgreSQL"
const clusterOf = (n: number) => `cluster, ${n} runner${n === 1 ? "" : "s"}`
/** Sessions the workload is spread over. */
const sessionCount = 8
const sessions = Array.from({ length: sessionCount }, (_, i) => `bench-s${i}`)

interface Sizes {
  readonly runners: ReadonlyArray<number>
  /** Latency samples (spawns, cancels) per configuration. */
  readonly latency: number
  readonly burstReps: number
  readonly burstEvents: number
  /** SIGKILLs per configuration of 2 runners or more, and of the single-node host. */
  readonly failovers: number
}

const sizesFor = (settings: Settings): Sizes =>
  settings.quick
    ? { runners: [1, 2], latency: 5, burstReps: 1, burstEvents: 50, failovers: 1 }
    : { runners: [1, 2, 4], latency: 40, burstReps: 3, burstEvents: 1_000, failovers: 2 }

const log = (line: string) => process.stderr.write(`  8 cluster: ${line}\n`)

// -- PostgreSQL -------------------------------------------------------------------

const pgLayer = (config: PostgresConfig, database: string, applicationName: string) =>
  PgClient.layer({
    host: config.host,
    port: config.port,
    username: config.username,
    database,
    applicationName,
    ...(config.password !== undefined ? { password: Redacted.make(config.password) } : {})
  })

/** `LISTEN` on a channel: wakes the client's readers (examples/cluster/shared.ts has the same). */
const listen = (channel: string) =>
  Stream.unwrap(Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    const queue = yield* pg.listen(channel)
    return Stream.map(Stream.fromQueue(queue), (n) => n.payload)
  }))

/** A database of its own on the server, dropped when the scope closes. */
const freshDatabase = (config: PostgresConfig, name: string) =>
  Effect.gen(function*() {
    const admin = Context.get(yield* Layer.build(pgLayer(config, config.database, "bench cluster admin")), SqlClient.SqlClient)
    yield* admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`
    yield* admin`CREATE DATABASE ${admin(name)}`
    yield* Effect.addFinalizer(() => Effect.ignore(admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`))
    return name
  })

const envFor = (config: PostgresConfig, database: string): NodeJS.ProcessEnv => ({
  ...process.env,
  PGHOST: config.host,
  PGPORT: String(config.port),
  PGUSER: config.username,
  PGPASSWORD: config.password ?? "",
  PGDATABASE: database
})

// -- child processes --------------------------------------------------------------

interface Child {
  readonly name: string
  readonly process: ChildProcess
  /** Resolves with the time (performance.now()) the child prints a line containing `text`. */
  readonly line: (text: string, timeoutMs?: number) => Promise<number>
  readonly exited: (timeoutMs: number) => Promise<boolean>
  readonly stop: () => Promise<void>
}

const startChild = (name: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Child => {
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
  const removeHook = onExit(() => child.kill("SIGKILL"))
  let output = ""
  const watchers = new Set<{ text: string; resolve: (t: number) => void }>()
  const onData = (data: Buffer) => {
    const now = performance.now()
    output = (output + data.toString()).slice(-20_000)
    for (const w of watchers) {
      if (output.includes(w.text)) {
        watchers.delete(w)
        w.resolve(now)
      }
    }
  }
  child.stdout!.on("data", onData)
  child.stderr!.on("data", onData)
  const exited = (timeoutMs: number) =>
    new Promise<boolean>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
      const timer = setTimeout(() => resolve(false), timeoutMs)
      child.once("exit", () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  return {
    name,
    process: child,
    line: (text, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        if (output.includes(text)) return resolve(performance.now())
        const timer = setTimeout(() => {
          reject(new Error(`${name} printed no ${JSON.stringify(text)} within ${timeoutMs} ms; its last output:\n${output.slice(-3_000)}`))
        }, timeoutMs)
        watchers.add({
          text,
          resolve: (t) => {
            clearTimeout(timer)
            resolve(t)
          }
        })
      }),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM")
        if (!(await exited(15_000))) {
          child.kill("SIGKILL")
          await exited(5_000)
        }
      }
      removeHook()
    }
  }
}

const runnerScript = `${root}bench/cluster/runner.ts`
const singleScript = `${root}bench/cluster/single.ts`

// -- the client's view: when each event reaches its watch ----------------------------

interface Watcher {
  /** The time (performance.now()) the `tag` event of `taskId` reaches the watch; call before acting. */
  readonly expect: (tag: string, taskId: string) => Effect.Effect<number>
  /** The time the n-th progress event of tasks whose id starts with `prefix` reaches the watch. */
  readonly expectProgress: (prefix: string, n: number) => Effect.Effect<number>
  readonly lagged: () => number
}

const watchFrom = (host: Host): Effect.Effect<Watcher, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const watched = yield* host.watch({ includeTerminal: true })
    const waiting = new Map<string, Deferred.Deferred<number>>()
    let progress: { prefix: string; n: number; seen: number; done: Deferred.Deferred<number> } | undefined
    let lagged = 0
    const on = (e: SubscriptionEvent) => {
      if (e._tag === "Lagged") {
        lagged++
        return
      }
      if (!("taskId" in e)) return
      const now = performance.now()
      if (e._tag === "Progress") {
        if (progress !== undefined && e.taskId.startsWith(progress.prefix) && ++progress.seen === progress.n) {
          Deferred.doneUnsafe(progress.done, Exit.succeed(now))
        }
        return
      }
      const key = `${e._tag}:${e.taskId}`
      const waiter = waiting.get(key)
      if (waiter !== undefined) {
        waiting.delete(key)
        Deferred.doneUnsafe(waiter, Exit.succeed(now))
      }
    }
    yield* Effect.forkScoped(Stream.runForEach(watched.events, (e) => Effect.sync(() => on(e))))
    const bounded = (what: string, wait: Effect.Effect<number>) =>
      Effect.orDie(Effect.timeoutOrElse(wait, {
        duration: Duration.seconds(60),
        orElse: () =>
          Effect.fail(
            new Error(
              `benchmark check failed: ${what} did not reach the watch within 60 s ` +
                `(progress events seen: ${progress?.seen ?? 0}, Lagged: ${lagged})`
            )
          )
      }))
    return {
      expect: (tag, taskId) => {
        const done = Deferred.makeUnsafe<number>()
        waiting.set(`${tag}:${taskId}`, done)
        return bounded(`${tag} of ${taskId}`, Deferred.await(done))
      },
      expectProgress: (prefix, n) => {
        const done = Deferred.makeUnsafe<number>()
        progress = { prefix, n, seen: 0, done }
        return bounded(`${n} progress events of ${prefix}*`, Deferred.await(done))
      },
      lagged: () => lagged
    }
  })

interface Spec {
  readonly id: string
  readonly kind: "other"
  readonly producer: keyof typeof handlers
  readonly input?: { events: number }
  /** `abort_local` for the `forever` tasks: a cancel interrupts them at once (no grace period). */
  readonly cancelPolicy?: "abort_local"
}
type SpawnWith = (sessionId: string, spec: Spec) => Effect.Effect<unknown, unknown>

interface Measured {
  readonly spawn: Array<number>
  readonly spawnReturn: Array<number>
  readonly cancel: Array<number>
  readonly eventsPerSecond: Array<number>
  /** CPU time of this process (user + system) per event during the bursts, in µs: the watch's read path (and, single node, the host). */
  readonly cpuPerEvent: Array<number>
}

/** The three latency and throughput measurements, against one host (cluster client or single node). */
const measureHost = (label: string, host: Host, spawnWith: SpawnWith, sizes: Sizes) =>
  Effect.scoped(Effect.gen(function*() {
    const watcher = yield* watchFrom(host)
    const out: Measured = { spawn: [], spawnReturn: [], cancel: [], eventsPerSecond: [], cpuPerEvent: [] }
    // warm-up: every session's host is up (on a cluster: placed, its lease taken)
    yield* Effect.forEach(sessions, (s, i) => {
      const id = `warm-${i}`
      const seen = watcher.expect("Completed", id)
      return Effect.andThen(spawnWith(s, { id, kind: "other", producer: "noop" }), seen)
    }, { concurrency: sessionCount, discard: true })

    for (let i = 0; i < sizes.latency; i++) {
      const id = `reg-${i}`
      const seen = yield* Effect.forkChild(watcher.expect("Registered", id), { startImmediately: true })
      const t0 = performance.now()
      yield* spawnWith(sessions[i % sessionCount]!, { id, kind: "other", producer: "noop" })
      out.spawnReturn.push(performance.now() - t0)
      out.spawn.push((yield* Fiber.join(seen)) - t0)
    }

    const forever = Array.from({ length: sizes.latency }, (_, i) => `can-${i}`)
    yield* Effect.forEach(forever, (id, i) =>
      spawnWith(sessions[i % sessionCount]!, { id, kind: "other", producer: "forever", cancelPolicy: "abort_local" }), {
      concurrency: 4,
      discard: true
    })
    for (const id of forever) {
      const seen = yield* Effect.forkChild(watcher.expect("Cancelled", id), { startImmediately: true })
      const t0 = performance.now()
      yield* host.requestCancel(id, "bench")
      out.cancel.push((yield* Fiber.join(seen)) - t0)
    }

    const total = sessionCount * sizes.burstEvents
    for (let rep = 0; rep < sizes.burstReps; rep++) {
      const prefix = `burst-${rep}-`
      const all = yield* Effect.forkChild(watcher.expectProgress(prefix, total), { startImmediately: true })
      const done = yield* Effect.forEach(sessions, (_, i) =>
        Effect.forkChild(watcher.expect("Completed", `${prefix}${i}`), { startImmediately: true }))
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      yield* Effect.forEach(sessions, (s, i) =>
        spawnWith(s, { id: `${prefix}${i}`, kind: "other", producer: "burst", input: { events: sizes.burstEvents } }), {
        concurrency: sessionCount,
        discard: true
      })
      const t1 = yield* Fiber.join(all)
      const cpu = process.cpuUsage(cpu0)
      out.eventsPerSecond.push(total / ((t1 - t0) / 1000))
      out.cpuPerEvent.push((cpu.user + cpu.system) / total)
      for (const d of done) yield* Fiber.join(d)
    }
    check(watcher.lagged() === 0, `${label}: the watch lagged ${watcher.lagged()} times`)
    log(`${label}: spawn → Registered median ${fmt(median(out.spawn))} ms, cancel → Cancelled ${fmt(median(out.cancel))} ms, ` +
      `${fmt(median(out.eventsPerSecond))} events/s`)
    return out
  }))

// -- the single-node host -----------------------------------------------------------

const singleNode = (config: PostgresConfig, sizes: Sizes) =>
  Effect.scoped(Effect.gen(function*() {
    const database = yield* freshDatabase(config, `bench8_${process.pid}_single`)
    const context = yield* Layer.build(
      // its watch never lags (the cluster's reads the table: it cannot)
      BackgroundTaskHost.layerStore({ lease: { ttl: "4 seconds" }, subscriberBuffer: 1_000_000_000 }).pipe(
        Layer.provide(TaskStore.layerSql({ tablePrefix: "bench8_" })),
        Layer.provide(pgLayer(config, database, "bench single"))
      )
    )
    const host = Context.get(context, BackgroundTaskHost)
    const spawnWith: SpawnWith = (s, spec) => host.spawnManaged(s, spec, handlers[spec.producer]({ input: spec.input }))
    const measured = yield* measureHost(single, host, spawnWith, sizes)

    // fail-over: a primary process killed, a standby waiting for its lease
    const failover: Array<number> = []
    for (let k = 0; k < sizes.failovers; k++) {
      const env = { ...envFor(config, database), BENCH_PREFIX: `bench8_fo${k}_` }
      const primary = startChild("single primary", [singleScript, "primary"], env)
      const standby = yield* Effect.promise(async () => {
        await primary.line("ready")
        const standby = startChild("single standby", [singleScript, "standby"], env)
        await standby.line("waiting for the task store")
        return standby
      })
      const t0 = performance.now()
      primary.process.kill("SIGKILL")
      const t1 = yield* Effect.promise(() => standby.line("ready respawned=1", 30_000))
      failover.push(t1 - t0)
      yield* Effect.promise(() => Promise.all([primary.stop(), standby.stop()]))
    }
    log(`${single}: fail-over ${failover.map((ms) => `${fmt(ms)} ms`).join(", ")}`)
    return { ...measured, failover }
  }))

// -- a cluster of n runners ---------------------------------------------------------

/** Shard locks (PostgreSQL advisory locks) held by each runner's lock connection, in the current database. */
const shardLocks = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ readonly app: string; readonly n: unknown }>`SELECT a.application_name AS app, COUNT(*) AS n FROM pg_locks l
      JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
      GROUP BY a.application_name`,
    (rows) => new Map(rows.map((r) => [r.app.replace(/^cluster /, ""), Number(r.n)]))
  )

/** Until every runner named holds shards and, together, all of them, the same twice in a row. */
const untilBalanced = (sql: SqlClient.SqlClient, names: ReadonlyArray<string>, totalShards: number) =>
  Effect.gen(function*() {
    const deadline = performance.now() + 120_000
    let last = ""
    while (true) {
      const locks = yield* shardLocks(sql)
      const counts = names.map((n) => locks.get(n) ?? 0)
      const now = counts.join("/")
      if (counts.every((c) => c > 0) && counts.reduce((a, b) => a + b, 0) === totalShards && now === last) return now
      last = now
      if (performance.now() > deadline) {
        return yield* Effect.die(new Error(`the runners ${names.join(", ")} hold ${now} shards after 120 s (want ${totalShards} in all)`))
      }
      yield* Effect.sleep("500 millis")
    }
  })

const clusterOfN = (config: PostgresConfig, n: number, sizes: Sizes) =>
  Effect.scoped(Effect.gen(function*() {
    const database = yield* freshDatabase(config, `bench8_${process.pid}_n${n}`)
    const env = envFor(config, database)
    const names = Array.from({ length: n }, (_, i) => `bench-runner-${i + 1}`)
    const ports = new Map<string, number>()
    for (const name of names) ports.set(name, yield* Effect.promise(freePort))
    const children = new Map<string, Child>()
    const start = (name: string) =>
      children.set(name, startChild(name, [runnerScript], { ...env, RUNNER_NAME: name, RUNNER_PORT: String(ports.get(name)) }))
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all([...children.values()].map((c) => c.stop()))))
    const startedAt = performance.now()
    for (const name of names) start(name)

    const context = yield* Layer.build(
      TaskCluster.layerClient({ listen }).pipe(
        Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig })),
        Layer.provideMerge(pgLayer(config, database, "bench cluster client"))
      )
    )
    const host = Context.get(context, BackgroundTaskHost)
    const sql = Context.get(context, SqlClient.SqlClient)
    const totalShards = shardingConfig.shardsPerGroup
    const balance = yield* untilBalanced(sql, names, totalShards)
    const readyMs = performance.now() - startedAt
    const session = yield* TaskCluster.TaskSession.client.pipe(Effect.provide(context))
    const owner = (s: string) =>
      session(s).Wake().pipe(Effect.timeout("5 seconds"), Effect.retry({ times: 30 }), Effect.orDie)
    const placement = new Map<string, string>()
    const place = Effect.forEach(sessions, (s) => Effect.map(owner(s), (r) => void placement.set(s, r)), {
      concurrency: sessionCount,
      discard: true
    })
    yield* place
    const spread = names.map((r) => [...placement.values()].filter((p) => p === r).length).join("/")
    log(`${clusterOf(n)}: up in ${fmt(readyMs / 1000)} s, shards ${balance}, sessions ${spread}`)

    const spawnWith: SpawnWith = (s, spec) => host.spawnManaged(s, spec, TaskCluster.byProducer)
    const measured = yield* measureHost(clusterOf(n), host, spawnWith, sizes)
    // the bursts' progress events per commit (each session's host commits its own; write_no numbers them)
    const [perCommit] = yield* sql<{ readonly events: unknown; readonly commits: unknown }>`SELECT COUNT(*) AS events,
      COUNT(DISTINCT session_id || '/' || write_no) AS commits FROM task_cluster_events WHERE tag = 'Progress'`
    const eventsPerCommit = Number(perCommit?.events) / Number(perCommit?.commits)

    const failover: Array<number> = []
    if (n > 1) {
      // a live task in every session: its entity stays, its task is recovered by the next owner
      yield* Effect.forEach(sessions, (s, i) => spawnWith(s, { id: `fo-${i}`, kind: "other", producer: "forever" }), {
        concurrency: sessionCount,
        discard: true
      })
      for (let k = 0; k < sizes.failovers; k++) {
        yield* place
        const counts = new Map<string, number>()
        for (const r of placement.values()) counts.set(r, (counts.get(r) ?? 0) + 1)
        const [victim] = [...counts].sort((a, b) => b[1] - a[1])[0]!
        const lost = sessions.filter((s) => placement.get(s) === victim)
        const t0 = performance.now()
        children.get(victim)!.process.kill("SIGKILL")
        const back = yield* Effect.forEach(lost, (s) =>
          Effect.gen(function*() {
            while (true) {
              const r = yield* Effect.option(session(s).Wake().pipe(Effect.timeout("1 second")))
              if (r._tag === "Some" && r.value !== victim) return performance.now() - t0
            }
          }), { concurrency: "unbounded" })
        const ms = Math.max(...back)
        failover.push(ms)
        // the recovered tasks are live again on their new owners
        const live = yield* Effect.orDie(host.list())
        check(lost.every((s) => live.some((r) => r.scope.sessionId === s && r.id.startsWith("fo-"))), "the killed runner's tasks are live again")
        log(`${clusterOf(n)}: SIGKILL ${victim} (${lost.length} sessions): they answer again after ${fmt(ms)} ms`)
        if (k + 1 < sizes.failovers) {
          yield* Effect.promise(() => children.get(victim)!.exited(10_000))
          start(victim)
          yield* untilBalanced(sql, names, totalShards)
        }
      }
    }
    return { ...measured, failover, readyMs, spread, eventsPerCommit }
  }))

// -- the group --------------------------------------------------------------------

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length === 0 ? Number.NaN : sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const variant = (name: string, role: VariantResult["role"], samples: ReadonlyArray<number>): VariantResult => ({
  name,
  role,
  samples,
  median: median(samples),
  min: Math.min(...samples),
  max: Math.max(...samples)
})

const skippedScenarios = (reason: string): GroupResult => ({
  group: "cluster",
  scenarios: ["spawn", "cancel", "events", "failover"].map((id): ScenarioResult => ({
    id: `cluster-${id}`,
    scenario: 8,
    group: "cluster",
    title: `Cluster: ${id}`,
    unit: "",
    params: {},
    variants: [],
    ratios: [],
    notes: [],
    skipped: reason
  }))
})

export const run = async (settings: Settings): Promise<GroupResult> => {
  const sizes = sizesFor(settings)
  const found = findPostgres()
  if ("absent" in found) {
    log(`skipped: ${found.absent}`)
    return skippedScenarios(found.absent)
  }
  const postgres: PostgresServer = "env" in found
    ? { config: found.env, source: "the server the PG* environment names", stop: async () => {} }
    : await startPostgres(found.script)
  try {
    // each configuration gets a database of its own: the server's user must be allowed to create one
    const refused = await Effect.runPromise(
      Effect.scoped(freshDatabase(postgres.config, `bench8_${process.pid}_probe`)).pipe(
        Effect.as(undefined),
        Effect.catchCause((cause) => Effect.succeed(Cause.pretty(cause).split("\n")[0]))
      )
    )
    if (refused !== undefined) {
      const reason = `the PostgreSQL user ${postgres.config.username} could not create a database (${refused})`
      log(`skipped: ${reason}`)
      return skippedScenarios(reason)
    }
    const load: Array<string> = [os.loadavg().map((x) => x.toFixed(1)).join(" ")]
    const base = await Effect.runPromise(singleNode(postgres.config, sizes))
    const clusters: Array<{ n: number } & Effect.Success<ReturnType<typeof clusterOfN>>> = []
    for (const n of sizes.runners) {
      clusters.push({ n, ...await Effect.runPromise(clusterOfN(postgres.config, n, sizes)) })
      load.push(os.loadavg().map((x) => x.toFixed(1)).join(" "))
    }

    const params: Record<string, number | string> = {
      sessions: sessionCount,
      latencySamples: sizes.latency,
      burst: `${sessionCount} tasks × ${sizes.burstEvents} progress events, ${sizes.burstReps} repetition${sizes.burstReps === 1 ? "" : "s"}`,
      failovers: sizes.failovers,
      sharding: `shard lock ${shardingConfig.shardLockExpiration} ms (refresh ${shardingConfig.shardLockRefreshInterval} ms), ` +
        `assignments every ${shardingConfig.refreshAssignmentsInterval} ms, message poll ${shardingConfig.entityMessagePollInterval} ms, session lease 4 s`,
      postgres: postgres.source,
      loadAverage: `load average (1, 5, 15 min) before the single-node host and after each cluster: ${load.join(" | ")}`,
      placement: clusters.map((c) => `${c.n}: ${c.spread}`).join(", "),
      clusterUp: clusters.map((c) => `${c.n}: ${fmt(c.readyMs / 1000)} s`).join(", ")
    }
    const ratiosOf = (key: "spawn" | "cancel" | "eventsPerSecond" | "failover", what: string, clustersOf = clusters) =>
      clustersOf.map((c) => ({
        id: `${c.n}-runners-vs-single`,
        label: `${clusterOf(c.n)} / ${single}, ${what}`,
        value: median(c[key]) / median(base[key])
      }))
    const withP95 = (key: "spawn" | "cancel") =>
      `p95: ${single} ${fmt(percentile(base[key], 95))} ms; ` +
      clusters.map((c) => `${clusterOf(c.n)} ${fmt(percentile(c[key], 95))} ms`).join("; ")
    const sharedNotes = [
      "the cluster's figures and the single-node host's come from the same run on the same PostgreSQL server, one configuration after the other " +
      "(not interleaved: each starts its own processes); the machine is shared, read the load averages in the parameters"
    ]
    const scenarios: Array<ScenarioResult> = [
      {
        id: "cluster-spawn",
        scenario: 8,
        group: "cluster",
        title: "Cluster: spawn → Registered at a watcher in another process (ms, one at a time)",
        unit: "ms",
        params,
        variants: [variant(single, "baseline", base.spawn), ...clusters.map((c) => variant(clusterOf(c.n), "host", c.spawn))],
        ratios: ratiosOf("spawn", "median latency"),
        notes: [
          ...sharedNotes,
          withP95("spawn"),
          `the spawn call itself returns after (median) ${fmt(median(base.spawnReturn))} ms on the single node, ` +
          clusters.map((c) => `${fmt(median(c.spawnReturn))} ms with ${c.n}`).join(", "),
          "cluster: the client routes spawnManaged(…, TaskCluster.byProducer) to the session's runner as a persisted message; " +
          "the runner's session host commits, NOTIFY wakes the client's watch, which reads the feed table. " +
          "Single node: spawnManaged with the body, its watch in the same process"
        ]
      },
      {
        id: "cluster-cancel",
        scenario: 8,
        group: "cluster",
        title: "Cluster: requestCancel from another process → Cancelled at its watcher (ms, one at a time)",
        unit: "ms",
        params,
        variants: [variant(single, "baseline", base.cancel), ...clusters.map((c) => variant(clusterOf(c.n), "host", c.cancel))],
        ratios: ratiosOf("cancel", "median latency"),
        notes: [
          ...sharedNotes,
          withP95("cancel"),
          "cluster: requestCancel(taskId) reads the task's session from the store, then goes to its runner as a persisted message"
        ]
      },
      {
        id: "cluster-events",
        scenario: 8,
        group: "cluster",
        title: "Cluster: progress events per second reaching a watcher in another process",
        unit: "events/s",
        params,
        variants: [
          variant(single, "baseline", base.eventsPerSecond),
          ...clusters.map((c) => variant(clusterOf(c.n), "host", c.eventsPerSecond))
        ],
        ratios: ratiosOf("eventsPerSecond", "events/s"),
        notes: [
          ...sharedNotes,
          `${sessionCount} burst tasks, one per session (spread over the runners), spawned at once; from the first spawn to the last event at the watch; ` +
          "each session's host commits its own events (one journal per session), every commit takes the global feed's row lock",
          `progress events per commit on the cluster: ${clusters.map((c) => `${fmt(c.eventsPerCommit)} with ${c.n}`).join(", ")}`,
          `CPU of the watching process per event (µs, median): ${single} ${fmt(median(base.cpuPerEvent))} (its host included); ` +
          clusters.map((c) => `${clusterOf(c.n)} ${fmt(median(c.cpuPerEvent))} (the client's read path only)`).join("; ")
        ]
      },
      {
        id: "cluster-failover",
        scenario: 8,
        group: "cluster",
        title: "Cluster: fail-over after SIGKILL (ms until the dead runner's sessions answer from another, their tasks recovered)",
        unit: "ms",
        params,
        variants: [
          variant(single, "baseline", base.failover),
          ...clusters.filter((c) => c.n > 1).map((c) => variant(clusterOf(c.n), "host", c.failover))
        ],
        ratios: ratiosOf("failover", "median fail-over", clusters.filter((c) => c.n > 1)),
        notes: [
          ...sharedNotes,
          `single node: a standby process waiting for the killed host's lease (ttl 4 s, onHeld: "wait"), until it holds it and has recovered the task; ` +
          "cluster: the runner holding the most sessions killed, until every one of its sessions answers from another runner " +
          `(dominated by the shard lock's expiration, ${shardingConfig.shardLockExpiration} ms here; 35 s with the cluster's defaults)`
        ],
        skippedParts: clusters.some((c) => c.n === 1)
          ? [{ part: clusterOf(1), reason: "no other runner to take its sessions", ratios: ["1-runners-vs-single"] }]
          : []
      }
    ]
    return { group: "cluster", scenarios }
  } finally {
    await postgres.stop()
  }
}
