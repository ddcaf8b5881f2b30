/**
 * The crash test (docs/contract.md §9.3): a child process (`test/fixtures/crash-child.ts`)
 * runs a host on a durable store and spawns the 1,000 tasks of
 * `test/fixtures/crash-plan.ts`; it is killed with SIGKILL part-way, while
 * still spawning. A new host on the same database (here, in the test
 * process) must then see every task the child reported, none left live, each
 * resolved by the recovery rule, no duplicate id and no lost event `seq`.
 * Once on a SQLite file, once on PostgreSQL.
 *
 * The child's lease (1 second) must expire before the new host gets the
 * store, so these tests use the live clock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, Schema, Scope, Stream } from "effect"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  BackgroundTaskEvent,
  BackgroundTaskHost,
  BackgroundTaskRecord,
  isTerminal,
  type RecoveryHandler,
  TaskStore,
  TaskView
} from "../src/index.ts"
import * as NodeSqliteClient from "../src/NodeSqliteClient.ts"
import { type ChildLine, killAfter, type PlannedTask, parseLine, planned, totalTasks } from "./fixtures/crash-plan.ts"
import { root } from "./utils/child.ts"
import { describePg, PgTestDatabase, settings } from "./utils/postgres.ts"
import { taskRows } from "./utils/store.ts"

const childScript = fileURLToPath(new URL("./fixtures/crash-child.ts", import.meta.url))

/** The recovery rule's summary for tasks it does not re-run. */
const stoppedReason = "host stopped before the task finished"

// -----------------------------------------------------------------------------
// the child
// -----------------------------------------------------------------------------

interface ChildRun {
  /** Every protocol line the child printed before it died, in order. */
  readonly lines: ReadonlyArray<ChildLine>
  /** The ids of its `spawned` lines. */
  readonly spawned: ReadonlyArray<string>
  /** How many `spawned` lines the test had read when it sent SIGKILL. */
  readonly spawnedAtKill: number
}

/** A child that has been started: its outcome, and a way to stop it whatever happens. */
interface Started {
  readonly outcome: Promise<{
    readonly lines: ReadonlyArray<ChildLine>
    readonly garbage: ReadonlyArray<string>
    readonly spawnedAtKill: number | undefined
    readonly timedOut: boolean
    readonly code: number | null
    readonly signal: NodeJS.Signals | null
    readonly stderr: string
  }>
  /** SIGKILL unless it has exited already; resolves once it has. */
  readonly stop: () => Promise<void>
}

/**
 * Starts the child on `target` and reads its stdout line by line (a line can
 * arrive in pieces, several in one chunk); it sends SIGKILL from the very
 * handler that reads the `killAfter`-th `spawned` line.
 */
const startChild = (target: string, env: NodeJS.ProcessEnv, timeoutMs: number): Started => {
  const child = spawn(process.execPath, [childScript, target], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<ChildLine> = []
  const garbage: Array<string> = []
  let pending = ""
  let stderr = ""
  let spawned = 0
  let spawnedAtKill: number | undefined
  let timedOut = false
  const running = () => child.exitCode === null && child.signalCode === null
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal }))
    child.once("error", (error) => {
      stderr += `could not run the child: ${error.message}\n`
      resolve({ code: null, signal: null })
    })
  })
  const timer = setTimeout(() => {
    timedOut = true
    child.kill("SIGKILL")
  }, timeoutMs)
  child.stdout.setEncoding("utf8")
  child.stdout.on("data", (chunk: string) => {
    pending += chunk
    for (let end = pending.indexOf("\n"); end !== -1; end = pending.indexOf("\n")) {
      const text = pending.slice(0, end)
      pending = pending.slice(end + 1)
      const line = parseLine(text)
      if (line === undefined) {
        garbage.push(text)
        continue
      }
      lines.push(line)
      if (line._tag === "Spawned" && ++spawned >= killAfter && spawnedAtKill === undefined) {
        spawnedAtKill = spawned
        child.kill("SIGKILL")
      }
    }
  })
  child.stderr.setEncoding("utf8")
  child.stderr.on("data", (chunk: string) => {
    stderr += chunk
  })
  const outcome = closed.then(({ code, signal }) => {
    clearTimeout(timer)
    // a line is written in one write of far less than PIPE_BUF bytes: none is cut by the kill
    if (pending !== "") garbage.push(pending)
    return { lines, garbage, spawnedAtKill, timedOut, code, signal, stderr }
  })
  return {
    outcome,
    stop: () => {
      if (running()) child.kill("SIGKILL")
      return outcome.then(() => undefined)
    }
  }
}

