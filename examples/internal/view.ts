/**
 * A terminal view of a background task host, shared by the examples.
 *
 * - `feed(host)` is what the view reads: the host's `watch`, a snapshot of the
 *   registry as of one event `seq`, then exactly the events after it.
 * - `interpret(event)` is the one place that knows the event union: how an
 *   event reads as text, and what it changes in a table row.
 * - `make(options)` renders a feed in one of three modes: `live` (a table
 *   redrawn in place with ANSI cursor movement, for a TTY), `lines` (one plain
 *   line per event, for pipes and CI) or `json` (one JSON line per event, in
 *   the host's snake_case wire form; notices and the summary are JSON lines
 *   too). `summary` renders the final table.
 */
import { Clock, DateTime, Duration, Effect, Fiber, Option, Schedule, Schema, Scope, Stream, SubscriptionRef } from "effect"
import {
  BackgroundTaskEvent,
  type BackgroundTaskHostService,
  SubscriptionEvent,
  BackgroundTaskRecord,
  duration,
  isTerminal,
  type SessionError,
  type SnapshotError,
  type TaskFilter,
  type TaskState
} from "../../src/index.ts"

// -----------------------------------------------------------------------------
// the feed
// -----------------------------------------------------------------------------

/** What a view consumes: the registry as it stands, then every event after it. */
export type FeedItem =
  | { readonly _tag: "Snapshot"; readonly records: ReadonlyArray<BackgroundTaskRecord> }
  | { readonly _tag: "Event"; readonly event: SubscriptionEvent }

/**
 * `watch`es every record, terminal ones included: the snapshot, then exactly
 * the events after it (no gap, no duplicate). The stream ends when the host
 * shuts down, after the shutdown's own events.
 */
export const feed = (
  host: BackgroundTaskHostService,
  filter?: TaskFilter
): Effect.Effect<Stream.Stream<FeedItem>, SnapshotError | SessionError, Scope.Scope> =>
  Effect.gen(function*() {
    const watched = yield* host.watch({ ...filter, includeTerminal: true })
    return Stream.concat(
      Stream.succeed<FeedItem>({ _tag: "Snapshot", records: watched.snapshot }),
      Stream.map(watched.events, (event): FeedItem => ({ _tag: "Event", event }))
    )
  })

// -----------------------------------------------------------------------------
// events: the one place that knows the union
// -----------------------------------------------------------------------------

/** One task as the view shows it: its latest known record and progress message (the record's `progress`). */
export interface Row {
  readonly record: BackgroundTaskRecord
  readonly progress: string | undefined
}

/** How an event reads, and what it does to the row of its task. */
export interface Interpretation {
  readonly text: string
  readonly apply: (row: Row | undefined) => Row | undefined
}

/** A record's summary: its result, or its failure's message, if any. */
export const summaryOf = (record: BackgroundTaskRecord): string =>
  Option.orElse(record.result, () => record.failure).pipe(
    Option.flatMap((outcome) => outcome.summary),
    Option.getOrElse(() => "-")
  )

/** A row for a record: a record carries its latest progress message, so a re-sync loses none. */
const rowOf = (record: BackgroundTaskRecord): Row => ({ record, progress: Option.getOrUndefined(record.progress) })

const put = (record: BackgroundTaskRecord) => (_row: Row | undefined): Row => rowOf(record)

const keep = (row: Row | undefined) => row

/**
 * The event as one line of text (without a prefix) and as a change to its
 * row. Every event that changes a record carries the new record; evicted
 * records stay in the table (it shows the whole run), and a `Lagged` changes
 * no row (this view's buffer is large enough that it does not happen).
 */
export const interpret = (event: SubscriptionEvent): Interpretation =>
  event._tag === "Lagged"
    ? { text: `lagged: ${event.skipped} events skipped`, apply: keep }
    : BackgroundTaskEvent.match(event, {
    Registered: (e) => ({ text: `registered ${e.taskId} (${e.kind}, ${e.sessionId})`, apply: put(e.record) }),
    StateChanged: (e) => ({ text: `state_changed ${e.taskId} -> ${e.state}`, apply: put(e.record) }),
    Progress: (e) => ({ text: `progress ${e.taskId}: ${e.message}`, apply: put(e.record) }),
    Completed: (e) => ({ text: `completed ${e.taskId}: ${summaryOf(e.record)}`, apply: put(e.record) }),
    Failed: (e) => ({ text: `failed ${e.taskId}: ${summaryOf(e.record)}`, apply: put(e.record) }),
    CancelRequested: (e) => ({
      text: `cancel_requested ${e.taskId} (${Option.getOrElse(e.reason, () => "no reason")})`,
      apply: put(e.record)
    }),
    Cancelled: (e) => ({ text: `cancelled ${e.taskId}`, apply: put(e.record) }),
    Transferred: (e) => ({
      text: `transferred ${e.taskId} from ${e.fromSessionId} to ${e.sessionId}`,
      apply: put(e.record)
    }),
    Evicted: (e) => ({ text: `evicted ${e.taskIds.join(", ")} (${e.reason})`, apply: keep })
  })

