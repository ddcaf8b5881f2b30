/**
 * The bench's only dependence on the host's event union: which stream items
 * count for a scenario. When the union grows (a `Lagged { skipped }` item on
 * subscription streams, an `Evicted` event), extend these functions and
 * nothing else.
 */
import type { BackgroundTaskEvent } from "../src/index.ts"

/** A task's terminal event (its record reached completed, failed or cancelled). */
export const isTerminalEvent = (event: BackgroundTaskEvent): boolean =>
  event._tag === "Completed" || event._tag === "Failed" || event._tag === "Cancelled"

/** A progress event: what the fan-out and publisher scenarios publish. */
export const isProgressEvent = (event: BackgroundTaskEvent): boolean => event._tag === "Progress"

/** A progress event built by hand, with the fields the host puts in one: the raw-PubSub baselines publish these. */
export const progressEvent = (taskId: string, sessionId: string, message: string): BackgroundTaskEvent => ({
  _tag: "Progress",
  taskId,
  sessionId,
  kind: "other",
  message
})
