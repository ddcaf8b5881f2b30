/**
 * every public method of the host and of a session handle, driven
 * with arbitrary JavaScript values. For each call:
 *
 * - never a synchronous throw (building the call's Effect),
 * - never a defect (a `Die` in the Cause), an interruption, or a crash (an
 *   uncaught exception in the process while the fuzz runs),
 * - never a hang: the call completes within a bounded number of event-loop
 *   turns, with the `TestClock` moved past every grace period, timeout and
 *   backoff in between (so the bound depends on neither the machine's load
 *   nor on real time),
 * - a failure is a `PluginError` of the method's signature,
 * - a call with an argument that is wrong by construction (a value of the
 *   wrong type, an object with a field of the wrong type, a hostile value:
 *   `null`-prototype object, throwing getters and proxies, BigInt, Symbol,
 *   10,000-deep nesting, cycles) fails, with a message that names that
 *   argument (its parameter name as the interface spells it, or the words
 *   listed in `names`) in at most 1,000 characters,
 * - a call that fails changed nothing stored: the host's `seq` and records
 *   are the same before and after.
 *
 * The calls are sampled from a Schema-derived `Arbitrary` (effect's property
 * library, as the replay test uses) with a fixed seed (`FUZZ_SEED` overrides
 * it; the durable run uses the next seed), so a run is repeatable; the
 * counts are printed, with a few examples of each kind of violation. It runs on the memory
 * host and on a durable one (SQLite), whose store must load back with
 * nothing quarantined and every event row decoding.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Arbitrary,
  Cause,
  Context,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Schedule,
  Schema,
  Scope
} from "effect"
import { Reactivity } from "effect/reactivity"
import type { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type BackgroundTaskSession,
  InvokeError,
  isPluginError,
  TaskContext
} from "../src/index.ts"
import * as NodeSqliteClient from "../src/NodeSqliteClient.ts"
import { eventRows, makeStore, sqlStore } from "./utils/store.ts"

type Host = BackgroundTaskHost["Service"]

// -----------------------------------------------------------------------------
// values
// -----------------------------------------------------------------------------

/** A value for one argument, and whether it is valid for the parameter (`undefined`: it may be either). */
interface Arg {
  readonly value: unknown
  readonly valid: boolean | undefined
  readonly label: string
}

const throwing = (what: string) => () => {
  throw new Error(`fuzz: ${what}`)
}

const throwingHandler: ProxyHandler<object> = {
  get: throwing("proxy get"),
  has: throwing("proxy has"),
  ownKeys: throwing("proxy ownKeys"),
  getOwnPropertyDescriptor: throwing("proxy getOwnPropertyDescriptor"),
  getPrototypeOf: throwing("proxy getPrototypeOf"),
  apply: throwing("proxy apply")
}

/** Every field name a host reads from its arguments, each a throwing getter. */
const fieldNames = [
  "id", "kind", "producer", "scope", "sessionId", "parentTaskId", "childSessionId", "cancelPolicy", "closePolicy",
  "timeout", "cancelGracePeriod", "maxAttempts", "idempotencyKey", "retry", "attempt", "state", "progress", "summary",
  "includeTerminal", "fromSeq", "successor", "then", "toJSON"
]
const throwingGetters = () => {
  const value = {}
  for (const name of fieldNames) Object.defineProperty(value, name, { get: throwing(`getter ${name}`), enumerable: true })
  return value
}

const deep = (depth: number, wrap: (inner: unknown) => unknown) => {
  let value: unknown = {}
  for (let i = 0; i < depth; i++) value = wrap(value)
  return value
}

const huge = "x".repeat(1_000_000)

type Shape = "primitive" | "throwsOnRead" | "object" | "array" | "function"

/** Hostile values, made fresh for each use. */
const hostile: ReadonlyArray<readonly [string, Shape, () => unknown]> = [
  ["null-prototype object", "object", () => Object.create(null)],
  ["object whose toString throws", "object", () => ({ toString: throwing("toString"), valueOf: throwing("valueOf") })],
  ["object of throwing getters", "throwsOnRead", throwingGetters],
  ["throwing Proxy", "throwsOnRead", () => new Proxy({}, throwingHandler)],
  ["throwing function Proxy", "throwsOnRead", () => new Proxy(() => {}, throwingHandler)],
  ["revoked Proxy", "throwsOnRead", () => {
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    return proxy
  }],
  ["Symbol", "primitive", () => Symbol("fuzz")],
  ["BigInt", "primitive", () => 10n],
  ["10,000-deep object", "object", () => deep(10_000, (inner) => ({ a: inner }))],
  ["10,000-deep array", "array", () => deep(10_000, (inner) => [inner])],
  ["cyclic object", "object", () => {
    const value: Record<string, unknown> = {}
    value.self = value
    return value
  }],
  ["function", "function", () => () => 1],
  ["Promise", "object", () => Promise.resolve(1)],
  ["array of mixed values", "array", () => [1, "a", null]],
  ["invalid Date", "object", () => new Date(Number.NaN)],
  ["huge string", "primitive", () => huge],
  ["empty string", "primitive", () => ""],
  ["NaN", "primitive", () => Number.NaN],
  ["Infinity", "primitive", () => Infinity],
  ["-0", "primitive", () => -0],
  ["42", "primitive", () => 42],
  ["1.5", "primitive", () => 1.5],
  ["true", "primitive", () => true],
  ["null", "primitive", () => null],
  ["undefined", "primitive", () => undefined]
]

