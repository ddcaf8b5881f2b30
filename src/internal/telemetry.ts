/**
 * The host's metrics, updated synchronously from inside its steps.
 *
 * Every task the host records counts (managed, external, registered): started
 * when registered, then one of completed / failed / cancelled when it ends;
 * `background_tasks_live` is the number of live records; the duration
 * histogram observes `createdAt → completedAt` in seconds. All are labelled
 * with the task's `kind`. Spans are made by the host itself (one
 * `background_task` span per attempt of a managed task).
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import { type BackgroundTaskRecord, TaskKind } from "../BackgroundTask.ts"
import { TaskMetrics as metrics } from "../TaskMetrics.ts"


/**
 * One kind's series: the metrics, and the context that labels them with the
 * kind (`Metric.withAttributes` would add the attribute to the context on
 * every update; here it is added once per kind, and every update addresses
 * the same series it would). That context holds only what an update reads:
 * the layer's metric registry and its attributes plus `kind` (an update
 * looks both up, and a lookup in the layer's whole context walks it).
 */
type Series = {
  readonly [K in keyof typeof metrics]: (typeof metrics)[K]
} & { readonly context: Context.Context<never> }

/** Updates the metrics for one host, in the context its layer was built with. */
export class Telemetry {
  private readonly byKind: ReadonlyMap<string, Series>

  constructor(context: Context.Context<never>) {
    const registry = Context.make(Metric.MetricRegistry, Context.get(context, Metric.MetricRegistry))
    this.byKind = new Map(
      TaskKind.literals.map((kind): [string, Series] => {
        const attributes = { ...Context.get(context, Metric.CurrentMetricAttributes), kind }
        return [kind, { ...metrics, context: Context.add(registry, Metric.CurrentMetricAttributes, attributes) }]
      })
    )
  }

  registered(record: BackgroundTaskRecord): void {
    const series = this.byKind.get(record.kind)!
    series.started.updateUnsafe(1, series.context)
    this.setLive(series, 1)
  }

  ended(record: BackgroundTaskRecord): void {
    const series = this.byKind.get(record.kind)!
    switch (record.state) {
      case "completed":
        series.completed.updateUnsafe(1, series.context)
        break
      case "failed":
        series.failed.updateUnsafe(1, series.context)
        break
      case "cancelled":
        series.cancelled.updateUnsafe(1, series.context)
        break
      default:
        return
    }
    this.setLive(series, -1)
    if (record.completedAt._tag === "Some") {
      const seconds = (record.completedAt.value.epochMilliseconds - record.createdAt.epochMilliseconds) / 1000
      series.duration.updateUnsafe(seconds, series.context)
    }
  }

  /** A removed live record (`unregisterExternal`) is no longer live. */
  removed(record: BackgroundTaskRecord): void {
    this.setLive(this.byKind.get(record.kind)!, -1)
  }

  /** The gauge is moved by a delta, so several hosts in one process add up. */
  private setLive(series: Series, delta: number): void {
    series.live.modifyUnsafe(delta, series.context)
  }
}
