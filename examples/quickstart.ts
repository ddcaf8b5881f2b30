/**
 * Quickstart: run background work beside a "conversation" (session-1), watch
 * it live, cancel it three different ways, and print what happened.
 *
 *   npm exec -- node examples/quickstart.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Deferred, Effect, Fiber, Stream } from "effect"
import {
  BackgroundTaskHost,
  type BackgroundTaskRecord,
  type SubscriptionEvent,
  InvokeError,
  TaskContext
} from "../src/index.ts"
import { describeEvent, summaryOf } from "./internal/view.ts"

const session = "session-1"

// One plain line per event; the examples share this rendering: see
// `describeEvent` in ./internal/view.ts.
const describe = (event: SubscriptionEvent): string => `[event] ${describeEvent(event)}`

// A monitor: checks something on a cadence until asked to stop. It reads its
// own context (TaskContext) to report progress and to see cancel requests.
const monitor = (warmedUp: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    let checks = 0
    while (!(yield* ctx.isCancelRequested)) {
      checks++
      yield* ctx.progress(`check ${checks}: disk ok`)
      if (checks === 3) yield* Deferred.succeed(warmedUp, undefined)
      // sleep until the next check, or wake up at once when cancellation is requested
      yield* Effect.raceFirst(Effect.sleep("10 millis"), ctx.cancelRequested)
    }
    return `stopped after ${checks} checks` // a cooperative task ends itself: state `cancelled`
  })

const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost

  // Subscribe FIRST: the subscription is live when `subscribe` returns, so no
  // event below is missed. The stream ends when the host shuts down.
  const events = yield* host.subscribe({ sessionId: session })
  const printer = yield* Effect.forkChild(Stream.runForEach(events, (e) => Console.log(describe(e))))

  // Managed tasks are fibers owned by the host; each gets a record, `running`.
  const warmedUp = yield* Deferred.make<void>()
  yield* host.spawnManaged(session, { id: "monitor-1", kind: "monitor", producer: "quickstart" }, monitor(warmedUp))
  // A string result becomes the record's summary.
  yield* host.spawnManaged(session, { id: "subagent-1", kind: "subagent", producer: "quickstart" },
    Effect.gen(function*() {
      yield* (yield* TaskContext).progress("reading 12 files")
      return "3 files need attention"
    }))
  // A typed failure: the record ends `failed`, with the error's message as summary.
  yield* host.spawnManaged(session, { id: "subagent-2", kind: "subagent", producer: "quickstart" },
    Effect.fail(new InvokeError({ message: "model quota exceeded" })))
  // An observer that never ends by itself; its finalizer shows that cancelling waits for cleanup.
  yield* host.spawnManaged(session, { id: "observer-1", kind: "observer", producer: "quickstart" },
    Effect.never.pipe(Effect.ensuring(Console.log("[observer-1] finalizer ran"))))
  // Work owned elsewhere (a CI build): the host records it and knows how to cancel it.
  yield* host.registerExternal(session, { id: "build-1", kind: "other", producer: "ci", cancelPolicy: "external" },
    Console.log("[build-1] external cancel effect ran"))

  // Three ways to stop work:
  yield* Deferred.await(warmedUp) // let the monitor do a few checks first
  // 1. cooperative (the default policy): the task sees the request and ends itself
  //    (the host would interrupt it after a grace period, 5 seconds by default).
  yield* host.requestCancel("monitor-1", "user closed the panel")
  // 2. external policy: the host runs the cancel effect; the record is `cancelled` on return.
  yield* host.requestCancel("build-1", "pipeline superseded")
  // 3. cancelManaged: interrupt now; the fiber's finalizers have run when it returns.
  yield* host.cancelManaged(session, "observer-1")

  // `await` returns a task's final record once it has ended: wait for all five.
  const ids = ["monitor-1", "subagent-1", "subagent-2", "observer-1", "build-1"]
  yield* Effect.forEach(ids, (id) => host.await(id, { sessionId: session }), { discard: true })
  return { printer, records: yield* host.listManaged(session) }
})

// The summary table: one row per record, oldest first.
const table = (records: ReadonlyArray<BackgroundTaskRecord>): string => {
  const all = [["id", "kind", "state", "summary"], ...records.map((r) => [r.id, r.kind, r.state, summaryOf(r)])]
  const widths = [0, 1, 2].map((i) => Math.max(...all.map((row) => row[i]!.length)))
  return all.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n")
}

const main = Effect.gen(function*() {
  // `Effect.provide(layer)` opens the host around `program` and closes it after:
  // closing cancels anything still live and ends every event stream...
  const { printer, records } = yield* program.pipe(Effect.provide(BackgroundTaskHost.layer))
  // ...so joining the printer waits exactly for the last event line.
  yield* Fiber.join(printer)
  yield* Console.log("\n" + table(records))
}).pipe(Effect.scoped) // the scope that holds the subscriptions

// Runs the program, interrupts it on Ctrl-C (finalizers run), sets the exit code.
NodeRuntime.runMain(main)
