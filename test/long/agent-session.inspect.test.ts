/**
 * `npm start -- --inspect [port]`: the demo prints the inspector's
 * URL, the inspector serves the run's tasks, and the demo stays up after its
 * scenario until Ctrl-C. On a durable store, a later run's inspector shows the
 * earlier run's tasks and their events too.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describeEnd, type Running, start } from "../utils/child.ts"

const env = { ...process.env, NO_COLOR: "1" }

const urlOf = (stdout: string) => /inspector: (http:\/\/127\.0\.0\.1:\d+\/)\S*/.exec(stdout)?.[1]

/** Starts the demo with the inspector on a free port; resolves once the scenario has ended, with the URL. */
const startDemo = async (args: ReadonlyArray<string>): Promise<{ readonly demo: Running; readonly url: string }> => {
  const demo = start(process.execPath, ["examples/agent-session.ts", "--inspect", "0", "--speed", "5", ...args], {
    env,
    timeoutMs: 60_000
  })
  await demo.waitFor("the inspector's URL", (out) => urlOf(out) !== undefined)
  await demo.waitFor("the end of the scenario", (out) => out.includes("the scenario has ended; the inspector stays up"))
  return { demo, url: urlOf(demo.stdout())! }
}

const get = async (url: string) => {
  const response = await fetch(url)
  assert.strictEqual(response.status, 200, url)
  return response.json() as Promise<any>
}

describe("agent-session --inspect", () => {
  const dir = mkdtempSync(join(tmpdir(), "eth-inspect-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("prints the URL, serves the run's tasks, stays up after the scenario, and Ctrl-C ends it (130)", async () => {
    const { demo, url } = await startDemo([])
    try {
      const page = await fetch(url)
      assert.strictEqual(page.status, 200)
      assert.include(await page.text(), "inspector.js")
      const { tasks } = await get(`${url}api/tasks?include_terminal=true`)
      assert.deepStrictEqual(
        tasks.map((t: any) => t.record.id).sort(),
        ["job-1.1", "job-1.2", "job-2.1", "job-2.2", "monitor-1", "observer-1", "subagent-1", "subagent-2", "tests-1"]
      )
      assert.isTrue(tasks.every((t: any) => ["completed", "failed", "cancelled"].includes(t.record.state)))
      const monitor = await get(`${url}api/tasks/monitor-1`)
      const types = monitor.events.map((e: any) => e.type)
      assert.strictEqual(types[0], "registered")
      assert.include(types, "transferred")
      assert.strictEqual(types.at(-1), "cancelled")
      assert.isTrue(monitor.events_complete)
      // read-only unless asked
      const cancel = await fetch(`${url}api/tasks/monitor-1/cancel`, { method: "POST" })
      assert.strictEqual(cancel.status, 403)
    } finally {
      demo.kill("SIGINT")
    }
    const ended = await demo.ended
    assert.strictEqual(ended.code, 130, describeEnd(ended))
    assert.include(ended.stdout, "9 tasks: 5 completed, 1 failed, 3 cancelled")
  }, 60_000)

  it("on a durable store, a later run shows the earlier run's tasks and their events beside its own", async () => {
    const store = `sqlite:${join(dir, "inspect.db")}`
    const first = await startDemo(["--store", store, "--sessions", "1", "--tasks", "1"])
    first.demo.kill("SIGINT")
    assert.strictEqual((await first.demo.ended).code, 130)

    const second = await startDemo(["--store", store, "--sessions", "1", "--tasks", "1"])
    try {
      const { sessions } = await get(`${second.url}api/sessions`)
      assert.deepStrictEqual(sessions.map((s: any) => s.session_id).sort(), ["run-1/session-1", "run-2/session-1"])
      for (const session of sessions) assert.strictEqual(session.tasks, 6, session.session_id)
      // the first run's test run, with its events replayed from the store
      const tests = await get(`${second.url}api/tasks/tests-1?session_id=${encodeURIComponent("run-1/session-1")}`)
      assert.strictEqual(tests.task.record.state, "failed")
      assert.deepStrictEqual(
        tests.events.map((e: any) => e.type),
        ["registered", "progress", "progress", "progress", "failed"]
      )
      assert.isTrue(tests.events_complete)
      assert.strictEqual(tests.task.progress, "running suites (3/4)")
    } finally {
      second.demo.kill("SIGINT")
    }
    assert.strictEqual((await second.demo.ended).code, 130)
  }, 60_000)
})
