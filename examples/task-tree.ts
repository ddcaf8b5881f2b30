/**
 * Task trees: a subagent spawns helpers of its own (`parentTaskId`), and one
 * of them spawns a watcher. Cancelling the subagent cancels the whole tree,
 * deepest first, so every child's terminal event comes before its parent's.
 * A second subagent fails, and its child is cancelled ("parent failed")
 * before the failure is recorded. `listTree` shows a task with its
 * descendants.
 *
 *   npm exec -- node examples/task-tree.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Deferred, Effect, Stream } from "effect"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostService,
  type SubscriptionEvent,
  TaskContext,
  type TaskTree
} from "../src/index.ts"

const session = "session-1"

/** A task that runs until it is stopped, saying so in its finalizer. */
const worker = (id: string, started: Deferred.Deferred<void>) =>
  Deferred.succeed(started, undefined).pipe(
    Effect.andThen(Effect.never),
    Effect.ensuring(Console.log(`[${id}] stopped`))
  )

/** Spawns a task under `parentTaskId` and waits until its body runs. */
const spawnChild = (host: BackgroundTaskHostService, id: string, parentTaskId: string) =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    yield* host.spawnManaged(
      session,
      { id, kind: "other", producer: "example", parentTaskId, cancelPolicy: "abort_local" },
      worker(id, started)
    )
    yield* Deferred.await(started)
  })

/** The tree as indented lines: id and state. */
const render = (tree: TaskTree, depth = 0): Array<string> => [
  `${"  ".repeat(depth)}${tree.record.id} (${tree.record.state})`,
  ...tree.children.flatMap((child) => render(child, depth + 1))
]

/** The terminal events, as `<state> <id>` lines, in the order they were published. */
const ends = (event: SubscriptionEvent): Array<string> =>
  event._tag === "Completed" || event._tag === "Failed" || event._tag === "Cancelled"
    ? [`${event.record.state} ${event.taskId}`]
    : []

const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const events = yield* host.subscribe({ sessionId: session })

  // research-1 → search-1 → watch-1, and research-1 → fetch-1
  const researching = yield* Deferred.make<void>()
  yield* host.spawnManaged(
    session,
    { id: "research-1", kind: "subagent", producer: "example" },
    Effect.gen(function*() {
      const ctx = yield* TaskContext
      yield* Deferred.succeed(researching, undefined)
      yield* ctx.cancelRequested
      return "research stopped"
    })
  )
  yield* Deferred.await(researching)
  yield* spawnChild(host, "search-1", "research-1")
  yield* spawnChild(host, "watch-1", "search-1")
  yield* spawnChild(host, "fetch-1", "research-1")
  yield* Console.log("the tree:")
  for (const line of render(yield* host.listTree("research-1"))) yield* Console.log(`  ${line}`)

  // cancelling the root cancels its descendants first, deepest first
  yield* host.requestCancel("research-1", "the user changed the question")

  // a parent that fails cancels its children before its own failure is recorded
  const planning = yield* Deferred.make<void>()
  const fail = yield* Deferred.make<void>()
  yield* host.spawnManaged(
    session,
    { id: "plan-1", kind: "subagent", producer: "example" },
    Deferred.succeed(planning, undefined).pipe(
      Effect.andThen(Deferred.await(fail)),
      Effect.andThen(Effect.fail("the model refused"))
    )
  )
  yield* Deferred.await(planning)
  yield* spawnChild(host, "draft-1", "plan-1")
  yield* Deferred.succeed(fail, undefined)

  const seen = yield* events.pipe(
    Stream.flatMap((event) => Stream.fromIterable(ends(event))),
    Stream.takeUntil((line) => line === "failed plan-1"),
    Stream.runCollect
  )
  yield* Console.log("terminal events, in order:")
  for (const line of seen) yield* Console.log(`  ${line}`)
  yield* Console.log("after:")
  for (const line of render(yield* host.listTree("research-1"))) yield* Console.log(`  ${line}`)
  for (const line of render(yield* host.listTree("plan-1"))) yield* Console.log(`  ${line}`)
}).pipe(Effect.scoped, Effect.provide(BackgroundTaskHost.layer))

NodeRuntime.runMain(program)
