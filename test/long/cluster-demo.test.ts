/**
 * `npm run cluster-demo` as a reader of the README runs it: PostgreSQL of its
 * own (scripts/postgres.sh), three runner processes and a client; one runner
 * killed, its sessions answered from the others, the live view checked, the
 * other runners stopped with SIGTERM. The demo exits 0 only when all of that
 * held; the test checks its exit and what it says it checked.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../", import.meta.url))

/** The demo's environment without the suite's PostgreSQL: it starts a server of its own. */
const demoEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("PG")) env[key] = value
  return env
}

describe("npm run cluster-demo", () => {
  it("spreads sessions, resumes a killed runner's elsewhere, and its live view misses nothing", async () => {
    const child = spawn(process.execPath, [`${root}examples/cluster/demo.ts`], {
      cwd: root,
      env: demoEnv(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => void (out += String(d)))
    child.stderr.on("data", (d: Buffer) => void (out += String(d)))
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)))
    assert.strictEqual(code, 0, out)
    const view = /the live view: (\d+) events, (\d+) Lagged, (\d+) seq gaps, (\d+)\/(\d+) tasks with exactly one terminal event/
      .exec(out)
    assert.isNotNull(view, out)
    const [, events, lagged, gaps, once, tasks] = view!.map(Number)
    assert.isAbove(events!, 0)
    assert.strictEqual(lagged, 0)
    assert.strictEqual(gaps, 0)
    assert.strictEqual(once, tasks)
    assert.match(out, /SIGTERM to the \d+ other runners: (\d+) ended/)
    assert.match(out, /^OK$/m)
  }, 180_000)
})
