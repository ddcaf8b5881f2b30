/**
 * The cluster bench must not rot: `npm run bench -- --quick --only cluster`
 * (runner processes on this test run's PostgreSQL) writes a well-formed
 * scenario 8. Its figures are never checked, only their shape; the group is
 * not in `npm test`'s quick bench run (it starts processes).
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { settings as postgres } from "../utils/postgres.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))

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

interface Scenario {
  readonly id: string
  readonly scenario: number
  readonly unit: string
  readonly variants: ReadonlyArray<{ readonly name: string; readonly samples: ReadonlyArray<number>; readonly median: number }>
  readonly ratios: ReadonlyArray<{ readonly id: string; readonly value: number }>
  readonly skipped?: string
  readonly skippedParts?: ReadonlyArray<{ readonly part: string; readonly reason: string }>
}

describe("bench: the cluster group", () => {
  it("--quick --only cluster measures the cluster and the single-node host, each figure a finite number", async () => {
    if (postgres._tag !== "Available") throw new Error(`PostgreSQL is not available: ${postgres.reason}`)
    const out = mkdtempSync(join(tmpdir(), "effect-task-host-bench-cluster-"))
    try {
      const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ["bench/run.ts", "--quick", "--only", "cluster", "--out", out], {
          cwd: root,
          env,
          timeout: 400_000,
          maxBuffer: 16 * 2 ** 20
        }, (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr }))
      })
      assert.strictEqual(result.code, 0, result.stderr)
      const json = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as { readonly scenarios: ReadonlyArray<Scenario> }
      assert.deepStrictEqual(json.scenarios.map((s) => s.id), ["cluster-spawn", "cluster-cancel", "cluster-events", "cluster-failover"])
      for (const s of json.scenarios) {
        assert.strictEqual(s.scenario, 8)
        assert.isUndefined(s.skipped, s.id)
        assert.strictEqual(s.variants[0]!.name, "single-node host on PostgreSQL", s.id)
        for (const v of s.variants) {
          assert.isAbove(v.samples.length, 0, `${s.id} / ${v.name}`)
          assert.isTrue(v.samples.every((x) => Number.isFinite(x) && x > 0), `${s.id} / ${v.name}`)
        }
        for (const r of s.ratios) assert.isTrue(Number.isFinite(r.value) && r.value > 0, `${s.id} / ${r.id}`)
      }
      const names = (id: string) => json.scenarios.find((s) => s.id === id)!.variants.map((v) => v.name)
      // quick mode: 1 and 2 runners; fail-over needs another runner to go to
      assert.deepStrictEqual(names("cluster-spawn").slice(1), ["cluster, 1 runner", "cluster, 2 runners"])
      assert.deepStrictEqual(names("cluster-failover").slice(1), ["cluster, 2 runners"])
      const failover = json.scenarios.find((s) => s.id === "cluster-failover")!
      assert.deepStrictEqual(failover.skippedParts?.map((p) => p.part), ["cluster, 1 runner"])
      assert.include(readFileSync(join(out, "performance.md"), "utf8"), "### 8. ")
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  }, 420_000)
})
