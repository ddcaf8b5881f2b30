/**
 * Task trees (docs/policies.md §4): `parentTaskId` must name a live task; cancelling a
 * task by any path cancels its live descendants first (each child's terminal
 * event before its parent's); a failed parent cancels its children with
 * reason "parent failed"; a successful one leaves them running; `listTree`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Ref } from "effect"
import { TestClock } from "effect/testing"
import { type BackgroundTaskHostService, type SubscriptionEvent, type TaskEvent, TaskContext } from "../src/index.ts"
import type { TaskTree } from "../src/BackgroundTaskHost.ts"
import { makeTestHost, spec, tags, taskEvents, terminalEvents } from "./utils/host.ts"

// -- what the assertions read from events (the one place that knows the event union) --

const terminalTags: ReadonlySet<string> = new Set(["Completed", "Failed", "Cancelled"])

/** The index, in `events`, of the task's terminal event (-1 when it has none). */
const terminalIndex = (events: ReadonlyArray<SubscriptionEvent>, taskId: string) =>
  events.findIndex((event) => terminalTags.has(event._tag) && "taskId" in event && event.taskId === taskId)

/** The terminal event tags of a task: exactly one is expected. */
const terminalsOf = (events: ReadonlyArray<SubscriptionEvent>, taskId: string) =>
  taskEvents(events).filter((event) => terminalTags.has(event._tag) && event.taskId === taskId).map((e) => e._tag)

/** The reason carried by the task's `CancelRequested` event, if it has one. */
const cancelReason = (events: ReadonlyArray<SubscriptionEvent>, taskId: string): Option.Option<string> | undefined => {
  const event = taskEvents(events).find((e): e is Extract<TaskEvent, { _tag: "CancelRequested" }> =>
    e._tag === "CancelRequested" && e.taskId === taskId
  )
  return event?.reason
}

/** Each child's terminal event comes before its parent's; every node has exactly one, of `tag`. */
const assertChildBeforeParent = (
  events: ReadonlyArray<SubscriptionEvent>,
  nodes: ReadonlyArray<Node>,
  tag: string
) => {
  for (const node of nodes) {
    assert.deepStrictEqual(terminalsOf(events, node.id), [tag], `one ${tag} event for ${node.id}`)
    if (node.parent !== undefined) {
      assert.isBelow(
        terminalIndex(events, node.id),
        terminalIndex(events, node.parent),
        `${node.id}'s terminal event precedes its parent ${node.parent}'s`
      )
    }
  }
}

// -- a 3-level tree mixing managed, external and caller-owned nodes --------------------

interface Node {
  readonly id: string
  readonly parent: string | undefined
}

/**
 *            root (managed, cooperative: ends itself on request; or external, policy external)
 *          /        |                     \
 *   a (managed,   b (external,          c (registered by the caller,
 *   abort_local)   policy external)        abort_local)
 *     /     \            |
 *  a1         a2        b1 (managed, abort_local)
 *  (managed,  (external,
 *  cooperative) policy external)
 */
const nodes: ReadonlyArray<Node> = [
  { id: "root", parent: undefined },
  { id: "a", parent: "root" },
  { id: "b", parent: "root" },
  { id: "c", parent: "root" },
  { id: "a1", parent: "a" },
  { id: "a2", parent: "a" },
  { id: "b1", parent: "b" }
]
const ids = nodes.map((node) => node.id)

/** A managed body: signals that it runs; a cooperative one ends itself when asked, else it runs until interrupted. */
const body = (started: Deferred.Deferred<void>, cooperative: boolean) =>
  Effect.gen(function*() {
    yield* Deferred.succeed(started, undefined)
    if (!cooperative) return yield* Effect.never
    const ctx = yield* TaskContext
    yield* ctx.cancelRequested
    return "stopped on request"
  })

type RootOwner = "managed" | "external"

