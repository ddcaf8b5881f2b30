/**
 * Summarises V8 CPU profiles (`node --cpu-prof`): the functions with the most
 * self time, and self time per source file.
 *
 *   npm exec -- node bench/profile-summary.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [file, topArg] = process.argv.slice(2)
if (file === undefined) {
  process.stderr.write("usage: node bench/profile-summary.ts <file.cpuprofile> [top]\n")
  process.exit(2)
}
const top = Number(topArg ?? 25)
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
const shortUrl = (url: string) =>
  url.replace(/^file:\/\/.*?\/node_modules\//, "").replace(/^file:\/\/.*?\/(src|bench)\//, "$1/") || "(native)"
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
// the in-process profiler's own stop call is not part of the measured work
const isProfilerItself = (id: number) => byId.get(id)!.callFrame.url === "node:inspector"
const selfByNode = new Map<number, number>()
/** Time with a src/ function anywhere on the stack, counted once per sample. */
const inclusiveSrc = new Map<string, number>()
let total = 0
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0
  if (isProfilerItself(id)) return
  selfByNode.set(id, (selfByNode.get(id) ?? 0) + dt)
  total += dt
  const seen = new Set<string>()
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const { functionName, url, lineNumber } = byId.get(at)!.callFrame
    if (!url.includes("/src/")) continue
    const key = `${functionName || "(anonymous)"}  ${shortUrl(url)}:${lineNumber + 1}`
    if (seen.has(key)) continue
    seen.add(key)
    inclusiveSrc.set(key, (inclusiveSrc.get(key) ?? 0) + dt)
  }
})

const byFunction = new Map<string, number>()
const byFile = new Map<string, number>()
for (const [id, us] of selfByNode) {
  const node = byId.get(id)!
  const { functionName, url, lineNumber } = node.callFrame
  const key = `${functionName || "(anonymous)"}  ${shortUrl(url)}${url ? `:${lineNumber + 1}` : ""}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + us)
  const fileKey = url ? shortUrl(url) : functionName
  byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us)
}

const print = (title: string, map: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`)
  for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${key}\n`)
  }
}
process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms sampled\n`)
print("top self time by function", byFunction)
print("self time by file", byFile)
print("inclusive time of src/ functions (a sample counts once per function on its stack)", inclusiveSrc)