/**
 * Runs the child until it has reported `killAfter` spawns, kills it with
 * SIGKILL and waits until it has died. The child is killed when the scope
 * closes, whatever happened.
 */
const runChildAndKill = (target: string, env: NodeJS.ProcessEnv) =>
  Effect.gen(function*() {
    const started = yield* Effect.acquireRelease(
      Effect.sync(() => startChild(target, env, 30_000)),
      (started) => Effect.promise(() => started.stop())
    )
    const end = yield* Effect.promise(() => started.outcome)
    const explain = () =>
      `exit code ${end.code}, signal ${end.signal}, ${end.lines.length} lines` +
      (end.timedOut ? ", killed after 30 s without reaching the threshold" : "") +
      `\n--- last lines\n${end.lines.slice(-5).map((line) => JSON.stringify(line)).join("\n")}` +
      `\n--- stderr\n${end.stderr}`
    assert.isDefined(end.spawnedAtKill, `the child never reported ${killAfter} spawns: ${explain()}`)
    assert.isFalse(end.timedOut, explain())
    assert.strictEqual(end.signal, "SIGKILL", explain())
    assert.deepStrictEqual(end.garbage, [], `lines outside the protocol: ${explain()}`)
    assert.deepStrictEqual(end.lines[0], { _tag: "Ready" }, explain())
    // killed part-way: while it was still spawning
    assert.isFalse(end.lines.some((line) => line._tag === "Done"), `the child finished before the kill: ${explain()}`)
    const spawned = end.lines.flatMap((line) => line._tag === "Spawned" ? [line.id] : [])
    assert.isAtLeast(spawned.length, killAfter)
    assert.isBelow(spawned.length, totalTasks)
    return { lines: end.lines, spawned, spawnedAtKill: end.spawnedAtKill! } satisfies ChildRun
  })

// -----------------------------------------------------------------------------
// the store's tables, read directly
// -----------------------------------------------------------------------------

const decodeStoredRecord = Schema.decodeUnknownEffect(BackgroundTaskRecord)
const decodeEvent = Schema.decodeUnknownEffect(Schema.fromJsonString(BackgroundTaskEvent))
const encodeRecord = Schema.encodeSync(BackgroundTaskRecord)

/** A record as plain JSON, for comparisons. */
const wire = (record: BackgroundTaskRecord) => encodeRecord(record)

type Owner = "host" | "external" | "caller"

interface StoredTask {
  readonly owner: Owner
  readonly order: number
  readonly record: BackgroundTaskRecord
}

interface StoredEvent {
  readonly seq: number
  /** The row's `event` column as stored. */
  readonly text: string
  readonly event: BackgroundTaskEvent
}

/** Every row of `task_host_tasks`, decoded; a row that does not decode, or contradicts its columns, fails the test. */
const readTasks = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const rows = yield* taskRows(sql)
    const tasks: Array<StoredTask> = []
    for (const row of rows) {
      const record = yield* decodeStoredRecord(row.record).pipe(
        Effect.mapError((error) => new Error(`task row ${row.task_key} does not decode: ${error.message}`))
      )
      const where = `task row ${row.task_key}`
      assert.strictEqual(record.id, row.task_id, where)
      assert.strictEqual(record.scope.sessionId, row.session_id, where)
      assert.strictEqual(record.state, row.state, where)
      assert.include(["host", "external", "caller"], row.owner, where)
      tasks.push({ owner: row.owner as Owner, order: row.ord, record })
    }
    return tasks
  })

/** Every row of `task_host_events` in `seq` order, decoded; a row that does not decode, or contradicts its columns, fails the test. */
const readEvents = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const rows = yield* sql<{
      readonly seq: unknown
      readonly session_id: string
      readonly task_id: string | null
      readonly tag: string
      readonly event: string
    }>`SELECT seq, session_id, task_id, tag, event FROM task_host_events ORDER BY seq`
    const events: Array<StoredEvent> = []
    for (const row of rows) {
      const seq = Number(row.seq)
      const event = yield* decodeEvent(row.event).pipe(
        Effect.mapError((error) => new Error(`event row ${seq} does not decode: ${error.message}`))
      )
      const where = `event row ${seq}`
      assert.strictEqual(event.seq, seq, where)
      assert.strictEqual(event._tag, row.tag, where)
      assert.strictEqual(event.sessionId, row.session_id, where)
      assert.strictEqual("taskId" in event ? event.taskId : null, row.task_id, where)
      events.push({ seq, text: row.event, event })
    }
    return events
  })

