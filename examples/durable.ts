/**
 * A host whose records survive a crash: a SQLite file, a process killed with
 * SIGKILL in the middle of its work, and the next host resolving what it left.
 *
 * The program runs twice. As `--crash <file>` it starts a monitor, two
 * crawls (producer "crawler", 3 attempts each), an external build and a
 * quick job on the file, prints `ready` once they are all committed, and
 * waits. The parent kills that process with SIGKILL, then opens a host on
 * the same file: it waits for the dead process's lease to expire, re-runs
 * the crawls through its `recovery` handler, ends the rest with "host stopped
 * before the task finished", and replays the stored events with
 * `watch({ fromSeq: 0 })`.
 *
 *   npm exec -- node examples/durable.ts
 */
import { Effect, Layer, Option, Stream } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostStoreOptions,
  TaskContext,
  TaskStore
} from "../src/index.ts"
import * as NodeSqliteClient from "../src/NodeSqliteClient.ts"

const hostOn = (filename: string, options: BackgroundTaskHostStoreOptions) =>
  BackgroundTaskHost.layerStore(options).pipe(
    Layer.provide(TaskStore.layerSql()),
    Layer.provide(NodeSqliteClient.layer({ filename }))
  )

const crawl = (url: string) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    yield* ctx.progress(`crawling ${url}`)
    return `crawled ${url}`
  })

/** The process that dies: its tasks are committed, then it is killed. */
const crashing = (filename: string) =>
  Effect.gen(function*() {
    const host = yield* BackgroundTaskHost
    yield* host.spawnManaged("s-1", { id: "monitor", kind: "monitor", producer: "ci" }, Effect.never)
    for (const url of ["a.example", "b.example"]) {
      yield* host.spawnManaged("s-1", { id: url, kind: "other", producer: "crawler", maxAttempts: 3 }, Effect.never)
    }
    yield* host.registerExternal("s-1", { id: "build", kind: "subagent", producer: "ci" })
    const quick = yield* host.spawnManaged("s-1", { id: "quick", kind: "other", producer: "ci" }, Effect.succeed("done"))
    yield* Effect.sync(() => process.stdout.write(`ready ${quick.id}\n`))
    return yield* Effect.never
  }).pipe(Effect.provide(hostOn(filename, { lease: { ttl: "1 second" } })))

const main = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "effect-task-host-durable-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const filename = join(dir, "tasks.db")

  // 1. a process that is killed with its tasks live
  yield* Effect.promise(() =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [import.meta.filename, "--crash", filename], {
        stdio: ["ignore", "pipe", "inherit"]
      })
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("ready")) child.kill("SIGKILL")
      })
      child.on("exit", (code, signal) =>
        signal === "SIGKILL" ? resolve() : reject(new Error(`the crashing process ended with ${code ?? signal}`)))
    })
  )
  console.log("process 1 was killed with SIGKILL while its tasks ran")

  // 2. the next host on the same file
  yield* Effect.gen(function*() {
    const host = yield* BackgroundTaskHost
    const { cancelled, failed, respawned } = yield* host.recovery
    console.log(`process 2 started: re-spawned ${respawned.join(", ")}; failed ${failed.join(", ")}; cancelled ${cancelled.join(", ")}`)
    // the re-spawned crawls run to completion: `await` returns each one's final record
    for (const record of yield* host.list()) yield* host.await(record.id)
    for (const record of yield* host.list({ includeTerminal: true })) {
      const outcome = record.state === "failed" ? record.failure : record.result
      const summary = Option.getOrElse(Option.flatMap(outcome, (o) => o.summary), () => "")
      console.log(`  ${record.id.padEnd(10)} ${record.state.padEnd(9)} attempt ${record.attempt.attempt}  ${summary}`)
    }
    // every event either process published is stored with its seq: a reader resumes from any of them
    const history = yield* host.watch({ fromSeq: 0 })
    const replayed = yield* Stream.runCollect(Stream.take(history.events, history.seq))
    console.log(`events stored: ${history.seq}, replayed from seq 0: ${replayed.map((event) => event._tag).join(" ")}`)
  }).pipe(
    Effect.scoped,
    Effect.provide(hostOn(filename, {
      lease: { ttl: "1 second", onHeld: "wait" },
      recovery: { crawler: (record) => crawl(record.id) }
    }))
  )
})

const crash = process.argv.indexOf("--crash")
if (crash !== -1) {
  Effect.runFork(crashing(process.argv[crash + 1]!))
} else {
  Effect.runPromise(Effect.scoped(main)).catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