const buildTree = (host: BackgroundTaskHostService, rootOwner: RootOwner) =>
  Effect.gen(function*() {
    const externalCancels = yield* Ref.make<ReadonlyArray<string>>([])
    const cancelOf = (id: string) => Ref.update(externalCancels, (all) => [...all, id])
    const latches: Array<Deferred.Deferred<void>> = []
    const managed = (id: string, parent: string | undefined, cooperative: boolean) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        latches.push(started)
        const extra = cooperative ? {} : { cancelPolicy: "abort_local" as const }
        yield* host.spawnManaged(
          "s1",
          spec(id, parent === undefined ? extra : { ...extra, parentTaskId: parent }),
          body(started, cooperative)
        )
      })
    if (rootOwner === "managed") yield* managed("root", undefined, true)
    else yield* host.registerExternal("s1", spec("root", { cancelPolicy: "external" }), cancelOf("root"))
    yield* managed("a", "root", false)
    yield* host.registerExternal("s1", spec("b", { parentTaskId: "root", cancelPolicy: "external" }), cancelOf("b"))
    yield* host.register({
      ...spec("c", { parentTaskId: "root", cancelPolicy: "abort_local" }),
      scope: { sessionId: "s1" }
    })
    yield* managed("a1", "a", true)
    yield* host.registerExternal("s1", spec("a2", { parentTaskId: "a", cancelPolicy: "external" }), cancelOf("a2"))
    yield* managed("b1", "b", false)
    yield* Effect.forEach(latches, Deferred.await, { discard: true })
    return { externalCancels }
  })

const assertAllCancelled = (host: BackgroundTaskHostService) =>
  Effect.gen(function*() {
    for (const id of ids) {
      assert.strictEqual(Option.getOrThrow(yield* host.get(id)).state, "cancelled", id)
    }
  })