/** One plain line per event (the quickstart's format). */
export const describeEvent = (event: SubscriptionEvent): string => interpret(event).text

/** The event in the host's wire form: snake_case keys, `null` for None, ISO timestamps. */
export const encodeEvent = (event: SubscriptionEvent): string =>
  JSON.stringify(Schema.encodeSync(SubscriptionEvent)(event))

// -----------------------------------------------------------------------------
// rendering
// -----------------------------------------------------------------------------

/** `live`: a table redrawn in place; `lines`: one line per event; `json`: JSON lines. */
export type Mode = "live" | "lines" | "json"

export interface ViewOptions {
  readonly mode: Mode
  /** ANSI colours (live mode only; off when `NO_COLOR` is set). */
  readonly color: boolean
  /** Where output goes (stdout). */
  readonly write: (text: string) => void
  /** The terminal's width, for live mode (lines longer than it would break the redraw). */
  readonly columns: () => number
  /** The terminal's height, for live mode (a frame taller than it could not be redrawn). */
  readonly rows: () => number
  /** A title for the live view's header. */
  readonly title: string
  /** How often the live view redraws (and the spinner turns). */
  readonly frameInterval: Duration.Input
}

export interface View {
  /** Applies one feed item and prints it (lines, json) or marks the table for a redraw (live). */
  readonly handle: (item: FeedItem) => Effect.Effect<void>
  /** A short status message: in the live header, as a line, or as a `{"type":"notice"}` JSON line. */
  readonly notice: (text: string) => Effect.Effect<void>
  /** Consumes a feed until it ends (live mode also redraws on a timer meanwhile), then draws the last frame. */
  readonly run: (items: Stream.Stream<FeedItem>) => Effect.Effect<void>
  /**
   * Waits until the rows the view has shown satisfy `predicate` (or the feed
   * has ended). Waiting on what was shown, rather than on the host, orders
   * what the caller does next (a `notice`) after the events that led to it.
   */
  readonly until: (predicate: (rows: ReadonlyMap<string, Row>) => boolean) => Effect.Effect<void>
  /** The rows, oldest first. */
  readonly rows: Effect.Effect<ReadonlyArray<Row>>
  /** Prints the summary table (a JSON line in json mode). */
  readonly summary: Effect.Effect<void>
}

/** Reads `NO_COLOR` as https://no-color.org says: present and not empty. */
export const noColor = (env: NodeJS.ProcessEnv): boolean => env.NO_COLOR !== undefined && env.NO_COLOR !== ""

/** Options for the current process: live on a TTY (not `TERM=dumb`), else lines; json when asked. */
export const processOptions = (title: string, json: boolean): ViewOptions => {
  const tty = process.stdout.isTTY === true && process.env.TERM !== "dumb"
  const mode: Mode = json ? "json" : tty ? "live" : "lines"
  return {
    mode,
    color: mode === "live" && !noColor(process.env),
    write: (text) => void process.stdout.write(text),
    columns: () => process.stdout.columns || 100,
    rows: () => process.stdout.rows || 40,
    title,
    frameInterval: "80 millis"
  }
}

