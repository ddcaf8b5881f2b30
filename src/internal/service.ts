/**
 * The host's contract as types: the service's methods, its options, and
 * what they return. Every implementation (`host.ts` and the rooms it wires)
 * imports these; this module imports none of them, so no import circle can
 * form through the service's interface. `BackgroundTaskHost.ts` re-exports
 * the public names.
 *
 * @internal
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { BackgroundTaskRecord, LiveState, RegisterRequest, TaskCompletion, TaskFilter, TaskKind, TaskRegistration, TaskScope, TaskState, TaskStats, TaskUpdate } from "../BackgroundTask.ts"
import type { BackgroundTaskEventTag, SubscriptionEvent } from "../TaskEvent.ts"
import type {
  InvalidTransition,
  InvokeError,
  PluginError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskAlreadyExists,
  TaskNotFound
} from "../PluginError.ts"
import type { TaskContext } from "../TaskContext.ts"
import type { CorruptRecord } from "../TaskStoreError.ts"

/**
 * How registering a task can fail: bad input (`RegistrationError`), an id
 * already live (`TaskAlreadyExists`), a parent that is unknown
 * (`TaskNotFound`) or has ended (`InvalidTransition`), a closed host or
 * session (`SessionError`).
 *
 * @category errors
 * @since 0.2.0
 */
export type RegisterError = RegistrationError | TaskAlreadyExists | TaskNotFound | InvalidTransition | SessionError

/**
 * The operations of a background task host.
 *
 * Every call on a host whose layer has closed fails with `SessionError`.
 *
 * @category models
 * @since 0.1.0
 */
