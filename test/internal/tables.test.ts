/**
 * The registry's tables (`src/internal/tables.ts`): the lists threaded through
 * the tasks, and every index kept equal to the records it describes under any
 * sequence of registrations, ends, evictions, transfers and removals, checked
 * against a plain model after every step.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Option, Schema } from "effect"
import { type BackgroundTaskRecord, defaultAttempt, isTerminal, TaskKind } from "../../src/index.ts"
import { noLinks, TaskList } from "../../src/internal/links.ts"
import { Tables } from "../../src/internal/tables.ts"
import * as T from "../../src/internal/task.ts"

const now = DateTime.makeUnsafe(0)
let order = 0

const record = (id: string, sessionId: string, kind: TaskKind): BackgroundTaskRecord => ({
  id,
  kind,
  producer: "test",
  scope: { sessionId },
  parentTaskId: Option.none(),
  childSessionId: Option.none(),
  state: "running",
  cancelPolicy: "cooperative",
  closePolicy: "keep",
  attempt: defaultAttempt,
  result: Option.none(),
  failure: Option.none(),
  createdAt: now,
  updatedAt: now,
  completedAt: Option.none(),
  progress: Option.none(),
  revision: ++order
})

const task = (id: string, sessionId = "s1", kind: TaskKind = "other"): T.Task => ({
  order: ++order,
  record: record(id, sessionId, kind),
  owner: T.caller,
  control: T.control(0 as never),
  parent: undefined,
  children: undefined,
  retained: false,
  held: false,
  links: noLinks()
})

describe("TaskList", () => {
  it("appends, unlinks from the head, the middle and the tail, and iterates in order", () => {
    const list = new TaskList(0)
    const [a, b, c, d] = ["a", "b", "c", "d"].map((id) => task(id))
    for (const t of [a!, b!, c!, d!]) list.push(t)
    assert.deepStrictEqual(Array.from(list, (t) => t.record.id), ["a", "b", "c", "d"])
    list.remove(b!)
    assert.deepStrictEqual(Array.from(list, (t) => t.record.id), ["a", "c", "d"])
    assert.deepStrictEqual(list.toArray(), [a!, c!, d!])
    list.remove(a!)
    list.remove(d!)
    assert.deepStrictEqual(Array.from(list, (t) => t.record.id), ["c"])
    assert.strictEqual(list.size, 1)
    assert.isFalse(list.has(a!))
    assert.isTrue(list.has(c!))
    // removing a task that is not in the list changes nothing
    list.remove(a!)
    assert.strictEqual(list.size, 1)
    list.remove(c!)
    assert.strictEqual(list.size, 0)
    assert.deepStrictEqual(Array.from(list), [])
    list.push(b!)
    assert.deepStrictEqual(Array.from(list, (t) => t.record.id), ["b"])
  })

  it("a task in two lists is linked into each on its own", () => {
    const one = new TaskList(0)
    const two = new TaskList(1)
    const [a, b, c] = ["a", "b", "c"].map((id) => task(id))
    for (const t of [a!, b!, c!]) one.push(t)
    for (const t of [c!, a!]) two.push(t)
    one.remove(a!)
    assert.deepStrictEqual(Array.from(one, (t) => t.record.id), ["b", "c"])
    assert.deepStrictEqual(Array.from(two, (t) => t.record.id), ["c", "a"])
    two.remove(c!)
    assert.deepStrictEqual(Array.from(one, (t) => t.record.id), ["b", "c"])
    assert.deepStrictEqual(Array.from(two, (t) => t.record.id), ["a"])
  })
})

const Id = Schema.Literals(["a", "b", "c", "d"])
const Session = Schema.Literals(["s1", "s2", "s3"])
const Op = Schema.Union([
  Schema.TaggedStruct("register", { id: Id, session: Session, kind: TaskKind }),
  Schema.TaggedStruct("end", { id: Id }),
  Schema.TaggedStruct("evictOldest", {}),
  Schema.TaggedStruct("transfer", { id: Id, session: Session }),
  Schema.TaggedStruct("remove", { id: Id, session: Session })
])

interface Entry {
  readonly task: T.Task
  /** When it joined its current session (a transfer appends it there). */
  sessionOrder: number
}

