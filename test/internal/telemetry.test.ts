/**
 * The host's metric series: plain numbers read by the registry. The duration
 * histogram must file every value as Effect's own histogram does, and a
 * series must go on from the value the registry already had.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Metric, Schema } from "effect"
import { TaskMetrics } from "../../src/index.ts"
import { KindSeries, Telemetry } from "../../src/internal/telemetry.ts"

const durations = Schema.Array(Schema.Union([
  Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(10_000)),
  // the boundaries themselves, where `<=` decides the bucket
  Schema.Literals([0.005, 0.01, 0.02, 0.64, 1310.72])
]))

/** A registry of its own, with `kind` as the host would label the series. */
const registryContext = (kind: string) =>
  Context.make(Metric.MetricRegistry, new Map()).pipe(Context.add(Metric.CurrentMetricAttributes, { kind }))

describe("telemetry series", () => {
  it.prop("the duration histogram files each value as Effect's histogram does", { values: durations }, ({ values }) => {
    const context = registryContext("other")
    const reference = TaskMetrics.duration
    const empty = Effect.runSync(Effect.provideContext(Metric.value(reference), context))
    const series = new KindSeries({ started: 0, completed: 0, failed: 0, cancelled: 0 }, 0, empty)
    for (const value of values) series.observe(value)
    // the same values through the metric itself, in another registry
    const other = registryContext("other")
    for (const value of values) Effect.runSync(Effect.provideContext(Metric.update(reference, value), other))
    assert.deepStrictEqual(series.durationState(), Effect.runSync(Effect.provideContext(Metric.value(reference), other)))
  })

  it.effect("a series goes on from the value the registry had; the host's numbers are read through Metric.value", () =>
    Effect.gen(function*() {
      const context = registryContext("monitor")
      const inContext = <A>(effect: Effect.Effect<A>) => Effect.provideContext(effect, context)
      // what was counted before any host ran (another library, an earlier version)
      yield* inContext(Metric.update(TaskMetrics.started, 5))
      yield* inContext(Metric.update(TaskMetrics.live, 2))
      yield* inContext(Metric.update(TaskMetrics.duration, 0.3))
      const telemetry = yield* Telemetry.make(context)
      const record = { kind: "monitor" } as const
      telemetry.registered(record as never)
      assert.strictEqual((yield* inContext(Metric.value(TaskMetrics.started))).count, 6)
      assert.strictEqual((yield* inContext(Metric.value(TaskMetrics.live))).value, 3)
      // a second host in the same registry adds to the same numbers
      const second = yield* Telemetry.make(context)
      second.registered(record as never)
      assert.strictEqual((yield* inContext(Metric.value(TaskMetrics.started))).count, 7)
      const histogram = yield* inContext(Metric.value(TaskMetrics.duration))
      assert.strictEqual(histogram.count, 1)
      assert.strictEqual(histogram.sum, 0.3)
    }))
})
