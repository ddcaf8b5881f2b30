/**
 * The host's metrics, kept as plain numbers and read by the metric registry.
 *
 * Every task the host records counts (managed, external, registered): started
 * when registered, then one of completed / failed / cancelled when it ends;
 * `background_tasks_live` is the number of live records; the duration
 * histogram observes `createdAt → completedAt` in seconds. All are labelled
 * with the task's `kind`. Spans are made by the host itself (one
 * `background_task` span per attempt of a managed task).
 *
 * How: each series (a metric, in one registry, with one set of attributes)
 * is registered once with `Metric.registerUnsafe`, its state read from a
 * `KindSeries` when the registry is read (`Metric.value`, `snapshot`, an
 * exporter). A task's start or end adds to plain numbers in its step: no
 * registry lookup, no context read, no allocation. Every host writing to the
 * same registry with the same attributes shares one `KindSeries`, so several
 * hosts in a process add up, and a series starts from the value it had when
 * the first host registered it.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { type BackgroundTaskRecord, TaskKind } from "../BackgroundTask.ts"
import { TaskMetrics as metrics } from "../TaskMetrics.ts"

/** One kind's series in one registry: what every host that writes there adds to. */
export class KindSeries {
  started = 0
  completed = 0
  failed = 0
  cancelled = 0
  live = 0
  // the duration histogram: observations per bucket (the last past every boundary), count, sum, min, max
  private readonly boundaries: ReadonlyArray<number>
  private readonly perBucket: Float64Array
  private durations = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  /** Starts from the series' state as the registry had it (zero for a new one). */
  constructor(
    counts: { readonly started: number; readonly completed: number; readonly failed: number; readonly cancelled: number },
    live: number,
    duration: Metric.HistogramState
  ) {
    this.started = counts.started
    this.completed = counts.completed
    this.failed = counts.failed
    this.cancelled = counts.cancelled
    this.live = live
    this.boundaries = duration.buckets.map(([boundary]) => boundary)
    this.perBucket = new Float64Array(this.boundaries.length + 1)
    let below = 0
    duration.buckets.forEach(([, cumulative], i) => {
      this.perBucket[i] = cumulative - below
      below = cumulative
    })
    this.perBucket[this.boundaries.length] = duration.count - below
    this.durations = duration.count
    this.sum = duration.sum
    this.min = duration.min
    this.max = duration.max
  }

  /** One duration, in the first bucket whose boundary it does not exceed (as Effect's histogram files it). */
  observe(seconds: number): void {
    const boundaries = this.boundaries
    let low = 0
    let high = boundaries.length
    while (low < high) {
      const mid = (low + high) >>> 1
      if (seconds <= boundaries[mid]!) high = mid
      else low = mid + 1
    }
    this.perBucket[low]!++
    this.durations++
    this.sum += seconds
    if (seconds < this.min) this.min = seconds
    if (seconds > this.max) this.max = seconds
  }

  /** The histogram's state, as `Metric.value` gives it: cumulative counts per boundary. */
  durationState(): Metric.HistogramState {
    const buckets: Array<[number, number]> = []
    let cumulative = 0
    for (let i = 0; i < this.boundaries.length; i++) {
      cumulative += this.perBucket[i]!
      buckets.push([this.boundaries[i]!, cumulative])
    }
    return { buckets, count: this.durations, min: this.min, max: this.max, sum: this.sum }
  }
}

/** The series registered so far, by registry, then by their attributes. */
const registered = new WeakMap<object, Map<string, KindSeries>>()

const attributesKey = (attributes: Metric.Metric.AttributeSet): string =>
  JSON.stringify(Object.keys(attributes).sort().map((key) => [key, attributes[key]]))

const noUpdate = (): void => {}

/** The series of one kind in `context`'s registry with its attributes: registered by the first host to ask. */
const seriesIn = (context: Context.Context<never>): Effect.Effect<KindSeries> =>
  Effect.gen(function*() {
    const registry = Context.get(context, Metric.MetricRegistry)
    let byAttributes = registered.get(registry)
    if (byAttributes === undefined) registered.set(registry, byAttributes = new Map())
    const key = attributesKey(Context.get(context, Metric.CurrentMetricAttributes))
    const existing = byAttributes.get(key)
    if (existing !== undefined) return existing
    // the values so far (a series made by `Metric.update` elsewhere keeps its count), then the registration
    const read = <S>(metric: Metric.Metric<never, S>) => Effect.provideContext(Metric.value(metric), context)
    const series = new KindSeries(
      {
        started: (yield* read(metrics.started)).count,
        completed: (yield* read(metrics.completed)).count,
        failed: (yield* read(metrics.failed)).count,
        cancelled: (yield* read(metrics.cancelled)).count
      },
      (yield* read(metrics.live)).value,
      yield* read(metrics.duration)
    )
    const counter = (metric: Metric.Counter<number>, count: () => number) =>
      Metric.registerUnsafe(metric, context, {
        get: () => ({ count: count(), incremental: true }),
        update: noUpdate,
        modify: noUpdate
      })
    counter(metrics.started, () => series.started)
    counter(metrics.completed, () => series.completed)
    counter(metrics.failed, () => series.failed)
    counter(metrics.cancelled, () => series.cancelled)
    Metric.registerUnsafe(metrics.live, context, { get: () => ({ value: series.live }), update: noUpdate, modify: noUpdate })
    Metric.registerUnsafe(metrics.duration, context, { get: () => series.durationState(), update: noUpdate, modify: noUpdate })
    byAttributes.set(key, series)
    return series
  })

/** Updates the metrics for one host, in the registry and with the attributes its layer was built with. */
export class Telemetry {
  private readonly byKind: ReadonlyMap<string, KindSeries>

  private constructor(byKind: ReadonlyMap<string, KindSeries>) {
    this.byKind = byKind
  }

  /** The series of every kind, registered in the context's registry if no host has yet. */
  static make(context: Context.Context<never>): Effect.Effect<Telemetry> {
    const registry = Context.make(Metric.MetricRegistry, Context.get(context, Metric.MetricRegistry))
    const shared = Context.get(context, Metric.CurrentMetricAttributes)
    return Effect.map(
      Effect.forEach(TaskKind.literals, (kind) =>
        Effect.map(
          seriesIn(Context.add(registry, Metric.CurrentMetricAttributes, { ...shared, kind })),
          (series): [string, KindSeries] => [kind, series]
        )),
      (entries) => new Telemetry(new Map(entries))
    )
  }

  registered(record: BackgroundTaskRecord): void {
    const series = this.byKind.get(record.kind)!
    series.started++
    series.live++
  }

  ended(record: BackgroundTaskRecord): void {
    const series = this.byKind.get(record.kind)!
    switch (record.state) {
      case "completed":
        series.completed++
        break
      case "failed":
        series.failed++
        break
      case "cancelled":
        series.cancelled++
        break
      default:
        return
    }
    series.live--
    if (record.completedAt._tag === "Some") {
      series.observe((record.completedAt.value.epochMilliseconds - record.createdAt.epochMilliseconds) / 1000)
    }
  }

  /** A removed live record (`unregisterExternal`) is no longer live. */
  removed(record: BackgroundTaskRecord): void {
    this.byKind.get(record.kind)!.live--
  }
}