/** Fails unless the events are exactly seq 1, 2, ..., n. */
const assertNoGap = (events: ReadonlyArray<StoredEvent>, what: string) => {
  const gap = events.findIndex((event, i) => event.seq !== i + 1)
  if (gap !== -1) assert.fail(`${what}: seq ${events[gap]!.seq} where ${gap + 1} was expected`)
}

const keyOf = (record: BackgroundTaskRecord) => `${record.scope.sessionId}/${record.id}`

/** The records that folding `events` into an empty view gives, by session and id. */
const foldEvents = (events: ReadonlyArray<StoredEvent>) => {
  const view = new TaskView([], 0, { includeTerminal: true })
  for (const { event } of events) view.apply(event)
  return new Map(view.records().map((record) => [keyOf(record), wire(record)]))
}

const byKey = (records: Iterable<BackgroundTaskRecord>) => new Map(Array.from(records, (record) => [keyOf(record), wire(record)]))

// -----------------------------------------------------------------------------
// the rule
// -----------------------------------------------------------------------------

type Resolution = "respawned" | "failed" | "cancelled"

/**
 * What recovery must do with the tasks left live: re-run a host-owned task
 * whose producer has a handler ("recoverable" here) and whose attempts allow
 * one more, unless it was being cancelled or its live parent does not re-run
 * (a parent that ends takes its children with it); cancel external and
 * `cancel_requested` ones and the children of a parent that does not re-run;
 * fail the rest.
 */
const resolutions = (live: ReadonlyArray<StoredTask>): ((task: StoredTask) => Resolution) => {
  const fates = new Map<string, Resolution>()
  for (const { owner, record } of [...live].sort((a, b) => a.order - b.order)) {
    const { attempt, producer, state } = record
    const allowed = Option.isSome(attempt.maxAttempts) && attempt.attempt + 1 < attempt.maxAttempts.value
    const parent = Option.getOrUndefined(record.parentTaskId)
    const parentFate = parent === undefined ? "respawned" : fates.get(parent) ?? "respawned"
    fates.set(
      record.id,
      owner === "external" || state === "cancel_requested" || parentFate !== "respawned"
        ? "cancelled"
        : owner === "host" && producer === "recoverable" && allowed
        ? "respawned"
        : "failed"
    )
  }
  return (task) => fates.get(task.record.id)!
}

const ownerOf = (task: PlannedTask): Owner =>
  task.how === "managed" ? "host" : task.how === "external" ? "external" : "caller"

const sorted = (ids: Iterable<string>) => Array.from(ids).sort()

// -----------------------------------------------------------------------------
// the check, on any database
// -----------------------------------------------------------------------------

/**
 * After the child's death: reads what it left, starts a new host on the same
 * database, and checks the recovery, the records and the event log.
 */
