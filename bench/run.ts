/**
 * `npm run bench`: runs every scenario group in its own Node process, prints
 * the table on stdout, writes the results as JSON and regenerates
 * docs/performance.md from them.
 *
 *   npm run bench                               full sizes; writes bench/results/latest.json and docs/performance.md
 *   npm run bench -- --quick                    smoke run: tiny sizes, 2 repetitions, every group in one
 *                                               process; writes into a fresh temp directory
 *   npm run bench -- --only lifecycle,fanout    some groups; writes into a fresh temp directory
 *   npm run bench -- --only cluster             the cluster (scenario 8; in every full run too, but a --quick run
 *                                               leaves it out unless named: bench/groups.ts says why)
 *   npm run bench -- --out <dir>                writes <dir>/latest.json and <dir>/performance.md
 *   npm run bench -- --render                   only regenerates docs/performance.md from bench/results/latest.json
 *                                               (e.g. after editing bench/analysis.md), judged against
 *                                               today's targets
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { defaultGroupNames, groupNames, groups } from "./groups.ts"
import { type GroupResult, type ScenarioResult, settingsFor } from "./harness.ts"
import { type BenchResult, evaluateTargets, renderMarkdown, renderTable } from "./report.ts"

const root = fileURLToPath(new URL("..", import.meta.url))
const usage = `usage: npm run bench -- [--quick] [--only <group,...>] [--out <dir>] | --render
groups: ${groupNames.join(", ")}
left out of a --quick run unless named with --only: ${
  groups.filter((g) => g.notInQuick !== undefined).map((g) => `${g.name} (${g.notInQuick})`).join(", ")
}`

interface Args {
  readonly render: boolean
  readonly quick: boolean
  readonly only: ReadonlyArray<string> | undefined
  readonly out: string | undefined
}

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  let quick = false
  let render = false
  let only: Array<string> | undefined
  let out: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const value = () => {
      const v = argv[++i]
      return v === undefined || v.startsWith("--") ? fail(`${arg} needs a value`) : v
    }
    if (arg === "--quick") quick = true
    else if (arg === "--render") render = true
    else if (arg === "--only") only = value().split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    else if (arg === "--out") out = value()
    else if (arg === "--help" || arg === "-h") {
      process.stdout.write(`${usage}\n`)
      process.exit(0)
    } else fail(`unknown argument ${JSON.stringify(arg)}`)
  }
  if (only !== undefined) {
    if (only.length === 0) fail("--only needs at least one group")
    const unknown = only.filter((g) => !groupNames.includes(g))
    if (unknown.length > 0) fail(`unknown group${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`)
  }
  if (render && (quick || only !== undefined || out !== undefined)) fail("--render takes no other option")
  return { render, quick, only, out }
}

/** Runs the named groups in one child process (`bench/child.ts`); resolves to their results. */
const runGroups = (names: ReadonlyArray<string>, quick: boolean, resultFile: string): Promise<ReadonlyArray<GroupResult>> =>
  new Promise((resolvePromise, reject) => {
    const args = [
      "--expose-gc",
      "--max-old-space-size=8192",
      join(root, "bench", "child.ts"),
      names.join(","),
      "--result",
      resultFile,
      ...(quick ? ["--quick"] : [])
    ]
    const label = `group${names.length > 1 ? "s" : ""} ${names.join(", ")}`
    // the child's stdout goes to our stderr: stdout carries only the table
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", 2, 2] })
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      if (code !== 0) {
        reject(new Error(`${label} failed (${signal ?? `exit code ${code}`})`))
        return
      }
      try {
        const results = JSON.parse(readFileSync(resultFile, "utf8")) as ReadonlyArray<GroupResult>
        const got = results.map((r) => r.group)
        if (got.join(",") !== names.join(",")) throw new Error(`results for ${got.join(", ")}`)
        resolvePromise(results)
      } catch (error) {
        reject(new Error(`${label}: unreadable result: ${String(error)}`))
      }
    })
  })

const packageVersion = (dir: string): string =>
  (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version

const readAnalysis = (): string | undefined => {
  const analysisPath = join(root, "bench", "analysis.md")
  return existsSync(analysisPath) ? readFileSync(analysisPath, "utf8") : undefined
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2))
  if (args.render) {
    const stored = JSON.parse(readFileSync(join(root, "bench", "results", "latest.json"), "utf8")) as BenchResult
    // judged against today's targets: a target whose ratio the stored run lacks shows as "not run"
    const result: BenchResult = { ...stored, targets: evaluateTargets(stored.scenarios) }
    writeFileSync(join(root, "docs", "performance.md"), renderMarkdown(result, readAnalysis()))
    process.stderr.write("regenerated docs/performance.md from bench/results/latest.json\n")
    return
  }
  const selected = args.only ?? defaultGroupNames(args.quick)
  // only a complete full run replaces the committed results
  const writesRepo = args.out === undefined && !args.quick && args.only === undefined
  const outDir = args.out !== undefined
    ? resolve(args.out)
    : writesRepo
    ? undefined
    : mkdtempSync(join(os.tmpdir(), "effect-task-host-bench-"))
  const jsonPath = outDir === undefined ? join(root, "bench", "results", "latest.json") : join(outDir, "latest.json")
  const mdPath = outDir === undefined ? join(root, "docs", "performance.md") : join(outDir, "performance.md")

  const settings = settingsFor(args.quick)
  const started = new Date()
  const startMs = performance.now()
  const loadAverageAtStart = os.loadavg()
  const work = mkdtempSync(join(os.tmpdir(), "effect-task-host-bench-run-"))
  const scenarios: Array<ScenarioResult> = []
  // in the order of `groups`; a full run gives each group a fresh process, a quick run shares one
  const ordered = groups.map((g) => g.name).filter((name) => selected.includes(name))
  const batches = args.quick ? [ordered] : ordered.map((name) => [name])
  try {
    for (const [i, batch] of batches.entries()) {
      for (const result of await runGroups(batch, args.quick, join(work, `batch-${i}.json`))) {
        scenarios.push(...result.scenarios)
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  const cpus = os.cpus()
  const result: BenchResult = {
    schema: 1,
    mode: args.quick ? "quick" : "full",
    startedAt: started.toISOString(),
    durationSeconds: (performance.now() - startMs) / 1000,
    machine: {
      cpu: cpus[0]?.model ?? "unknown",
      cores: cpus.length,
      memoryBytes: os.totalmem(),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      loadAverageAtStart
    },
    node: process.version,
    packages: {
      "effect-task-host": packageVersion(root),
      effect: packageVersion(join(root, "node_modules", "effect")),
      "p-queue": packageVersion(join(root, "node_modules", "p-queue")),
      bullmq: packageVersion(join(root, "node_modules", "bullmq")),
      "@effect/sql-pg": packageVersion(join(root, "node_modules", "@effect", "sql-pg"))
    },
    settings: { warmup: settings.warmup, reps: settings.reps, groups: ordered },
    scenarios,
    targets: evaluateTargets(scenarios)
  }

  process.stdout.write(`${renderTable(result)}\n`)
  const analysis = readAnalysis()
  for (const path of [jsonPath, mdPath]) mkdirSync(resolve(path, ".."), { recursive: true })
  writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`)
  writeFileSync(mdPath, renderMarkdown(result, analysis))
  process.stderr.write(`\nwrote ${jsonPath}\nwrote ${mdPath}\ntotal ${result.durationSeconds.toFixed(0)} s\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
