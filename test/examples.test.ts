/**
 * The examples are programs: run each one as a child process (with the Node
 * that runs vitest, Node 24, which strips types) and check what it prints.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BackgroundTaskEvent } from "../src/index.ts"
import { describeEnd, type Ended, parseTable, printable, runNode, start } from "./utils/child.ts"

/** Every example program: `examples/<name>.ts`. */
const examples = readdirSync(new URL("../examples/", import.meta.url))
  .filter((file) => file.endsWith(".ts"))
  .map((file) => file.slice(0, -".ts".length))
  .sort()

const env = { ...process.env, NO_COLOR: "1" }

/** Runs `examples/<name>.ts args` to its end (killed after `timeoutMs`). */
const runExample = (name: string, args: ReadonlyArray<string> = [], timeoutMs = 20_000): Promise<Ended> =>
  runNode(`examples/${name}.ts`, args, { env, timeoutMs })

/** One run per example without arguments, shared by the tests that only read its output. */
const defaultRuns = new Map<string, Promise<Ended>>()
const runDefault = (name: string): Promise<Ended> => {
  const existing = defaultRuns.get(name)
  if (existing !== undefined) return existing
  const run = runExample(name)
  defaultRuns.set(name, run)
  return run
}

const summaryColumns = ["task", "kind", "session", "state", "duration", "summary"]
/** The agent-session demo's summary table. */
const summaryOf = (run: Ended) => parseTable(run.lines, summaryColumns)
const cells = (rows: ReadonlyArray<Record<string, string>>, ...columns: ReadonlyArray<string>) =>
  rows.map((row) => columns.map((column) => row[column] ?? ""))
/** The lines of the plain (non-TTY) view, without their elapsed-time prefix. */
const eventLines = (run: Ended) =>
  run.lines.flatMap((line) => {
    const match = /^\[\s*\d+\.\d{2}s\] (.*)$/.exec(line)
    return match === null ? [] : [match[1]!]
  })