export interface BackgroundTaskHostService {
  /**
   * Records a task owned by the caller, in state `pending`; publishes
   * `Registered`. A `parentTaskId` must name a live task (`TaskNotFound`, or
   * `InvalidTransition` when it has ended). With an `idempotencyKey` a live
   * task already holds, returns that task's record and registers nothing.
   */
  readonly register: (
    request: RegisterRequest
  ) => Effect.Effect<BackgroundTaskRecord, RegisterError>
  /**
   * Sets a non-terminal state and/or publishes a progress message. A move to
   * `cancel_requested` is a cancellation request: the task's policy acts.
   */
  readonly update: (
    taskId: string,
    update: TaskUpdate
  ) => Effect.Effect<BackgroundTaskRecord, TaskNotFound | InvalidTransition | InvokeError | SessionError>
  /**
   * Moves a task to a terminal state with an optional summary (into `failure`
   * when the state is `failed`, else `result`). A managed task's fiber is
   * interrupted.
   */
  readonly complete: (
    taskId: string,
    completion: TaskCompletion
  ) => Effect.Effect<BackgroundTaskRecord, TaskNotFound | InvalidTransition | InvokeError | SessionError>
  /**
   * Moves a task to `cancel_requested` (event `CancelRequested`), then lets its
   * cancel policy act. Its live descendants are cancelled first (deepest
   * first, each through its own policy, reason "parent cancelled"). Returns
   * the record as it stands when the call returns.
   */
  readonly requestCancel: (
    taskId: string,
    reason?: string
  ) => Effect.Effect<BackgroundTaskRecord, TaskNotFound | InvalidTransition | SessionError>
  /**
   * Waits until a task ends and returns its final record: the live task with
   * this id (else the latest terminal one, returned at once), or with
   * `sessionId` the session's record with this id. Fails with `TaskNotFound`
   * when no record has this id, and also when the record is let go of
   * before it ends (`unregisterExternal`): it is then gone, as a later `get`
   * would say. At shutdown a live task ends `cancelled` and that record is
   * returned. On a durable store it returns once the end is committed; a
   * host that stops (its lease lost, its commits failing) fails every wait
   * with its `SessionError`. Interrupting the wait leaves the task alone.
   *
   * @since 0.4.0
   */
  readonly await: (
    taskId: string,
    options?: AwaitOptions
  ) => Effect.Effect<BackgroundTaskRecord, TaskNotFound | SessionError>
  /** The live record with this id, else the most recently updated terminal one. */
  readonly get: (taskId: string) => Effect.Effect<Option.Option<BackgroundTaskRecord>, SessionError>
  /** Records matching the filter (live ones only, unless `includeTerminal`), oldest first. */
  readonly list: (
    filter?: TaskFilter
  ) => Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, SnapshotError | SessionError>
  /** Moves one task (live or terminal) to another session; publishes `Transferred`. */
  readonly transfer: (
    taskId: string,
    scope: TaskScope
  ) => Effect.Effect<BackgroundTaskRecord, TaskNotFound | TaskAlreadyExists | SessionError>
  /**
   * Subscribes to the events matching the filter's `sessionId` and `kind` (and,
   * with `types`, only those event types). The subscription is live when the
   * effect returns: every event published after it is delivered, in `seq`
   * order, or counted by a `Lagged` where the subscriber fell more than its
   * buffer (`buffer`, default the host's `subscriberBuffer`) behind; `types`
   * applies before the buffer, so `Lagged.skipped` counts only events of
   * those types. A bad `buffer` or `types` fails with `SnapshotError`.
   * Publishing never waits for a subscriber. The stream ends when the host
   * shuts down, after the events of the shutdown itself, or when the scope
   * closes. Run the stream once.
   */
  readonly subscribe: (
    filter?: SubscribeOptions
  ) => Effect.Effect<Stream.Stream<SubscriptionEvent>, SnapshotError | SessionError, Scope.Scope>
  /**
   * The records matching the filter (as `list` returns them) as of event `seq`,
   * and a subscription to exactly the matching events after `seq`: no gap and
   * no duplicate, whatever runs concurrently. Fold the events into the
   * snapshot with `TaskView`; after a `Lagged`, take a new `watch` or `list`.
   *
   * With `fromSeq` (a durable store), `events` first replays the stored
   * matching events after `fromSeq` up to `seq`, then goes on live: a reader
   * that kept its own state as of `fromSeq`, even in an earlier process,
   * resumes without a gap. A `fromSeq` the host cannot replay (beyond `seq`,
   * or older than `seq` without a durable store) fails with `SnapshotError`.
   */
  readonly watch: (
    filter?: WatchOptions
  ) => Effect.Effect<TaskWatch, SnapshotError | SessionError, Scope.Scope>
  /** The host's counters: records held, tasks ended by outcome (exact after eviction), the last `seq`. */
  readonly stats: Effect.Effect<TaskStats, SessionError>
  /**
   * Runs `task` as a fiber tracked per session, with no record. Its failure is
   * reported by `awaitHidden`.
   */
  readonly spawnHidden: <R>(
    sessionId: string,
    label: string,
    task: Effect.Effect<void, PluginError, R>
  ) => Effect.Effect<void, SessionError, R>
  /**
   * Waits for every hidden task of the session, including ones spawned while
   * waiting, then fails with the failure that happened first, if any. A
   * failure is reported once.
   */
  readonly awaitHidden: (sessionId: string) => Effect.Effect<void, PluginError>
  /**
   * Runs `task` as a fiber owned by the host, with a record in state
   * `running` (or `pending`, queued, while a concurrency limit is reached).
   * When the fiber exits the record becomes `completed` (a `string` result
   * becomes its summary), `failed` (the error's message as summary) or
   * `cancelled`, with the matching event. The task may `yield* TaskContext`.
   *
   * `spec.timeout` interrupts an attempt that runs longer (it fails with
   * "timed out after …"); `spec.maxAttempts` retries a failure (not a defect
   * or an interruption) after the backoff of `spec.retry` or the host's
   * `retry.schedule`; `spec.parentTaskId` and `spec.idempotencyKey` work as
   * for `register`. The task runs in a `background_task` span, a child of the
   * caller's span.
   */
  readonly spawnManaged: <A, E, R>(
    sessionId: string,
    spec: TaskRegistration,
    task: Effect.Effect<A, E, R>
  ) => Effect.Effect<BackgroundTaskRecord, RegisterError, Exclude<R, TaskContext | Scope.Scope>>
  /**
   * Records a task owned elsewhere, in state `running`. `cancel` runs (at most
   * once) when the task is cancelled; the record then becomes `cancelled`.
   */
  readonly registerExternal: (
    sessionId: string,
    spec: TaskRegistration,
    cancel?: Effect.Effect<void>
  ) => Effect.Effect<BackgroundTaskRecord, RegisterError>
  /** Removes an externally owned record, with an `Evicted` event (reason `unregistered`); a no-op for any other id. */
  readonly unregisterExternal: (sessionId: string, taskId: string) => Effect.Effect<void, SessionError>
  /**
   * Moves a live task to a terminal state with its event (a managed fiber is
   * interrupted); a no-op when unknown, already terminal, or `state` is not
   * terminal.
   */
  readonly markTerminal: (
    sessionId: string,
    taskId: string,
    state: TaskState
  ) => Effect.Effect<void, SessionError>
  /**
   * Flips `running` ⇄ `waiting`; a no-op when unknown, terminal,
   * `cancel_requested`, or `state` is neither.
   */
  readonly markLiveState: (
    sessionId: string,
    taskId: string,
    state: LiveState
  ) => Effect.Effect<void, SessionError>
  /**
   * Cancels a task now, whatever its policy: interrupts a managed fiber (its
   * finalizers have run when this returns) or runs an external task's cancel
   * effect; the record ends `cancelled` with its event. A no-op when unknown or
   * already terminal.
   */
  readonly cancelManaged: (sessionId: string, taskId: string) => Effect.Effect<void, SessionError>
  /** Every record of the session, terminal ones too, oldest first. */
  readonly listManaged: (sessionId: string) => Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, SessionError>
  /** The session's record with this id. */
  readonly getManaged: (
    sessionId: string,
    taskId: string
  ) => Effect.Effect<Option.Option<BackgroundTaskRecord>, SessionError>
  /**
   * Moves tasks between sessions, all or none, one `Transferred` each; unknown
   * ids are skipped and fibers keep running.
   */
  readonly transferManaged: (
    fromSessionId: string,
    toSessionId: string,
    taskIds: Iterable<string>
  ) => Effect.Effect<void, TaskAlreadyExists | SessionError>
  /** Cancels every live task of the session concurrently; returns their final records. */
  readonly cancelAllManaged: (
    sessionId: string
  ) => Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, SessionError>
  /**
   * Opens a session: a handle whose methods are bound to `sessionId`. Closing
   * the scope closes the session, applying each live task's `closePolicy`:
   * `keep` runs on, `cancel` is cancelled through its cancel policy (reason
   * "session closed"), `transfer` moves to the successor named by `handoff`
   * or `options.successor` (else it is cancelled, reason "session closed
   * without a successor"). The close waits until the cancelled tasks have
   * ended. A session can be open once at a time.
   */
  readonly openSession: (
    sessionId: string,
    options?: SessionOptions
  ) => Effect.Effect<BackgroundTaskSession, SessionError, Scope.Scope>
  /** A task (the live one with this id, else the latest terminal one) with its held descendants. */
  readonly listTree: (taskId: string) => Effect.Effect<TaskTree, TaskNotFound | SessionError>
  /**
   * What the host did at start with the records a previous process left
   * live in its durable store (empty for an in-memory host).
   */
  readonly recovery: Effect.Effect<RecoveryReport, SessionError>
}

