/**
 * One scenario group in its own process:
 *   node --expose-gc bench/child.ts <group> --result <file> [--quick]
 * Progress goes to stderr; the group's results are written as JSON to <file>.
 *
 * For profiling, `--host-only` runs only the host variants and writes no
 * result; `--profile <dir>` writes a CPU profile of the timed part of each
 * host variant's last repetition:
 *   npm exec -- node --expose-gc bench/child.ts lifecycle --host-only --profile /tmp/prof
 *   npm exec -- node bench/profile-summary.ts /tmp/prof/<file>.cpuprofile
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { groups } from "./groups.ts"

const [name, ...rest] = process.argv.slice(2)
const resultIndex = rest.indexOf("--result")
const resultFile = resultIndex >= 0 ? rest[resultIndex + 1] : undefined
const group = groups.find((g) => g.name === name)
const hostOnly = rest.includes("--host-only")
const profileIndex = rest.indexOf("--profile")
const profileDir = profileIndex >= 0 ? rest[profileIndex + 1] : undefined
if (group === undefined || (resultFile === undefined && !hostOnly)) {
  process.stderr.write(
    `usage: node --expose-gc bench/child.ts <${groups.map((g) => g.name).join("|")}> (--result <file> | --host-only) [--quick]\n`
  )
  process.exit(2)
}
const quick = rest.includes("--quick")
const { run } = await group.load()
if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true })
const result = await run({ quick, warmup: 1, reps: 5, hostOnly, ...(profileDir !== undefined ? { profileDir } : {}) })
if (resultFile !== undefined && !hostOnly) writeFileSync(resultFile, JSON.stringify(result))
