/**
 * The bench's only dependence on the host's event union: which stream items
 * count for a scenario. Subscription streams also yield `Lagged { skipped }`
 * (never counted: the fan-out subscribers have a buffer of N) and the host
 * publishes `Evicted` (not counted either).
 */
import { DateTime, Option } from "effect"
import type { BackgroundTaskEvent, SubscriptionEvent } from "../src/index.ts"

/** A task's terminal event (its record reached completed, failed or cancelled). */
export const isTerminalEvent = (event: SubscriptionEvent): boolean =>
  event._tag === "Completed" || event._tag === "Failed" || event._tag === "Cancelled"

/** A progress event: what the fan-out and publisher scenarios publish. */
export const isProgressEvent = (event: SubscriptionEvent): boolean => event._tag === "Progress"

/** A progress event built by hand, with the fields the host puts in one: the raw-PubSub baselines publish these. */
export const progressEvent = (seq: number, taskId: string, sessionId: string, message: string): BackgroundTaskEvent => ({
  _tag: "Progress",
  seq,
  taskId,
  sessionId,
  kind: "other",
  message,
  record: {
    id: taskId,
    kind: "other",
    producer: "bench",
    scope: { sessionId },
    parentTaskId: Option.none(),
    childSessionId: Option.none(),
    state: "running",
    cancelPolicy: "cooperative",
    closePolicy: "keep",
    attempt: { attempt: 0, maxAttempts: Option.none(), idempotencyKey: Option.none() },
    result: Option.none(),
    failure: Option.none(),
    createdAt: epoch,
    updatedAt: epoch,
    completedAt: Option.none(),
    progress: Option.some(message),
    revision: seq
  }
})

const epoch = DateTime.makeUnsafe(0)