export const make = (options: ViewOptions): Effect.Effect<View> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const state = yield* SubscriptionRef.make<State>({
      rows: new Map(),
      events: 0,
      notice: undefined,
      frame: 0,
      drawn: 0,
      ended: false
    })
    const paint = options.color ? colors : plain

    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - startedAt)

    const draw = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const s = yield* SubscriptionRef.get(state)
      const lines = frame(s, now, options, paint)
      // back to the top of the previous frame, then overwrite it line by line
      let out = s.drawn > 0 ? `\x1b[${s.drawn}A\r` : "\x1b[?25l" // hide the cursor while drawing
      for (const line of lines) out += `\x1b[2K${line}\n`
      out += "\x1b[J" // erase what is left below (a shorter frame)
      options.write(out)
      yield* SubscriptionRef.update(state, (st) => ({ ...st, drawn: lines.length, frame: st.frame + 1 }))
    })

    // output first, state second: a caller waiting on the state (`until`) then
    // writes its own lines after this item's line
    const handle = (item: FeedItem): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (item._tag === "Snapshot") {
          if (options.mode === "json" && item.records.length > 0) {
            const encoded = item.records.map((r) => Schema.encodeSync(BackgroundTaskRecord)(r))
            options.write(JSON.stringify({ type: "snapshot", tasks: encoded }) + "\n")
          }
          yield* SubscriptionRef.update(state, (s) => {
            const rows = new Map(s.rows)
            for (const record of item.records) rows.set(record.id, rowOf(record))
            return { ...s, rows }
          })
          return
        }
        const { apply, text } = interpret(item.event)
        if (options.mode === "lines") options.write(`[${seconds(yield* elapsed).padStart(7)}] ${text}\n`)
        else if (options.mode === "json") options.write(encodeEvent(item.event) + "\n")
        yield* SubscriptionRef.update(state, (s) => {
          const rows = new Map(s.rows)
          const taskId = "taskId" in item.event ? item.event.taskId : undefined
          const next = taskId === undefined ? undefined : apply(rows.get(taskId))
          if (taskId !== undefined && next !== undefined) rows.set(taskId, next)
          return { ...s, rows, events: s.events + 1 }
        })
      })

    const notice = (text: string): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (options.mode === "live") yield* SubscriptionRef.update(state, (s) => ({ ...s, notice: text }))
        else if (options.mode === "lines") options.write(`[${seconds(yield* elapsed).padStart(7)}] ${text}\n`)
        else options.write(JSON.stringify({ type: "notice", message: text }) + "\n")
      })

    const consume = (items: Stream.Stream<FeedItem>) =>
      Stream.runForEach(items, handle).pipe(
        Effect.ensuring(SubscriptionRef.update(state, (s) => ({ ...s, ended: true })))
      )

    const run = (items: Stream.Stream<FeedItem>): Effect.Effect<void> =>
      options.mode !== "live"
        ? consume(items)
        : Effect.gen(function*() {
          const ticker = yield* Effect.forkChild(Effect.repeat(draw, Schedule.spaced(options.frameInterval)))
          yield* consume(items)
          yield* Fiber.interrupt(ticker)
          yield* draw
          options.write("\x1b[?25h") // show the cursor again
        }).pipe(Effect.onInterrupt(() => Effect.sync(() => options.write("\x1b[?25h"))))

    const until = (predicate: (rows: ReadonlyMap<string, Row>) => boolean): Effect.Effect<void> =>
      SubscriptionRef.changes(state).pipe(
        Stream.filter((s) => s.ended || predicate(s.rows)),
        Stream.take(1),
        Stream.runDrain
      )

    const rows = Effect.map(SubscriptionRef.get(state), (s) => sortRows(s.rows))

    const summary = Effect.gen(function*() {
      const all = yield* rows
      if (options.mode === "json") {
        const tasks = all.map(({ record }) => ({
          task_id: record.id,
          kind: record.kind,
          session_id: record.scope.sessionId,
          state: record.state,
          duration_ms: Option.getOrNull(Option.map(duration(record), Duration.toMillis)),
          summary: Option.getOrNull(Option.orElse(record.result, () => record.failure).pipe(Option.flatMap((o) => o.summary)))
        }))
        options.write(JSON.stringify({ type: "summary", tasks }) + "\n")
        return
      }
      options.write("\n" + summaryTable(all) + "\n" + totals(all) + "\n")
    })

    return { handle, notice, run, until, rows, summary }
  })

/** The final table: task, kind, session, state, duration, summary. */
export const summaryTable = (rows: ReadonlyArray<Row>): string =>
  table([
    ["task", "kind", "session", "state", "duration", "summary"],
    ...rows.map(({ record }) => [
      record.id,
      record.kind,
      record.scope.sessionId,
      record.state,
      Option.match(duration(record), { onNone: () => "-", onSome: (d) => seconds(Duration.toMillis(d)) }),
      summaryOf(record)
    ])
  ])

/** "9 tasks: 4 completed, 1 failed, 4 cancelled" (and how many are still live, if any). */
export const totals = (rows: ReadonlyArray<Row>): string => {
  const count = (state: TaskState) => rows.filter((row) => row.record.state === state).length
  const live = rows.filter((row) => !isTerminal(row.record.state)).length
  return `${rows.length} tasks: ${count("completed")} completed, ${count("failed")} failed, ${count("cancelled")} cancelled` +
    (live > 0 ? `, ${live} still live` : "")
}