// -----------------------------------------------------------------------------
// parameters
// -----------------------------------------------------------------------------

/**
 * One kind of parameter: valid values (some of which the call may still
 * refuse, e.g. an unknown id), values that are wrong by construction, and
 * how a hostile or generated value is judged.
 */
interface ParamType {
  readonly valid: ReadonlyArray<() => unknown>
  readonly invalid: ReadonlyArray<() => unknown>
  /** For a hostile or generated value: valid, invalid, or either. */
  readonly judge: (value: unknown, shape: Shape) => boolean | undefined
}

const isString = (u: unknown) => typeof u === "string"

/** A surrogate without its pair: an id (`BackgroundTask.Id`) is well-formed Unicode, so it reads back from a store as itself. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** A string parameter; an `id` is a non-empty string of well-formed Unicode (a session id: `BackgroundTask.Id`). */
const stringParam = (valid: ReadonlyArray<string>, id = false, optional = false): ParamType => ({
  valid: [...valid.map((value) => () => value), ...(optional ? [() => undefined] : [])],
  invalid: [() => 42, () => null, () => ({}), () => 10n, () => Symbol("fuzz"), ...(id ? [() => "", () => "s\uD800"] : [])],
  judge: (value) =>
    (optional && value === undefined) || (isString(value) && (!id || (value !== "" && !loneSurrogate.test(value))))
})

/** An object parameter whose every field is optional: an empty-looking object may be valid. */
const optionalFieldsParam = (
  valid: ReadonlyArray<() => unknown>,
  invalid: ReadonlyArray<() => unknown>,
  optional: boolean
): ParamType => ({
  valid: [...valid, ...(optional ? [() => undefined] : [])],
  invalid,
  judge: (value, shape) =>
    value === undefined ? optional : shape === "primitive" || shape === "throwsOnRead" ? false : undefined
})

/** An object parameter with required fields: no hostile value has them. */
const requiredFieldsParam = (valid: ReadonlyArray<() => unknown>, invalid: ReadonlyArray<() => unknown>): ParamType => ({
  valid,
  invalid,
  judge: () => false
})

const effectParam = (valid: ReadonlyArray<() => unknown>, optional: boolean): ParamType => ({
  valid: [...valid, ...(optional ? [() => undefined] : [])],
  invalid: [() => 42, () => () => Effect.void, () => Promise.resolve(undefined), () => ({ _tag: "Success", value: 1 })],
  judge: (value) => optional && value === undefined ? true : false
})

const ids = ["t1", "t2", "t3", "unknown"]
const sessions = ["s1", "s2", "s3"]

const baseSpecs = [
  { id: "t1", kind: "monitor", producer: "p" },
  { id: "t2", kind: "other", producer: "p", closePolicy: "cancel" },
  { id: "t3", kind: "subagent", producer: "p", cancelPolicy: "abort_local", closePolicy: "transfer" },
  { id: "t1", kind: "observer", producer: "q", cancelPolicy: "external", idempotencyKey: "k1" },
  { id: "t2", kind: "monitor", producer: "p", parentTaskId: "t1" },
  { id: "t3", kind: "other", producer: "p", maxAttempts: 2, retry: Schedule.spaced("1 second"), timeout: "5 seconds" },
  { id: "t2", kind: "monitor", producer: "p", cancelGracePeriod: "500 millis", maxAttempts: 3 }
] as const

/** A valid spec with one field of the wrong type or value. */
const badFields: ReadonlyArray<readonly [string, () => unknown]> = [
  ["id", () => 42],
  ["id", () => ""],
  ["id", () => new Proxy({}, throwingHandler)],
  ["kind", () => "nope"],
  ["kind", () => Symbol("kind")],
  ["producer", () => 5],
  ["producer", () => Object.create(null)],
  ["cancelPolicy", () => "sometimes"],
  ["closePolicy", () => 1],
  ["timeout", () => -1],
  ["timeout", () => "soon"],
  ["cancelGracePeriod", () => "x"],
  ["maxAttempts", () => 0],
  ["maxAttempts", () => 1.5],
  ["maxAttempts", () => 10n],
  ["idempotencyKey", () => ""],
  ["parentTaskId", () => 5],
  ["retry", () => 42],
  ["retry", () => ({})]
]

