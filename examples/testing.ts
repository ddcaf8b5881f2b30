/**
 * Testing code that uses the host: give every test a fresh host
 * (`BackgroundTaskHost.layer`) and a `TestClock`, so time only moves when the
 * test says so (`TestClock.adjust`): no real waiting, no flaky timing.
 *
 * With @effect/vitest, `it.effect` provides the TestClock for you and a test
 * is `it.effect("…", () => test.pipe(Effect.provide(BackgroundTaskHost.layer)))`
 * (see docs/recipes.md). This file runs the same tests as a plain program, so
 * it needs no test runner:
 *
 *   npm exec -- node examples/testing.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Fiber, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import { strict as assert } from "node:assert"
import { BackgroundTaskHost, type BackgroundTaskHostService, TaskContext } from "../src/index.ts"

// -----------------------------------------------------------------------------
// the application code under test
// -----------------------------------------------------------------------------

/** Starts a heartbeat monitor for a session: one progress report every 30 seconds. */
const startHeartbeat = (host: BackgroundTaskHostService, sessionId: string) =>
  host.spawnManaged(
    sessionId,
    { id: `heartbeat-${sessionId}`, kind: "monitor", producer: "app" },
    Effect.gen(function*() {
      const ctx = yield* TaskContext
      for (let beat = 1;; beat++) {
        yield* Effect.sleep("30 seconds")
        yield* ctx.progress(`beat ${beat}`)
      }
    })
  )

/** Ends a session: cancels every live task it owns; returns how many there were. */
const endSession = (host: BackgroundTaskHostService, sessionId: string) =>
  Effect.map(host.cancelAllManaged(sessionId), (records) => records.length)

// -----------------------------------------------------------------------------
// the tests
// -----------------------------------------------------------------------------

const tests: ReadonlyArray<readonly [string, Effect.Effect<void, unknown, BackgroundTaskHost>]> = [
  [
    "the heartbeat reports once every 30 seconds",
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const events = yield* host.subscribe({ sessionId: "s1" }) // live before the task starts
      const progress = yield* Effect.forkChild(events.pipe(
        Stream.filter((e) => e._tag === "Progress"),
        Stream.map((e) => e._tag === "Progress" ? e.message : ""),
        Stream.take(3),
        Stream.runCollect
      ))
      yield* startHeartbeat(host, "s1")
      yield* TestClock.adjust("90 seconds") // three beats, at once
      assert.deepStrictEqual(yield* Fiber.join(progress), ["beat 1", "beat 2", "beat 3"])
    }).pipe(Effect.scoped)
  ],
  [
    "ending a session cancels its tasks and leaves other sessions alone",
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      yield* startHeartbeat(host, "s1")
      yield* startHeartbeat(host, "s2")
      assert.strictEqual(yield* endSession(host, "s1"), 1)
      const ended = yield* host.get("heartbeat-s1")
      const other = yield* host.get("heartbeat-s2")
      assert.strictEqual(Option.getOrThrow(ended).state, "cancelled")
      assert.strictEqual(Option.getOrThrow(other).state, "running")
    })
  ],
  [
    "a task that ignores a cancel request is interrupted after the grace period",
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      yield* host.spawnManaged("s1", { id: "stubborn", kind: "other", producer: "app" }, Effect.never)
      const requested = yield* host.requestCancel("stubborn", "test")
      assert.strictEqual(requested.state, "cancel_requested")
      yield* TestClock.adjust("4 seconds") // still within the default 5 seconds
      assert.strictEqual(Option.getOrThrow(yield* host.get("stubborn")).state, "cancel_requested")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(Option.getOrThrow(yield* host.get("stubborn")).state, "cancelled")
    })
  ]
]

// each test gets its own host and its own TestClock: tests never share state
const runTest = ([name, test]: (typeof tests)[number], i: number) =>
  test.pipe(
    Effect.provide(BackgroundTaskHost.layer),
    Effect.provide(TestClock.layer()),
    Effect.exit,
    Effect.flatMap((exit) =>
      exit._tag === "Success"
        ? Console.log(`ok ${i + 1} - ${name}`).pipe(Effect.as(true))
        : Console.log(`not ok ${i + 1} - ${name}\n  ${String(exit.cause)}`).pipe(Effect.as(false))
    )
  )

const main = Effect.gen(function*() {
  const results = yield* Effect.forEach(tests, runTest)
  const passed = results.filter(Boolean).length
  yield* Console.log(`${passed} of ${tests.length} tests passed`)
  if (passed < tests.length) return yield* Effect.fail(new Error(`${tests.length - passed} tests failed`))
})

NodeRuntime.runMain(main)
