/**
 * The retention sweeper: it sleeps until the next terminal record is due,
 * and while none is held it waits for one instead of waking every `maxAge`.
 * Its wake-ups are counted through the `Clock` the host is built with (a
 * `TestClock` whose `sleep` counts its calls).
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, type Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { makeTestHost } from "./utils/host.ts"

const request = (id: string) => ({ scope: { sessionId: "s1" }, id, kind: "monitor" as const, producer: "test" })

/** A host whose clock counts the sleeps it starts (the sweeper is its only sleeper here). */
const countingHost = (maxAge: Duration.Input) =>
  Effect.gen(function*() {
    const clock = yield* Clock.clockWith(Effect.succeed)
    const sleeps = { count: 0 }
    const counting: Clock.Clock = {
      currentTimeMillisUnsafe: () => clock.currentTimeMillisUnsafe(),
      currentTimeNanosUnsafe: () => clock.currentTimeNanosUnsafe(),
      monotonicTimeNanosUnsafe: () => clock.monotonicTimeNanosUnsafe(),
      currentTimeMillis: clock.currentTimeMillis,
      currentTimeNanos: clock.currentTimeNanos,
      monotonicTimeNanos: clock.monotonicTimeNanos,
      sleep: (duration) => {
        sleeps.count++
        return clock.sleep(duration)
      }
    } as Clock.Clock
    const test = yield* makeTestHost({ retention: { maxAge } }).pipe(Effect.provideService(Clock.Clock, counting))
    return { ...test, sleeps }
  })

describe("retention sweeper", () => {
  it.effect("an idle host's sweeper never wakes: a TestClock jump of years starts no sleep", () =>
    Effect.gen(function*() {
      const { close, host, sleeps } = yield* countingHost("1 minute")
      yield* TestClock.adjust("1 day")
      // waking every maxAge would have slept 1,440 times by now
      assert.strictEqual(sleeps.count, 0)
      yield* TestClock.adjust("3650 days")
      assert.strictEqual(sleeps.count, 0)
      assert.strictEqual((yield* host.stats).live, 0)
      yield* close
    }))

  it.effect("a terminal record wakes the sweeper once, when it is due; then it waits again", () =>
    Effect.gen(function*() {
      const { events, host, sleeps } = yield* countingHost("1 minute")
      yield* TestClock.adjust("10 days")
      yield* host.register(request("a"))
      yield* host.complete("a", { state: "completed" })
      yield* host.register(request("b"))
      yield* TestClock.adjust("30 seconds")
      yield* host.complete("b", { state: "completed" })
      // one sleep: until a is due (b is due 30 s later, slept for after a goes)
      assert.strictEqual(sleeps.count, 1)
      yield* TestClock.adjust("30 seconds")
      assert.deepStrictEqual((yield* host.list({ includeTerminal: true })).map((r) => r.id), ["b"])
      assert.strictEqual(sleeps.count, 2)
      yield* TestClock.adjust("3650 days")
      assert.deepStrictEqual(yield* host.list({ includeTerminal: true }), [])
      // after b went nothing is held: no further wake-up across ten years
      assert.strictEqual(sleeps.count, 2)
      const evicted = (yield* events).filter((event) => event._tag === "Evicted")
      assert.deepStrictEqual(evicted.map((event) => [event.taskIds, event.reason]), [[["a"], "max_age"], [["b"], "max_age"]])
    }))

  it.effect("a record that ends while the sweeper waits is evicted on time", () =>
    Effect.gen(function*() {
      const { host } = yield* countingHost("1 minute")
      yield* TestClock.adjust("1000 days")
      yield* host.register(request("a"))
      yield* host.complete("a", { state: "completed" })
      yield* TestClock.adjust("59999 millis")
      assert.strictEqual((yield* host.list({ includeTerminal: true })).length, 1)
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* host.list({ includeTerminal: true }), [])
    }))
})