const withField = (base: object, field: string, value: unknown) => ({ ...base, [field]: value })

const specParam = requiredFieldsParam(
  baseSpecs.map((spec) => () => ({ ...spec })),
  badFields.flatMap(([field, value]) => baseSpecs.slice(0, 2).map((spec) => () => withField(spec, field, value())))
)

const requestParam = requiredFieldsParam(
  baseSpecs.flatMap((spec) => sessions.slice(0, 2).map((sessionId) => () => ({ ...spec, scope: { sessionId } }))),
  [
    ...badFields.map(([field, value]) => () => withField({ ...baseSpecs[0], scope: { sessionId: "s1" } }, field, value())),
    () => ({ ...baseSpecs[0], scope: null }),
    () => ({ ...baseSpecs[0], scope: { sessionId: "" } }),
    () => ({ ...baseSpecs[0], scope: { sessionId: 5 } }),
    () => ({ ...baseSpecs[0], scope: new Proxy({}, throwingHandler) }),
    () => ({ ...baseSpecs[0], scope: { sessionId: "s1" }, attempt: { attempt: -1 } }),
    () => ({ ...baseSpecs[0] })
  ]
)

const updateParam = optionalFieldsParam(
  [() => ({}), () => ({ state: "running" }), () => ({ state: "waiting" }), () => ({ state: "cancel_requested" }),
    () => ({ progress: "half way" }), () => ({ state: "completed" }), () => ({ state: "nonsense", progress: "p" })],
  [() => ({ state: 10n }), () => ({ state: 42 }), () => ({ state: Symbol("state") }), () => ({ progress: 5 }),
    () => ({ progress: {} }), () => ({ state: new Proxy({}, throwingHandler) }), () => ({ progress: 10n })],
  false
)

const completionParam = requiredFieldsParam(
  [() => ({ state: "completed" }), () => ({ state: "failed", summary: "broke" }), () => ({ state: "cancelled" }),
    () => ({ state: "running" })],
  [() => ({ state: 10n }), () => ({ state: 42 }), () => ({ state: "completed", summary: 5 }),
    () => ({ state: "failed", summary: 10n }), () => ({ state: Object.create(null) })]
)

const filterInvalid = [() => ({ sessionId: 5 }), () => ({ sessionId: "" }), () => ({ kind: "nope" }),
  () => ({ includeTerminal: "yes" }), () => ({ kind: 10n })]

const filterParam = optionalFieldsParam(
  [() => ({}), () => ({ sessionId: "s1" }), () => ({ kind: "monitor", includeTerminal: true }), () => ({ includeTerminal: true })],
  filterInvalid,
  true
)

const sessionFilterParam = optionalFieldsParam(
  [() => ({}), () => ({ kind: "other" }), () => ({ includeTerminal: true })],
  [() => ({ kind: "nope" }), () => ({ includeTerminal: 1 }), () => ({ kind: Symbol("kind") })],
  true
)

const watchParam = optionalFieldsParam(
  [() => ({}), () => ({ sessionId: "s2" }), () => ({ fromSeq: 0 }), () => ({ kind: "monitor", includeTerminal: true })],
  [...filterInvalid, () => ({ fromSeq: -1 }), () => ({ fromSeq: 1.5 }), () => ({ fromSeq: 10n }), () => ({ fromSeq: "0" })],
  true
)

const scopeParam = requiredFieldsParam(
  [() => ({ sessionId: "s2" }), () => ({ sessionId: "s3" })],
  [() => ({ sessionId: "" }), () => ({ sessionId: 5 }), () => ({}), () => ({ sessionId: 10n })]
)

const sessionOptionsParam = optionalFieldsParam(
  [() => ({}), () => ({ successor: "s3" })],
  [() => ({ successor: 5 }), () => ({ successor: "" }), () => ({ successor: 10n }), () => ({ successor: {} })],
  true
)

const taskIdsParam: ParamType = {
  valid: [() => ["t1"], () => ["t2", "t3"], () => [], () => new Set(["t1"])],
  invalid: [() => [5], () => [Symbol("id")], () => new Set([10n]), () => ({ [Symbol.iterator]: throwing("iterator") }),
    () => ({ [Symbol.iterator]: () => ({ next: throwing("next") }) }), () => 5, () => null],
  // a string is an iterable of strings; arrays in the hostile pool hold other values
  judge: (value) => isString(value)
}

const cooperative = Effect.gen(function*() {
  const ctx = yield* TaskContext
  yield* ctx.cancelRequested
})