describe("Tables", () => {
  it.effect.prop(
    "every index equals the records it describes, after every step",
    { ops: Schema.Array(Op) },
    ({ ops }) =>
      Effect.sync(() => {
        const t = new Tables()
        // the model: the held records, in registration order
        const held: Array<Entry> = []
        let stamp = 0
        const live = (id: string) => held.find((e) => e.task.record.id === id && !isTerminal(e.task.record.state))
        const inSession = (session: string, id: string) =>
          held.find((e) => e.task.record.id === id && e.task.record.scope.sessionId === session)
        const drop = (entry: Entry) => {
          t.delete(entry.task)
          held.splice(held.indexOf(entry), 1)
        }
        for (const op of ops) {
          switch (op._tag) {
            case "register": {
              if (live(op.id) !== undefined) break
              const replaced = inSession(op.session, op.id)
              if (replaced !== undefined) drop(replaced)
              const entry = { task: task(op.id, op.session, op.kind), sessionOrder: ++stamp }
              t.index(entry.task)
              held.push(entry)
              break
            }
            case "end": {
              const entry = live(op.id)
              if (entry === undefined) break
              entry.task.record = { ...entry.task.record, state: "completed" }
              t.unindexLive(entry.task)
              t.terminal.push(entry.task)
              break
            }
            case "evictOldest": {
              const oldest = t.terminal.shift()
              if (oldest !== undefined) drop(held.find((e) => e.task === oldest)!)
              break
            }
            case "transfer": {
              const entry = live(op.id) ?? held.find((e) => e.task.record.id === op.id)
              if (entry === undefined || entry.task.record.scope.sessionId === op.session) break
              const there = inSession(op.session, op.id)
              if (there !== undefined && !isTerminal(there.task.record.state)) break
              if (there !== undefined) drop(there)
              t.unindexSession(entry.task)
              entry.task.record = { ...entry.task.record, scope: { sessionId: op.session } }
              t.indexSession(entry.task)
              entry.sessionOrder = ++stamp
              break
            }
            case "remove": {
              const entry = inSession(op.session, op.id)
              if (entry !== undefined) drop(entry)
              break
            }
          }
          // every index against the model
          const ids = (tasks: Iterable<T.Task>) => Array.from(tasks, (x) => x.order)
          const isLive = (e: Entry) => !isTerminal(e.task.record.state)
          assert.deepStrictEqual(ids(t.live), held.filter(isLive).map((e) => e.task.order), "live")
          assert.deepStrictEqual(ids(t.live.toArray()), ids(t.live))
          assert.strictEqual(t.live.size, held.filter(isLive).length)
          for (const kind of TaskKind.literals) {
            const ofKind = held.filter((e) => e.task.record.kind === kind)
            assert.deepStrictEqual(ids(t.ofKind(kind, true)), ofKind.map((e) => e.task.order), `kind ${kind}`)
            assert.deepStrictEqual(ids(t.ofKind(kind, false)), ofKind.filter(isLive).map((e) => e.task.order))
          }
          for (const session of Session.literals) {
            const ofSession = held.filter((e) => e.task.record.scope.sessionId === session)
              .sort((x, y) => x.sessionOrder - y.sessionOrder)
            const all = t.ofSession(session, true)
            if (ofSession.length === 0) assert.isUndefined(all, `session ${session} has no index entry`)
            assert.deepStrictEqual(ids(all ?? []), ofSession.map((e) => e.task.order), `session ${session}`)
            assert.deepStrictEqual(ids(t.ofSession(session, false) ?? []), ofSession.filter(isLive).map((e) => e.task.order))
            for (const id of Id.literals) assert.strictEqual(t.find(session, id), inSession(session, id)?.task)
          }
          for (const id of Id.literals) {
            assert.strictEqual(t.findLive(id), live(id)?.task)
            const all = t.ids.get(id)
            const want = held.filter((e) => e.task.record.id === id).map((e) => e.task)
            assert.deepStrictEqual(all === undefined ? [] : Array.isArray(all) ? [...all] : [all], want)
          }
          for (const e of held) assert.isTrue(e.task.held)
        }
      })
  )
})
