/**
 * The benchmark must not rot: `npm run bench -- --quick` runs every scenario
 * at tiny sizes, in a child process, into a temp directory; this checks the
 * shape of what it writes. Never timing values.
 *
 * The bench is given the PostgreSQL server of this test run (the global
 * setup's), so that it does not start a cluster of its own.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { settings as postgres } from "./utils/postgres.ts"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The environment with the test run's PostgreSQL in the PG* variables the bench reads, when there is one. */
const env: NodeJS.ProcessEnv = postgres._tag === "Available"
  ? {
    ...process.env,
    PGHOST: postgres.host,
    PGPORT: String(postgres.port),
    PGUSER: postgres.user,
    PGDATABASE: postgres.database,
    ...(postgres.password !== undefined ? { PGPASSWORD: postgres.password } : {})
  }
  : process.env

const run = (args: ReadonlyArray<string>) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
    execFile(process.execPath, args, { cwd: root, env, timeout: 240_000, maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    })
  })

const isNumber = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x)

interface Scenario {
  readonly id: string
  readonly scenario: number
  readonly unit: string
  readonly params: Readonly<Record<string, unknown>>
  readonly variants: ReadonlyArray<{ readonly name: string; readonly role: string; readonly samples: ReadonlyArray<unknown>; readonly median: unknown; readonly min: unknown; readonly max: unknown }>
  readonly ratios: ReadonlyArray<{ readonly id: string; readonly label: string; readonly value: unknown }>
  readonly skipped?: string
  readonly skippedParts?: ReadonlyArray<{ readonly part: string; readonly reason: string; readonly ratios: ReadonlyArray<string> }>
  readonly fairness?: ReadonlyArray<{ readonly baseline: string; readonly why: string }>
}