const managedTaskParam = effectParam(
  [() => Effect.never, () => Effect.void, () => Effect.succeed("ok"), () => Effect.fail("boom"), () => cooperative],
  false
)
const hiddenTaskParam = effectParam([() => Effect.void, () => Effect.fail(new InvokeError({ message: "hidden failed" }))], false)
const cancelParam = effectParam([() => Effect.void, () => Effect.never, () => Effect.sleep("2 seconds")], true)

const P = {
  sessionId: stringParam(sessions, true),
  taskId: stringParam(ids),
  reason: stringParam(["stop"], false, true),
  state: stringParam(["completed", "failed", "cancelled", "running", "waiting", "pending", "bogus"]),
  label: stringParam(["helper"]),
  spec: specParam,
  request: requestParam,
  update: updateParam,
  completion: completionParam,
  filter: filterParam,
  sessionFilter: sessionFilterParam,
  watchOptions: watchParam,
  scope: scopeParam,
  sessionOptions: sessionOptionsParam,
  taskIds: taskIdsParam,
  task: managedTaskParam,
  hiddenTask: hiddenTaskParam,
  cancel: cancelParam
} as const

type ParamName = keyof typeof P

/** The words a message may use to name a parameter. */
const names: { readonly [K in string]?: ReadonlyArray<string> } = {
  sessionId: ["sessionId", "session id"],
  fromSessionId: ["fromSessionId", "session id"],
  toSessionId: ["toSessionId", "session id"],
  successorSessionId: ["successorSessionId", "successor", "session id"],
  taskId: ["taskId", "task id"],
  taskIds: ["taskIds", "task ids"],
  spec: ["spec", "registration"],
  request: ["request", "registration"],
  filter: ["filter"],
  options: ["options", "filter", "fromSeq", "successor"],
  state: ["state"],
  update: ["update"],
  completion: ["completion"],
  reason: ["reason"],
  scope: ["scope"],
  task: ["task"],
  cancel: ["cancel"],
  label: ["label"]
}

// -----------------------------------------------------------------------------
// methods
// -----------------------------------------------------------------------------

interface Env {
  readonly host: Host
  readonly session: BackgroundTaskSession
}

interface Method {
  readonly name: string
  /** Each parameter: its name in the interface, and its type. */
  readonly params: ReadonlyArray<readonly [string, ParamName]>
  /** The error tags of the method's signature. */
  readonly errors: ReadonlyArray<string>
  readonly invoke: (env: Env, args: ReadonlyArray<any>) => unknown
}

const RegisterError = ["RegistrationError", "TaskAlreadyExists", "TaskNotFound", "InvalidTransition", "SessionError"]
const Any = ["RegistrationError", "SnapshotError", "InvokeError", "SessionError", "TaskNotFound", "TaskAlreadyExists", "InvalidTransition"]