/**
 * `await`'s options.
 *
 * @category models
 * @since 0.4.0
 */
export interface AwaitOptions {
  /** Wait for this session's record with the id (a task transferred away is then not found). */
  readonly sessionId?: string | undefined
}

/**
 * `subscribe`'s argument: a filter, and the subscription's own buffer size
 * and event types.
 *
 * @category models
 * @since 0.4.0
 */
export interface SubscribeOptions extends TaskFilter {
  /**
   * Events this subscriber may have unread before the oldest are dropped
   * (and counted by a `Lagged`): an integer >= 1; default the host's
   * `subscriberBuffer`.
   */
  readonly buffer?: number | undefined
  /**
   * Only events with these `_tag`s (default: every event); applied before
   * the buffer. `Lagged` is always delivered.
   */
  readonly types?: ReadonlyArray<BackgroundTaskEventTag> | undefined
}

/**
 * `watch`'s argument: a filter, the subscription's own options, and where to
 * resume.
 *
 * @category models
 * @since 0.3.0
 */
export interface WatchOptions extends SubscribeOptions {
  /** Replay the stored events after this `seq` first (needs a durable store unless it is the current `seq`). */
  readonly fromSeq?: number | undefined
}

/**
 * Re-runs a task that a previous process left live: given its record as it
 * was stored, returns the task's body (as for `spawnManaged`). It is called
 * once; its effect runs again for each later attempt.
 *
 * @category models
 * @since 0.3.0
 */
