/**
 * The examples are programs: run each one as a child process (with the Node
 * that runs vitest, Node 24, which strips types) and check what it prints.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

/** Every example program: `examples/<name>.ts`. */
const examples = readdirSync(new URL("../examples/", import.meta.url))
  .filter((file) => file.endsWith(".ts"))
  .map((file) => file.slice(0, -".ts".length))
  .sort()

interface ExampleRun {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly lines: ReadonlyArray<string>
}

/** Runs `examples/<name>.ts` and collects its output; it is killed after `timeoutMs`. */
const runExample = (name: string, timeoutMs = 10_000): Promise<ExampleRun> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [`examples/${name}.ts`],
      { cwd: root, timeout: timeoutMs, killSignal: "SIGKILL", env: { ...process.env, NO_COLOR: "1" } },
      (error, stdout, stderr) => {
        // `error` is set for a non-zero exit or a timeout: report it through code/signal
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
        const signal = error === null ? null : (error.signal ?? null)
        resolve({ code, signal, stdout, stderr, lines: stdout.split("\n").map((line) => line.trimEnd()) })
      }
    )
  })

/** The rows of the first table whose header starts with `id`, as objects keyed by the header. */
const parseTable = (lines: ReadonlyArray<string>): Array<Record<string, string>> => {
  const start = lines.findIndex((line) => /^id\s+kind\s+state\s+summary$/.test(line))
  if (start === -1) return []
  const header = lines[start]!.split(/\s{2,}/)
  const rows: Array<Record<string, string>> = []
  for (const line of lines.slice(start + 1)) {
    if (line === "") break
    const cells = line.split(/\s{2,}/)
    rows.push(Object.fromEntries(header.map((column, i) => [column, cells[i] ?? ""])))
  }
  return rows
}

const describeRun = (run: ExampleRun) =>
  `exit code ${run.code}, signal ${run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`

describe("examples", () => {
  it("Node runs TypeScript examples directly", () => {
    assert.isAtLeast(Number(process.versions.node.split(".")[0]), 22)
    assert.include(examples, "quickstart")
  })

  // every example, present or future: it exits by itself, with code 0 and nothing on stderr
  for (const name of examples) {
    it(`${name} exits by itself with code 0`, async () => {
      const run = await runExample(name)
      assert.strictEqual(run.code, 0, describeRun(run))
      assert.strictEqual(run.stderr, "", describeRun(run))
    }, 15_000)
  }

  it("quickstart runs to completion and reports every task", async () => {
    const run = await runExample("quickstart")

    assert.strictEqual(run.code, 0, describeRun(run))
    assert.strictEqual(run.stderr, "", describeRun(run))

    // the event lines, one per event
    const expectedEvents = [
      "[event] registered monitor-1 (monitor, session-1)",
      "[event] registered subagent-1 (subagent, session-1)",
      "[event] registered subagent-2 (subagent, session-1)",
      "[event] registered observer-1 (observer, session-1)",
      "[event] registered build-1 (other, session-1)",
      "[event] progress monitor-1: check 1: disk ok",
      "[event] progress subagent-1: reading 12 files",
      "[event] completed subagent-1: 3 files need attention",
      "[event] failed subagent-2: model quota exceeded",
      "[event] cancel_requested monitor-1 (user closed the panel)",
      "[event] cancel_requested build-1 (pipeline superseded)",
      "[event] cancelled monitor-1",
      "[event] cancelled observer-1",
      "[event] cancelled build-1"
    ]
    for (const line of expectedEvents) assert.include(run.lines, line, describeRun(run))
    // exactly one terminal event per task
    const terminal = run.lines.filter((line) => /^\[event\] (completed|failed|cancelled) /.test(line))
    assert.strictEqual(terminal.length, 5, describeRun(run))

    // a request comes before the cancellation it causes; cleanup before its event
    const at = (line: string) => run.lines.indexOf(line)
    assert.isBelow(at("[event] cancel_requested monitor-1 (user closed the panel)"), at("[event] cancelled monitor-1"))
    assert.isBelow(at("[event] cancel_requested build-1 (pipeline superseded)"), at("[event] cancelled build-1"))
    assert.isBelow(at("[build-1] external cancel effect ran"), at("[event] cancelled build-1"))
    assert.isBelow(at("[observer-1] finalizer ran"), at("[event] cancelled observer-1"))

    // the summary table: every task, oldest first, with its final state and summary
    const rows = parseTable(run.lines)
    assert.deepStrictEqual(rows.map((row) => [row.id, row.kind, row.state]), [
      ["monitor-1", "monitor", "cancelled"],
      ["subagent-1", "subagent", "completed"],
      ["subagent-2", "subagent", "failed"],
      ["observer-1", "observer", "cancelled"],
      ["build-1", "other", "cancelled"]
    ], describeRun(run))
    assert.match(rows[0]!.summary!, /^stopped after \d+ checks$/)
    assert.strictEqual(rows[1]!.summary, "3 files need attention")
    assert.strictEqual(rows[2]!.summary, "model quota exceeded")
    assert.strictEqual(rows[3]!.summary, "-")
    // a task the host cancels for a reason keeps the reason as its summary
    assert.strictEqual(rows[4]!.summary, "pipeline superseded")
  }, 15_000)
})
