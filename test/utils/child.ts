/**
 * Test helpers for programs run as child processes (the examples): start one,
 * wait for a specific piece of its output (never for a length of time), send
 * it input or a signal, and collect how it ended. Every wait is bounded by a
 * timeout that fails the test with the output seen so far.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The repository's root. */
export const root = fileURLToPath(new URL("../..", import.meta.url))

export interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** stdout split into lines, `\r` and trailing blanks removed. */
  readonly lines: ReadonlyArray<string>
}

export interface Running {
  /** Everything written to stdout so far. */
  readonly stdout: () => string
  /** Resolves once stdout satisfies `test`; rejects if the process ends first or after `timeoutMs`. */
  readonly waitFor: (what: string, test: (stdout: string) => boolean, timeoutMs?: number) => Promise<void>
  readonly write: (text: string) => void
  readonly kill: (signal: NodeJS.Signals) => void
  /** How it ended; it is killed (SIGKILL) after `timeoutMs`, and then `signal` says so. */
  readonly ended: Promise<Ended>
}

export interface StartOptions {
  readonly env?: NodeJS.ProcessEnv
  readonly timeoutMs?: number
}

/** Starts `command args` in the repository's root with piped stdio. */
export const start = (command: string, args: ReadonlyArray<string>, options: StartOptions = {}): Running => {
  const child = spawn(command, args, {
    cwd: root,
    env: options.env ?? process.env,
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  let exited = false
  const watchers = new Set<() => void>()
  const notify = () => watchers.forEach((watcher) => watcher())
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8")
    notify()
  })
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8")
  })
  const killer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000)
  const ended = new Promise<Ended>((resolve) => {
    child.on("close", (code, signal) => {
      exited = true
      clearTimeout(killer)
      notify()
      resolve({ code, signal, stdout, stderr, lines: toLines(stdout) })
    })
  })
  const describe = () => `--- stdout so far\n${printable(stdout)}\n--- stderr so far\n${stderr}`
  const waitFor = (what: string, test: (stdout: string) => boolean, timeoutMs = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (test(stdout)) {
          done()
          resolve()
        } else if (exited) {
          done()
          reject(new Error(`the process ended before ${what}\n${describe()}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out waiting for ${what}\n${describe()}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        watchers.delete(check)
      }
      watchers.add(check)
      check()
    })
  return {
    stdout: () => stdout,
    waitFor,
    write: (text) => void child.stdin.write(text),
    kill: (signal) => void child.kill(signal),
    ended
  }
}

/** Runs `node <script> args` (the Node that runs vitest, which strips types) to its end. */
export const runNode = (script: string, args: ReadonlyArray<string> = [], options: StartOptions = {}): Promise<Ended> => {
  return start(process.execPath, [script, ...args], options).ended
}

export const toLines = (text: string): ReadonlyArray<string> =>
  text.split("\n").map((line) => line.replace(/\r$/, "").trimEnd())

/** Output with escape characters made visible, for failure messages. */
export const printable = (text: string): string => text.replaceAll("\x1b", "^[")

export const describeEnd = (end: Ended): string =>
  `exit code ${end.code}, signal ${end.signal}\n--- stdout\n${printable(end.stdout)}\n--- stderr\n${end.stderr}`

/**
 * The rows of the first table whose header is exactly `columns` (separated by
 * two or more spaces), as objects keyed by column; the table ends at a blank line
 * or at a line that does not have as many cells.
 */
export const parseTable = (lines: ReadonlyArray<string>, columns: ReadonlyArray<string>) => {
  const header = new RegExp(`^${columns.join("\\s{2,}")}$`)
  const start = lines.findIndex((line) => header.test(line))
  if (start === -1) return []
  const rows: Array<Record<string, string>> = []
  for (const line of lines.slice(start + 1)) {
    const cells = line.split(/\s{2,}/)
    if (line === "" || cells.length < columns.length - 1) break
    rows.push(Object.fromEntries(columns.map((column, i) => [column, cells[i] ?? ""])))
  }
  return rows
}