export type RecoveryHandler<R = never> = (
  record: BackgroundTaskRecord
) => Effect.Effect<unknown, unknown, TaskContext | Scope.Scope | R> | RecoveryDecision

/**
 * What a recovery handler may return instead of a body: end the task
 * `failed` or `cancelled` with `reason` as its summary.
 *
 * @category models
 * @since 0.4.0
 */
export type RecoveryDecision =
  | { readonly _tag: "Fail"; readonly reason: string }
  | { readonly _tag: "Cancel"; readonly reason: string }

/**
 * Reattaches an external task a previous process left live: given its
 * record, returns the cancel effect that stops its remote work (the record
 * stays live, owned by this host, as if registered again with it), or a
 * `RecoveryDecision` to end it.
 *
 * @category models
 * @since 0.4.0
 */
export type ExternalRecoveryHandler<R = never> = (
  record: BackgroundTaskRecord
) => Effect.Effect<void, never, R> | RecoveryDecision

/**
 * What a host on a durable store did with the records it found live at
 * start, by task id, and the rows it had to quarantine.
 *
 * @category models
 * @since 0.3.0
 */
export interface RecoveryReport {
  /** Re-spawned by their producer's handler with the next attempt. */
  readonly respawned: ReadonlyArray<string>
  /** Ended `failed`: "host stopped before the task finished". */
  readonly failed: ReadonlyArray<string>
  /** External tasks (and tasks being cancelled), ended `cancelled` with that reason. */
  readonly cancelled: ReadonlyArray<string>
  /** Rows that no longer decoded, now in the quarantine table. */
  readonly quarantined: ReadonlyArray<CorruptRecord>
}

/**
 * Options of a host on a durable store (`BackgroundTaskHost.layerStore`).
 *
 * @category models
 * @since 0.3.0
 */
