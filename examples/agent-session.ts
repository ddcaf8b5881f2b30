/**
 * `npm start`: a simulated agent runtime on the background task host.
 *
 * A conversation runs in sessions. Session 1 starts a CI monitor, two
 * subagents that run elsewhere (registered as external tasks, with cancel
 * effects), an observer that summarises the conversation, a test run that
 * fails, and a few indexing jobs (`--tasks`). Each session is a handle from
 * `openSession`; when it "compacts", its scope closes and each live task's
 * close policy acts: `transfer` tasks go to the successor, `cancel` tasks are
 * cancelled, `keep` tasks stay. The
 * last session gets the first subagent's result, stops the monitor
 * cooperatively and the observer by interruption, and closes. A live view
 * shows it all (a table redrawn in place on a terminal, one line per event
 * otherwise); a summary table ends the run. Ctrl-C cancels whatever is live
 * through its policy, prints the summary and exits with code 130.
 *
 *   npm start                       (or: npm exec -- node examples/agent-session.ts)
 *   npm start -- --speed 0.5        half speed
 *   npm start -- --json | head      JSON lines, in the host's wire form
 *   npm start -- --store sqlite:demo.db
 *                                   records in a SQLite file: a second run
 *                                   starts with the first one's, and a run
 *                                   killed part-way has its live tasks resolved
 *   npm start -- --inspect [port]   the inspector (a web page of the tasks) on
 *                                   127.0.0.1:<port> (default 7777); the demo
 *                                   stays up after its scenario until Ctrl-C
 *   npm start -- --help
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Deferred, Duration, Effect, Fiber, Layer, Option, Ref, type Scope } from "effect"
import { Command, Flag } from "effect/cli"
import { TaskInspector } from "../src/TaskInspector.ts"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostService,
  type BackgroundTaskRecord,
  InvokeError,
  isTerminal,
  TaskContext,
  type TaskRegistration,
  TaskStore
} from "../src/index.ts"
import * as NodeSqliteClient from "../src/NodeSqliteClient.ts"
import * as View from "./internal/view.ts"

interface Config {
  readonly sessions: number
  readonly tasks: number
  readonly speed: number
  readonly json: boolean
  /** `memory`, or `sqlite:<file>`. */
  readonly store: string
  /** The inspector's port, when it is served. */
  readonly inspect: Option.Option<number>
  /** Whether the inspector allows cancelling (with a token). */
  readonly inspectCancel: boolean
  /** Prefixes the session names (a run with the inspector on a store: its sessions stay beside earlier runs'). */
  readonly sessionPrefix?: string
}

/** The host: in memory, or on a SQLite file (its records outlive the run). */
const hostLayer = (store: string) => {
  if (!store.startsWith("sqlite:")) return BackgroundTaskHost.layer
  return BackgroundTaskHost.layerStore({ lease: { ttl: "5 seconds", onHeld: "wait" } }).pipe(
    Layer.provide(TaskStore.layerSql()),
    Layer.provide(NodeSqliteClient.layer({ filename: store.slice("sqlite:".length) }))
  )
}

/** The inspector's port when `--inspect` names none. */
const defaultInspectPort = 7777

/** The inspector's port, when it is served (`--inspect-cancel` alone serves it on the default port). */
const inspectPort = (config: Config) =>
  config.inspectCancel ? Option.orElse(config.inspect, () => Option.some(defaultInspectPort)) : config.inspect

/** The host, with the inspector on it when asked. */
const appLayer = (config: Config) =>
  Option.match(inspectPort(config), {
    onNone: () => hostLayer(config.store),
    onSome: (port) =>
      TaskInspector.layer({ port, cancel: config.inspectCancel }).pipe(Layer.provideMerge(hostLayer(config.store)))
  })

/**
 * With the inspector on a durable store, each run names its sessions
 * `run-<n>/session-<i>`, so that the tasks of earlier runs (records and
 * events) stay in the store beside this run's and the page shows them.
 */
