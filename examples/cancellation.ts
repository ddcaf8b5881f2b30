/**
 * Cancellation: the three cancel policies, the grace period, and
 * `cancelManaged` (cancel now, whatever the policy).
 *
 * - `cooperative` (the default): `requestCancel` signals the task through its
 *   TaskContext; the task cleans up and returns (record `cancelled`, with its
 *   result as summary). A task that ignores the request is interrupted when
 *   the host's grace period ends.
 * - `abort_local`: `requestCancel` interrupts the fiber; its finalizers have
 *   run and the record is `cancelled` when the call returns.
 * - `external`: the task runs elsewhere; `requestCancel` runs the cancel
 *   effect given to `registerExternal` (at most once); the record is
 *   `cancelled` when the call returns.
 *
 *   npm exec -- node examples/cancellation.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Deferred, Effect, Option } from "effect"
import {
  BackgroundTaskHost,
  type BackgroundTaskRecord,
  TaskContext
} from "../src/index.ts"

const session = "session-1"

const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost

  // 1. cooperative: the task sees the request, cleans up and returns
  const syncing = yield* Deferred.make<void>()
  yield* host.spawnManaged(session, { id: "sync-1", kind: "other", producer: "example" }, Effect.gen(function*() {
    const ctx = yield* TaskContext
    yield* Deferred.succeed(syncing, undefined)
    const reason = yield* ctx.cancelRequested // completes when cancellation is requested
    yield* Console.log(`[sync-1] saw the request (${Option.getOrElse(reason, () => "no reason")}), flushing writes`)
    return "flushed 3 pending writes"
  }))
  yield* Deferred.await(syncing)
  const record = yield* host.requestCancel("sync-1", "user pressed stop")
  yield* Console.log(`cooperative: requestCancel returned ${record.state}`)
  // `await` waits until the task has ended and returns its final record
  const end1 = yield* host.await("sync-1")
  yield* Console.log(`cooperative: sync-1 ended ${end1.state}`)

  // 1b. cooperative, but the task ignores the request: interrupted after the grace period
  const stubborn = yield* Deferred.make<void>()
  yield* host.spawnManaged(
    session,
    { id: "stubborn-1", kind: "other", producer: "example" },
    Deferred.succeed(stubborn, undefined).pipe(
      Effect.andThen(Effect.never),
      Effect.onInterrupt(() => Console.log("[stubborn-1] interrupted after the grace period"))
    )
  )
  yield* Deferred.await(stubborn)
  yield* host.requestCancel("stubborn-1", "user pressed stop")
  const end1b = yield* host.await("stubborn-1")
  yield* Console.log(`cooperative: stubborn-1 ended ${end1b.state}`)

  // 2. abort_local: interrupted at once; finalizers have run when requestCancel returns
  const rendering = yield* Deferred.make<void>()
  yield* host.spawnManaged(
    session,
    { id: "render-1", kind: "other", producer: "example", cancelPolicy: "abort_local" },
    Deferred.succeed(rendering, undefined).pipe(
      Effect.andThen(Effect.never),
      Effect.ensuring(Console.log("[render-1] finalizer: temporary files removed"))
    )
  )
  yield* Deferred.await(rendering)
  const render = yield* host.requestCancel("render-1", "output no longer needed")
  yield* Console.log(`abort_local: requestCancel returned ${render.state}`)

  // 3. external: the work runs elsewhere; the host runs its cancel effect (at most once)
  yield* host.registerExternal(
    session,
    { id: "build-1", kind: "other", producer: "ci", cancelPolicy: "external" },
    Console.log("[build-1] cancel effect: POST /builds/1/abort")
  )
  const build = yield* host.requestCancel("build-1", "pipeline superseded")
  yield* Console.log(`external: requestCancel returned ${build.state}`)

  // cancelManaged: cancel now, whatever the policy (no grace period for a cooperative task)
  yield* host.spawnManaged(session, { id: "watch-1", kind: "monitor", producer: "example" }, Effect.never)
  yield* host.cancelManaged(session, "watch-1")
  const watch = yield* host.getManaged(session, "watch-1")
  yield* Console.log(`cancelManaged: watch-1 is ${Option.match(watch, { onNone: () => "gone", onSome: (r) => r.state })}`)

  return yield* host.listManaged(session)
})

const table = (records: ReadonlyArray<BackgroundTaskRecord>): string => {
  const summary = (r: BackgroundTaskRecord) =>
    Option.orElse(r.result, () => r.failure).pipe(Option.flatMap((o) => o.summary), Option.getOrElse(() => "-"))
  const all = [["id", "policy", "state", "summary"], ...records.map((r) => [r.id, r.cancelPolicy, r.state, summary(r)])]
  const widths = [0, 1, 2].map((i) => Math.max(...all.map((row) => row[i]!.length)))
  return all.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n")
}

const main = program.pipe(
  // a short grace period, so the stubborn task is interrupted quickly
  Effect.provide(BackgroundTaskHost.layerWith({ cancelGracePeriod: "200 millis" })),
  Effect.flatMap((records) => Console.log("\n" + table(records)))
)

NodeRuntime.runMain(main)
