/**
 * Model-based property test of rules 1 and 2 (docs/contract.md §4.1, §4.2, §6): any
 * sequence of calls has, call by call, the outcome an independent reference
 * model of the contract predicts, and leaves the same records.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { isTerminal, TaskState } from "../src/index.ts"
import { makeTestHost, spec } from "./utils/host.ts"

const Id = Schema.Literals(["a", "b", "c"])
const Session = Schema.Literals(["s1", "s2"])
const AnyState = Schema.Union([TaskState, Schema.Literal("exploded")])

const Op = Schema.Union([
  Schema.TaggedStruct("register", { session: Session, id: Id }),
  Schema.TaggedStruct("registerExternal", { session: Session, id: Id }),
  Schema.TaggedStruct("update", { id: Id, state: AnyState }),
  Schema.TaggedStruct("progress", { id: Id }),
  Schema.TaggedStruct("complete", { id: Id, state: AnyState }),
  Schema.TaggedStruct("requestCancel", { id: Id }),
  Schema.TaggedStruct("transfer", { id: Id, session: Session }),
  Schema.TaggedStruct("markTerminal", { session: Session, id: Id, state: AnyState }),
  Schema.TaggedStruct("markLiveState", { session: Session, id: Id, state: AnyState }),
  Schema.TaggedStruct("cancelManaged", { session: Session, id: Id }),
  Schema.TaggedStruct("unregisterExternal", { session: Session, id: Id })
])
type Op = typeof Op.Type

// -- the reference model: the contract written as plainly as possible --------

interface ModelRecord {
  id: string
  session: string
  state: string
  external: boolean
  readonly order: number
  rev: number
}

const terminal = (state: string) => state === "completed" || state === "failed" || state === "cancelled"
const known = (state: string) => (TaskState.literals as ReadonlyArray<string>).includes(state)

const legal = (from: string, to: string): boolean => {
  if (terminal(from) || !known(to)) return false
  if (from === "pending") return true
  if (from === "running" || from === "waiting") return to !== "pending"
  return to === "cancel_requested" || terminal(to) // cancel_requested
}

class Model {
  records: Array<ModelRecord> = []
  order = 0
  rev = 0

  find(session: string, id: string) {
    return this.records.find((r) => r.session === session && r.id === id)
  }
  live(id: string) {
    return this.records.find((r) => r.id === id && !terminal(r.state))
  }
  resolve(id: string) {
    const live = this.live(id)
    if (live !== undefined) return live
    return this.records.filter((r) => r.id === id).sort((x, y) => y.rev - x.rev)[0]
  }
  set(r: ModelRecord, state: string) {
    if (r.state !== state) {
      r.state = state
      r.rev = this.rev++
    }
  }
  add(session: string, id: string, state: string, external: boolean): string {
    if (this.live(id) !== undefined) return "TaskAlreadyExists"
    this.records = this.records.filter((r) => !(r.session === session && r.id === id))
    this.records.push({ id, session, state, external, order: this.order++, rev: this.rev++ })
    return "ok"
  }

  /** Applies one call; returns "ok" or the tag of the error it must fail with. */
  apply(op: Op): string {
    switch (op._tag) {
      case "register":
        return this.add(op.session, op.id, "pending", false)
      case "registerExternal":
        return this.add(op.session, op.id, "running", true)
      case "update": {
        const r = this.resolve(op.id)
        if (r === undefined) return "TaskNotFound"
        if (terminal(op.state) || !legal(r.state, op.state)) return "InvalidTransition"
        this.set(r, op.state)
        return "ok"
      }
      case "progress": {
        const r = this.resolve(op.id)
        if (r === undefined) return "TaskNotFound"
        return terminal(r.state) ? "InvalidTransition" : "ok"
      }
      case "complete": {
        const r = this.resolve(op.id)
        if (r === undefined) return "TaskNotFound"
        if (!terminal(op.state) || !legal(r.state, op.state)) return "InvalidTransition"
        this.set(r, op.state)
        return "ok"
      }
      case "requestCancel": {
        const r = this.resolve(op.id)
        if (r === undefined) return "TaskNotFound"
        if (r.state === "cancel_requested") return "ok"
        if (terminal(r.state)) return "InvalidTransition"
        // cooperative, nothing the host can act on (no fiber, no cancel effect): it waits
        this.set(r, "cancel_requested")
        return "ok"
      }
      case "transfer": {
        const r = this.resolve(op.id)
        if (r === undefined) return "TaskNotFound"
        if (r.session === op.session) return "ok"
        const there = this.find(op.session, op.id)
        if (there !== undefined && !terminal(there.state)) return "TaskAlreadyExists"
        this.records = this.records.filter((x) => x !== there)
        r.session = op.session
        r.rev = this.rev++
        return "ok"
      }
      case "markTerminal": {
        const r = this.find(op.session, op.id)
        if (r !== undefined && !terminal(r.state) && terminal(op.state)) this.set(r, op.state)
        return "ok"
      }
      case "markLiveState": {
        const r = this.find(op.session, op.id)
        const live = (s: string) => s === "running" || s === "waiting"
        if (r !== undefined && live(op.state) && (live(r.state) || r.state === "pending")) this.set(r, op.state)
        return "ok"
      }
      case "cancelManaged": {
        const r = this.find(op.session, op.id)
        if (r !== undefined && !terminal(r.state)) this.set(r, "cancelled")
        return "ok"
      }
      case "unregisterExternal": {
        const r = this.find(op.session, op.id)
        if (r?.external === true) this.records = this.records.filter((x) => x !== r)
        return "ok"
      }
    }
  }
}