const sessionPrefix = (config: Config) =>
  Effect.gen(function*() {
    if (Option.isNone(inspectPort(config)) || config.store === "memory") return ""
    const host = yield* BackgroundTaskHost
    const records = yield* host.list({ includeTerminal: true })
    const runs = records.map((r) => /^run-(\d+)\//.exec(r.scope.sessionId)).map((m) => (m === null ? 0 : Number(m[1])))
    return `run-${Math.max(0, ...runs) + 1}/`
  })

/** On a durable store: what the run found from earlier runs. */
const storeNotice = (config: Config, view: View.View) =>
  Effect.gen(function*() {
    if (config.store === "memory") return
    const host = yield* BackgroundTaskHost
    const { cancelled, failed, quarantined, respawned } = yield* host.recovery
    const stats = yield* host.stats
    yield* view.notice(
      `store ${config.store}: ${stats.retained + stats.live} records and ${stats.seq} events from earlier runs; ` +
        `left live by a run that did not finish: ${failed.length} failed, ${cancelled.length} cancelled, ` +
        `${respawned.length} re-spawned` + (quarantined.length > 0 ? `; ${quarantined.length} corrupt rows quarantined` : "")
    )
  })

// -----------------------------------------------------------------------------
// simulated time: one tick is 150 ms at --speed 1
// -----------------------------------------------------------------------------

const ticks = (config: Config, n: number) => Effect.sleep(Duration.millis((n * 150) / config.speed))

// -----------------------------------------------------------------------------
// the work
// -----------------------------------------------------------------------------

/** Checks the CI pipeline every few ticks until asked to stop; then ends itself (cooperative). */
const ciMonitor = (config: Config) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    let checks = 0
    while (!(yield* ctx.isCancelRequested)) {
      checks++
      yield* ctx.progress(`check ${checks}: pipeline ${Math.min(100, checks * 15)}% green`)
      // sleep until the next check, or wake up at once when cancellation is requested
      yield* Effect.raceFirst(ticks(config, 3), ctx.cancelRequested)
    }
    return `stopped after ${checks} checks`
  })

/** Summarises the conversation forever; it only stops when interrupted. */
const observer = (config: Config) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    for (let turns = 1;; turns++) {
      yield* ctx.progress(`summarised ${turns} turns of ${yield* ctx.sessionId}`)
      yield* ticks(config, 4)
    }
  })

/** A test run that fails: the record ends `failed` with the error's message. */
const testRun = (config: Config) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    for (let i = 1; i <= 3; i++) {
      yield* ctx.progress(`running suites (${i}/4)`)
      yield* ticks(config, 2)
    }
    return yield* new InvokeError({ message: "2 of 48 tests failed" })
  })

/** An indexing job; its "(n/m)" progress messages become a progress bar. */
const indexJob = (config: Config, size: number) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    for (let i = 1; i <= size; i++) {
      yield* ctx.progress(`indexing shard (${i}/${size})`)
      yield* ticks(config, 2)
    }
    return `indexed ${size * 100} files`
  })

/**
 * The first subagent runs elsewhere (the host only records it): it reads,
 * then waits for its parent session's answer, then writes its plan.
 */
const researcher = (config: Config, host: BackgroundTaskHostService, id: string, answer: Deferred.Deferred<string>) =>
  Effect.gen(function*() {
    for (let i = 1; i <= 4; i++) {
      yield* host.update(id, { progress: `reading sources (${i}/6)` })
      yield* ticks(config, 2)
    }
    yield* host.update(id, { state: "waiting", progress: "waiting for the parent session" })
    const from = yield* Deferred.await(answer)
    yield* host.update(id, { state: "running", progress: `got an answer from ${from} (5/6)` })
    yield* ticks(config, 2)
    yield* host.update(id, { progress: "writing the plan (6/6)" })
    yield* ticks(config, 2)
    yield* host.complete(id, { state: "completed", summary: "plan ready: 4 steps" })
  })

/** The second subagent reviews a diff, then waits for an approval that never comes. */
const reviewer = (config: Config, host: BackgroundTaskHostService, id: string) =>
  Effect.gen(function*() {
    for (let i = 1; i <= 3; i++) {
      yield* host.update(id, { progress: `reviewing the diff (${i}/3)` })
      yield* ticks(config, 2)
    }
    yield* host.update(id, { state: "waiting", progress: "waiting for the user's approval" })
    return yield* Effect.never
  })

// -----------------------------------------------------------------------------
// the agent runtime
// -----------------------------------------------------------------------------

/**
 * Starts work that runs outside the host (here: a fiber of this runtime, in
 * the runtime's `scope`) and registers it as an external task whose cancel
 * effect interrupts that fiber.
 */
const startExternal = <E>(
  host: BackgroundTaskHostService,
  scope: Scope.Scope,
  sessionId: string,
  spec: TaskRegistration,
  work: Effect.Effect<void, E>
) =>
  Effect.gen(function*() {
    const registered = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkIn(Deferred.await(registered).pipe(Effect.andThen(work), Effect.orDie), scope)
    yield* host.registerExternal(sessionId, { ...spec, cancelPolicy: "external" }, Fiber.interrupt(fiber)).pipe(
      Effect.onError(() => Fiber.interrupt(fiber))
    )
    yield* Deferred.succeed(registered, undefined)
  })

