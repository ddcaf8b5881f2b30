/**
 * The deploy tests' helpers: run `test/fixtures/deploy-child.ts` (a durable
 * job runner) until a line or a moment, stop it with SIGTERM as a deploy
 * does, and check what the store holds once every job has run.
 */
import { assert } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { isTerminal } from "../../src/index.ts"
import { inputOf, jobs, summaryOf } from "../fixtures/deploy-plan.ts"
import { root } from "./child.ts"
import { eventRows, taskRows } from "./store.ts"

const childScript = fileURLToPath(new URL("../fixtures/deploy-child.ts", import.meta.url))

export interface ChildRun {
  /** Every line it printed. */
  readonly lines: ReadonlyArray<string>
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
  /** Whether it printed `all-done`. */
  readonly allDone: boolean
}

/**
 * Starts the child on `target` with `count` jobs and sends it SIGTERM when
 * `stopWhen` says so (it is given each new line, and `null` once `afterMs`
 * has passed since `ready`); resolves once it has exited. A child that does
 * not exit within `timeoutMs` is killed and the run fails.
 */
export const runChild = (options: {
  readonly target: string
  readonly count: number
  readonly env?: NodeJS.ProcessEnv
  readonly stopWhen: (line: string | null) => boolean
  readonly afterMs?: number
  readonly timeoutMs?: number
}): Effect.Effect<ChildRun> =>
  Effect.callback<ChildRun>((resume) => {
    const child = spawn(process.execPath, [childScript, options.target, String(options.count)], {
      cwd: root,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const lines: Array<string> = []
    let pending = ""
    let stderr = ""
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const stop = () => {
      if (stopped) return
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      child.kill("SIGTERM")
    }
    const killer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000)
    child.stdout.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8")
      const parts = pending.split("\n")
      pending = parts.pop()!
      for (const line of parts) {
        lines.push(line)
        if (line === "ready" && options.afterMs !== undefined) {
          timer = setTimeout(() => {
            if (options.stopWhen(null)) stop()
          }, options.afterMs)
        }
        if (!stopped && options.stopWhen(line)) stop()
      }
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.on("close", (code, signal) => {
      clearTimeout(killer)
      if (timer !== undefined) clearTimeout(timer)
      resume(Effect.succeed({ lines, code, signal, stderr, allDone: lines.includes("all-done") }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A run that was stopped by SIGTERM and exited by itself (not killed by the timeout). */
export const assertStoppedCleanly = (run: ChildRun, label: string) => {
  assert.notStrictEqual(run.signal, "SIGKILL", `${label}: the child did not exit after SIGTERM\n${run.stderr}`)
  assert.include(run.lines, "ready", `${label}: the child never started\n${run.stderr}`)
  assert.notInclude(run.stderr, "LeaseHeld", `${label}\n${run.stderr}`)
}

/**
 * After the last run: every job of the plan is in the store, `completed` with
 * its summary, on its first attempt (a stop is not an attempt); its events
 * hold exactly one terminal event each, `Completed`, and no `seq` is missing.
 * Every attempt a child started was below the job's `maxAttempts`.
 */
export const checkAllDone = (sql: SqlClient.SqlClient, count: number, runs: ReadonlyArray<ChildRun>) =>
  Effect.gen(function*() {
    const plan = jobs(count)
    const byId = new Map(plan.map((job) => [job.id, job]))
    const rows = yield* taskRows(sql)
    assert.strictEqual(rows.length, count, "one row per job")
    assert.deepStrictEqual(rows.filter((row) => row.state !== "completed").map((row) => `${row.task_id} ${row.state}`), [])

    const events = yield* eventRows(sql)
    events.forEach((row, i) => assert.strictEqual(row.seq, i + 1, "no seq is missing"))
    const ends = new Map<string, Array<string>>()
    const registered = new Map<string, number>()
    for (const { decoded } of events) {
      if (decoded._tag === "Registered") registered.set(decoded.taskId, (registered.get(decoded.taskId) ?? 0) + 1)
      if (decoded._tag === "Evicted" || decoded._tag === "Progress" || decoded._tag === "Registered") continue
      if (!isTerminal(decoded.record.state)) continue
      ends.set(decoded.taskId, [...(ends.get(decoded.taskId) ?? []), decoded._tag])
      assert.deepStrictEqual(
        Option.flatMap(decoded.record.result, (result) => result.summary),
        Option.some(summaryOf(decoded.taskId)),
        decoded.taskId
      )
      assert.strictEqual(decoded.record.attempt.attempt, 0, `${decoded.taskId} ran on its first attempt`)
      assert.deepStrictEqual(decoded.record.input, inputOf(byId.get(decoded.taskId)!), `${decoded.taskId} kept its input`)
    }
    for (const job of plan) {
      assert.strictEqual(registered.get(job.id), 1, `${job.id} registered once`)
      assert.deepStrictEqual(ends.get(job.id), ["Completed"], `${job.id} ends exactly once, completed`)
    }
    assert.strictEqual(ends.size, count)

    const maxAttempts = new Map(plan.map((job) => [job.id, job.maxAttempts]))
    for (const run of runs) {
      for (const line of run.lines) {
        const [what, id, attempt] = line.split(" ")
        if ((what !== "start" && what !== "resume") || attempt === "?") continue
        assert.isBelow(Number(attempt), maxAttempts.get(id!)!, line)
      }
    }
  })