export interface BackgroundTaskHostStoreOptions<R = never> extends BackgroundTaskHostOptions {
  /**
   * Handlers by producer. At start, each managed task a previous process
   * left live is offered to its producer's handler, which returns the body
   * to re-run (as `spawnManaged`'s; called once, run again for each later
   * attempt) or a `RecoveryDecision` (`{ _tag: "Fail" | "Cancel", reason }`).
   * A task released at a graceful stop re-runs with the same attempt; after
   * a crash with `attempt + 1`, unless its `maxAttempts` are spent (then it
   * ends `failed` without asking). Without a handler it ends `failed` with
   * "host stopped before the task finished". Tasks being cancelled and tasks
   * whose live parent does not re-run end `cancelled`. Handlers may require
   * services of the application: the layer then requires them too.
   */
  readonly recovery?: { readonly [producer: string]: RecoveryHandler<R> } | undefined
  /**
   * Hooks by producer for the external tasks a previous process left live:
   * reattach (a new cancel effect) or end. Without one, an external task
   * ends `cancelled` ("host stopped before the task finished").
   */
  readonly recoverExternal?: { readonly [producer: string]: ExternalRecoveryHandler<R> } | undefined
  /**
   * The store's lease: one host at a time runs a store's tasks. The holder
   * renews it every `renewEvery` (default a third of `ttl`) for `ttl` more
   * (default 30 seconds). A host that finds it held fails to start with
   * `LeaseHeld` (`onHeld: "fail"`, the default) or waits until it is free
   * (`"wait"`). `owner` names this host (default host name, pid and a random
   * suffix). A host whose clock has passed its lease's expiry (the process
   * was paused, the machine slept) confirms the lease in the store before it
   * starts queued work, and stops if another host took it meanwhile.
   */
  readonly lease?: {
    readonly ttl?: Duration.Input | undefined
    readonly renewEvery?: Duration.Input | undefined
    readonly onHeld?: "fail" | "wait" | undefined
    readonly owner?: string | undefined
  } | undefined
  /**
   * How long stored events are kept, by count and by age: an event goes once
   * it is beyond the latest `maxEvents` (default 1,000,000, at least 1) or
   * older than `maxAge` (default 7 days; `Infinity` for no bound by age),
   * whichever bound is reached first; the latest event is always kept.
   * Every `pruneEvery` (default 1 minute, by the `Clock`) a background fiber
   * deletes them, a few thousand rows per statement, so writers are not held
   * up. An event's age counts from when it was committed.
   * `watch({ fromSeq })` from below what is kept fails with a
   * `SnapshotError` saying so (watch without `fromSeq` for a fresh
   * snapshot).
   */
  readonly eventRetention?: {
    readonly maxEvents?: number | undefined
    readonly maxAge?: Duration.Input | undefined
    readonly pruneEvery?: Duration.Input | undefined
  } | undefined
  /**
   * What closing the layer (a `SIGTERM`, a deploy) does with the tasks still
   * live, on a durable store. First new calls fail and queued tasks stay
   * queued; with `drain` (default 0: none), running managed tasks get that
   * long to finish. Then, by `mode`:
   * - `"release"` (the default): everything written so far is committed, the
   *   fibers are stopped without writing their end, the live records stay
   *   live in the store marked as released, and the lease is given up: the
   *   next host takes over at once and resumes each released managed task
   *   through its producer's recovery handler with the same attempt (a
   *   release is not a failed attempt);
   * - `"cancel"`: every live task is cancelled and ends `cancelled` with the
   *   summary "host shut down" (what the in-memory host always does).
   */
  readonly shutdown?: {
    readonly mode?: "release" | "cancel" | undefined
    readonly drain?: Duration.Input | undefined
    /**
     * How long the shutdown waits for its last commits (and the lease's
     * release), default 10 seconds: a database that stopped answering cannot
     * hold the process. What did not commit, the next host recovers.
     */
    readonly flushTimeout?: Duration.Input | undefined
  } | undefined
}

/**
 * Options of `openSession`.
 *
 * @category models
 * @since 0.2.0
 */
export interface SessionOptions {
  /** Where `transfer` tasks go when the session closes, unless `handoff` names another. */
  readonly successor?: string | undefined
}

/**
 * A task and the tasks registered under it (`parentTaskId`), oldest first.
 *
 * @category models
 * @since 0.2.0
 */
export interface TaskTree {
  readonly record: BackgroundTaskRecord
  readonly children: ReadonlyArray<TaskTree>
}

/**
 * An open session (`openSession`): the host's session methods bound to one
 * session. Every method fails with `SessionError` once the session is closed.
 *
 * @category models
 * @since 0.2.0
 */