/** Waits until the view has shown every task named in a terminal state. */
const settled = (view: View.View, ids: ReadonlyArray<string>) =>
  view.until((rows) => ids.every((id) => rows.get(id) !== undefined && isTerminal(rows.get(id)!.record.state)))

/** The ids of a session's live records with a close policy. */
const liveWith = (records: ReadonlyArray<BackgroundTaskRecord>, policy: BackgroundTaskRecord["closePolicy"]) =>
  records.filter((r) => !isTerminal(r.state) && r.closePolicy === policy).map((r) => r.id)

/**
 * Says, once, that Ctrl-C is cancelling the live tasks: inside a session's
 * scope (before the session's close policies act) and around the whole run.
 */
const interrupted = (view: View.View) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.onInterrupt(effect, () =>
    Effect.suspend(() => {
      if (noticed.has(view)) return Effect.void
      noticed.add(view)
      return view.notice("interrupted: cancelling live tasks")
    }))
const noticed = new WeakSet<View.View>()

const scenario = (config: Config, view: View.View) =>
  Effect.gen(function*() {
    const host = yield* BackgroundTaskHost
    const sessions = Array.from({ length: config.sessions }, (_, i) => `${config.sessionPrefix ?? ""}session-${i + 1}`)
    const answer = yield* Deferred.make<string>()
    // the runtime's own work outlives each session
    const runtime = yield* Effect.scope

    for (const [index, session] of sessions.entries()) {
      const successor = sessions[index + 1]
      // the session is open for this turn; compaction closes it, and closing
      // applies each live task's close policy: `transfer` tasks move to the
      // successor (their fibers keep running), `cancel` tasks are cancelled
      // through their cancel policy, `keep` tasks stay
      const closing = yield* Effect.scoped(Effect.gen(function*() {
        const handle = yield* host.openSession(session, successor === undefined ? {} : { successor })
        if (index === 0) {
          // what the first session starts
          yield* handle.spawn(
            { id: "monitor-1", kind: "monitor", producer: "ci-watch", closePolicy: "transfer" },
            ciMonitor(config)
          )
          yield* startExternal(
            host,
            runtime,
            session,
            { id: "subagent-1", kind: "subagent", producer: "planner", closePolicy: "transfer" },
            researcher(config, host, "subagent-1", answer)
          )
          yield* startExternal(
            host,
            runtime,
            session,
            { id: "subagent-2", kind: "subagent", producer: "reviewer", closePolicy: "cancel" },
            reviewer(config, host, "subagent-2")
          )
          yield* handle.spawn({
            id: "observer-1",
            kind: "observer",
            producer: "summarizer",
            cancelPolicy: "abort_local",
            closePolicy: "transfer"
          }, observer(config))
          yield* handle.spawn(
            { id: "tests-1", kind: "other", producer: "test-runner", closePolicy: "cancel" },
            testRun(config)
          )
        }
        const jobs = Array.from({ length: config.tasks }, (_, i) => `job-${index + 1}.${i + 1}`)
        for (const [i, id] of jobs.entries()) {
          yield* handle.spawn({ id, kind: "other", producer: "indexer" }, indexJob(config, 3 + i))
        }
        // the session's turn: its jobs (and, in the first session, the test run) finish
        yield* settled(view, index === 0 ? ["tests-1", ...jobs] : jobs)

        if (successor !== undefined) {
          yield* view.notice(`${session} compacting`)
          yield* ticks(config, 2)
          const records = yield* handle.list()
          return { handedOff: liveWith(records, "transfer"), cancelled: liveWith(records, "cancel") }
        }
        // the last session: the first subagent gets its answer and finishes...
        yield* Deferred.succeed(answer, session)
        yield* settled(view, ["subagent-1"])
        // ...the monitor is asked to stop and ends itself (cooperative)...
        yield* host.requestCancel("monitor-1", `${session} is closing`)
        yield* settled(view, ["monitor-1"])
        // ...the observer is interrupted at once (abort_local)...
        yield* host.requestCancel("observer-1", `${session} is closing`)
        // ...and whatever else is live is cancelled as the session ends.
        const rest = yield* handle.cancelAll
        yield* settled(view, ["observer-1", ...rest.map((r) => r.id)])
        yield* view.notice(`${session} closed` + (rest.length > 0 ? `; cancelled ${rest.map((r) => r.id).join(", ")}` : ""))
        return undefined
      }).pipe(interrupted(view)))
      if (closing !== undefined && successor !== undefined) {
        const { cancelled, handedOff } = closing
        yield* settled(view, cancelled)
        yield* view.until((rows) => handedOff.every((id) => rows.get(id)?.record.scope.sessionId === successor))
        yield* view.notice(
          `${session} compacted into ${successor}: handed over ${handedOff.join(", ") || "nothing"}, ` +
            `cancelled ${cancelled.join(", ") || "nothing"}`
        )
      }
    }
  })

