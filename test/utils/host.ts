/**
 * Test helpers: a host whose layer the test closes itself, with every event
 * it publishes collected from the moment it opens.
 */
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type SubscriptionEvent,
  type TaskEvent,
  type TaskRegistration,
  TaskStore
} from "../../src/index.ts"
import * as NodeSqliteClient from "../../src/NodeSqliteClient.ts"

export interface TestHost {
  readonly host: BackgroundTaskHost["Service"]
  /** Closes the host's layer (shutdown). */
  readonly close: Effect.Effect<void>
  /**
   * Closes the host, then returns every event it published, in order (its
   * collector's buffer is large enough that no test makes it lag, unless the
   * options set `subscriberBuffer`).
   */
  readonly events: Effect.Effect<ReadonlyArray<SubscriptionEvent>>
}

export const makeTestHost = (
  options: BackgroundTaskHostOptions = {},
  store: "memory" | "sqlite" = "memory"
): Effect.Effect<TestHost> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const layer = store === "memory"
      ? BackgroundTaskHost.layerWith({ subscriberBuffer: 1_000_000, ...options })
      // a durable host on an in-memory SQLite database: every write committed, events published once committed
      : BackgroundTaskHost.layerStore({ subscriberBuffer: 1_000_000, ...options }).pipe(
        Layer.provide(TaskStore.layerSql()),
        Layer.provide(NodeSqliteClient.layer({ filename: ":memory:" }))
      )
    const context = yield* Layer.buildWithScope(layer, scope).pipe(Effect.orDie)
    const host = Context.get(context, BackgroundTaskHost)
    // the subscription gets its own scope, closed after the host's: a subscription
    // closed first would drop the events the collector has not read yet
    const subscriptionScope = yield* Scope.make()
    const stream = yield* host.subscribe().pipe(Scope.provide(subscriptionScope), Effect.orDie)
    const collector = yield* Effect.forkDetach(Stream.runCollect(stream))
    const close = Scope.close(scope, Exit.void)
    const events = close.pipe(
      Effect.andThen(Fiber.join(collector)),
      Effect.ensuring(Scope.close(subscriptionScope, Exit.void))
    )
    return { host, close, events }
  })

/** `_tag` and task id(s) of each event: the shape most assertions compare. */
export const tags = (events: ReadonlyArray<SubscriptionEvent>) =>
  events.map((event) =>
    `${event._tag}:${
      event._tag === "Lagged" ? event.skipped : event._tag === "Evicted" ? event.taskIds.join(",") : event.taskId
    }`
  )

/** The events about one task each (all but `Evicted` and `Lagged`). */
export const taskEvents = (events: ReadonlyArray<SubscriptionEvent>): Array<TaskEvent> =>
  events.filter((event): event is TaskEvent => event._tag !== "Evicted" && event._tag !== "Lagged")

export const spec = (id: string, extra: Partial<TaskRegistration> = {}): TaskRegistration => ({
  id,
  kind: "monitor",
  producer: "test",
  ...extra
})

const terminalTags: ReadonlySet<string> = new Set(["Completed", "Failed", "Cancelled"])

/**
 * Waits for one terminal event of each task on a stream subscribed before the
 * tasks started; returns those events in the order they came.
 */
export const terminalEvents = (stream: Stream.Stream<SubscriptionEvent>, taskIds: ReadonlyArray<string>) =>
  stream.pipe(
    Stream.filter((event): event is TaskEvent =>
      terminalTags.has(event._tag) && "taskId" in event && taskIds.includes(event.taskId)
    ),
    Stream.take(taskIds.length),
    Stream.runCollect
  )

/**
 * A managed task body that never ends by itself (it ignores cancel requests),
 * with Deferreds completed when it starts and when its finalizer has run.
 */
export const blocking = Effect.gen(function*() {
  const started = yield* Deferred.make<void>()
  const finalized = yield* Deferred.make<void>()
  const task = Deferred.succeed(started, undefined).pipe(
    Effect.andThen(Effect.never),
    Effect.ensuring(Deferred.succeed(finalized, undefined))
  )
  return { started, finalized, task } as const
})
