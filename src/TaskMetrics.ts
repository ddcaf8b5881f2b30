/**
 * The metrics every background task host updates, for dashboards and tests.
 *
 * Every task the host records counts (managed, external, registered):
 * `started` when it is registered, then one of `completed` / `failed` /
 * `cancelled` when it ends; `live` is the number of live records (a gauge
 * moved by each host, so several hosts in a process add up); `duration`
 * observes `createdAt → completedAt` in seconds. Each series has the
 * attribute `kind`. Read one with `Metric.value` of
 * `Metric.withAttributes(metric, { kind })`. The hosts keep the values and
 * register each series with `Metric.registerUnsafe`, so `Metric.update` on
 * them from elsewhere does nothing.
 *
 * @since 0.2.0
 */
import * as Metric from "effect/Metric"

/**
 * The metrics, by name.
 *
 * **Example** (Reading how many monitors failed)
 *
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { TaskMetrics } from "effect-task-host"
 *
 * const failedMonitors = Metric.value(Metric.withAttributes(TaskMetrics.failed, { kind: "monitor" })).pipe(
 *   Effect.map((state) => state.count)
 * )
 * ```
 *
 * @category metrics
 * @since 0.2.0
 */
export const TaskMetrics = {
  started: Metric.counter("background_tasks_started", { description: "tasks registered", incremental: true }),
  completed: Metric.counter("background_tasks_completed", { description: "tasks that completed", incremental: true }),
  failed: Metric.counter("background_tasks_failed", { description: "tasks that failed", incremental: true }),
  cancelled: Metric.counter("background_tasks_cancelled", { description: "tasks that were cancelled", incremental: true }),
  live: Metric.gauge("background_tasks_live", { description: "live task records" }),
  duration: Metric.histogram("background_task_duration_seconds", {
    description: "from registration to the end, in seconds",
    boundaries: Metric.exponentialBoundaries({ start: 0.005, factor: 2, count: 20 })
  })
} as const