const run = (config: Config) =>
  Effect.gen(function*() {
    const options = View.processOptions("effect-task-host · agent-session demo", config.json)
    const view = yield* View.make(options)
    const renderer = yield* Ref.make(Option.none<Fiber.Fiber<void>>())
    yield* Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const inspector = yield* Effect.serviceOption(TaskInspector)
      if (Option.isSome(inspector)) {
        // above the live table (which redraws in place), or as a line of the run
        const text = `inspector: ${inspector.value.pageUrl}`
        if (options.mode === "live") options.write(text + "\n")
        else yield* view.notice(text)
      }
      const items = yield* View.feed(host) // live before the first task starts
      yield* Ref.set(renderer, Option.some(yield* Effect.forkScoped(view.run(items))))
      yield* storeNotice(config, view)
      yield* scenario({ ...config, sessionPrefix: yield* sessionPrefix(config) }, view)
      if (Option.isSome(inspector)) {
        yield* view.notice(`the scenario has ended; the inspector stays up at ${inspector.value.url} (Ctrl-C stops it)`)
        return yield* Effect.never
      }
    }).pipe(
      interrupted(view),
      // closing the host (at the end, or on Ctrl-C) cancels every live task
      // through its policy, publishes their events and ends the feed
      Effect.provide(appLayer(config)),
      // then the view has seen every event: draw the last frame, print the summary
      Effect.ensuring(Effect.gen(function*() {
        const fiber = yield* Ref.get(renderer)
        if (Option.isSome(fiber)) yield* Fiber.join(fiber.value)
        yield* view.summary
      }))
    )
  }).pipe(Effect.scoped)

// -----------------------------------------------------------------------------
// command line
// -----------------------------------------------------------------------------

const between = (name: string, min: number, max: number) => (flag: Flag.Flag<number>) =>
  Flag.filter(flag, (n) => n >= min && n <= max, (n) => `--${name} must be between ${min} and ${max}, got ${n}`)

const command = Command.make("agent-session", {
  sessions: Flag.Int("sessions").pipe(
    Flag.withDefault(2),
    between("sessions", 1, 9),
    Flag.withDescription("how many sessions the conversation runs through (each compacts into the next)")
  ),
  tasks: Flag.Int("tasks").pipe(
    Flag.withDefault(2),
    between("tasks", 0, 20),
    Flag.withDescription("indexing jobs each session runs besides its agents")
  ),
  speed: Flag.Finite("speed").pipe(
    Flag.withDefault(1),
    between("speed", 0.01, 100),
    Flag.withDescription("scales simulated time: 2 runs twice as fast, 0.5 half as fast")
  ),
  json: Flag.Boolean("json").pipe(
    Flag.withDefault(false),
    Flag.withDescription("print every event as a JSON line (the host's snake_case wire form)")
  ),
  store: Flag.String("store").pipe(
    Flag.withDefault("memory"),
    Flag.filter(
      (store) => store === "memory" || (store.startsWith("sqlite:") && store.length > "sqlite:".length),
      (store) => `--store must be memory or sqlite:<file>, got ${store}`
    ),
    Flag.withDescription(
      "where task records live: memory (default), or sqlite:<file>, durable: a later run starts with them"
    )
  ),
  inspect: Flag.Int("inspect").pipe(
    between("inspect", 0, 65535),
    Flag.optional,
    Flag.withDescription(
      `serve the inspector (a live web page of the tasks) on 127.0.0.1:<port> (${defaultInspectPort} when no port is given, ` +
        "0: any free port), print its URL, and keep running after the scenario until Ctrl-C"
    )
  ),
  inspectCancel: Flag.Boolean("inspect-cancel").pipe(
    Flag.withDefault(false),
    Flag.withDescription("serve the inspector (as --inspect) and allow cancelling tasks from its page (the printed URL carries the token)")
  )
}, run).pipe(Command.withDescription(
  "A simulated agent runtime on effect-task-host: sessions, monitors, subagents and observers, " +
    "a live view of their tasks, and a summary. Ctrl-C cancels live tasks and exits with code 130."
))

/** `--inspect` takes an optional port: without one (last, or before another flag) it is the default port. */
const args = process.argv.slice(2).flatMap((arg, i, all) =>
  arg === "--inspect" && !/^\d+$/.test(all[i + 1] ?? "") ? [arg, String(defaultInspectPort)] : [arg]
)

Command.runWith(command, { version: "0.3.0" })(args).pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