// -- the host under test ------------------------------------------------------

const run = (host: Effect.Success<ReturnType<typeof makeTestHost>>["host"], op: Op) => {
  const state = op._tag === "update" || op._tag === "complete" || op._tag === "markTerminal" ||
      op._tag === "markLiveState"
    ? (op.state as TaskState)
    : "running"
  switch (op._tag) {
    case "register":
      return host.register({ scope: { sessionId: op.session }, id: op.id, kind: "other", producer: "model" })
    case "registerExternal":
      return host.registerExternal(op.session, spec(op.id))
    case "update":
      return host.update(op.id, { state })
    case "progress":
      return host.update(op.id, { progress: "p" })
    case "complete":
      return host.complete(op.id, { state })
    case "requestCancel":
      return host.requestCancel(op.id)
    case "transfer":
      return host.transfer(op.id, { sessionId: op.session })
    case "markTerminal":
      return host.markTerminal(op.session, op.id, state)
    case "markLiveState":
      return host.markLiveState(op.session, op.id, state as "running")
    case "cancelManaged":
      return host.cancelManaged(op.session, op.id)
    case "unregisterExternal":
      return host.unregisterExternal(op.session, op.id)
  }
}

describe("BackgroundTaskHost against a reference model", () => {
  it.effect.prop(
    "every call has the model's outcome and leaves the model's records",
    { ops: Schema.Array(Op) },
    ({ ops }) =>
      Effect.gen(function*() {
        const { host, close } = yield* makeTestHost()
        const model = new Model()
        for (const [i, op] of ops.entries()) {
          const expected = model.apply(op)
          const outcome = yield* Effect.result(run(host, op) as Effect.Effect<unknown, { readonly _tag: string }>)
          const actual = outcome._tag === "Success" ? "ok" : outcome.failure._tag
          assert.strictEqual(actual, expected, `call ${i}: ${JSON.stringify(op)}`)
        }
        for (const session of ["s1", "s2"]) {
          const records = yield* host.listManaged(session)
          const expected = model.records.filter((r) => r.session === session).sort((x, y) => x.order - y.order)
          assert.deepStrictEqual(
            records.map((r) => `${r.id}:${r.state}`),
            expected.map((r) => `${r.id}:${r.state}`),
            `session ${session} after ${JSON.stringify(ops)}`
          )
          for (const record of records) {
            assert.strictEqual(Option.isSome(record.completedAt), isTerminal(record.state))
          }
        }
        for (const id of ["a", "b", "c"]) {
          const got = yield* host.get(id)
          const want = model.resolve(id)
          assert.deepStrictEqual(
            Option.map(got, (r) => `${r.scope.sessionId}:${r.state}`),
            want === undefined ? Option.none() : Option.some(`${want.session}:${want.state}`)
          )
        }
        yield* close
      }),
    { arbitrary: { runs: 300, size: 60 } }
  )
})