const checkRecovery = (run: ChildRun) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    // -- what the dead child left --------------------------------------------------

    const before = yield* readTasks(sql)
    const eventsBefore = yield* readEvents(sql)
    assertNoGap(eventsBefore, "the events the child committed")
    const lastSeqBefore = eventsBefore.length
    assert.deepStrictEqual(
      (yield* sql<{ readonly owner: string }>`SELECT owner FROM task_host_lease`).map((row) => row.owner),
      ["crash-child"]
    )
    assert.deepStrictEqual(yield* sql`SELECT source, row_key FROM task_host_quarantine`, [])

    const stored = new Map<string, StoredTask>()
    for (const task of before) {
      const { id } = task.record
      // no duplicate ids, across sessions
      assert.isFalse(stored.has(id), `${id} is stored twice`)
      stored.set(id, task)
      const plan = planned.get(id)
      assert.isDefined(plan, `${id} is not a task the child spawns`)
      assert.strictEqual(task.owner, ownerOf(plan!), id)
      assert.strictEqual(task.record.producer, plan!.producer, id)
      assert.strictEqual(task.record.kind, plan!.kind, id)
      assert.include([plan!.sessionId, plan!.then?._tag === "Transfer" ? plan!.then.to : plan!.sessionId], task.record.scope.sessionId, id)
      assert.isAtMost(task.record.revision, lastSeqBefore, id)
    }
    // every spawn the child reported is committed; the store may hold a few more (committed, not yet reported)
    for (const id of run.spawned) assert.isTrue(stored.has(id), `the child reported ${id} spawned but it is not stored`)
    assert.isAtLeast(stored.size, run.spawned.length)
    assert.isBelow(stored.size, totalTasks, "the child was killed after it had spawned everything")
    for (const line of run.lines) {
      switch (line._tag) {
        case "Completed":
          assert.strictEqual(stored.get(line.id)?.record.state, "completed", `${line.id} was reported completed`)
          break
        case "CancelRequested":
          assert.strictEqual(stored.get(line.id)?.record.state, "cancel_requested", `${line.id} was reported cancel_requested`)
          break
        case "Transferred":
          assert.strictEqual(stored.get(line.id)?.record.scope.sessionId, line.to, `${line.id} was reported transferred`)
          break
        case "Seq":
          assert.isAtMost(line.seq, lastSeqBefore, "the child reported a seq as committed")
          break
      }
    }
    // the events and the records were committed together: the log rebuilds the records
    assert.deepStrictEqual(foldEvents(eventsBefore), byKey(before.map((task) => task.record)))
    // one `Registered` per stored task
    const registered = eventsBefore.flatMap(({ event }) => event._tag === "Registered" ? [event.taskId] : [])
    assert.deepStrictEqual(sorted(registered), sorted(stored.keys()))

    const live = before.filter((task) => !isTerminal(task.record.state))
    const resolutionOf = resolutions(live)
    const expected: Record<Resolution, Array<string>> = { respawned: [], failed: [], cancelled: [] }
    for (const task of live) expected[resolutionOf(task)].push(task.record.id)
    // the crash caught every kind of live task the rule distinguishes
    const count = (f: (task: StoredTask) => boolean) => live.filter(f).length
    assert.isAbove(count((t) => resolutionOf(t) === "respawned" && t.record.state === "running"), 0)
    assert.isAbove(count((t) => resolutionOf(t) === "respawned" && t.record.state === "waiting"), 0)
    assert.isAbove(count((t) => resolutionOf(t) === "respawned" && t.record.state === "pending"), 0)
    assert.isAbove(count((t) => resolutionOf(t) === "respawned" && Option.isSome(t.record.parentTaskId)), 0)
    // a task that could re-run, under a parent that does not: cancelled with it
    assert.isAbove(
      count((t) =>
        resolutionOf(t) === "cancelled" && t.owner === "host" && t.record.producer === "recoverable" &&
        t.record.state !== "cancel_requested"
      ),
      0
    )
    assert.isAbove(count((t) => t.owner === "host" && t.record.producer === "recoverable" && resolutionOf(t) === "failed"), 0)
    assert.isAbove(count((t) => t.owner === "host" && t.record.attempt.attempt === 1), 0)
    assert.isAbove(count((t) => t.owner === "host" && t.record.producer === "once"), 0)
    assert.isAbove(count((t) => t.owner === "caller"), 0)
    assert.isAbove(count((t) => t.owner === "external"), 0)
    assert.isAbove(count((t) => t.record.state === "cancel_requested"), 0)
    assert.isAbove(before.filter((t) => t.record.state === "completed").length, 0)

    // -- a new host on the same database -----------------------------------------------

    const calls = new Map<string, Array<number>>()
    const handler: RecoveryHandler = (record) =>
      Effect.sync(() => {
        calls.set(record.id, [...(calls.get(record.id) ?? []), record.attempt.attempt])
        return "recovered"
      })
    const hostScope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(hostScope, Exit.void))
    const context = yield* Layer.buildWithScope(
      BackgroundTaskHost.layerStore({
        lease: { onHeld: "wait", ttl: "1 second" },
        recovery: { recoverable: handler }
      }).pipe(Layer.provide(TaskStore.layerSql())),
      hostScope
    )
    const host = Context.get(context, BackgroundTaskHost)

    const report = yield* host.recovery
    assert.deepStrictEqual(sorted(report.respawned), sorted(expected.respawned))
    assert.deepStrictEqual(sorted(report.failed), sorted(expected.failed))
    assert.deepStrictEqual(sorted(report.cancelled), sorted(expected.cancelled))
    assert.deepStrictEqual(report.quarantined, [])
    const lease = yield* sql<{ readonly owner: string }>`SELECT owner FROM task_host_lease`
    assert.strictEqual(lease.length, 1)
    assert.notStrictEqual(lease[0]!.owner, "crash-child")

    // nothing is live but the re-spawned tasks
    const respawned = new Set(expected.respawned)
    for (const record of yield* host.list()) {
      assert.isTrue(respawned.has(record.id), `${record.id} (${record.state}) is live after recovery`)
    }

    // the layer was ready once every resolution was written: the log holds them all, after the child's
    const eventsAtStart = yield* readEvents(sql)
    assertNoGap(eventsAtStart, "the events once the new host has started")
    assert.deepStrictEqual(
      eventsAtStart.slice(0, lastSeqBefore).map((event) => event.text),
      eventsBefore.map((event) => event.text),
      "the child's events are kept as they were"
    )
    const recoveryEvents = eventsAtStart.slice(lastSeqBefore).map(({ event }) => event)
    for (const task of live) {
      const { id } = task.record
      const mine = recoveryEvents.filter((event) => "taskId" in event && event.taskId === id)
      switch (resolutionOf(task)) {
        case "respawned": {
          const [moved, progress] = mine
          assert.strictEqual(moved?._tag, "StateChanged", id)
          if (moved?._tag === "StateChanged") {
            assert.strictEqual(moved.state, "running", id)
            assert.strictEqual(moved.record.attempt.attempt, task.record.attempt.attempt + 1, id)
          }
          assert.strictEqual(progress?._tag, "Progress", id)
          if (progress?._tag === "Progress") assert.match(progress.message, /^recovered after the host stopped: /, id)
          break
        }
        case "failed":
          assert.deepStrictEqual(mine.map((event) => event._tag), ["Failed"], id)
          break
        case "cancelled":
          assert.deepStrictEqual(mine.map((event) => event._tag), ["Cancelled"], id)
          break
      }
    }

    // the re-spawned tasks run their handler's body and complete
    yield* awaitEnded(host, respawned)
    assert.deepStrictEqual(yield* host.list(), [], "no task is live once the re-spawned ones have ended")

    // -- each task resolved by the rule ---------------------------------------------------

    const after = yield* host.list({ includeTerminal: true })
    const afterById = new Map<string, BackgroundTaskRecord>()
    for (const record of after) {
      assert.isFalse(afterById.has(record.id), `${record.id} is held twice`)
      afterById.set(record.id, record)
    }
    assert.deepStrictEqual(sorted(afterById.keys()), sorted(stored.keys()), "the new host holds exactly the stored tasks")
    for (const task of before) {
      const pre = task.record
      const post = afterById.get(pre.id)!
      if (isTerminal(pre.state)) {
        assert.deepStrictEqual(wire(post), wire(pre), `${pre.id} had ended before the crash: it is left as it was`)
        continue
      }
      assert.strictEqual(post.scope.sessionId, pre.scope.sessionId, pre.id)
      assert.deepStrictEqual(wire(post).created_at, wire(pre).created_at, pre.id)
      assert.deepStrictEqual(post.parentTaskId, pre.parentTaskId, pre.id)
      switch (resolutionOf(task)) {
        case "respawned":
          assert.deepStrictEqual(calls.get(pre.id), [pre.attempt.attempt], `${pre.id}: one handler call, with the stored record`)
          assert.strictEqual(post.state, "completed", pre.id)
          assert.deepStrictEqual(post.result, Option.some({ summary: Option.some("recovered") }), pre.id)
          assert.deepStrictEqual(post.attempt, { ...pre.attempt, attempt: pre.attempt.attempt + 1 }, pre.id)
          break
        case "failed":
          assert.strictEqual(post.state, "failed", pre.id)
          assert.deepStrictEqual(post.failure, Option.some({ summary: Option.some(stoppedReason) }), pre.id)
          assert.deepStrictEqual(post.attempt, pre.attempt, pre.id)
          break
        case "cancelled":
          assert.strictEqual(post.state, "cancelled", pre.id)
          assert.deepStrictEqual(post.result, Option.some({ summary: Option.some(stoppedReason) }), pre.id)
          assert.deepStrictEqual(post.attempt, pre.attempt, pre.id)
          break
      }
    }
    // the handler ran for exactly the re-spawned tasks
    assert.deepStrictEqual(sorted(calls.keys()), sorted(expected.respawned))

    // -- the event log: no seq lost -----------------------------------------------------

    // a reader that knew the child's last reported seq resumes from it
    const lastReported = run.lines.reduce((seq, line) => line._tag === "Seq" ? line.seq : seq, 0)
    const stats = yield* host.stats
    const replayed = yield* Effect.scoped(Effect.gen(function*() {
      const watched = yield* host.watch({ fromSeq: lastReported })
      assert.strictEqual(watched.seq, stats.seq)
      return yield* Stream.runCollect(Stream.take(watched.events, watched.seq - lastReported))
    }))
    assert.deepStrictEqual(
      replayed.map((event) => event._tag === "Lagged" ? -1 : event.seq),
      Array.from({ length: stats.seq - lastReported }, (_, i) => lastReported + i + 1)
    )

    // shutdown writes its last batch and releases the lease
    yield* Scope.close(hostScope, Exit.void)
    const eventsAfter = yield* readEvents(sql)
    assertNoGap(eventsAfter, "the events once the new host has shut down")
    assert.strictEqual(eventsAfter.length, stats.seq, "the host's last seq is the log's last")
    assert.deepStrictEqual(
      eventsAfter.slice(lastReported).map(({ event }) => event),
      replayed,
      "watch replays the stored events"
    )
    assert.deepStrictEqual(foldEvents(eventsAfter), byKey(after), "the log rebuilds the records")
    assert.deepStrictEqual(byKey((yield* readTasks(sql)).map((task) => task.record)), byKey(after))
    // released at close: expired at once (the row keeps the fencing token)
    assert.deepStrictEqual((yield* sql<{ readonly expires_at: unknown }>`SELECT expires_at FROM task_host_lease`).map((row) => Number(row.expires_at)), [0])
    assert.deepStrictEqual(yield* sql`SELECT source, row_key FROM task_host_quarantine`, [])
  })

