/**
 * `npm start` in a real terminal: the demo runs inside a pseudo-terminal made
 * by util-linux `script` (Debian's bsdutils, an Essential package, so present
 * on every Debian/Ubuntu machine and CI image; no npm native module needed).
 * `script -e` returns the program's exit code; what we write to its stdin
 * reaches the pty, so "\x03" is a real Ctrl-C: the terminal's line discipline
 * turns it into SIGINT for the program.
 *
 * Every wait is for a specific output, bounded by a timeout; nothing sleeps.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { describeEnd, type Ended, parseTable, printable, type Running, start, toLines } from "./utils/child.ts"

const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`

/** Runs the demo in a 120×40 pseudo-terminal. */
const inTerminal = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Running => {
  const probe = spawnSync("script", ["--version"])
  assert.isUndefined(probe.error, "these tests need util-linux `script` (Debian package bsdutils)")
  const program = [process.execPath, "examples/agent-session.ts", ...args].map(quote).join(" ")
  const base: NodeJS.ProcessEnv = { ...process.env, TERM: "xterm-256color" }
  delete base.NO_COLOR
  return start("script", ["-q", "-e", "-c", `stty cols 120 rows 40; exec ${program}`, "/dev/null"], {
    env: { ...base, ...env },
    timeoutMs: 60_000
  })
}

const cursorUp = /\x1b\[\d+A/g
const colour = /\x1b\[3\dm/
const stripAnsi = (text: string) => text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
const redraws = (out: string) => out.match(cursorUp)?.length ?? 0

const summaryColumns = ["task", "kind", "session", "state", "duration", "summary"]
const summary = (end: Ended) => parseTable(toLines(stripAnsi(end.stdout)), summaryColumns)

describe("agent-session in a terminal", () => {
  it("redraws a live table in place, then prints the summary", async () => {
    const running = inTerminal(["--speed", "4"])
    // the live view, redrawn: the cursor goes back up over the previous frame
    await running.waitFor("a redrawn frame with the monitor's row", (out) =>
      redraws(out) >= 2 && /⠋|⠙|⠹|⠸|⠼|⠴|⠦|⠧|⠇|⠏/.test(out) && stripAnsi(out).includes("monitor-1   monitor"))
    const end = await running.ended
    assert.strictEqual(end.code, 0, describeEnd(end))
    assert.isAbove(redraws(end.stdout), 2, "the table is redrawn, not appended")
    assert.match(end.stdout, colour, "states are coloured")
    assert.include(end.stdout, "\x1b[?25l", "the cursor is hidden while drawing...")
    assert.include(end.stdout, "\x1b[?25h", "...and shown again")
    // a progress bar for "(n/m)" progress messages
    assert.match(stripAnsi(end.stdout), /█+░* indexing shard \(\d\/\d\)/)
    // no plain event lines in the live view
    assert.notMatch(stripAnsi(end.stdout), /^\[\s*\d+\.\d{2}s\] /m)
    const rows = summary(end)
    assert.deepStrictEqual(rows.map((row) => [row.task, row.session, row.state]), [
      ["monitor-1", "session-2", "cancelled"],
      ["subagent-1", "session-2", "completed"],
      ["subagent-2", "session-1", "cancelled"],
      ["observer-1", "session-2", "cancelled"],
      ["tests-1", "session-1", "failed"],
      ["job-1.1", "session-1", "completed"],
      ["job-1.2", "session-1", "completed"],
      ["job-2.1", "session-2", "completed"],
      ["job-2.2", "session-2", "completed"]
    ], describeEnd(end))
  }, 60_000)

  it("respects NO_COLOR: no colours, still redrawn in place", async () => {
    const end = await inTerminal(["--speed", "4", "--sessions", "1", "--tasks", "0"], { NO_COLOR: "1" }).ended
    assert.strictEqual(end.code, 0, describeEnd(end))
    assert.isAbove(redraws(end.stdout), 1, describeEnd(end))
    assert.notMatch(end.stdout, colour, describeEnd(end))
    assert.strictEqual(summary(end).length, 5, describeEnd(end))
  }, 60_000)

  it("Ctrl-C cancels the live tasks, prints the summary and exits with code 130", async () => {
    // slowed down so that the run is far from its end when Ctrl-C arrives
    const running = inTerminal(["--speed", "0.02"])
    await running.waitFor("two frames showing the tasks", (out) =>
      redraws(out) >= 2 && stripAnsi(out).includes("job-1.2     other     session-1  running"))
    running.write("\x03") // Ctrl-C, through the terminal
    const end = await running.ended
    assert.strictEqual(end.code, 130, describeEnd(end))
    const text = stripAnsi(end.stdout)
    assert.include(text, "interrupted: cancelling live tasks", "the last frame says why")
    assert.include(end.stdout, "\x1b[?25h", "the cursor is shown again")
    const rows = summary(end)
    assert.deepStrictEqual(rows.map((row) => [row.task, row.state]), [
      ["monitor-1", "cancelled"],
      ["subagent-1", "cancelled"],
      ["subagent-2", "cancelled"],
      ["observer-1", "cancelled"],
      ["tests-1", "cancelled"],
      ["job-1.1", "cancelled"],
      ["job-1.2", "cancelled"]
    ], `${describeEnd(end)}\n${printable(text)}`)
    assert.include(toLines(text), "7 tasks: 0 completed, 0 failed, 7 cancelled")
  }, 60_000)
})