export interface BackgroundTaskSession {
  readonly sessionId: string
  /** `spawnManaged` in this session. */
  readonly spawn: <A, E, R>(
    spec: TaskRegistration,
    task: Effect.Effect<A, E, R>
  ) => Effect.Effect<BackgroundTaskRecord, RegisterError, Exclude<R, TaskContext | Scope.Scope>>
  /** `registerExternal` in this session. */
  readonly registerExternal: (
    spec: TaskRegistration,
    cancel?: Effect.Effect<void>
  ) => Effect.Effect<BackgroundTaskRecord, RegisterError>
  /** `register` in this session: a caller-owned task, `pending`. */
  readonly register: (
    spec: TaskRegistration
  ) => Effect.Effect<BackgroundTaskRecord, RegisterError>
  /** The session's record with this id. */
  readonly get: (taskId: string) => Effect.Effect<Option.Option<BackgroundTaskRecord>, SessionError>
  /** `await` this session's task: waits until it ends, returns its final record. */
  readonly await: (taskId: string) => Effect.Effect<BackgroundTaskRecord, TaskNotFound | SessionError>
  /** The session's records (live only unless `includeTerminal`), oldest first. */
  readonly list: (
    filter?: { readonly kind?: TaskKind; readonly includeTerminal?: boolean }
  ) => Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, SnapshotError | SessionError>
  /** `cancelManaged` in this session. */
  readonly cancel: (taskId: string) => Effect.Effect<void, SessionError>
  /** `cancelAllManaged` for this session. */
  readonly cancelAll: Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, SessionError>
  /** `transferManaged` from this session. */
  readonly transfer: (
    toSessionId: string,
    taskIds: Iterable<string>
  ) => Effect.Effect<void, TaskAlreadyExists | SessionError>
  /** Names the session that receives the `transfer` tasks when this one closes. */
  readonly handoff: (successorSessionId: string) => Effect.Effect<void, SessionError>
  /** `subscribe` to this session's events (with `buffer` and `types` as there). */
  readonly subscribe: (
    filter?: Omit<SubscribeOptions, "sessionId" | "includeTerminal">
  ) => Effect.Effect<Stream.Stream<SubscriptionEvent>, SnapshotError | SessionError, Scope.Scope>
  /** `watch` this session's records (with `buffer` and `types` as for `subscribe`). */
  readonly watch: (
    filter?: Omit<SubscribeOptions, "sessionId">
  ) => Effect.Effect<TaskWatch, SnapshotError | SessionError, Scope.Scope>
  /** `spawnHidden` in this session. */
  readonly spawnHidden: <R>(
    label: string,
    task: Effect.Effect<void, PluginError, R>
  ) => Effect.Effect<void, SessionError, R>
  /** `awaitHidden` for this session. */
  readonly awaitHidden: Effect.Effect<void, PluginError>
}

/**
 * What `watch` returns: a snapshot and the events after it.
 *
 * @category models
 * @since 0.2.0
 */
export interface TaskWatch {
  /** The filter, as validated. */
  readonly filter: TaskFilter | undefined
  /** The matching records as of `seq`, oldest first. */
  readonly snapshot: ReadonlyArray<BackgroundTaskRecord>
  /** The `seq` of the last event the snapshot includes (0 before the first event). */
  readonly seq: number
  /** Every matching event after `seq`, in order. */
  readonly events: Stream.Stream<SubscriptionEvent>
  /**
   * Set by a cluster host's watch across sessions (no `sessionId`): `seq` is
   * then a position in the cluster's feed (an opaque cursor), and each event
   * keeps its own session's `seq`. `TaskView.fromWatch` then folds per session.
   */
  readonly seqPerSession?: true | undefined
}

/**
 * Options of the local host.
 *
 * @category models
 * @since 0.1.0
 */
export interface BackgroundTaskHostOptions {
  /**
   * How long a `cooperative` task may take to end itself after a cancel
   * request before the host interrupts it (default 5 seconds; `Infinity`:
   * never). Also bounds each external cancel effect at shutdown.
   */
  readonly cancelGracePeriod?: Duration.Input | undefined
  /**
   * How many terminal records the host holds, and for how long after they
   * ended (defaults 10,000 and 1 hour, by the `Clock`). Beyond either, the
   * oldest terminal records are evicted with an `Evicted` event. Live records
   * are never evicted. `Infinity` lifts a limit.
   */
  readonly retention?: {
    readonly maxTerminal?: number | undefined
    readonly maxAge?: Duration.Input | undefined
  } | undefined
  /**
   * Events each subscriber may have unread before the oldest are dropped
   * for it (and counted by a `Lagged`); default 4,096. A subscription may
   * ask for its own (`subscribe({ buffer })`).
   */
  readonly subscriberBuffer?: number | undefined
  /**
   * The largest task `input` accepted, in bytes of its JSON text (default
   * 65,536); a larger one fails the registration with `RegistrationError`.
   */
  readonly maxInputBytes?: number | undefined
  /**
   * The backoff between the attempts of a managed task with `maxAttempts`
   * (default exponential from 1 second); a task's `retry` overrides it.
   */
  readonly retry?: {
    readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined
  } | undefined
  /**
   * Running managed tasks at most, per session and per kind (default: no
   * limit). Beyond a limit a spawned task waits in `pending`, in FIFO order,
   * and starts when a slot frees.
   */
  readonly concurrency?: {
    readonly perSession?: number | undefined
    readonly perKind?: { readonly [K in TaskKind]?: number | undefined } | undefined
  } | undefined
}

