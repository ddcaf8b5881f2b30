/**
 * The cluster example, end to end (`npm run cluster-demo`): PostgreSQL (the
 * repo's `scripts/postgres.sh`, unless PGHOST is set), three runner
 * processes (`runner.ts`) and this process as a client (no session runs
 * here). It spawns a task in each of 12 sessions, shows where the cluster
 * placed them, kills the runner holding the most with SIGKILL, times how
 * long its sessions take to answer again from the others, waits for every
 * task to end (the killed runner's re-run by the new owner), checks the live
 * view it watched all along (one terminal event per task, every session's
 * `seq` without a gap), and stops the other runners with SIGTERM.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { Effect, Fiber, Layer, Option, Stream } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { BackgroundTaskHost, type SubscriptionEvent } from "../../src/index.ts"
import * as TaskCluster from "../../src/TaskCluster.ts"
import { listen, pgLayer, shardingConfig } from "./shared.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const log = (line: string) => console.log(line)

// -- PostgreSQL ----------------------------------------------------------------
let stopPg: (() => void) | undefined
if (process.env["PGHOST"] === undefined) {
  const out = execFileSync("bash", [`${root}scripts/postgres.sh`, "start"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
  for (const [, k, v] of out.matchAll(/\b(PG[A-Z_]+)=(\S+)/g)) process.env[k!] = v!.replace(/^'|'$/g, "")
  const dir = process.env["PG_CLUSTER_DIR"]!
  stopPg = () => execFileSync("bash", [`${root}scripts/postgres.sh`, "stop", dir], { stdio: "ignore" })
  log(`PostgreSQL: a throwaway server on ${process.env["PGHOST"]}:${process.env["PGPORT"]}`)
}

// -- the runners -----------------------------------------------------------------
const runners = new Map<string, ChildProcess>()
const startRunner = (name: string, port: number) => {
  const child = spawn(process.execPath, [`${root}examples/cluster/runner.ts`], {
    env: { ...process.env, RUNNER_NAME: name, RUNNER_PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  child.stdout!.on("data", (d: Buffer) => {
    for (const line of String(d).split("\n")) if (line.startsWith(name)) log(`  [${line}]`)
  })
  child.stderr!.resume()
  runners.set(name, child)
}
const exited = (child: ChildProcess, ms: number) =>
  new Promise<boolean>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

const sessions = Array.from({ length: 12 }, (_, i) => `session-${i}`)

const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const session = yield* TaskCluster.TaskSession.client
  const owner = (s: string) => session(s).Wake().pipe(Effect.timeout("3 seconds"), Effect.retry({ times: 60 }))

  // the live view: every event of every session, from before the first spawn
  const watched = yield* host.watch({ includeTerminal: true })
  const events: Array<SubscriptionEvent> = []
  const watcher = yield* Effect.forkChild(Stream.runForEach(watched.events, (e) => Effect.sync(() => void events.push(e))))

  const placed = new Map<string, string>()
  for (const s of sessions) {
    yield* host.spawnManaged(s, { id: `job-${s}`, kind: "subagent", producer: "work", input: { steps: 24, stepMs: 250 } }, TaskCluster.byProducer)
    placed.set(s, yield* owner(s))
  }
  const byRunner = new Map<string, Array<string>>()
  for (const [s, r] of placed) byRunner.set(r, [...(byRunner.get(r) ?? []), s])
  log(`spawned a 6 s task in each of ${sessions.length} sessions; where the cluster placed them:`)
  for (const [r, ss] of [...byRunner].sort()) log(`  ${r}: ${ss.join(", ")}`)

  yield* Effect.sleep("2 seconds")
  const [victim, lost] = [...byRunner].sort((a, b) => b[1].length - a[1].length)[0]!
  const killedAt = Date.now()
  runners.get(victim)!.kill("SIGKILL")
  log(`SIGKILL ${victim} (${lost.length} sessions, their tasks mid-way)`)

  // fail-over: each lost session answers again from another runner
  const back = yield* Effect.forEach(lost, (s) =>
    Effect.gen(function*() {
      while (true) {
        const r = yield* Effect.option(session(s).Wake().pipe(Effect.timeout("1 second")))
        if (Option.isSome(r) && r.value !== victim) return { s, runner: r.value, ms: Date.now() - killedAt }
      }
    }), { concurrency: "unbounded" })
  for (const b of back) log(`  ${b.s} answers again from ${b.runner} after ${b.ms} ms`)

  const finals = yield* Effect.forEach(sessions, (s) => host.await(`job-${s}`), { concurrency: "unbounded" })
  log(`every task ended:`)
  for (const r of finals) {
    const summary = Option.getOrElse(Option.flatMap(r.result, (x) => x.summary), () => "")
    log(`  ${r.id}: ${r.state}, attempt ${r.attempt.attempt}, ${summary}`)
  }

  // the live view: one terminal event per task, each session's seq without a gap
  yield* Effect.sleep("500 millis")
  yield* Fiber.interrupt(watcher)
  const lagged = events.filter((e) => e._tag === "Lagged").length
  const terminal = new Map<string, number>()
  const lastSeq = new Map<string, number>()
  let gaps = 0
  for (const e of events) {
    if (e._tag === "Lagged") continue
    const previous = lastSeq.get(e.sessionId)
    if (previous !== undefined && e.seq !== previous + 1) gaps++
    lastSeq.set(e.sessionId, e.seq)
    if (e._tag === "Completed" || e._tag === "Failed" || e._tag === "Cancelled") {
      terminal.set(e.taskId, (terminal.get(e.taskId) ?? 0) + 1)
    }
  }
  const once = [...terminal.values()].filter((n) => n === 1).length
  log(`the live view: ${events.length} events, ${lagged} Lagged, ${gaps} seq gaps, ${once}/${sessions.length} tasks with exactly one terminal event`)
  const ok = lagged === 0 && gaps === 0 && once === sessions.length && finals.every((r) => r.state === "completed")
  log(ok ? "OK" : "NOT OK")
  return ok
})

const Client = TaskCluster.layerClient({ listen }).pipe(
  Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig })),
  Layer.provide(pgLayer("cluster demo client"))
)

let ok = false
try {
  startRunner("runner-a", 34431)
  startRunner("runner-b", 34432)
  startRunner("runner-c", 34433)
  ok = await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Client)))
  // stopping every runner at once ends: each hands its sessions over and exits
  const stoppedAt = Date.now()
  const alive = [...runners.values()].filter((c) => c.exitCode === null && c.signalCode === null)
  for (const child of alive) child.kill("SIGTERM")
  const ended = await Promise.all(alive.map((c) => exited(c, 30_000)))
  log(`SIGTERM to the ${alive.length} other runners: ${ended.filter(Boolean).length} ended within ${Date.now() - stoppedAt} ms`)
  ok &&= ended.every(Boolean)
} finally {
  for (const child of runners.values()) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  stopPg?.()
}
process.exit(ok ? 0 : 1)
