/**
 * Generates docs/api.md: every public export of src/index.ts, grouped by its
 * JSDoc `@category`, with a one-line description (the JSDoc's first sentence)
 * and a snippet (the JSDoc's `**Example**` when it has one, else the snippet
 * below). The service's methods get a table from their own JSDoc.
 *
 *   node scripts/api-docs.ts           writes docs/api.md
 *   node scripts/api-docs.ts --check   exits 1 when docs/api.md is out of date
 *
 * Every ```ts block in docs/ is type-checked by `npm test` (scripts/doc-examples.ts),
 * so the snippets here compile. An export with neither an example nor a
 * snippet stops the generator: new exports get documented.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import ts from "typescript"

const root = join(import.meta.dirname, "..")
const output = join(root, "docs", "api.md")

/** Snippets for the exports whose JSDoc has no example. */
const snippets: Record<string, string> = {
  RegisterError: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const spawnOnce = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return yield* host.spawnManaged("s-1", { id: "t-1", kind: "other", producer: "app" }, Effect.void).pipe(
    Effect.catchTag("TaskAlreadyExists", () => host.getManaged("s-1", "t-1"))
  )
})`,
  DurationInput: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

// "30 seconds", Duration.seconds(30) and 30_000 (millis) are all accepted
const spawn = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return yield* host.spawnManaged("s-1", { id: "t-1", kind: "other", producer: "app", timeout: "30 seconds" }, Effect.void)
})`,
  Evicted: `import type { BackgroundTaskEvent } from "effect-task-host"

const gone = (event: BackgroundTaskEvent): ReadonlyArray<string> => event._tag === "Evicted" ? event.taskIds : []`,
  EvictionReason: `import type { EvictionReason } from "effect-task-host"

const byRetention = (reason: EvictionReason) => reason === "max_terminal" || reason === "max_age"`,
  isTaskEvent: `import { type BackgroundTaskEvent, isTaskEvent } from "effect-task-host"

const taskIdOf = (event: BackgroundTaskEvent) => isTaskEvent(event) ? event.taskId : undefined`,
  Lagged: `import { Effect, Stream } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const watchLag = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const events = yield* host.subscribe()
  yield* Stream.runForEach(events, (event) =>
    event._tag === "Lagged" ? Effect.log(\`missed \${event.skipped} events; re-listing\`) : Effect.void)
})`,
  RetrySchedule: `import { Effect, Schedule } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const flaky = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return yield* host.spawnManaged(
    "s-1",
    { id: "fetch-1", kind: "other", producer: "app", maxAttempts: 3, retry: Schedule.spaced("2 seconds") },
    Effect.fail("network down")
  )
})`,
  Seq: `import type { BackgroundTaskEvent } from "effect-task-host"

// events arrive in seq order, one more each time
const isNext = (last: number, event: BackgroundTaskEvent) => event.seq === last + 1`,
  SubscriptionEvent: `import { Schema } from "effect"
import { type SubscriptionEvent, SubscriptionEvent as SubscriptionEventSchema } from "effect-task-host"

// one JSON line per stream item, in the wire form
const jsonLine = (event: SubscriptionEvent) => JSON.stringify(Schema.encodeSync(SubscriptionEventSchema)(event))`,
  TaskEvent: `import type { TaskEvent } from "effect-task-host"

const describe = (event: TaskEvent) => \`\${event._tag} \${event.taskId}\``,
  TaskStats: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const report = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const stats = yield* host.stats
  yield* Effect.log(\`\${stats.live} live, \${stats.completed} completed, \${stats.failed} failed\`)
})`,
  BackgroundTaskSession: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const conversation = Effect.scoped(Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const session = yield* host.openSession("chat-1")
  yield* session.spawn({ id: "summary-1", kind: "observer", producer: "app", closePolicy: "transfer" }, Effect.never)
  yield* session.handoff("chat-2") // when this scope closes, summary-1 moves to chat-2
}))`,
  AwaitOptions: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

// the session's task "build-1": its final record once it has ended
const buildResult = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const record = yield* host.await("build-1", { sessionId: "s-1" })
  return record.state // "completed", "failed" or "cancelled"
})`,
  SubscribeOptions: `import { Effect, Stream } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

// an audit log of task ends: progress never enters its buffer, so a busy task cannot push these out
const audit = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const events = yield* host.subscribe({ buffer: 64, types: ["Registered", "Completed", "Failed", "Cancelled"] })
  yield* Stream.runForEach(events, (event) =>
    Effect.log(event._tag === "Lagged" ? \`missed \${event.skipped}\` : \`\${event._tag} #\${event.seq}\`))
}).pipe(Effect.scoped)`,
  SessionOptions: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const open = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return yield* host.openSession("chat-1", { successor: "chat-2" })
})`,
  TaskTree: `import { Effect } from "effect"