const methods: ReadonlyArray<Method> = [
  { name: "register", params: [["request", "request"]], errors: RegisterError, invoke: ({ host }, [a]) => host.register(a) },
  {
    name: "update",
    params: [["taskId", "taskId"], ["update", "update"]],
    errors: ["TaskNotFound", "InvalidTransition", "InvokeError", "SessionError"],
    invoke: ({ host }, [a, b]) => host.update(a, b)
  },
  {
    name: "complete",
    params: [["taskId", "taskId"], ["completion", "completion"]],
    errors: ["TaskNotFound", "InvalidTransition", "InvokeError", "SessionError"],
    invoke: ({ host }, [a, b]) => host.complete(a, b)
  },
  {
    name: "requestCancel",
    params: [["taskId", "taskId"], ["reason", "reason"]],
    errors: ["TaskNotFound", "InvalidTransition", "SessionError"],
    invoke: ({ host }, [a, b]) => host.requestCancel(a, b)
  },
  { name: "get", params: [["taskId", "taskId"]], errors: ["SessionError"], invoke: ({ host }, [a]) => host.get(a) },
  { name: "list", params: [["filter", "filter"]], errors: ["SnapshotError", "SessionError"], invoke: ({ host }, [a]) => host.list(a) },
  {
    name: "transfer",
    params: [["taskId", "taskId"], ["scope", "scope"]],
    errors: ["TaskNotFound", "TaskAlreadyExists", "SessionError"],
    invoke: ({ host }, [a, b]) => host.transfer(a, b)
  },
  { name: "subscribe", params: [["filter", "filter"]], errors: ["SnapshotError", "SessionError"], invoke: ({ host }, [a]) => host.subscribe(a) },
  { name: "watch", params: [["options", "watchOptions"]], errors: ["SnapshotError", "SessionError"], invoke: ({ host }, [a]) => host.watch(a) },
  { name: "stats", params: [], errors: ["SessionError"], invoke: ({ host }) => host.stats },
  {
    name: "spawnHidden",
    params: [["sessionId", "sessionId"], ["label", "label"], ["task", "hiddenTask"]],
    errors: ["SessionError"],
    invoke: ({ host }, [a, b, c]) => host.spawnHidden(a, b, c)
  },
  { name: "awaitHidden", params: [["sessionId", "sessionId"]], errors: Any, invoke: ({ host }, [a]) => host.awaitHidden(a) },
  {
    name: "spawnManaged",
    params: [["sessionId", "sessionId"], ["spec", "spec"], ["task", "task"]],
    errors: RegisterError,
    invoke: ({ host }, [a, b, c]) => host.spawnManaged(a, b, c)
  },
  {
    name: "registerExternal",
    params: [["sessionId", "sessionId"], ["spec", "spec"], ["cancel", "cancel"]],
    errors: RegisterError,
    invoke: ({ host }, [a, b, c]) => host.registerExternal(a, b, c)
  },
  ...(["unregisterExternal", "cancelManaged", "getManaged"] as const).map((name): Method => ({
    name,
    params: [["sessionId", "sessionId"], ["taskId", "taskId"]],
    errors: ["SessionError"],
    invoke: ({ host }, [a, b]) => host[name](a, b)
  })),
  ...(["markTerminal", "markLiveState"] as const).map((name): Method => ({
    name,
    params: [["sessionId", "sessionId"], ["taskId", "taskId"], ["state", "state"]],
    errors: ["SessionError"],
    invoke: ({ host }, [a, b, c]) => host[name](a, b, c)
  })),
  ...(["listManaged", "cancelAllManaged"] as const).map((name): Method => ({
    name,
    params: [["sessionId", "sessionId"]],
    errors: ["SessionError"],
    invoke: ({ host }, [a]) => host[name](a)
  })),
  {
    name: "transferManaged",
    params: [["fromSessionId", "sessionId"], ["toSessionId", "sessionId"], ["taskIds", "taskIds"]],
    errors: ["TaskAlreadyExists", "SessionError"],
    invoke: ({ host }, [a, b, c]) => host.transferManaged(a, b, c)
  },
  {
    name: "openSession",
    params: [["sessionId", "sessionId"], ["options", "sessionOptions"]],
    errors: ["SessionError"],
    invoke: ({ host }, [a, b]) => host.openSession(a, b)
  },
  { name: "listTree", params: [["taskId", "taskId"]], errors: ["TaskNotFound", "SessionError"], invoke: ({ host }, [a]) => host.listTree(a) },
  { name: "recovery", params: [], errors: ["SessionError"], invoke: ({ host }) => host.recovery },
  // the session handle (its session is "s1")
  {
    name: "session.spawn",
    params: [["spec", "spec"], ["task", "task"]],
    errors: RegisterError,
    invoke: ({ session }, [a, b]) => session.spawn(a, b)
  },
  {
    name: "session.registerExternal",
    params: [["spec", "spec"], ["cancel", "cancel"]],
    errors: RegisterError,
    invoke: ({ session }, [a, b]) => session.registerExternal(a, b)
  },
  { name: "session.register", params: [["spec", "spec"]], errors: RegisterError, invoke: ({ session }, [a]) => session.register(a) },
  { name: "session.get", params: [["taskId", "taskId"]], errors: ["SessionError"], invoke: ({ session }, [a]) => session.get(a) },
  {
    name: "session.list",
    params: [["filter", "sessionFilter"]],
    errors: ["SnapshotError", "SessionError"],
    invoke: ({ session }, [a]) => session.list(a)
  },
  { name: "session.cancel", params: [["taskId", "taskId"]], errors: ["SessionError"], invoke: ({ session }, [a]) => session.cancel(a) },
  { name: "session.cancelAll", params: [], errors: ["SessionError"], invoke: ({ session }) => session.cancelAll },
  {
    name: "session.transfer",
    params: [["toSessionId", "sessionId"], ["taskIds", "taskIds"]],
    errors: ["TaskAlreadyExists", "SessionError"],
    invoke: ({ session }, [a, b]) => session.transfer(a, b)
  },
  {
    name: "session.handoff",
    params: [["successorSessionId", "sessionId"]],
    errors: ["SessionError"],
    invoke: ({ session }, [a]) => session.handoff(a)
  },
  {
    name: "session.subscribe",
    params: [["filter", "sessionFilter"]],
    errors: ["SnapshotError", "SessionError"],
    invoke: ({ session }, [a]) => session.subscribe(a)
  },
  {
    name: "session.watch",
    params: [["filter", "sessionFilter"]],
    errors: ["SnapshotError", "SessionError"],
    invoke: ({ session }, [a]) => session.watch(a)
  },
  {
    name: "session.spawnHidden",
    params: [["label", "label"], ["task", "hiddenTask"]],
    errors: ["SessionError"],
    invoke: ({ session }, [a, b]) => session.spawnHidden(a, b)
  },
  { name: "session.awaitHidden", params: [], errors: Any, invoke: ({ session }) => session.awaitHidden }
]