describe("BackgroundTaskHost task trees", () => {
  for (const rootOwner of ["managed", "external"] as const) {
    describe(`a 3-level tree (${rootOwner} root) cancelled from the root: every node cancelled, children's events first`, () => {
      const externals = rootOwner === "managed" ? ["b", "a2"] : ["b", "a2", "root"]
      it.effect("requestCancel: descendants through their own policies, reason \"parent cancelled\"", () =>
        Effect.gen(function*() {
          const { host, events } = yield* makeTestHost()
          const { externalCancels } = yield* buildTree(host, rootOwner)
          const watch = yield* host.subscribe()
          const returned = yield* host.requestCancel("root", "user stop")
          // the descendants have ended when the call returns; the cooperative root ends itself
          for (const node of nodes.filter((n) => n.parent !== undefined)) {
            assert.strictEqual(Option.getOrThrow(yield* host.get(node.id)).state, "cancelled", node.id)
          }
          // a cooperative root is left to end itself; an external one's policy has acted
          assert.strictEqual(returned.state, rootOwner === "managed" ? "cancel_requested" : "cancelled")
          yield* terminalEvents(watch, ["root"])
          yield* assertAllCancelled(host)
          assert.sameMembers([...(yield* Ref.get(externalCancels))], externals)
          const all = yield* events
          assertChildBeforeParent(all, nodes, "Cancelled")
          assert.deepStrictEqual(cancelReason(all, "root"), Option.some("user stop"))
          for (const node of nodes.filter((n) => n.parent !== undefined)) {
            assert.deepStrictEqual(cancelReason(all, node.id), Option.some("parent cancelled"), node.id)
          }
          // a descendant's request comes before its parent's too: deepest first
          const requestIndex = (id: string) =>
            all.findIndex((e) => e._tag === "CancelRequested" && "taskId" in e && e.taskId === id)
          assert.isBelow(requestIndex("a1"), requestIndex("a"))
          assert.isBelow(requestIndex("a"), requestIndex("root"))
        }))

      it.effect("cancelManaged: every node now, whatever its policy", () =>
        Effect.gen(function*() {
          const { host, events } = yield* makeTestHost()
          const { externalCancels } = yield* buildTree(host, rootOwner)
          yield* host.cancelManaged("s1", "root")
          // cancelManaged returns once everything has ended
          yield* assertAllCancelled(host)
          assert.sameMembers([...(yield* Ref.get(externalCancels))], externals)
          assertChildBeforeParent(yield* events, nodes, "Cancelled")
        }))

      it.effect("cancelAllManaged: every node, children before parents, even though they are cancelled concurrently", () =>
        Effect.gen(function*() {
          const { host, events } = yield* makeTestHost()
          const { externalCancels } = yield* buildTree(host, rootOwner)
          const records = yield* host.cancelAllManaged("s1")
          assert.sameMembers(records.map((r) => r.id), ids)
          for (const record of records) assert.strictEqual(record.state, "cancelled", record.id)
          yield* assertAllCancelled(host)
          // each cancel effect ran once, though two paths reached b and a2
          assert.sameMembers([...(yield* Ref.get(externalCancels))], externals)
          assertChildBeforeParent(yield* events, nodes, "Cancelled")
        }))

      it.effect("host shutdown: every node, children before parents", () =>
        Effect.gen(function*() {
          const { host, events } = yield* makeTestHost()
          const { externalCancels } = yield* buildTree(host, rootOwner)
          const all = yield* events
          assertChildBeforeParent(all, nodes, "Cancelled")
          assert.sameMembers([...(yield* Ref.get(externalCancels))], externals)
        }))
    })
  }

  describe("other paths through a tree", () => {
    it.effect("session close (closePolicy cancel on the root): the whole tree, children before parents", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const started = yield* Deferred.make<void>()
        yield* Effect.scoped(Effect.gen(function*() {
          const session = yield* host.openSession("s9")
          // an external root: nothing but the tree rule reaches its children
          yield* session.registerExternal(spec("p", { closePolicy: "cancel", cancelPolicy: "external" }), Effect.void)
          // the children keep by default: they end because their parent is cancelled
          yield* session.spawn(spec("q", { parentTaskId: "p" }), Deferred.succeed(started, undefined).pipe(
            Effect.andThen(TaskContext),
            Effect.flatMap((ctx) => ctx.cancelRequested)
          ))
          yield* session.registerExternal(spec("r", { parentTaskId: "q", cancelPolicy: "external" }), Effect.void)
          yield* Deferred.await(started)
        }))
        yield* terminalEvents(watch, ["p", "q", "r"])
        for (const id of ["p", "q", "r"]) assert.strictEqual(Option.getOrThrow(yield* host.get(id)).state, "cancelled", id)
        const all = yield* events
        assertChildBeforeParent(all, [
          { id: "p", parent: undefined },
          { id: "q", parent: "p" },
          { id: "r", parent: "q" }
        ], "Cancelled")
        // q and r keep on close by their own policy: they were cancelled with the tree
        assert.isTrue(Option.isSome(cancelReason(all, "q") ?? Option.none()))
      }))

    it.effect("a descendant in another session is cancelled with its parent", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.spawnManaged("s1", spec("p", { cancelPolicy: "abort_local" }), Effect.never)
        yield* host.registerExternal("s2", spec("elsewhere", { parentTaskId: "p", cancelPolicy: "external" }))
        yield* host.requestCancel("p")
        assert.strictEqual(Option.getOrThrow(yield* host.get("elsewhere")).state, "cancelled")
        assertChildBeforeParent(yield* events, [
          { id: "p", parent: undefined },
          { id: "elsewhere", parent: "p" }
        ], "Cancelled")
      }))

    it.effect("a cooperative descendant that ignores the request gets its grace period before its parent ends", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost({ cancelGracePeriod: "2 seconds" })
        const started = yield* Deferred.make<void>()
        yield* host.spawnManaged("s1", spec("p", { cancelPolicy: "abort_local" }), Effect.never)
        yield* host.spawnManaged(
          "s1",
          spec("stubborn", { parentTaskId: "p" }),
          Deferred.succeed(started, undefined).pipe(Effect.andThen(Effect.never))
        )
        yield* Deferred.await(started)
        const cancel = yield* Effect.forkChild(host.requestCancel("p"))
        yield* TestClock.adjust("1999 millis")
        assert.strictEqual(Option.getOrThrow(yield* host.get("stubborn")).state, "cancel_requested")
        assert.strictEqual(Option.getOrThrow(yield* host.get("p")).state, "running")
        yield* TestClock.adjust("1 millis")
        const record = yield* Fiber.join(cancel)
        assert.strictEqual(record.state, "cancelled")
        const child = Option.getOrThrow(yield* host.get("stubborn"))
        assert.strictEqual(child.state, "cancelled")
        assertChildBeforeParent(yield* events, [
          { id: "p", parent: undefined },
          { id: "stubborn", parent: "p" }
        ], "Cancelled")
      }))
  })

  describe("parent validation", () => {
    it.effect("an unknown parent fails with TaskNotFound for spawnManaged, registerExternal and register; nothing is registered", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const ran = yield* Ref.make(false)
        const spawned = yield* Effect.flip(host.spawnManaged("s1", spec("m", { parentTaskId: "ghost" }), Ref.set(ran, true)))
        const external = yield* Effect.flip(host.registerExternal("s1", spec("x", { parentTaskId: "ghost" })))
        const registered = yield* Effect.flip(host.register({ ...spec("r", { parentTaskId: "ghost" }), scope: { sessionId: "s1" } }))
        for (const error of [spawned, external, registered]) {
          assert.strictEqual(error._tag, "TaskNotFound")
          if (error._tag === "TaskNotFound") assert.strictEqual(error.taskId, "ghost")
        }
        for (const id of ["m", "x", "r"]) assert.isTrue(Option.isNone(yield* host.get(id)), id)
        yield* Effect.yieldNow
        assert.isFalse(yield* Ref.get(ran))
        assert.deepStrictEqual(tags(yield* events), [])
      }))

    it.effect("a terminal parent fails with InvalidTransition (from its terminal state); nothing is registered", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.register({ ...spec("done"), scope: { sessionId: "s1" } })
        yield* host.complete("done", { state: "completed" })
        yield* host.registerExternal("s1", spec("gone"))
        yield* host.cancelManaged("s1", "gone")
        const ran = yield* Ref.make(false)
        const cases = [
          [yield* Effect.flip(host.spawnManaged("s1", spec("m", { parentTaskId: "done" }), Ref.set(ran, true))), "completed"],
          [yield* Effect.flip(host.registerExternal("s1", spec("x", { parentTaskId: "gone" }))), "cancelled"],
          [yield* Effect.flip(host.register({ ...spec("r", { parentTaskId: "done" }), scope: { sessionId: "s1" } })), "completed"]
        ] as const
        for (const [error, from] of cases) {
          assert.strictEqual(error._tag, "InvalidTransition")
          if (error._tag === "InvalidTransition") assert.strictEqual(error.from, from)
        }
        for (const id of ["m", "x", "r"]) assert.isTrue(Option.isNone(yield* host.get(id)), id)
        yield* Effect.yieldNow
        assert.isFalse(yield* Ref.get(ran))
        assert.deepStrictEqual(tags(yield* events), [
          "Registered:done",
          "Completed:done",
          "Registered:gone",
          "Cancelled:gone"
        ])
      }))

    it.effect("a live parent in any live state is accepted, and the child's record names it", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register({ ...spec("pending-parent"), scope: { sessionId: "s1" } })
        yield* host.registerExternal("s1", spec("waiting-parent"))
        yield* host.markLiveState("s1", "waiting-parent", "waiting")
        const a = yield* host.register({ ...spec("a", { parentTaskId: "pending-parent" }), scope: { sessionId: "s1" } })
        const b = yield* host.spawnManaged("s2", spec("b", { parentTaskId: "waiting-parent" }), Effect.never)
        assert.deepStrictEqual(a.parentTaskId, Option.some("pending-parent"))
        assert.deepStrictEqual(b.parentTaskId, Option.some("waiting-parent"))
      }))
  })

  describe("a parent's own end", () => {
    it.effect("a managed parent that fails cancels its live children (reason \"parent failed\") before its Failed event", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const release = yield* Deferred.make<void>()
        const childStarted = yield* Deferred.make<void>()
        const cancels = yield* Ref.make(0)
        yield* host.spawnManaged(
          "s1",
          spec("parent"),
          Deferred.await(release).pipe(Effect.andThen(Effect.fail(new Error("parent broke"))))
        )
        yield* host.spawnManaged(
          "s1",
          spec("child", { parentTaskId: "parent" }),
          // a cooperative child that stops when asked
          Effect.gen(function*() {
            yield* Deferred.succeed(childStarted, undefined)
            const ctx = yield* TaskContext
            yield* ctx.cancelRequested
          })
        )
        yield* host.registerExternal(
          "s1",
          spec("ext-child", { parentTaskId: "parent", cancelPolicy: "external" }),
          Ref.update(cancels, (n) => n + 1)
        )
        yield* host.spawnManaged("s1", spec("grandchild", { parentTaskId: "ext-child", cancelPolicy: "abort_local" }), Effect.never)
        yield* Deferred.await(childStarted)
        yield* Deferred.succeed(release, undefined)
        yield* terminalEvents(watch, ["parent", "child", "ext-child", "grandchild"])
        const parent = Option.getOrThrow(yield* host.get("parent"))
        assert.strictEqual(parent.state, "failed")
        assert.deepStrictEqual(parent.failure, Option.some({ summary: Option.some("parent broke") }))
        assert.strictEqual(Option.getOrThrow(yield* host.get("ext-child")).state, "cancelled")
        assert.strictEqual(Option.getOrThrow(yield* host.get("grandchild")).state, "cancelled")
        assert.strictEqual(Option.getOrThrow(yield* host.get("child")).state, "cancelled")
        assert.strictEqual(yield* Ref.get(cancels), 1)
        const all = yield* events
        assert.deepStrictEqual(cancelReason(all, "child"), Option.some("parent failed"))
        assert.deepStrictEqual(cancelReason(all, "ext-child"), Option.some("parent failed"))
        assert.isBelow(terminalIndex(all, "child"), terminalIndex(all, "parent"))
        assert.deepStrictEqual(terminalsOf(all, "parent"), ["Failed"])
        assert.isBelow(terminalIndex(all, "grandchild"), terminalIndex(all, "ext-child"))
        assert.isBelow(terminalIndex(all, "ext-child"), terminalIndex(all, "parent"))
      }))

    it.effect("a managed parent that times out fails after its children were cancelled (\"parent failed\")", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        yield* host.spawnManaged("s1", spec("parent", { timeout: "1 second" }), Effect.never)
        yield* host.registerExternal("s1", spec("kid", { parentTaskId: "parent", cancelPolicy: "external" }), Effect.void)
        yield* TestClock.adjust("1 second")
        yield* terminalEvents(watch, ["parent", "kid"])
        const all = yield* events
        assert.deepStrictEqual(terminalsOf(all, "parent"), ["Failed"])
        assert.deepStrictEqual(terminalsOf(all, "kid"), ["Cancelled"])
        assert.deepStrictEqual(cancelReason(all, "kid"), Option.some("parent failed"))
        assert.isBelow(terminalIndex(all, "kid"), terminalIndex(all, "parent"))
      }))

    it.effect("complete(parent, failed) cancels the children first, reason \"parent failed\"", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.register({ ...spec("parent"), scope: { sessionId: "s1" } })
        yield* host.registerExternal("s1", spec("kid", { parentTaskId: "parent", cancelPolicy: "external" }), Effect.void)
        yield* host.spawnManaged("s1", spec("kid2", { parentTaskId: "parent", cancelPolicy: "abort_local" }), Effect.never)
        const record = yield* host.complete("parent", { state: "failed", summary: "gave up" })
        assert.strictEqual(record.state, "failed")
        assert.deepStrictEqual(record.failure, Option.some({ summary: Option.some("gave up") }))
        const all = yield* events
        for (const kid of ["kid", "kid2"]) {
          assert.deepStrictEqual(terminalsOf(all, kid), ["Cancelled"], kid)
          assert.deepStrictEqual(cancelReason(all, kid), Option.some("parent failed"), kid)
          assert.isBelow(terminalIndex(all, kid), terminalIndex(all, "parent"), kid)
        }
      }))

    it.effect("markTerminal(parent, failed) cancels the children first, reason \"parent failed\"", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.spawnManaged("s1", spec("parent"), Effect.never)
        yield* host.registerExternal("s1", spec("kid", { parentTaskId: "parent", cancelPolicy: "external" }), Effect.void)
        yield* host.markTerminal("s1", "parent", "failed")
        assert.strictEqual(Option.getOrThrow(yield* host.get("parent")).state, "failed")
        assert.strictEqual(Option.getOrThrow(yield* host.get("kid")).state, "cancelled")
        const all = yield* events
        assert.deepStrictEqual(cancelReason(all, "kid"), Option.some("parent failed"))
        assert.isBelow(terminalIndex(all, "kid"), terminalIndex(all, "parent"))
      }))

    it.effect("a parent that completes successfully leaves its children running", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const release = yield* Deferred.make<void>()
        yield* host.spawnManaged("s1", spec("parent"), Deferred.await(release).pipe(Effect.as("parent done")))
        yield* host.spawnManaged("s1", spec("kid", { parentTaskId: "parent" }), Effect.never)
        yield* host.registerExternal("s1", spec("ext", { parentTaskId: "parent" }))
        yield* host.register({ ...spec("caller"), scope: { sessionId: "s1" } })
        yield* host.register({ ...spec("caller-kid", { parentTaskId: "caller" }), scope: { sessionId: "s1" } })
        yield* Deferred.succeed(release, undefined)
        yield* terminalEvents(watch, ["parent"])
        yield* host.complete("caller", { state: "completed" })
        assert.strictEqual(Option.getOrThrow(yield* host.get("parent")).state, "completed")
        assert.strictEqual(Option.getOrThrow(yield* host.get("kid")).state, "running")
        assert.strictEqual(Option.getOrThrow(yield* host.get("ext")).state, "running")
        assert.strictEqual(Option.getOrThrow(yield* host.get("caller-kid")).state, "pending")
        yield* host.requestCancel("kid") // still controllable on its own
        const all = yield* events // shutdown ends the rest
        assert.isUndefined(cancelReason(all, "ext"))
      }))
  })

  describe("listTree", () => {
    it.effect("returns a task with its descendants, oldest first, terminal ones included", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register({ ...spec("root"), scope: { sessionId: "s1" } })
        yield* host.registerExternal("s1", spec("a", { parentTaskId: "root" }))
        yield* host.spawnManaged("s2", spec("b", { parentTaskId: "root" }), Effect.never)
        yield* host.register({ ...spec("a1", { parentTaskId: "a" }), scope: { sessionId: "s1" } })
        yield* host.register({ ...spec("a2", { parentTaskId: "a" }), scope: { sessionId: "s1" } })
        yield* host.register({ ...spec("c", { parentTaskId: "root" }), scope: { sessionId: "s1" } })
        yield* host.complete("a1", { state: "completed" })
        yield* host.register({ ...spec("other"), scope: { sessionId: "s1" } })
        const shape = (tree: TaskTree): unknown => [tree.record.id, tree.record.state, tree.children.map(shape)]
        assert.deepStrictEqual(shape(yield* host.listTree("root")), [
          "root",
          "pending",
          [
            ["a", "running", [["a1", "completed", []], ["a2", "pending", []]]],
            ["b", "running", []],
            ["c", "pending", []]
          ]
        ])
        assert.deepStrictEqual(shape(yield* host.listTree("a")), ["a", "running", [["a1", "completed", []], ["a2", "pending", []]]])
        assert.deepStrictEqual(shape(yield* host.listTree("a2")), ["a2", "pending", []])
        // the records are the host's current ones
        const tree = yield* host.listTree("root")
        assert.deepStrictEqual(tree.record, Option.getOrThrow(yield* host.get("root")))
      }))

    it.effect("a terminal task's tree is still listed, after its tree was cancelled", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.spawnManaged("s1", spec("root", { cancelPolicy: "abort_local" }), Effect.never)
        yield* host.spawnManaged("s1", spec("kid", { parentTaskId: "root", cancelPolicy: "abort_local" }), Effect.never)
        yield* host.cancelManaged("s1", "root")
        const tree = yield* host.listTree("root")
        assert.strictEqual(tree.record.state, "cancelled")
        assert.deepStrictEqual(tree.children.map((c) => [c.record.id, c.record.state]), [["kid", "cancelled"]])
      }))

    it.effect("an unknown task fails with TaskNotFound", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const error = yield* Effect.flip(host.listTree("ghost"))
        assert.strictEqual(error._tag, "TaskNotFound")
        if (error._tag === "TaskNotFound") assert.strictEqual(error.taskId, "ghost")
      }))
  })

  describe("edge cases", () => {
    it.effect("shutdown does not wait a grace period for a cooperative child of a managed parent", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        yield* host.spawnManaged("s1", spec("p"), Effect.never)
        yield* host.registerExternal("s1", spec("x", { parentTaskId: "p" }), Effect.void)
        yield* host.register({ ...spec("r", { parentTaskId: "p" }), scope: { sessionId: "s1" } })
        // no TestClock.adjust: the shutdown finishes by itself
        const all = yield* events
        for (const id of ["x", "r"]) assert.isBelow(terminalIndex(all, id), terminalIndex(all, "p"), id)
      }))

    it.effect("a child registered while its parent is cancel_requested is cancelled before the parent ends", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const go = yield* Deferred.make<void>()
        yield* host.spawnManaged(
          "s1",
          spec("p"),
          Effect.gen(function*() {
            yield* (yield* TaskContext).cancelRequested
            yield* Deferred.await(go)
            return "bye"
          })
        )
        yield* host.requestCancel("p")
        yield* host.spawnManaged("s1", spec("kid", { parentTaskId: "p", cancelPolicy: "abort_local" }), Effect.never)
        const watch = yield* host.subscribe()
        yield* Deferred.succeed(go, undefined)
        yield* terminalEvents(watch, ["p"])
        const kid = yield* host.get("kid")
        assert.strictEqual(Option.getOrUndefined(kid)?.state, "cancelled")
        const all = yield* events
        assert.isBelow(terminalIndex(all, "kid"), terminalIndex(all, "p"))
      }))
  })
})