import { BackgroundTaskHost, type TaskTree } from "effect-task-host"

const size = (tree: TaskTree): number => 1 + tree.children.reduce((n, child) => n + size(child), 0)

const treeSize = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return size(yield* host.listTree("agent-1"))
})`,
  TaskWatch: `import { Effect, Stream } from "effect"
import { BackgroundTaskHost, TaskView } from "effect-task-host"

const live = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const watched = yield* host.watch({ sessionId: "s-1" })
  const view = TaskView.fromWatch(watched)
  yield* Stream.runForEach(watched.events, (event) => Effect.sync(() => view.apply(event)))
})`,
  BackgroundTaskEventTag: `import type { BackgroundTaskEventTag } from "effect-task-host"

const terminalTags: ReadonlyArray<BackgroundTaskEventTag> = ["Completed", "Failed", "Cancelled"]`,
  BackgroundTaskRecord: `import { Effect, Schema } from "effect"
import { BackgroundTaskHost, BackgroundTaskRecord } from "effect-task-host"

// a record in its wire form: snake_case keys, null for None, ISO-8601 timestamps
const recordJson = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const record = yield* host.register({ scope: { sessionId: "s-1" }, id: "t-1", kind: "other", producer: "app" })
  return JSON.stringify(Schema.encodeSync(BackgroundTaskRecord)(record))
})`,
  CancelPolicy: `import { Schema } from "effect"
import { CancelPolicy, type TaskRegistration } from "effect-task-host"