describe("bench", () => {
  it("quick mode runs every scenario and writes a well-formed result outside the repo", async () => {
    const out = mkdtempSync(join(tmpdir(), "effect-task-host-bench-test-"))
    try {
      const result = await run(["bench/run.ts", "--quick", "--out", out])
      assert.strictEqual(result.code, 0, result.stderr)
      const json = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as {
        readonly mode: string
        readonly node: string
        readonly machine: { readonly cpu: string; readonly cores: unknown; readonly memoryBytes: unknown }
        readonly packages: Record<string, string>
        readonly settings: { readonly warmup: unknown; readonly reps: unknown }
        readonly scenarios: ReadonlyArray<Scenario>
        readonly targets: ReadonlyArray<{
          readonly text: string
          readonly status: string
          readonly value: unknown
          readonly moonshot: { readonly comparison: string; readonly met: unknown } | null
        }>
      }
      assert.strictEqual(json.mode, "quick")
      assert.strictEqual(json.node, process.version)
      assert.isTrue(isNumber(json.machine.cores) && isNumber(json.machine.memoryBytes))
      assert.isString(json.packages["effect"])
      assert.isString(json.packages["effect-task-host"])
      const reps = json.settings.reps
      assert.isTrue(isNumber(reps) && reps >= 2, "at least two repetitions: the interleaving and min / median / max")

      const ids = json.scenarios.map((s) => s.id)
      for (
        const id of [
          "managed-lifecycle",
          "registry-lifecycle",
          "fanout-1",
          "fanout-10",
          "fanout-100",
          "publisher-slow-subscriber",
          "lookups-100",
          "lookups-300",
          "lookups-1000",
          "cancel-all",
          "memory-records",
          "memory-subscriber",
          "durable"
        ]
      ) assert.include(ids, id)
      assert.deepStrictEqual([...new Set(json.scenarios.map((s) => s.scenario))].sort(), [1, 2, 3, 4, 5, 6, 7])

      for (const s of json.scenarios) {
        assert.isUndefined(s.skipped, s.id)
        assert.isAbove(s.variants.length, 1, s.id)
        assert.isAbove(s.ratios.length, 0, s.id)
        for (const v of s.variants) {
          assert.strictEqual(v.samples.length, reps, `${s.id} / ${v.name}`)
          assert.isTrue(isNumber(v.median) && isNumber(v.min) && isNumber(v.max), `${s.id} / ${v.name}`)
          assert.isTrue((v.min as number) <= (v.median as number) && (v.median as number) <= (v.max as number))
        }
        for (const r of s.ratios) {
          assert.isTrue(isNumber(r.value) && r.value > 0, `${s.id} / ${r.id}: ${String(r.value)}`)
        }
      }
      // every baseline that states why it is fair is a variant of its scenario
      for (const s of json.scenarios) {
        for (const f of s.fairness ?? []) {
          assert.include(s.variants.map((v) => v.name), f.baseline, s.id)
          assert.isAbove(f.why.length, 0, `${s.id} / ${f.baseline}`)
        }
      }
      // the fair baselines, each with its reason: fan-out against a PubSub read with the
      // host's wake rule (the pulls of both counted), the managed lifecycle against p-queue with events
      for (const n of [1, 10, 100]) {
        const fanout = json.scenarios.find((s) => s.id === `fanout-${n}`)!
        assert.include(fanout.ratios.map((r) => r.id), "throughput-vs-fair-pubsub")
        for (const key of ["hostPullsPerReader", "fairPullsPerReader"]) {
          const pulls = fanout.params[key]
          assert.isTrue(Number.isInteger(pulls) && (pulls as number) >= 1, `${fanout.id} ${key}: ${String(pulls)}`)
        }
      }
      const managed = json.scenarios.find((s) => s.id === "managed-lifecycle")!
      assert.includeMembers(managed.ratios.map((r) => r.id), ["vs-fibermap", "vs-pqueue-events"])
      // in these scenarios every baseline (not the info variants: the old baselines) says why it is fair
      for (const s of [managed, ...json.scenarios.filter((s) => s.id.startsWith("fanout-"))]) {
        const baselines = s.variants.filter((v) => v.role === "baseline").map((v) => v.name)
        assert.isAbove(baselines.length, 0, s.id)
        assert.sameMembers((s.fairness ?? []).map((f) => f.baseline), baselines, s.id)
      }
      // scenario 7 always measures the host on SQLite against raw node:sqlite; BullMQ and
      // PostgreSQL are measured, or named as skipped with the reason (their server is absent)
      const durable = json.scenarios.find((s) => s.id === "durable")!
      const names = durable.variants.map((v) => v.name)
      assert.include(names, "host on SQLite (group commit)")
      assert.include(names, "raw node:sqlite, 1 transaction per op")
      assert.include(durable.ratios.map((r) => r.id), "sqlite-vs-raw")
      const skippedParts = durable.skippedParts ?? []
      const bullmq = "BullMQ + Redis (AOF everysec)"
      const measured = (part: string) => names.some((name) => name.startsWith(part))
      for (const part of [bullmq, "host on PostgreSQL (group commit)"]) {
        const skip = skippedParts.find((p) => p.part === part)
        assert.notStrictEqual(measured(part), skip !== undefined, part)
        if (skip !== undefined) assert.isAbove(skip.reason.length, 0, part)
      }
      assert.strictEqual(durable.ratios.some((r) => r.id === "sqlite-vs-bullmq"), measured(bullmq))
      // BullMQ is measured twice: the baseline keeping what the host keeps (it says why that is fair), and
      // at its own default as info
      const bullmqVariants = durable.variants.filter((v) => v.name.startsWith(bullmq))
      assert.sameMembers(
        bullmqVariants.map((v) => v.role),
        measured(bullmq) ? ["baseline", "info"] : []
      )
      assert.sameMembers(
        (durable.fairness ?? []).map((f) => f.baseline),
        bullmqVariants.filter((v) => v.role === "baseline").map((v) => v.name)
      )
      // every target is judged, pending or skipped (the durable one when Redis is absent)
      for (const t of json.targets) {
        assert.include(["met", "missed", "pending", "skipped"], t.status, t.text)
        assert.strictEqual(t.value === null, t.status === "skipped", t.text)
        // a stretch goal is judged whenever its target has a value
        if (t.moonshot !== null) assert.strictEqual(typeof t.moonshot.met === "boolean", t.value !== null, t.text)
      }
      // the stdout table and the generated page name every scenario
      const page = readFileSync(join(out, "performance.md"), "utf8")
      for (const n of [1, 2, 3, 4, 5, 6, 7]) assert.include(page, `### ${n}. `)
      assert.include(page, "## Targets")
      assert.include(page, "## Why the baselines are fair")
      for (const id of ids) assert.include(result.stdout, id)
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  }, 300_000)

  it("rejects an unknown group with a clear message", async () => {
    const result = await run(["bench/run.ts", "--quick", "--only", "lifecycle,nope"])
    assert.strictEqual(result.code, 2)
    assert.include(result.stderr, "unknown group: nope")
  })
})
