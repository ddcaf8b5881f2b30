/**
 * Session handoff: when a conversation's session ends (here: it "compacts"
 * into a successor), each live task's `closePolicy` says what happens to it:
 * `transfer` moves it to the successor (its fiber keeps running, and its
 * TaskContext's `sessionId` follows), `cancel` cancels it through its cancel
 * policy, `keep` leaves it where it is.
 *
 * The session is a handle from `host.openSession`: closing its scope applies
 * the policies, after `handoff` named the successor.
 *
 *   npm exec -- node examples/session-handoff.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Deferred, Effect, Fiber, Option, Stream } from "effect"
import { BackgroundTaskHost, type BackgroundTaskRecord, isTerminal, TaskContext } from "../src/index.ts"

/** A task that, once told to, reports which session it belongs to now. */
const reporter = (started: Deferred.Deferred<void>, ask: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    yield* ctx.progress(`started in ${yield* ctx.sessionId}`)
    yield* Deferred.succeed(started, undefined)
    yield* Deferred.await(ask)
    return `finished in ${yield* ctx.sessionId}` // sessionId follows transfers
  })

const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost

  // a UI watching the successor session sees the handoff (a session filter
  // matches a Transferred event's old and new session) and what follows
  const events = yield* host.subscribe({ sessionId: "session-2" })
  const watcher = yield* Effect.forkChild(events.pipe(
    Stream.takeUntil((e) => e._tag === "Completed" && e.taskId === "planner-1"),
    Stream.runCollect
  ))

  const started = yield* Deferred.make<void>()
  const ask = yield* Deferred.make<void>()
  const summarising = yield* Deferred.make<void>()

  // session-1 lives as long as this scope; closing it applies the close policies
  yield* Effect.scoped(Effect.gen(function*() {
    const session = yield* host.openSession("session-1")
    yield* session.spawn(
      { id: "planner-1", kind: "subagent", producer: "example", closePolicy: "transfer" },
      reporter(started, ask)
    )
    yield* session.spawn(
      { id: "summary-1", kind: "observer", producer: "example", closePolicy: "cancel", cancelPolicy: "abort_local" },
      Deferred.succeed(summarising, undefined).pipe(
        Effect.andThen(Effect.never),
        Effect.ensuring(Console.log("[summary-1] finalizer ran"))
      )
    )
    yield* session.spawn(
      { id: "archive-1", kind: "other", producer: "example", closePolicy: "keep" },
      Effect.never
    )
    yield* Deferred.await(started)
    yield* Deferred.await(summarising)
    // the conversation compacts into session-2: name it as the successor
    yield* session.handoff("session-2")
  }))

  const live = (sessionId: string) =>
    Effect.map(host.listManaged(sessionId), (records) => records.filter((r) => !isTerminal(r.state)).map((r) => r.id))
  const cancelled = (yield* host.listManaged("session-1")).filter((r) => r.state === "cancelled").map((r) => r.id)
  yield* Console.log(`session-1 closed: transferred ${(yield* live("session-2")).join(", ")}`)
  yield* Console.log(`session-1 closed: cancelled ${cancelled.join(", ")}`)
  yield* Console.log(`session-1 closed: kept ${(yield* live("session-1")).join(", ")}`)

  yield* Deferred.succeed(ask, undefined) // the transferred task finishes in its new session
  for (const event of yield* Fiber.join(watcher)) {
    const detail = event._tag === "Transferred"
      ? ` from ${event.fromSessionId}`
      : event._tag === "Completed"
      ? `: ${Option.getOrElse(Option.flatMap(event.record.result, (r) => r.summary), () => "-")}`
      : ""
    yield* Console.log(`session-2 saw: ${event._tag} ${"taskId" in event ? event.taskId : "-"}${detail}`)
  }

  const show = (r: BackgroundTaskRecord) => `${r.id} ${r.state} (closePolicy ${r.closePolicy})`
  for (const r of yield* host.listManaged("session-1")) yield* Console.log(`session-1 has: ${show(r)}`)
  for (const r of yield* host.listManaged("session-2")) yield* Console.log(`session-2 has: ${show(r)}`)
})

// closing the host cancels archive-1, the task session-1 kept
NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(BackgroundTaskHost.layer)))