const render: TaskRegistration = { id: "render-1", kind: "other", producer: "app", cancelPolicy: "abort_local" }
const valid = Schema.is(CancelPolicy)("external") // true`,
  ClosePolicy: `import type { TaskRegistration } from "effect-task-host"

// moves to the successor session when this one is compacted
const planner: TaskRegistration = { id: "planner-1", kind: "subagent", producer: "app", closePolicy: "transfer" }`,
  Registered: `import { Stream } from "effect"
import type { BackgroundTaskEvent } from "effect-task-host"

const newTaskIds = (events: Stream.Stream<BackgroundTaskEvent>) =>
  events.pipe(Stream.filter((e) => e._tag === "Registered"), Stream.map((e) => e.taskId))`,
  StateChanged: `import { Schema } from "effect"
import { StateChanged } from "effect-task-host"

const event = Schema.decodeUnknownSync(StateChanged)({
  type: "state_changed", task_id: "t-1", session_id: "s-1", kind: "subagent", state: "waiting"
})`,
  Progress: `import { Schema } from "effect"
import { Progress } from "effect-task-host"

const event = Schema.decodeUnknownSync(Progress)({
  type: "progress", task_id: "t-1", session_id: "s-1", kind: "monitor", message: "check 3 ok"
})`,
  Completed: `import { Option, Stream } from "effect"
import type { BackgroundTaskEvent } from "effect-task-host"

const summaries = (events: Stream.Stream<BackgroundTaskEvent>) =>
  events.pipe(
    Stream.filter((e) => e._tag === "Completed"),
    Stream.map((e) => Option.flatMap(e.record.result, (r) => r.summary))
  )`,
  Failed: `import { Option, Stream } from "effect"
import type { BackgroundTaskEvent } from "effect-task-host"

const failures = (events: Stream.Stream<BackgroundTaskEvent>) =>
  events.pipe(
    Stream.filter((e) => e._tag === "Failed"),
    Stream.map((e) => \`\${e.taskId}: \${Option.getOrElse(Option.flatMap(e.record.failure, (f) => f.summary), () => "?")}\`)
  )`,
  CancelRequested: `import { Schema } from "effect"
import { CancelRequested } from "effect-task-host"

const event = Schema.decodeUnknownSync(CancelRequested)({
  type: "cancel_requested", task_id: "t-1", session_id: "s-1", kind: "monitor", reason: null
})`,
  Cancelled: `import { Stream } from "effect"
import type { BackgroundTaskEvent } from "effect-task-host"

const cancelledIds = (events: Stream.Stream<BackgroundTaskEvent>) =>
  events.pipe(Stream.filter((e) => e._tag === "Cancelled"), Stream.map((e) => e.taskId))`,
  Transferred: `import { Schema } from "effect"
import { Transferred } from "effect-task-host"

const event = Schema.decodeUnknownSync(Transferred)({
  type: "transferred", task_id: "t-1", session_id: "s-2", kind: "subagent",
  scope: { session_id: "s-2" }, from_session_id: "s-1"
})`,
  defaultAttempt: `import { defaultAttempt, type RegisterRequest } from "effect-task-host"

const request: RegisterRequest = {
  scope: { sessionId: "s-1" }, id: "t-1", kind: "other", producer: "app", attempt: { ...defaultAttempt, attempt: 2 }
}`,
  duration: `import { Duration, Option } from "effect"
import { duration, type BackgroundTaskRecord } from "effect-task-host"

const millis = (record: BackgroundTaskRecord) => Option.map(duration(record), Duration.toMillis)`,
  Id: `import { Schema } from "effect"
import { Id } from "effect-task-host"

const ok = Schema.is(Id)("session-1") // true; "" is not an id`,
  LiveState: `import { type LiveState, TaskContext } from "effect-task-host"

const setState = (state: LiveState) => TaskContext.use((ctx) => ctx.setLiveState(state))`,
  matchesEvent: `import { matchesEvent, type BackgroundTaskEvent } from "effect-task-host"

const forSession = (events: ReadonlyArray<BackgroundTaskEvent>) =>
  events.filter((e) => matchesEvent({ sessionId: "s-1" }, e))`,
  matchesRecord: `import { matchesRecord, type BackgroundTaskRecord } from "effect-task-host"

const liveMonitors = (records: ReadonlyArray<BackgroundTaskRecord>) =>
  records.filter((r) => matchesRecord({ kind: "monitor" }, r))`,
  RegisterRequest: `import { BackgroundTaskHost } from "effect-task-host"

const registered = BackgroundTaskHost.use((host) =>
  host.register({ scope: { sessionId: "s-1" }, id: "upload-1", kind: "other", producer: "app" }))`,
  TaskAttempt: `import { Option } from "effect"
import type { TaskAttempt } from "effect-task-host"

const retry: TaskAttempt = { attempt: 1, maxAttempts: Option.some(3), idempotencyKey: Option.some("upload-1") }`,
  TaskBackoff: `import { Effect } from "effect"
import { BackgroundTaskHost, type TaskBackoff } from "effect-task-host"

// 200 ms, 600 ms, 1.8 s, then every 5 s: stored with the record, kept by a recovered task
const backoff: TaskBackoff = { initialMillis: 200, factor: 3, maxMillis: 5_000 }
const spawn = BackgroundTaskHost.use((host) =>
  host.spawnManaged("s-1", { id: "upload-1", kind: "other", producer: "app", maxAttempts: 5, backoff }, Effect.void))`,
  TaskInput: `import { Effect, Schema } from "effect"
import { BackgroundTaskHost, type BackgroundTaskRecord } from "effect-task-host"

const Job = Schema.Struct({ url: Schema.String })
const spawn = BackgroundTaskHost.use((host) =>
  host.spawnManaged("s-1", {
    id: "crawl-1", kind: "other", producer: "crawler", input: Schema.encodeSync(Job)({ url: "https://example.com" })
  }, Effect.void))
// in the recovery handler
const jobOf = (record: BackgroundTaskRecord) => Schema.decodeUnknownEffect(Job)(record.input)`,
  TaskSettings: `import type { BackgroundTaskRecord } from "effect-task-host"

// the options a recovered task keeps: { timeoutMillis?, cancelGracePeriodMillis?, backoff? }
const timeoutOf = (record: BackgroundTaskRecord) => record.settings?.timeoutMillis`,
  TaskCompletion: `import { BackgroundTaskHost } from "effect-task-host"

const finish = (taskId: string) =>
  BackgroundTaskHost.use((host) => host.complete(taskId, { state: "completed", summary: "done" }))`,
  TaskFilter: `import { BackgroundTaskHost, type TaskFilter } from "effect-task-host"

const filter: TaskFilter = { sessionId: "s-1", kind: "subagent", includeTerminal: true }
const subagents = BackgroundTaskHost.use((host) => host.list(filter))`,
  TaskKind: `import { TaskKind } from "effect-task-host"

const kind: TaskKind = "monitor"
const kinds = TaskKind.literals // ["monitor", "subagent", "observer", "other"]`,
  TaskOutcome: `import { Option } from "effect"
import type { BackgroundTaskRecord } from "effect-task-host"

const summary = (record: BackgroundTaskRecord) =>
  Option.flatMap(Option.orElse(record.result, () => record.failure), (outcome) => outcome.summary)`,
  TaskRegistration: `import { Effect } from "effect"
import { BackgroundTaskHost, type TaskRegistration } from "effect-task-host"

const spec: TaskRegistration = { id: "monitor-1", kind: "monitor", producer: "app", closePolicy: "transfer" }
const started = BackgroundTaskHost.use((host) => host.spawnManaged("s-1", spec, Effect.never))`,
  TaskScope: `import { BackgroundTaskHost, type TaskScope } from "effect-task-host"

const next: TaskScope = { sessionId: "s-2" }
const moved = BackgroundTaskHost.use((host) => host.transfer("t-1", next))`,
  TaskState: `import { Schema } from "effect"
import { TaskState } from "effect-task-host"

const state = Schema.decodeUnknownSync(TaskState)("cancel_requested")`,
  TaskUpdate: `import { BackgroundTaskHost } from "effect-task-host"

const report = (taskId: string) =>
  BackgroundTaskHost.use((host) => host.update(taskId, { state: "waiting", progress: "needs input" }))`,
  TerminalState: `import { isTerminal, type TaskState, type TerminalState } from "effect-task-host"

const final = (state: TaskState): TerminalState | undefined => isTerminal(state) ? state : undefined`,
  BackgroundTaskHostOptions: `import { BackgroundTaskHost, type BackgroundTaskHostOptions } from "effect-task-host"

const options: BackgroundTaskHostOptions = { cancelGracePeriod: "10 seconds" }
const HostLive = BackgroundTaskHost.layerWith(options) // Layer<BackgroundTaskHost, SessionError>`,
  BackgroundTaskHostService: `import { Effect } from "effect"
import { BackgroundTaskHost, type BackgroundTaskHostService } from "effect-task-host"

// application code can take the service as a plain argument
const countLive = (host: BackgroundTaskHostService) => Effect.map(host.list(), (records) => records.length)
const program = BackgroundTaskHost.use(countLive)`,
  LocalBackgroundTaskHost: `import { Effect } from "effect"
import { BackgroundTaskHost, LocalBackgroundTaskHost } from "effect-task-host"

const program = BackgroundTaskHost.use((host) => host.list()).pipe(
  Effect.provide(LocalBackgroundTaskHost.layer)
)`,
  InvalidTransition: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const finishOnce = (taskId: string) =>
  BackgroundTaskHost.use((host) => host.complete(taskId, { state: "completed" })).pipe(
    Effect.catchTag("InvalidTransition", (e) => Effect.logWarning(e.message))
  )`,
  InvokeError: `import { Effect } from "effect"