// -----------------------------------------------------------------------------
// the plan: sampled calls
// -----------------------------------------------------------------------------

const ArgChoice = Schema.Struct({ category: Schema.Int, pick: Schema.Int, text: Schema.String })
const Call = Schema.Struct({ method: Schema.Int, args: Schema.Tuple([ArgChoice, ArgChoice, ArgChoice]) })
type ArgChoice = typeof ArgChoice.Type

const index = (n: number, length: number) => Math.abs(n) % length

/** An argument of this type from the sampled choice: valid (55%), wrong by construction (15%), hostile (20%), generated text (10%). */
const argOf = (type: ParamType, choice: ArgChoice): Arg => {
  const category = index(choice.category, 100)
  if (category < 55) return { value: type.valid[index(choice.pick, type.valid.length)]!(), valid: true, label: "valid" }
  if (category < 70) {
    return { value: type.invalid[index(choice.pick, type.invalid.length)]!(), valid: false, label: "wrong" }
  }
  if (category < 90) {
    const [label, shape, make] = hostile[index(choice.pick, hostile.length)]!
    const value = make()
    return { value, valid: type.judge(value, shape), label }
  }
  return { value: choice.text, valid: type.judge(choice.text, "primitive"), label: "generated text" }
}

// -----------------------------------------------------------------------------
// running a call
// -----------------------------------------------------------------------------

/** One turn of the event loop (a macrotask), whatever the clock. */
const turn = Effect.callback<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * Whether `fiber` completes within 8 rounds of 25 event-loop turns, the
 * `TestClock` moved 5 seconds after each round: past every grace period,
 * timeout and backoff of the plan. A count of turns, not real time: the
 * bound does not depend on the machine's load.
 */
const settles = (fiber: Fiber.Fiber<unknown, unknown>) =>
  Effect.gen(function*() {
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 25; i++) {
        if (fiber.pollUnsafe() !== undefined) return { done: true, moved: round > 0 }
        yield* turn
      }
      yield* TestClock.adjust("5 seconds")
    }
    return { done: fiber.pollUnsafe() !== undefined, moved: true }
  })

/** What the host holds, in a form compared with `===`. */
const snapshot = (host: Host) =>
  Effect.gen(function*() {
    const { seq } = yield* host.stats
    const records = yield* host.list({ includeTerminal: true })
    return `${seq}|${records.map((record) => `${record.scope.sessionId}/${record.id}/${record.state}/${record.revision}`).join(",")}`
  })

const safeText = (u: unknown): string => {
  try {
    return typeof u === "string" ? u.slice(0, 80) : typeof u === "symbol" || typeof u === "bigint" ? u.toString() : String(u).slice(0, 80)
  } catch {
    return typeof u
  }
}

interface Tally {
  calls: number
  /** Calls with an argument wrong by construction. */
  invalid: number
  /** ... refused with a typed error of the signature naming it. */
  typed: number
  /** ... that succeeded. */
  accepted: number
  /** ... refused, but the error is not of the signature, does not name the argument, or is over 1,000 characters. */
  unnamed: number
  /** Calls whose every argument is valid (or may be either). */
  valid: number
  validFailed: number
  throws: number
  defects: number
  interrupted: number
  hangs: number
  /** Uncaught exceptions in the process while the fuzz ran. */
  crashes: number
  /** Failed calls after which the host's seq or records differ. */
  changed: number
  /** Hosts that stopped (every call refused) and were replaced. */
  stopped: number
  /** Hosts abandoned after a hang and replaced. */
  abandoned: number
  /** Calls per method: [with valid arguments, with an invalid one]. */
  readonly coverage: Map<string, [number, number]>
  readonly examples: Map<string, Array<string>>
}

const newTally = (): Tally => ({
  calls: 0, invalid: 0, typed: 0, accepted: 0, unnamed: 0, valid: 0, validFailed: 0, throws: 0, defects: 0,
  interrupted: 0, hangs: 0, crashes: 0, changed: 0, stopped: 0, abandoned: 0, coverage: new Map(), examples: new Map()
})

const example = (tally: Tally, kind: string, text: string) => {
  const list = tally.examples.get(kind) ?? []
  if (list.length < 6 && !list.includes(text)) list.push(text)
  tally.examples.set(kind, list)
}

/** A host and an open session "s1", in a scope of their own (never closed when the host is abandoned). */
interface Running extends Env {
  readonly scope: Scope.Closeable
}

type MakeHost = Effect.Effect<Running, never, Scope.Scope>

const options: BackgroundTaskHostOptions = {
  cancelGracePeriod: "1 second",
  retention: { maxAge: Infinity },
  subscriberBuffer: 100
}

const start = (layer: Layer.Layer<BackgroundTaskHost, unknown>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope).pipe(Effect.orDie)
    const host = Context.get(context, BackgroundTaskHost)
    const session = yield* host.openSession("s1").pipe(Scope.provide(scope), Effect.orDie)
    return { host, session, scope }
  })

