/**
 * Scenario groups in one process:
 *   node --expose-gc bench/child.ts <group>[,<group>...] --result <file> [--quick]
 * `npm run bench` starts one per group (a group's figures never depend on
 * what ran before it in the process); `--quick` runs every group in one
 * process, as its figures mean nothing anyway and seven Node start-ups
 * would be most of its time. Progress goes to stderr; the groups' results
 * are written as a JSON array to <file>.
 *
 * For profiling, `--host-only` runs only the host variants and writes no
 * result; `--profile <dir>` writes a CPU profile of the timed part of each
 * host variant's last repetition:
 *   npm exec -- node --expose-gc bench/child.ts lifecycle --host-only --profile /tmp/prof
 *   npm exec -- node bench/profile-summary.ts /tmp/prof/<file>.cpuprofile
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { groups } from "./groups.ts"
import { type GroupResult, settingsFor } from "./harness.ts"

const [names, ...rest] = process.argv.slice(2)
const resultIndex = rest.indexOf("--result")
const resultFile = resultIndex >= 0 ? rest[resultIndex + 1] : undefined
const selected = (names ?? "").split(",").map((name) => groups.find((g) => g.name === name))
const hostOnly = rest.includes("--host-only")
const profileIndex = rest.indexOf("--profile")
const profileDir = profileIndex >= 0 ? rest[profileIndex + 1] : undefined
if (selected.some((g) => g === undefined) || (resultFile === undefined && !hostOnly)) {
  process.stderr.write(
    `usage: node --expose-gc bench/child.ts <${
      groups.map((g) => g.name).join("|")
    }>[,...] (--result <file> | --host-only) [--quick]\n`
  )
  process.exit(2)
}
const quick = rest.includes("--quick")
if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true })
const results: Array<GroupResult> = []
for (const group of selected) {
  const { name, scenarios } = group!
  process.stderr.write(`\n== group ${name} (scenario ${scenarios.join(", ")})${quick ? " [quick]" : ""}\n`)
  const t0 = performance.now()
  const { run } = await group!.load()
  results.push(await run({ ...settingsFor(quick), hostOnly, ...(profileDir !== undefined ? { profileDir } : {}) }))
  process.stderr.write(`== group ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`)
}
if (resultFile !== undefined && !hostOnly) writeFileSync(resultFile, JSON.stringify(results))