import { InvokeError } from "effect-task-host"

// a managed task that fails with it ends "failed", with the message as summary
const task = Effect.fail(new InvokeError({ message: "model quota exceeded" }))`,
  isPluginError: `import { isPluginError } from "effect-task-host"

const describeFailure = (u: unknown) => isPluginError(u) ? \`\${u._tag}: \${u.message}\` : String(u)`,
  RegistrationError: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const safeRegister = BackgroundTaskHost.use((host) =>
  host.register({ scope: { sessionId: "s-1" }, id: "", kind: "other", producer: "app" })).pipe(
    Effect.catchTag("RegistrationError", (e) => Effect.logError(e.message)) // the empty id is refused
  )`,
  SessionError: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

// every call on a host whose layer has closed fails with SessionError
const listOrEmpty = BackgroundTaskHost.use((host) => host.list()).pipe(
  Effect.catchTag("SessionError", () => Effect.succeed([]))
)`,
  SnapshotError: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const listed = BackgroundTaskHost.use((host) => host.list({ sessionId: "s-1" })).pipe(
  Effect.catchTag("SnapshotError", (e) => Effect.die(e))
)`,
  TaskAlreadyExists: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const startOnce = BackgroundTaskHost.use((host) =>
  host.spawnManaged("s-1", { id: "indexer", kind: "other", producer: "app" }, Effect.never)).pipe(
    Effect.asVoid,
    Effect.catchTag("TaskAlreadyExists", () => Effect.void) // already running somewhere
  )`,
  TaskNotFound: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const cancelIfKnown = (taskId: string) =>
  BackgroundTaskHost.use((host) => host.requestCancel(taskId)).pipe(
    Effect.asVoid,
    Effect.catchTag("TaskNotFound", () => Effect.void)
  )`,
  BackgroundTaskHostStoreOptions: `import { Effect, Layer } from "effect"