/** Runs `plan` against hosts from `make`, replacing a host that hangs or stops; returns the tally and the last host. */
const fuzz = (plan: ReadonlyArray<typeof Call.Type>, make: MakeHost) =>
  Effect.gen(function*() {
    const tally = newTally()
    let current = ""
    const onCrash = (error: unknown) => {
      tally.crashes++
      example(tally, "crash", `during or after ${current}: ${safeText(error instanceof Error ? error.message : error)}`)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("uncaughtException", onCrash)
        process.on("unhandledRejection", onCrash)
      }),
      () =>
        Effect.sync(() => {
          process.off("uncaughtException", onCrash)
          process.off("unhandledRejection", onCrash)
        })
    )
    let env = yield* make
    const abandon = Effect.gen(function*() {
      tally.abandoned++
      env = yield* make
    })

    for (const planned of plan) {
      const method = methods[index(planned.method, methods.length)]!
      const args = method.params.map(([_, type], i) => argOf(P[type], planned.args[i]!))
      const invalid = method.params.filter((_, i) => args[i]!.valid === false).map(([name]) => name)
      const shown = `${method.name}(${args.map((arg) => arg.valid === false ? `<${arg.label}>` : arg.label).join(", ")})`

      const before = yield* Effect.exit(snapshot(env.host))
      if (Exit.isFailure(before)) {
        // the host refuses every call: it stopped
        tally.stopped++
        example(tally, "stopped", `${shown}: ${Cause.pretty(before.cause).slice(0, 200)}`)
        yield* abandon
        continue
      }
      tally.calls++
      current = shown
      const covered = tally.coverage.get(method.name) ?? [0, 0]
      covered[invalid.length > 0 ? 1 : 0]++
      tally.coverage.set(method.name, covered)
      if (invalid.length > 0) tally.invalid++
      else tally.valid++

      let effect: unknown
      try {
        effect = method.invoke(env, args.map((arg) => arg.value))
      } catch (error) {
        tally.throws++
        example(tally, "throw", `${shown}: ${safeText(error instanceof Error ? error.message : error)}`)
        continue
      }
      if (!Effect.isEffect(effect)) {
        tally.throws++
        example(tally, "throw", `${shown}: returned something other than an Effect`)
        continue
      }
      const callScope = yield* Scope.make()
      const fiber = yield* Effect.forkDetach(
        Effect.provideService(effect as Effect.Effect<unknown, unknown, Scope.Scope>, Scope.Scope, callScope)
      )
      const { done, moved } = yield* settles(fiber)
      if (!done) {
        tally.hangs++
        example(tally, "hang", shown)
        fiber.interruptUnsafe()
        yield* abandon
        continue
      }
      const exit = fiber.pollUnsafe()!
      // the call's scope (a session, a subscription) closes as the caller's would
      const closing = yield* Effect.forkDetach(Scope.close(callScope, Exit.void))
      const closed = yield* settles(closing)
      if (!closed.done) {
        tally.hangs++
        example(tally, "hang", `${shown}, closing its scope`)
        yield* abandon
        continue
      }

      if (Exit.isSuccess(exit)) {
        if (invalid.length > 0) {
          tally.accepted++
          example(tally, `accepted: ${method.name}`, shown)
        }
      } else if (Cause.hasDies(exit.cause)) {
        tally.defects++
        example(tally, "defect", `${shown}: ${safeText(Cause.squash(exit.cause) instanceof Error ? (Cause.squash(exit.cause) as Error).message : Cause.squash(exit.cause))}`)
      } else if (Cause.hasInterruptsOnly(exit.cause)) {
        tally.interrupted++
        example(tally, "interrupted", shown)
      } else {
        const error = Cause.findErrorOption(exit.cause)
        const value = Option.getOrUndefined(error)
        const typed = isPluginError(value) && method.errors.includes(value._tag)
        const message = typed ? value.message : ""
        if (invalid.length > 0) {
          const named = invalid.some((name) => (names[name] ?? [name]).some((word) => message.includes(word)))
          if (typed && named && message.length <= 1_000) tally.typed++
          else {
            tally.unnamed++
            example(tally, `unnamed: ${method.name}`, `${shown}: ${typed ? value._tag : "untyped"}: ${message.slice(0, 160)}`)
          }
        } else {
          tally.validFailed++
          if (!typed) {
            tally.unnamed++
            example(tally, `untyped: ${method.name}`, `${shown}: ${safeText(value)}`)
          }
        }
        // a refused call changed nothing (unless time had to move for it, when timers may have acted)
        if (!moved) {
          const after = yield* Effect.exit(snapshot(env.host))
          if (Exit.isSuccess(after) && after.value !== before.value) {
            tally.changed++
            example(tally, "changed", shown)
          }
        }
      }
      // grace periods, timeouts and backoffs started by this call run out now, and the fibers
      // it started (task bodies, commits) get their turns: none of it lands in the next call
      yield* TestClock.adjust("6 seconds")
      for (let i = 0; i < 10; i++) yield* turn
    }
    return { tally, env }
  })