/** Waits until every task in `ids` has ended (bounded: a test that would hang fails instead). */
const awaitEnded = (host: BackgroundTaskHost["Service"], ids: ReadonlySet<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const watched = yield* host.watch({ includeTerminal: true })
    const live = new Set(watched.snapshot.filter((r) => ids.has(r.id) && !isTerminal(r.state)).map((r) => r.id))
    if (live.size === 0) return
    yield* watched.events.pipe(
      Stream.takeUntil((event) => {
        if (event._tag === "Completed" || event._tag === "Failed" || event._tag === "Cancelled") live.delete(event.taskId)
        return live.size === 0
      }),
      Stream.runDrain,
      Effect.timeoutOrElse({
        duration: "15 seconds",
        orElse: () => Effect.die(new Error(`re-spawned tasks still live: ${sorted(live).join(", ")}`))
      })
    )
  }))

// -----------------------------------------------------------------------------
// the tests
// -----------------------------------------------------------------------------

describe("BackgroundTaskHost crash (SIGKILL) on a SQLite file", () => {
  it.live(
    "a host killed part-way through 1,000 spawns: the next host sees every task, none left live, each resolved by the rule, no seq lost",
    () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => mkdtempSync(join(tmpdir(), "eth-crash-"))),
          (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
        )
        const file = join(dir, "tasks.db")
        const run = yield* runChildAndKill(`sqlite:${file}`, process.env)
        yield* checkRecovery(run).pipe(Effect.provide(NodeSqliteClient.layer({ filename: file })))
      }),
    60_000
  )
})

describePg(
  "BackgroundTaskHost crash (SIGKILL) on PostgreSQL",
  (it) => {
    it.effect(
      "a host killed part-way through 1,000 spawns: the next host sees every task, none left live, each resolved by the rule, no seq lost",
      () =>
        Effect.gen(function*() {
          if (settings._tag !== "Available") return yield* Effect.die(new Error(settings.reason))
          const { name } = yield* PgTestDatabase
          const env: NodeJS.ProcessEnv = {
            ...process.env,
            PGHOST: settings.host,
            PGPORT: String(settings.port),
            PGUSER: settings.user
          }
          if (settings.password === undefined) delete env["PGPASSWORD"]
          else env["PGPASSWORD"] = settings.password
          const run = yield* runChildAndKill(`pg:${name}`, env)
          // the block's client is connected to the same fresh database
          yield* checkRecovery(run)
        }),
      60_000
    )
  },
  { excludeTestServices: true }
)