import { BackgroundTaskHost, TaskStore } from "effect-task-host"
import * as NodeSqliteClient from "effect-task-host/sqlite"

const HostLive = BackgroundTaskHost.layerStore({
  lease: { ttl: "15 seconds", onHeld: "wait" },
  recovery: { indexer: (record) => Effect.log(\`re-indexing for \${record.id}\`).pipe(Effect.as("re-indexed")) }
}).pipe(Layer.provide(TaskStore.layerSql()), Layer.provide(NodeSqliteClient.layer({ filename: "tasks.db" })))`,
  RecoveryDecision: `import { Effect } from "effect"
import type { RecoveryDecision, RecoveryHandler } from "effect-task-host"

// too many crashes: end it instead of running it again
const stale: RecoveryDecision = { _tag: "Fail", reason: "crashed three times" }
const resume: RecoveryHandler = (record) => record.attempt.attempt >= 3 ? stale : Effect.succeed("done")`,
  ExternalRecoveryHandler: `import { Effect } from "effect"
import type { ExternalRecoveryHandler } from "effect-task-host"

// the remote build keeps running: reattach it with the effect that stops it
const reattachBuild: ExternalRecoveryHandler = (record) =>
  Effect.sync(() => console.log(\`stopping remote build \${record.id}\`))`,
  RecoveryHandler: `import { Effect } from "effect"
import { type RecoveryHandler, TaskContext } from "effect-task-host"

// re-runs a crawl from where its record says it was
const resumeCrawl: RecoveryHandler = (record) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    yield* ctx.progress(\`resuming \${record.id} (attempt \${record.attempt.attempt})\`)
    return "crawled"
  })`,
  RecoveryReport: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const logRecovery = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const { failed, quarantined, respawned } = yield* host.recovery
  yield* Effect.log(\`re-spawned \${respawned.length}, failed \${failed.length}, quarantined \${quarantined.length}\`)
})`,
  WatchOptions: `import { Effect, Stream } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

// a reader that stored the last seq it handled resumes after a restart
const resume = (lastSeen: number) =>
  Effect.gen(function*() {
    const host = yield* BackgroundTaskHost
    const watched = yield* host.watch({ sessionId: "s-1", fromSeq: lastSeen })
    yield* Stream.runForEach(watched.events, (event) => Effect.log(event._tag))
  }).pipe(Effect.scoped)`,
  CorruptRecord: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const reportCorruption = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const { quarantined } = yield* host.recovery
  for (const error of quarantined) yield* Effect.logWarning(\`\${error.table} row \${error.key}: \${error.message}\`)
})`,
  LeaseHeld: `import { Effect, Layer } from "effect"
import { BackgroundTaskHost, TaskStore } from "effect-task-host"
import * as NodeSqliteClient from "effect-task-host/sqlite"

const HostLive = BackgroundTaskHost.layerStore().pipe(
  Layer.provide(TaskStore.layerSql()),
  Layer.provide(NodeSqliteClient.layer({ filename: "tasks.db" }))
)
const program = BackgroundTaskHost.use((host) => host.stats).pipe(
  Effect.provide(HostLive),
  Effect.catchTag("LeaseHeld", (held) => Effect.logError(\`another host runs these tasks: \${held.holder}\`))
)`,
  TaskStoreError: `import { Effect, Layer } from "effect"
import { BackgroundTaskHost, TaskStore } from "effect-task-host"
import * as NodeSqliteClient from "effect-task-host/sqlite"

const HostLive = BackgroundTaskHost.layerStore().pipe(
  Layer.provide(TaskStore.layerSql({ tablePrefix: "agent_" })),
  Layer.provide(NodeSqliteClient.layer({ filename: "tasks.db" }))
)
const program = BackgroundTaskHost.use((host) => host.stats).pipe(
  Effect.provide(HostLive),
  Effect.catchTag("TaskStoreError", (error) => Effect.logError(\`\${error.operation}: \${error.message}\`))
)`,
  InvalidOptions: `import { Effect, Layer } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

const program = Layer.build(BackgroundTaskHost.layerWith({ subscriberBuffer: 0 })).pipe(
  Effect.scoped,
  Effect.catchTag("InvalidOptions", (error) => Effect.logError(\`\${error.option}: \${error.message}\`))
)`,
  TaskTimeout: `import { Effect } from "effect"
import { BackgroundTaskHost } from "effect-task-host"

// the attempt fails with TaskTimeout after 30 seconds; the record ends failed, "timed out after 30s"
const spawn = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return yield* host.spawnManaged("s-1", { id: "t-1", kind: "other", producer: "app", timeout: "30 seconds" }, Effect.never)
})`,
  HostStopped: `import type { TaskStoreError } from "effect-task-host"

const stoppedForGood = (error: TaskStoreError) => error.reason._tag === "HostStopped"`,
  StoreMisconfigured: `import type { TaskStoreError } from "effect-task-host"

const setUpWrong = (error: TaskStoreError) => error.reason._tag === "StoreMisconfigured"`,
  StoreRejected: `import type { TaskStoreError } from "effect-task-host"

const refused = (error: TaskStoreError) => error.reason._tag === "StoreRejected"`,
  StoreUnreachable: `import type { TaskStoreError } from "effect-task-host"

// an outage: worth trying again (error.isRetryable says the same)
const outage = (error: TaskStoreError) => error.reason._tag === "StoreUnreachable"`,
  TaskStoreErrorReason: `import { Schema } from "effect"
import { TaskStoreErrorReason } from "effect-task-host"

const decodeReason = Schema.decodeUnknownSync(TaskStoreErrorReason)
const reason = decodeReason({ _tag: "StoreUnreachable", operation: "write", message: "connection refused" })`,
  TaskStoreSqlOptions: `import { TaskStore } from "effect-task-host"

// two applications in one database, each with its own tables
const StoreLive = TaskStore.layerSql({ tablePrefix: "billing_tasks_" })`
}

const categories = ["services", "layers", "models", "constructors", "guards", "getters", "filters", "events", "errors", "modules"]

interface Entry {
  readonly name: string
  readonly kind: string
  readonly category: string
  readonly summary: string
  readonly snippet: string
  readonly file: string
  /** A namespace's exports, with their one-line descriptions. */
  readonly members: ReadonlyArray<readonly [name: string, summary: string]>
}

const program = ts.createProgram([join(root, "src", "index.ts")], {
  allowImportingTsExtensions: true,
  noEmit: true,
  strict: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  skipLibCheck: true
})
const checker = program.getTypeChecker()
const index = program.getSourceFile(join(root, "src", "index.ts"))!
const moduleSymbol = checker.getSymbolAtLocation(index)!

/** The raw JSDoc of a declaration, without the comment markers. */
const jsdocOf = (node: ts.Node): string | undefined => {
  if (ts.isSourceFile(node)) return moduleDocOf(node)
  const holder = ts.isVariableDeclaration(node) ? node.parent.parent : node
  const docs = ts.getJSDocCommentsAndTags(holder).filter(ts.isJSDoc)
  const doc = docs.at(-1)
  if (doc === undefined) return undefined
  return doc.getFullText().replace(/^\s*\/\*\*/, "").replace(/\*\/\s*$/, "").split("\n")
    .map((line) => line.replace(/^\s*\* ?/, "")).join("\n").trim()
}

/** The leading JSDoc of a module file (the one above its imports). */
const moduleDocOf = (file: ts.SourceFile): string | undefined => {
  const range = ts.getLeadingCommentRanges(file.text, 0)?.find((r) => file.text.startsWith("/**", r.pos))
  if (range === undefined) return undefined
  return file.text.slice(range.pos, range.end).replace(/^\/\*\*/, "").replace(/\*\/$/, "").split("\n")
    .map((line) => line.replace(/^\s*\* ?/, "")).join("\n").trim()
}

/** The exports of a namespace export, each with its JSDoc. */
const membersOf = (symbol: ts.Symbol): Array<readonly [name: string, doc: string]> =>
  checker.getExportsOfModule(symbol).map((member) => {
    const doc = (member.declarations ?? []).map(jsdocOf).find((d) => d !== undefined) ?? ""
    return [member.name, doc] as const
  })

const firstSentence = (doc: string): string => {
  const paragraph = doc.split(/\n\s*\n/)[0]!.replace(/\s*\n\s*/g, " ").trim()
  if (paragraph.startsWith("@")) return ""
  const match = /^(.*?[.!?])(\s|$)/.exec(paragraph)
  return (match?.[1] ?? paragraph).replace(/\{@link ([^}]+)\}/g, "`$1`")
}

const exampleOf = (doc: string): string | undefined => {
  const match = /```ts\n([\s\S]*?)\n```/.exec(doc)
  return match?.[1]
}

const kindOf = (declaration: ts.Declaration): string =>
  ts.isSourceFile(declaration)
    ? "namespace"
    : ts.isClassDeclaration(declaration)
    ? "class"
    : ts.isInterfaceDeclaration(declaration)
    ? "interface"
    : ts.isTypeAliasDeclaration(declaration)
    ? "type"
    : ts.isFunctionDeclaration(declaration)
    ? "function"
    : "const"

const entries: Array<Entry> = []
const problems: Array<string> = []
for (const exported of checker.getExportsOfModule(moduleSymbol)) {
  const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
  const declarations = symbol.declarations ?? []
  const documented = declarations.map((d) => [d, jsdocOf(d)] as const)
  const docs = documented.map(([, doc]) => doc ?? "")
  const summary = docs.map(firstSentence).find((s) => s !== "") ?? ""
  const category = docs.map((doc) => /@category (\w+)/.exec(doc)?.[1]).find((c) => c !== undefined) ?? "models"
  const members = declarations.some(ts.isSourceFile) ? membersOf(symbol) : []
  const memberExample = [...members].sort(([a], [b]) => Number(b === "layer") - Number(a === "layer"))
    .map(([, doc]) => exampleOf(doc)).find((e) => e !== undefined)
  const snippet = docs.map(exampleOf).find((e) => e !== undefined) ?? memberExample ?? snippets[exported.name]
  for (const [name, doc] of members) {
    if (firstSentence(doc) === "") problems.push(`${exported.name}.${name}: no JSDoc summary`)
  }
  const kinds = [...new Set(declarations.map(kindOf))]
  if (summary === "") problems.push(`${exported.name}: no JSDoc summary`)
  if (snippet === undefined) problems.push(`${exported.name}: neither a JSDoc example nor a snippet in scripts/api-docs.ts`)
  entries.push({
    name: exported.name,
    kind: kinds.join(" + "),
    category: members.length > 0 ? "modules" : categories.includes(category) ? category : "models",
    members: members.map(([name, doc]) => [name, firstSentence(doc)] as const),
    summary,
    snippet: snippet ?? "",
    file: declarations[0]?.getSourceFile().fileName.slice(root.length + 1) ?? "?"
  })
}
const unused = Object.keys(snippets).filter((name) => !entries.some((e) => e.name === name))
if (unused.length > 0) problems.push(`snippets for names that are not exported: ${unused.join(", ")}`)
if (problems.length > 0) {
  console.error(`scripts/api-docs.ts:\n  ${problems.join("\n  ")}`)
  process.exit(1)
}

// the service's methods, from the interface's member docs
const service = checker.getExportsOfModule(moduleSymbol).find((s) => s.name === "BackgroundTaskHostService")!
const serviceDecl = checker.getAliasedSymbol(service).declarations!.find(ts.isInterfaceDeclaration)!
const methods = serviceDecl.members.flatMap((member) => {
  const name = member.name?.getText()
  const doc = jsdocOf(member)
  return name === undefined ? [] : [[name, doc === undefined ? "" : firstSentence(doc)] as const]
})

const anchor = (name: string) => name.toLowerCase()
const lines: Array<string> = [
  "# API reference",
  "",
  "<!-- Generated by `node scripts/api-docs.ts` from the JSDoc in src/; do not edit by hand. -->",
  "",
  "Every public export of `effect-task-host` (`src/index.ts`), by category: a one-line",
  "description from its JSDoc and a snippet (the JSDoc's example where it has one).",
  "Every snippet is type-checked by `npm test`, and a test fails when this file is",
  "older than the JSDoc (regenerate it with `node scripts/api-docs.ts`). Concepts are",
  "in [guide.md](guide.md), task-sized examples in [recipes.md](recipes.md).",
  ""
]
for (const category of categories) {
  const inCategory = entries.filter((e) => e.category === category).sort((a, b) => a.name.localeCompare(b.name))
  if (inCategory.length === 0) continue
  lines.push(`- **${category}**: ${inCategory.map((e) => `[\`${e.name}\`](#${anchor(e.name)})`).join(", ")}`)
}
for (const category of categories) {
  const inCategory = entries.filter((e) => e.category === category).sort((a, b) => a.name.localeCompare(b.name))
  if (inCategory.length === 0) continue
  lines.push("", `## ${category}`)
  for (const entry of inCategory) {
    lines.push("", `### ${entry.name}`, "", `${entry.kind} · \`${entry.file}\` — ${entry.summary}`, "", "```ts", entry.snippet, "```")
    if (entry.members.length > 0) {
      lines.push("", "| export | what it is |", "|---|---|")
      for (const [name, doc] of entry.members) lines.push(`| \`${entry.name}.${name}\` | ${doc.replaceAll("|", "\\|")} |`)
    }
    if (entry.name === "BackgroundTaskHostService") {
      lines.push("", "| method | what it does |", "|---|---|")
      for (const [name, doc] of methods) lines.push(`| \`${name}\` | ${doc.replaceAll("|", "\\|")} |`)
    }
  }
}
const text = lines.join("\n") + "\n"

if (process.argv.includes("--check")) {
  const current = readFileSync(output, "utf8")
  if (current !== text) {
    console.error("docs/api.md is out of date: run `node scripts/api-docs.ts`")
    process.exit(1)
  }
  console.log(`docs/api.md is up to date (${entries.length} exports)`)
} else {
  writeFileSync(output, text)
  console.log(`docs/api.md: ${entries.length} exports`)
}