// -----------------------------------------------------------------------------
// internal
// -----------------------------------------------------------------------------

interface State {
  readonly rows: ReadonlyMap<string, Row>
  readonly events: number
  readonly notice: string | undefined
  readonly frame: number
  readonly drawn: number
  /** The feed has ended (the host shut down). */
  readonly ended: boolean
}

const sortRows = (rows: ReadonlyMap<string, Row>): ReadonlyArray<Row> => Array.from(rows.values()) // insertion order = registration order

const seconds = (millis: number): string => `${(millis / 1000).toFixed(2)}s`

const table = (cells: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0)))
  return cells.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n")
}

interface Paint {
  readonly state: (state: TaskState, text: string) => string
  readonly dim: (text: string) => string
  readonly bold: (text: string) => string
}

const sgr = (code: string) => (text: string) => `\x1b[${code}m${text}\x1b[0m`
const plain: Paint = { state: (_, text) => text, dim: (text) => text, bold: (text) => text }
const stateColor: Record<TaskState, string> = {
  pending: "37",
  running: "36",
  waiting: "33",
  cancel_requested: "35",
  completed: "32",
  failed: "31",
  cancelled: "90"
}
const colors: Paint = { state: (state, text) => sgr(stateColor[state])(text), dim: sgr("2"), bold: sgr("1") }

const spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]
const icon: Partial<Record<TaskState, string>> = { completed: "✓", failed: "✗", cancelled: "⊘", waiting: "…" }

/** A bar for progress messages that say "(n/m)"; undefined for others. */
const bar = (message: string | undefined, width = 12): string | undefined => {
  const match = message === undefined ? null : /\((\d+)\/(\d+)\)/.exec(message)
  if (match === null) return undefined
  const total = Number(match[2])
  const done = total === 0 ? width : Math.min(width, Math.round((Number(match[1]) / total) * width))
  return "█".repeat(done) + "░".repeat(width - done)
}

/** One frame of the live view; each line fits the terminal's width. */
const frame = (s: State, now: number, options: ViewOptions, paint: Paint): ReadonlyArray<string> => {
  const all = sortRows(s.rows)
  // at most a screenful: live tasks first, then the most recently finished ones
  const room = Math.max(1, options.rows() - 4)
  const keep = all.length <= room ? new Set(all) : new Set(
    [...all.filter((r) => !isTerminal(r.record.state)), ...all.filter((r) => isTerminal(r.record.state)).reverse()]
      .slice(0, room)
  )
  const rows = all.filter((row) => keep.has(row))
  const hidden = all.length - rows.length
  const spin = spinner[s.frame % spinner.length]!
  const header = [" ", "task", "kind", "session", "state", "time", "progress"]
  const body = rows.map(({ progress, record }) => {
    const end = Option.getOrElse(Option.map(record.completedAt, DateTime.toEpochMillis), () => now)
    const live = !isTerminal(record.state)
    const progressText = live ? [bar(progress), progress].filter((x) => x !== undefined).join(" ") : summaryOf(record)
    return [
      icon[record.state] ?? spin,
      record.id,
      record.kind,
      record.scope.sessionId,
      record.state,
      seconds(end - DateTime.toEpochMillis(record.createdAt)),
      progressText
    ]
  })
  const widths = header.map((_, i) => Math.max(header[i]!.length, ...body.map((row) => row[i]!.length)))
  const width = Math.max(20, options.columns() - 1)
  // pad plain text, cut it to the width, colour it last (escape codes take no columns)
  const line = (cells: ReadonlyArray<string>, style: (i: number, text: string) => string) => {
    let out = ""
    let used = 0
    for (const [i, cell] of cells.entries()) {
      if (used >= width) break
      const text = (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!) + "  ").slice(0, width - used)
      out += style(i, text)
      used += text.length
    }
    return out
  }
  const title = `${options.title} · ${s.events} events` + (s.notice === undefined ? "" : ` · ${s.notice}`)
  return [
    paint.bold(title.slice(0, width)),
    line(header, (_, text) => paint.dim(text)),
    ...body.map((cells, r) =>
      line(cells, (i, text) => (i === 0 || i === 4) ? paint.state(rows[r]!.record.state, text) : text)
    ),
    ...(hidden > 0 ? [paint.dim(`… and ${hidden} finished tasks (see the summary)`.slice(0, width))] : [])
  ]
}