const describeRun = describeEnd
describe("examples", () => {
  it("Node runs TypeScript examples directly", () => {
    assert.isAtLeast(Number(process.versions.node.split(".")[0]), 22)
    assert.includeMembers(examples, ["agent-session", "cancellation", "quickstart", "session-handoff", "testing"])
  })

  // every example, present or future: it exits by itself, with code 0 and nothing on stderr
  for (const name of examples) {
    it(`${name} exits by itself with code 0`, async () => {
      const run = await runDefault(name)
      assert.strictEqual(run.code, 0, describeRun(run))
      assert.strictEqual(run.stderr, "", describeRun(run))
    }, 30_000)
  }

  it("quickstart runs to completion and reports every task", async () => {
    const run = await runDefault("quickstart")

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
    const rows = parseTable(run.lines, ["id", "kind", "state", "summary"])
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

  it("cancellation shows the three policies, the grace period and cancelManaged", async () => {
    const run = await runDefault("cancellation")
    assert.strictEqual(run.code, 0, describeRun(run))
    const at = (line: string) => {
      const i = run.lines.indexOf(line)
      assert.notStrictEqual(i, -1, `missing line: ${line}\n${describeRun(run)}`)
      return i
    }
    // cooperative: the request is only a request; the task ends itself, with a summary
    at("cooperative: requestCancel returned cancel_requested")
    assert.isBelow(at("[sync-1] saw the request (user pressed stop), flushing writes"), at("cooperative: sync-1 ended cancelled"))
    // a task that ignores it is interrupted when the grace period ends
    assert.isBelow(at("[stubborn-1] interrupted after the grace period"), at("cooperative: stubborn-1 ended cancelled"))
    // abort_local and external: the policy has acted when requestCancel returns
    assert.isBelow(at("[render-1] finalizer: temporary files removed"), at("abort_local: requestCancel returned cancelled"))
    assert.isBelow(at("[build-1] cancel effect: POST /builds/1/abort"), at("external: requestCancel returned cancelled"))
    assert.strictEqual(run.lines.filter((line) => line.startsWith("[build-1] cancel effect")).length, 1)
    at("cancelManaged: watch-1 is cancelled")
    assert.deepStrictEqual(parseTable(run.lines, ["id", "policy", "state", "summary"]), [
      { id: "sync-1", policy: "cooperative", state: "cancelled", summary: "flushed 3 pending writes" },
      // the host records why it cancelled a task: the request's reason, and a missed grace period
      {
        id: "stubborn-1",
        policy: "cooperative",
        state: "cancelled",
        summary: "user pressed stop; did not stop within its 200ms grace period"
      },
      { id: "render-1", policy: "abort_local", state: "cancelled", summary: "output no longer needed" },
      { id: "build-1", policy: "external", state: "cancelled", summary: "pipeline superseded" },
      { id: "watch-1", policy: "cooperative", state: "cancelled", summary: "-" }
    ], describeRun(run))
  }, 30_000)

  it("session-handoff applies each close policy when a session ends", async () => {
    const run = await runDefault("session-handoff")
    assert.strictEqual(run.code, 0, describeRun(run))
    const expected = [
      "session-1 closed: transferred planner-1",
      "session-1 closed: cancelled summary-1",
      "session-1 closed: kept archive-1",
      "session-2 saw: Transferred planner-1 from session-1",
      "session-2 saw: Completed planner-1: finished in session-2",
      "session-1 has: summary-1 cancelled (closePolicy cancel)",
      "session-1 has: archive-1 running (closePolicy keep)",
      "session-2 has: planner-1 completed (closePolicy transfer)"
    ]
    assert.deepStrictEqual(run.lines.filter((line) => line.startsWith("session-")), expected, describeRun(run))
    // cancelling waits for the task's finalizers
    assert.isBelow(run.lines.indexOf("[summary-1] finalizer ran"), run.lines.indexOf(expected[1]!))
    assert.notStrictEqual(run.lines.indexOf("[summary-1] finalizer ran"), -1, describeRun(run))
  }, 30_000)

  it("task-tree cancels a tree deepest first, and a failed parent's children before its failure", async () => {
    const run = await runDefault("task-tree")
    assert.strictEqual(run.code, 0, describeRun(run))
    const at = (line: string) => {
      const i = run.lines.indexOf(line)
      assert.notStrictEqual(i, -1, `missing line: ${line}\n${describeRun(run)}`)
      return i
    }
    // the tree as listTree shows it
    const tree = at("the tree:")
    assert.deepStrictEqual(run.lines.slice(tree + 1, tree + 5), [
      "  research-1 (running)",
      "    search-1 (running)",
      "      watch-1 (running)",
      "    fetch-1 (running)"
    ])
    // every child ends before its parent (siblings in either order)
    assert.isBelow(at("  cancelled watch-1"), at("  cancelled search-1"))
    assert.isBelow(at("  cancelled search-1"), at("  cancelled research-1"))
    assert.isBelow(at("  cancelled fetch-1"), at("  cancelled research-1"))
    assert.isBelow(at("  cancelled draft-1"), at("  failed plan-1"))
    const after = at("after:")
    assert.deepStrictEqual(run.lines.slice(after + 1, after + 7), [
      "  research-1 (cancelled)",
      "    search-1 (cancelled)",
      "      watch-1 (cancelled)",
      "    fetch-1 (cancelled)",
      "  plan-1 (failed)",
      "    draft-1 (cancelled)"
    ])
  }, 30_000)

  it("durable resolves what a killed process left live: crawls re-run once, the rest ended with the reason", async () => {
    const run = await runDefault("durable")
    assert.strictEqual(run.code, 0, describeRun(run))
    assert.include(run.lines, "process 1 was killed with SIGKILL while its tasks ran")
    const started = run.lines.find((line) => line.startsWith("process 2 started:")) ?? ""
    const respawned = /re-spawned ([^;]*);/.exec(started)?.[1]?.split(", ").sort()
    assert.deepStrictEqual(respawned, ["a.example", "b.example"], describeRun(run))
    assert.include(started, "failed monitor; cancelled build")
    const rows = run.lines.filter((line) => line.startsWith("  ")).map((line) => line.trim().split(/\s{2,}|\s(?=attempt)/))
    assert.deepStrictEqual(rows.map((row) => row.join("|")).sort(), [
      "a.example|completed|attempt 1|crawled a.example",
      "b.example|completed|attempt 1|crawled b.example",
      "build|cancelled|attempt 0|host stopped before the task finished",
      "monitor|failed|attempt 0|host stopped before the task finished",
      "quick|completed|attempt 0|done"
    ], describeRun(run))
    // process 1: 5 Registered + quick's Completed; process 2: 1 cancelled + 2 × (StateChanged, Progress)
    // + 1 failed + 2 × (Progress, Completed) from the crawls
    const history = /^events stored: (\d+), replayed from seq 0: (.*)$/.exec(run.lines.find((l) => l.startsWith("events stored")) ?? "")
    assert.isNotNull(history, describeRun(run))
    assert.strictEqual(Number(history![1]), 16)
    assert.strictEqual(history![2]!.split(" ").length, 16, "every stored event is replayed")
  }, 30_000)

  it("testing runs its TestClock tests, each on a fresh host", async () => {
    const run = await runDefault("testing")
    assert.strictEqual(run.code, 0, describeRun(run))
    assert.deepStrictEqual(run.lines.filter((line) => line !== ""), [
      "ok 1 - the heartbeat reports once every 30 seconds",
      "ok 2 - ending a session cancels its tasks and leaves other sessions alone",
      "ok 3 - a task that ignores a cancel request is interrupted after the grace period",
      "3 of 3 tests passed"
    ], describeRun(run))
  }, 30_000)

  describe("agent-session (npm start)", () => {
    it("is what npm start runs", () => {
      const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
      assert.strictEqual(pkg.scripts.start, "node examples/agent-session.ts")
    })

    it("without a TTY prints one plain line per event, then the summary table", async () => {
      const run = await runDefault("agent-session")
      assert.strictEqual(run.code, 0, describeRun(run))
      assert.strictEqual(run.stderr, "", describeRun(run))
      assert.notInclude(run.stdout, "\x1b", "no escape sequences without a TTY")

      // the summary: every task, in registration order, with kind, session, final state and summary
      const rows = summaryOf(run)
      assert.deepStrictEqual(cells(rows, "task", "kind", "session", "state"), [
        ["monitor-1", "monitor", "session-2", "cancelled"],
        ["subagent-1", "subagent", "session-2", "completed"],
        ["subagent-2", "subagent", "session-1", "cancelled"],
        ["observer-1", "observer", "session-2", "cancelled"],
        ["tests-1", "other", "session-1", "failed"],
        ["job-1.1", "other", "session-1", "completed"],
        ["job-1.2", "other", "session-1", "completed"],
        ["job-2.1", "other", "session-2", "completed"],
        ["job-2.2", "other", "session-2", "completed"]
      ], describeRun(run))
      assert.deepStrictEqual(cells(rows.slice(1), "summary"), [
        ["plan ready: 4 steps"],
        // the host records why it cancelled: the session's close, the request's reason
        ["session closed"],
        ["session-2 is closing"],
        ["2 of 48 tests failed"],
        ["indexed 300 files"],
        ["indexed 400 files"],
        ["indexed 300 files"],
        ["indexed 400 files"]
      ])
      assert.match(rows[0]!.summary!, /^stopped after \d+ checks$/) // the cooperative monitor ended itself
      for (const row of rows) assert.match(row.duration!, /^\d+\.\d{2}s$/)
      assert.include(run.lines, "9 tasks: 5 completed, 1 failed, 3 cancelled")

      // the story, as events: the first session compacts into the second...
      const events = eventLines(run)
      const at = (line: string) => {
        const i = events.indexOf(line)
        assert.notStrictEqual(i, -1, `missing line: ${line}\n${describeRun(run)}`)
        return i
      }
      const compacted = at(
        "session-1 compacted into session-2: handed over monitor-1, subagent-1, observer-1, cancelled subagent-2"
      )
      // ...after its turn's work ended (one task failed)...
      assert.isBelow(at("failed tests-1: 2 of 48 tests failed"), compacted)
      assert.isBelow(at("completed job-1.2: indexed 400 files"), compacted)
      // ...closing it: its `transfer` tasks go to the successor (fibers keep running), its `cancel` task is cancelled
      assert.isBelow(at("transferred monitor-1 from session-1 to session-2"), compacted)
      assert.isBelow(at("transferred subagent-1 from session-1 to session-2"), compacted)
      assert.isBelow(at("transferred observer-1 from session-1 to session-2"), compacted)
      assert.isBelow(at("cancelled subagent-2"), compacted)
      assert.include(events, "progress observer-1: summarised 1 turns of session-1")
      assert.isTrue(events.some((line) => /^progress observer-1: summarised \d+ turns of session-2$/.test(line)))
      // the external subagent waited for its parent session, and got its answer from the successor
      assert.isBelow(at("state_changed subagent-1 -> waiting"), compacted)
      assert.isBelow(compacted, at("progress subagent-1: got an answer from session-2 (5/6)"))
      // cooperative cancellation: requested, then the task ends itself
      assert.isBelow(at("cancel_requested monitor-1 (session-2 is closing)"), at("cancelled monitor-1"))
      // interruption (abort_local): cancelled without ending itself (the reason is its summary), nothing after
      assert.isBelow(at("cancel_requested observer-1 (session-2 is closing)"), at("cancelled observer-1"))
      assert.isFalse(events.slice(at("cancelled observer-1")).some((line) => line.startsWith("progress observer-1")))
      assert.strictEqual(rows[3]!.summary, "session-2 is closing")
      assert.isBelow(at("cancelled observer-1"), at("session-2 closed"))
      // exactly one terminal event per task
      const terminal = events.filter((line) => /^(completed|failed|cancelled) /.test(line))
      assert.strictEqual(terminal.length, 9, describeRun(run))
    }, 30_000)

    it("--sessions, --tasks and --speed change the run", async () => {
      const three = await runExample("agent-session", ["--sessions", "3", "--tasks", "1", "--speed", "5"])
      assert.strictEqual(three.code, 0, describeRun(three))
      assert.deepStrictEqual(cells(summaryOf(three), "task", "session", "state"), [
        ["monitor-1", "session-3", "cancelled"],
        ["subagent-1", "session-3", "completed"],
        ["subagent-2", "session-1", "cancelled"],
        ["observer-1", "session-3", "cancelled"],
        ["tests-1", "session-1", "failed"],
        ["job-1.1", "session-1", "completed"],
        ["job-2.1", "session-2", "completed"],
        ["job-3.1", "session-3", "completed"]
      ], describeRun(three))
      const events = eventLines(three)
      assert.include(events, "transferred monitor-1 from session-2 to session-3")
      assert.include(events, "session-2 compacted into session-3: handed over monitor-1, subagent-1, observer-1, cancelled nothing")

      // one session: nothing is handed over; the session's end cancels the waiting subagent
      const one = await runExample("agent-session", ["--sessions", "1", "--tasks", "0", "--speed", "5"])
      assert.strictEqual(one.code, 0, describeRun(one))
      assert.deepStrictEqual(cells(summaryOf(one), "task", "session", "state"), [
        ["monitor-1", "session-1", "cancelled"],
        ["subagent-1", "session-1", "completed"],
        ["subagent-2", "session-1", "cancelled"],
        ["observer-1", "session-1", "cancelled"],
        ["tests-1", "session-1", "failed"]
      ], describeRun(one))
      assert.isFalse(eventLines(one).some((line) => line.startsWith("transferred ")))
      assert.include(eventLines(one), "session-1 closed; cancelled subagent-2")
    }, 30_000)

    it("--json prints every event in the wire form, then a summary line", async () => {
      const run = await runExample("agent-session", ["--json", "--speed", "5"])
      assert.strictEqual(run.code, 0, describeRun(run))
      assert.strictEqual(run.stderr, "", describeRun(run))
      const lines = run.lines.filter((line) => line !== "")
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>) // every line is JSON
      const events = parsed.filter((line) => "task_id" in line)
      const last = parsed.at(-1)!
      const notices = parsed.filter((line) => line.type === "notice").map((line) => line.message)
      assert.deepStrictEqual(notices, [
        "session-1 compacting",
        "session-1 compacted into session-2: handed over monitor-1, subagent-1, observer-1, cancelled subagent-2",
        "session-2 closed"
      ])
      assert.strictEqual(events.length + notices.length + 1, parsed.length, "nothing else")
      // snake_case wire form; each one decodes back into an event
      for (const event of events) {
        assert.containsAllKeys(event, ["type", "task_id", "session_id", "kind"])
        Schema.decodeUnknownSync(BackgroundTaskEvent)(event)
      }
      const types = new Set(events.map((event) => event.type))
      for (const type of ["registered", "state_changed", "progress", "completed", "failed", "cancel_requested", "cancelled", "transferred"]) {
        assert.isTrue(types.has(type), `no ${type} event\n${describeRun(run)}`)
      }
      const transferred = events.find((event) => event.type === "transferred" && event.task_id === "monitor-1")
      assert.strictEqual(transferred?.from_session_id, "session-1")
      // the summary as one JSON line
      assert.strictEqual(last.type, "summary")
      const tasks = last.tasks as ReadonlyArray<Record<string, unknown>>
      assert.deepStrictEqual(tasks.map((t) => [t.task_id, t.session_id, t.state]).slice(0, 5), [
        ["monitor-1", "session-2", "cancelled"],
        ["subagent-1", "session-2", "completed"],
        ["subagent-2", "session-1", "cancelled"],
        ["observer-1", "session-2", "cancelled"],
        ["tests-1", "session-1", "failed"]
      ])
      assert.strictEqual(tasks[4]!.summary, "2 of 48 tests failed")
      for (const task of tasks) assert.isAtLeast(task.duration_ms as number, 0)
    }, 30_000)

    it("--help describes the flags", async () => {
      const run = await runExample("agent-session", ["--help"])
      assert.strictEqual(run.code, 0, describeRun(run))
      for (const flag of ["--sessions", "--tasks", "--speed", "--json", "--store"]) assert.include(run.stdout, flag)
      assert.include(run.stdout, "Ctrl-C")
    }, 30_000)

    for (
      const [args, message] of [
        [["--sessions", "0"], "--sessions must be between 1 and 9, got 0"],
        [["--tasks", "21"], "--tasks must be between 0 and 20, got 21"],
        [["--speed", "0"], "--speed must be between 0.01 and 100, got 0"],
        [["--speed", "fast"], "Invalid value for flag --speed"],
        [["--sessions", "two"], "Invalid value for flag --sessions"],
        [["--store", "mysql:x.db"], "--store must be memory or sqlite:<file>, got mysql:x.db"],
        [["--store", "sqlite:"], "--store must be memory or sqlite:<file>, got sqlite:"]
      ] as const
    ) {
      it(`rejects ${args.join(" ")} with a clear message and exit code 1`, async () => {
        const run = await runExample("agent-session", args)
        assert.strictEqual(run.code, 1, describeRun(run))
        assert.include(run.stderr, message, describeRun(run))
        assert.notInclude(run.stdout, "registered", "nothing ran")
      }, 30_000)
    }

    describe("--store sqlite:<file>", () => {
      const dir = mkdtempSync(join(tmpdir(), "eth-demo-"))
      afterAll(() => rmSync(dir, { recursive: true, force: true }))
      const noticeOf = (run: Ended) => eventLines(run).find((line) => line.startsWith("store sqlite:"))

      it("keeps the records: a second run starts with the first one's", async () => {
        const store = `sqlite:${join(dir, "twice.db")}`
        const first = await runExample("agent-session", ["--store", store, "--speed", "5"])
        assert.strictEqual(first.code, 0, describeRun(first))
        assert.strictEqual(
          noticeOf(first),
          `store ${store}: 0 records and 0 events from earlier runs; ` +
            "left live by a run that did not finish: 0 failed, 0 cancelled, 0 re-spawned"
        )
        const firstRows = summaryOf(first)
        const second = await runExample("agent-session", ["--store", store, "--speed", "5"])
        assert.strictEqual(second.code, 0, describeRun(second))
        const notice = noticeOf(second) ?? ""
        const found = /^store .*: (\d+) records and (\d+) events from earlier runs; left live by a run that did not finish: 0 failed, 0 cancelled, 0 re-spawned$/
          .exec(notice)
        assert.isNotNull(found, describeRun(second))
        assert.strictEqual(Number(found![1]), firstRows.length, "every record of the first run")
        assert.isAbove(Number(found![2]), firstRows.length)
        // the same tasks, ending the same way
        assert.deepStrictEqual(cells(summaryOf(second), "task", "state"), cells(firstRows, "task", "state"))
      }, 60_000)

      it("resolves what a run killed part-way left live, before the next run starts", async () => {
        const store = `sqlite:${join(dir, "killed.db")}`
        const running = start(process.execPath, ["examples/agent-session.ts", "--store", store, "--speed", "0.05"], {
          env
        })
        await running.waitFor("every task of session 1", (out) => out.includes("progress job-1.2: indexing shard (1/4)"))
        running.kill("SIGKILL")
        const killed = await running.ended
        assert.strictEqual(killed.signal, "SIGKILL")
        // the next run waits for the dead run's lease (5 s) to expire
        const next = await runExample("agent-session", ["--store", store, "--speed", "5"], 40_000)
        assert.strictEqual(next.code, 0, describeRun(next))
        // the monitor, the observer, the test run and the two jobs were
        // managed: failed; the two subagents were external: cancelled
        assert.match(
          noticeOf(next) ?? "",
          /: 7 records and \d+ events from earlier runs; left live by a run that did not finish: 5 failed, 2 cancelled, 0 re-spawned$/,
          describeRun(next)
        )
      }, 60_000)
    })

    it("SIGINT cancels the live tasks, prints the summary and exits with code 130", async () => {
      // slowed down so the run is far from its end when the signal arrives
      const running = start(process.execPath, ["examples/agent-session.ts", "--speed", "0.02"], { env })
      await running.waitFor("the first progress line", (out) => out.includes("progress job-1.2: indexing shard (1/4)"))
      running.kill("SIGINT")
      const run = await running.ended
      assert.strictEqual(run.code, 130, describeRun(run))
      assert.strictEqual(run.signal, null, "it exits by itself, not by the signal")
      const events = eventLines(run)
      assert.include(events, "interrupted: cancelling live tasks", describeRun(run))
      const rows = summaryOf(run)
      assert.deepStrictEqual(cells(rows, "task", "state"), [
        ["monitor-1", "cancelled"],
        ["subagent-1", "cancelled"],
        ["subagent-2", "cancelled"],
        ["observer-1", "cancelled"],
        ["tests-1", "cancelled"],
        ["job-1.1", "cancelled"],
        ["job-1.2", "cancelled"]
      ], describeRun(run))
      assert.include(run.lines, "7 tasks: 0 completed, 0 failed, 7 cancelled")
      // one terminal event per task, each after the interruption notice
      const notice = events.indexOf("interrupted: cancelling live tasks")
      const cancelled = events.flatMap((line, i) => line.startsWith("cancelled ") ? [i] : [])
      assert.strictEqual(cancelled.length, 7, describeRun(run))
      for (const i of cancelled) assert.isAbove(i, notice)
      assert.notInclude(printable(run.stdout), "^[", "no escape sequences without a TTY")
    }, 30_000)
  })
})
