/**
 * The benchmark must not rot: `npm run bench -- --quick` runs every scenario
 * at tiny sizes, in a child process, into a temp directory; this checks the
 * shape of what it writes. Never timing values.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

const run = (args: ReadonlyArray<string>) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout: 240_000, maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    })
  })

const isNumber = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x)

interface Scenario {
  readonly id: string
  readonly scenario: number
  readonly unit: string
  readonly variants: ReadonlyArray<{ readonly name: string; readonly samples: ReadonlyArray<unknown>; readonly median: unknown; readonly min: unknown; readonly max: unknown }>
  readonly ratios: ReadonlyArray<{ readonly id: string; readonly label: string; readonly value: unknown }>
  readonly skipped?: string
  readonly skippedParts?: ReadonlyArray<{ readonly part: string; readonly reason: string; readonly ratios: ReadonlyArray<string> }>
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
        readonly scenarios: ReadonlyArray<Scenario>
        readonly targets: ReadonlyArray<{ readonly text: string; readonly status: string; readonly value: unknown }>
      }
      assert.strictEqual(json.mode, "quick")
      assert.strictEqual(json.node, process.version)
      assert.isTrue(isNumber(json.machine.cores) && isNumber(json.machine.memoryBytes))
      assert.isString(json.packages["effect"])
      assert.isString(json.packages["effect-task-host"])

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
          assert.strictEqual(v.samples.length, 5, `${s.id} / ${v.name}`)
          assert.isTrue(isNumber(v.median) && isNumber(v.min) && isNumber(v.max), `${s.id} / ${v.name}`)
          assert.isTrue((v.min as number) <= (v.median as number) && (v.median as number) <= (v.max as number))
        }
        for (const r of s.ratios) {
          assert.isTrue(isNumber(r.value) && r.value > 0, `${s.id} / ${r.id}: ${String(r.value)}`)
        }
      }
      // scenario 7 always measures the host on SQLite against raw node:sqlite; BullMQ and
      // PostgreSQL are measured, or named as skipped with the reason (their server is absent)
      const durable = json.scenarios.find((s) => s.id === "durable")!
      const names = durable.variants.map((v) => v.name)
      assert.include(names, "host on SQLite (group commit)")
      assert.include(names, "raw node:sqlite, 1 transaction per op")
      assert.include(durable.ratios.map((r) => r.id), "sqlite-vs-raw")
      const skippedParts = durable.skippedParts ?? []
      for (const part of ["BullMQ + Redis (AOF everysec)", "host on PostgreSQL (group commit)"]) {
        const skip = skippedParts.find((p) => p.part === part)
        assert.notStrictEqual(names.includes(part), skip !== undefined, part)
        if (skip !== undefined) assert.isAbove(skip.reason.length, 0, part)
      }
      assert.strictEqual(
        durable.ratios.some((r) => r.id === "sqlite-vs-bullmq"),
        names.includes("BullMQ + Redis (AOF everysec)")
      )
      // every target is judged, pending or skipped (the durable one when Redis is absent)
      for (const t of json.targets) {
        assert.include(["met", "missed", "pending", "skipped"], t.status, t.text)
        assert.strictEqual(t.value === null, t.status === "skipped", t.text)
      }
      // the stdout table and the generated page name every scenario
      const page = readFileSync(join(out, "performance.md"), "utf8")
      for (const n of [1, 2, 3, 4, 5, 6, 7]) assert.include(page, `### ${n}. `)
      assert.include(page, "## Targets")
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