const report = (store: string, seed: number, tally: Tally) => {
  const lines = [
    `fuzz (${store}, seed ${seed}): ${tally.calls} calls tried, ${tally.invalid} with an invalid argument, ${tally.valid} with valid ones`,
    `  typed errors naming the argument: ${tally.typed}; invalid accepted: ${tally.accepted}; ` +
    `refused without naming it (or untyped, or off-signature): ${tally.unnamed}`,
    `  throws: ${tally.throws}, defects: ${tally.defects}, interrupted: ${tally.interrupted}, hangs: ${tally.hangs}, ` +
    `crashes: ${tally.crashes}, store changed by a failed call: ${tally.changed}`,
    `  hosts stopped: ${tally.stopped}, abandoned after a hang: ${tally.abandoned}; valid calls that failed typed: ${tally.validFailed}`
  ]
  for (const [kind, list] of tally.examples) lines.push(`  ${kind}:`, ...list.map((text) => `    ${text}`))
  console.log(lines.join("\n"))
}

const assertClean = (tally: Tally) => {
  assert.deepStrictEqual(
    {
      throws: tally.throws,
      defects: tally.defects,
      interrupted: tally.interrupted,
      hangs: tally.hangs,
      crashes: tally.crashes,
      accepted: tally.accepted,
      unnamed: tally.unnamed,
      changed: tally.changed,
      stopped: tally.stopped
    },
    { throws: 0, defects: 0, interrupted: 0, hangs: 0, crashes: 0, accepted: 0, unnamed: 0, changed: 0, stopped: 0 }
  )
  // the plan reached every method, with valid arguments and (where it has any) with an invalid one
  for (const method of methods) {
    const [valid, invalid] = tally.coverage.get(method.name) ?? [0, 0]
    assert.isAbove(valid, 0, `${method.name} was never called with valid arguments`)
    if (method.params.length > 0) assert.isAbove(invalid, 0, `${method.name} was never called with an invalid argument`)
  }
  assert.isAbove(tally.typed, 0)
}

const seed = process.env["FUZZ_SEED"] === undefined ? 15 : Number(process.env["FUZZ_SEED"])

const planOf = (count: number, seed: number) => Arbitrary.sampleEffect(Arbitrary.schema(Call), { count, seed, size: 20 })

describe("BackgroundTaskHost fuzz", () => {
  it.effect("every public method, given arbitrary JavaScript values: no throw, no defect, no hang, a typed error naming the argument, nothing changed (memory)", () =>
    Effect.gen(function*() {
      const plan = yield* planOf(3_000, seed)
      const { tally } = yield* fuzz(plan, start(BackgroundTaskHost.layerWith(options)))
      report("memory", seed, tally)
      assertClean(tally)
    }), 60_000)

  it.effect("the same on a durable host (SQLite), whose stores then load back with nothing quarantined and every event row decoding", () =>
    Effect.gen(function*() {
      const plan = yield* planOf(1_000, seed + 1)
      const databases: Array<SqlClient.SqlClient> = []
      // a fresh database per host (an abandoned host keeps its lease), in memory: one connection
      const make = Effect.gen(function*() {
        const client = yield* NodeSqliteClient.make({ filename: ":memory:" }).pipe(
          Effect.provide(Reactivity.layer),
          Effect.orDie
        )
        databases.push(client)
        return yield* start(BackgroundTaskHost.layerStore(options).pipe(Layer.provide(sqlStore(client))))
      })
      const { env, tally } = yield* fuzz(plan, make)
      report("SQLite", seed + 1, tally)

      const closing = yield* Effect.forkDetach(Scope.close(env.scope, Exit.void))
      assert.isTrue((yield* settles(closing)).done, "closing the last host hung")
      // every host's store, as the next host would read it
      const corrupt: Array<string> = []
      for (const sql of databases) {
        const loaded = yield* (yield* makeStore(sql)).load
        corrupt.push(...loaded.quarantined.map((row) => `a task row: ${row.message.slice(0, 200)}`))
        const rows = yield* Effect.exit(eventRows(sql))
        if (Exit.isFailure(rows)) corrupt.push(`an event row: ${Cause.pretty(rows.cause).slice(0, 200)}`)
      }
      console.log(`  stores checked: ${databases.length}; rows that do not decode: ${corrupt.length}`)
      assertClean(tally)
      assert.deepStrictEqual(corrupt, [], "rows that do not decode")
    }), 60_000)
})
