/**
 * Task input and stored per-task options: a registration's
 * `input` (any JSON value) and `timeout` / `cancelGracePeriod` / `backoff`
 * are kept with the record; an input larger than `maxInputBytes`, or one that
 * is not JSON, fails with `RegistrationError` and registers nothing; a
 * `backoff` drives the retries as a `retry` schedule would. (Recovery with
 * them: `BackgroundTaskHost.durable.test.ts`.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Queue, Schema } from "effect"
import { TestClock } from "effect/testing"
import { BackgroundTaskHost, InvalidOptions, RegistrationError } from "../src/index.ts"
import { makeTestHost, spec } from "./utils/host.ts"

const Job = Schema.Struct({ url: Schema.String, depth: Schema.Int })

describe("task input", () => {
  it.effect("is stored with the record, in memory and on a durable store, and decodes with the caller's Schema", () =>
    Effect.gen(function*() {
      for (const store of ["memory", "sqlite"] as const) {
        const { host } = yield* makeTestHost({}, store)
        const input = Schema.encodeSync(Job)({ url: "https://example.com", depth: 3 })
        const spawned = yield* host.spawnManaged("s", spec("m", { input }), Effect.never)
        const registered = yield* host.register({ ...spec("r", { input: [1, "two", null, { three: true }] }), scope: { sessionId: "s" } })
        const external = yield* host.registerExternal("s", spec("x", { input: "text" }))
        assert.deepStrictEqual(Schema.decodeUnknownSync(Job)(spawned.input), { url: "https://example.com", depth: 3 }, store)
        assert.deepStrictEqual(registered.input, [1, "two", null, { three: true }])
        assert.strictEqual(external.input, "text")
        assert.deepStrictEqual(Option.getOrThrow(yield* host.get("m")).input, input)
        // a record without input has none
        assert.isFalse("input" in (yield* host.spawnManaged("s", spec("plain"), Effect.never)))
      }
    }))

  it.effect("larger than maxInputBytes (JSON text, UTF-8): RegistrationError naming the sizes; nothing registered", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost({ maxInputBytes: 10 })
      const fits = yield* host.spawnManaged("s", spec("fits", { input: "12345678" }), Effect.never) // 10 bytes with quotes
      assert.strictEqual(fits.input, "12345678")
      for (const [id, input] of [["big", "123456789"], ["utf8", "ééééé"]] as const) {
        const error = yield* Effect.flip(host.spawnManaged("s", spec(id, { input }), Effect.never))
        assert.instanceOf(error, RegistrationError)
        assert.include(error.message, `more than maxInputBytes (10)`)
        assert.include(error.message, id)
        assert.isTrue(Option.isNone(yield* host.get(id)))
      }
      const viaRegister = yield* Effect.flip(host.register({ ...spec("reg", { input: { long: "x".repeat(20) } }), scope: { sessionId: "s" } }))
      assert.instanceOf(viaRegister, RegistrationError)
      assert.strictEqual((yield* host.stats).live, 1)
    }))

  it.effect("not JSON (a function, a Date, NaN, a cyclic object): RegistrationError; nothing registered", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const cyclic: Record<string, unknown> = {}
      cyclic["self"] = cyclic
      for (const input of [() => 1, new Date(0), Number.NaN, { nested: Infinity }, [1, { deep: new Map() }], cyclic]) {
        const exit = yield* Effect.exit(host.spawnManaged("s", { ...spec("bad"), input } as never, Effect.never))
        assert.isTrue(Exit.isFailure(exit), String(input))
        const error = yield* Effect.flip(exit)
        assert.instanceOf(error, RegistrationError)
        assert.include(error.message, "input")
        assert.isTrue(Option.isNone(yield* host.get("bad")))
      }
    }))

  it.effect("maxInputBytes must be an integer >= 0 or Infinity", () =>
    Effect.gen(function*() {
      for (const bad of [-1, 1.5, Number.NaN, "10"]) {
        const error = yield* Effect.flip(Effect.scoped(Layer.build(BackgroundTaskHost.layerWith({ maxInputBytes: bad as never }))))
        assert.instanceOf(error, InvalidOptions)
        assert.strictEqual(error.option, "maxInputBytes")
      }
    }))
})

describe("stored per-task options", () => {
  it.effect("timeout, cancelGracePeriod and backoff are kept in the record's settings (finite durations, in ms)", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const record = yield* host.spawnManaged("s", spec("t", {
        timeout: "1 minute",
        cancelGracePeriod: 250,
        backoff: { initialMillis: 10 }
      }), Effect.never)
      assert.deepStrictEqual(record.settings, { timeoutMillis: 60_000, cancelGracePeriodMillis: 250, backoff: { initialMillis: 10 } })
      const infinite = yield* host.spawnManaged("s", spec("u", { cancelGracePeriod: Infinity }), Effect.never)
      assert.isUndefined(infinite.settings)
    }))

  it.effect("a backoff drives the retries: initial, times factor, capped at max", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const started = yield* Queue.unbounded<number>()
      let runs = 0
      yield* host.spawnManaged("s", spec("b", { maxAttempts: 4, backoff: { initialMillis: 100, factor: 10, maxMillis: 500 } }),
        Effect.suspend(() => Effect.andThen(Queue.offer(started, ++runs), Effect.fail("again"))))
      assert.strictEqual(yield* Queue.take(started), 1)
      // 100, then 100 × 10 = 1,000 capped at 500, then 500
      for (const [delay, run] of [[100, 2], [500, 3], [500, 4]] as const) {
        yield* TestClock.adjust(delay - 1)
        assert.strictEqual(yield* Queue.size(started), 0, `run ${run} not before ${delay} ms`)
        yield* TestClock.adjust(1)
        assert.strictEqual(yield* Queue.take(started), run)
      }
      const failed = yield* Effect.repeat(host.get("b"), { until: (record) => Option.isSome(record) && record.value.state === "failed" })
      assert.strictEqual(Option.getOrThrow(failed).attempt.attempt, 3)
    }))

  it.effect("a backoff that is not one (negative, a factor below 1): RegistrationError", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      for (const backoff of [{ initialMillis: -1 }, { initialMillis: 10, factor: 0.5 }, { initialMillis: 1.5 }, "1 second"]) {
        const error = yield* Effect.flip(host.spawnManaged("s", { ...spec("bad"), backoff } as never, Effect.never))
        assert.instanceOf(error, RegistrationError, JSON.stringify(backoff))
        assert.include(error.message, "backoff")
      }
    }))
})
