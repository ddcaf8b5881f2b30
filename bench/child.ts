/**
 * One scenario group in its own process:
 *   node --expose-gc bench/child.ts <group> --result <file> [--quick]
 * Progress goes to stderr; the group's results are written as JSON to <file>.
 */
import { writeFileSync } from "node:fs"
import { groups } from "./groups.ts"

const [name, ...rest] = process.argv.slice(2)
const resultIndex = rest.indexOf("--result")
const resultFile = resultIndex >= 0 ? rest[resultIndex + 1] : undefined
const group = groups.find((g) => g.name === name)
if (group === undefined || resultFile === undefined) {
  process.stderr.write(
    `usage: node --expose-gc bench/child.ts <${groups.map((g) => g.name).join("|")}> --result <file> [--quick]\n`
  )
  process.exit(2)
}
const quick = rest.includes("--quick")
const { run } = await group.load()
const result = await run({ quick, warmup: 1, reps: 5 })
writeFileSync(resultFile, JSON.stringify(result))
