/**
 * The runner's side of a cluster: the `TaskSession` entity, one per session
 * placed on this runner, each running a durable host of its own restricted
 * to that session (the same rooms as a single host: registry, supervisor,
 * journal, lease, recovery), and the singleton that wakes sessions nobody
 * runs.
 *
 * Owns: the map of the sessions this runner holds (`LocalSessions`), the
 * entity's handlers (each idempotent: a message is delivered again after a
 * runner dies mid-way), its keep-alive (an entity with live tasks is never
 * passivated, and its stored keep-alive message brings it back on the next
 * owner), and the orphan scan. Calls `host.ts` (`makeWith`) with the
 * session's view of `store.ts` (cluster), and `protocol.ts`.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Entity, Sharding, Singleton } from "effect/cluster"
import { type BackgroundTaskRecord, isTerminal } from "../../BackgroundTask.ts"
import { InvokeError, RegistrationError, TaskAlreadyExists } from "../../PluginError.ts"
import { TaskContext } from "../../TaskContext.ts"
import type { TaskStoreService } from "../store.ts"
import { makeWith } from "../host.ts"
import type {
  BackgroundTaskHostService,
  BackgroundTaskHostStoreOptions,
  ExternalRecoveryHandler,
  RecoveryHandler
} from "../service.ts"
import type { ClusterStore } from "./store.ts"
import { registrationOf, type RoutedSpec, TaskSession } from "./protocol.ts"

/** A session this runner holds: its host, while its entity lives. */
export interface LocalSession {
  readonly host: BackgroundTaskHostService
  /** Set once the session's store refused a commit or a renewal: another runner took the session. */
  readonly fenced: () => boolean
}

/** What the entity and the router share in one process. */
export interface RunnerDeps {
  readonly store: ClusterStore
  readonly sessions: Map<string, LocalSession>
  readonly hostOptions: BackgroundTaskHostStoreOptions<unknown>
  readonly handlers: { readonly [producer: string]: RecoveryHandler<unknown> }
  readonly recoverExternal: { readonly [producer: string]: ExternalRecoveryHandler<unknown> }
  readonly maxIdleTime: Duration.Duration
  /** The runner's name in lease owners and in `Wake`'s answer. */
  readonly runnerName: string
}

/** A session store that remembers whether it was fenced. */
const fencedStore = (store: TaskStoreService): { readonly store: TaskStoreService; readonly fenced: () => boolean } => {
  let fenced = false
  return {
    fenced: () => fenced,
    store: {
      ...store,
      write: (batch, lease) =>
        Effect.tapError(store.write(batch, lease), (error) =>
          Effect.sync(() => {
            if (error._tag === "LeaseHeld") fenced = true
          })),
      renewLease: (owner, expiresAt) =>
        Effect.tap(store.renewLease(owner, expiresAt), (ok) =>
          Effect.sync(() => {
            if (!ok) fenced = true
          }))
    }
  }
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null)

/**
 * Whether a held record is what this registration would have made: then a
 * spawn (or register) delivered again returns it rather than failing.
 */
const sameRegistration = (record: BackgroundTaskRecord, spec: RoutedSpec): boolean =>
  record.kind === spec.kind && record.producer === spec.producer &&
  Option.getOrUndefined(record.parentTaskId) === spec.parentTaskId &&
  Option.getOrUndefined(record.attempt.idempotencyKey) === spec.idempotencyKey &&
  sameJson(record.input, spec.input)

/** A task body built on the owner from its producer's handler (called once; its effect runs for each attempt). */
const bodyFor = (
  handler: RecoveryHandler<unknown>,
  host: BackgroundTaskHostService,
  sessionId: string,
  producer: string
): Effect.Effect<unknown, unknown, TaskContext | Scope.Scope> => {
  let built: Effect.Effect<unknown, unknown, TaskContext | Scope.Scope> | undefined
  return Effect.gen(function*() {
    if (built === undefined) {
      const ctx = yield* TaskContext
      const record = yield* Effect.orDie(host.getManaged(sessionId, ctx.taskId))
      if (Option.isNone(record)) return yield* Effect.interrupt
      const made = yield* Effect.try({
        try: () => handler(record.value),
        catch: (error) => new InvokeError({ message: `the handler of producer ${producer} threw: ${String(error)}` })
      })
      built = Effect.isEffect(made)
        ? made as Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>
        : made._tag === "Fail"
        ? Effect.fail(new InvokeError({ message: made.reason }))
        : Effect.interrupt
    }
    return yield* built!
  }) as Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>
}

/** The entity's handlers: a host per session, built when the session is placed here. */
export const entityLayer = (deps: RunnerDeps) =>
  TaskSession.toLayer(
    Effect.gen(function*() {
      const address = yield* Entity.CurrentAddress
      const sessionId = address.entityId
      const context = yield* Effect.context<Sharding.Sharding | Entity.CurrentAddress>()
      const latch = yield* Effect.serviceOption(Entity.KeepAliveLatch)
      const { fenced, store } = fencedStore(deps.store.forSession(sessionId))
      const owner = `${deps.runnerName}/${sessionId}/${Math.random().toString(36).slice(2, 10)}`
      const host = yield* makeWith({
        ...deps.hostOptions,
        recovery: deps.handlers,
        recoverExternal: deps.recoverExternal,
        lease: { ...deps.hostOptions.lease, onHeld: "wait", owner }
      }, store).pipe(
        // a database that does not answer: the activation is tried again by the next message
        Effect.tapError((error) => Effect.logWarning(`session ${sessionId} could not start: ${error.message}`)),
        Effect.orDie
      )
      deps.sessions.set(sessionId, { host, fenced })
      yield* Effect.addFinalizer(() => Effect.sync(() => deps.sessions.delete(sessionId)))

      // keep-alive while the session holds live tasks: never passivated, brought back after a fail-over
      let alive = false
      const keepAlive = (on: boolean) => {
        if (on === alive) return Effect.void
        alive = on
        const call = Entity.keepAlive(on).pipe(Effect.provideContext(context))
        return Option.isSome(latch) ? Effect.provideService(call, Entity.KeepAliveLatch, latch.value) : call
      }
      const liveCount = Effect.map(Effect.orDie(host.list({ sessionId })), (records) => records.length)
      const events = yield* host.subscribe({ sessionId, types: ["Registered", "Completed", "Failed", "Cancelled", "Evicted", "Transferred"] })
        .pipe(Effect.orDie)
      yield* keepAlive((yield* liveCount) > 0)
      yield* events.pipe(
        Stream.runForEach(() => Effect.flatMap(liveCount, (n) => keepAlive(n > 0))),
        Effect.forkScoped
      )

      /** A call on the session's host; a fenced host restarts the entity (its next incarnation waits for the session). */
      const guarded = <A, E>(call: Effect.Effect<A, E>): Effect.Effect<A, E> =>
        fenced()
          ? Effect.die(new Error(`session ${sessionId}: another runner holds it; this incarnation stops`))
          : Effect.tap(call, () => fenced() ? Effect.die(new Error(`session ${sessionId} was fenced during the call`)) : Effect.void)

      const held = (taskId: string) => Effect.map(Effect.orDie(host.getManaged(sessionId, taskId)), Option.getOrUndefined)

      /** A task id live in another session: refused (ids name one live task in the cluster). */
      const liveElsewhere = (taskId: string) =>
        Effect.map(
          Effect.orDie(deps.store.recordsWithId(taskId)),
          (records) => records.find((r) => r.scope.sessionId !== sessionId && !isTerminal(r.state))
        )

      const registerOnce = <E>(
        spec: RoutedSpec,
        make: Effect.Effect<BackgroundTaskRecord, E>
      ): Effect.Effect<BackgroundTaskRecord, E | TaskAlreadyExists> =>
        Effect.gen(function*() {
          const existing = yield* held(spec.id)
          // delivered again (or asked again): the record it made is the answer
          if (existing !== undefined && sameRegistration(existing, spec)) return existing
          const other = yield* liveElsewhere(spec.id)
          if (other !== undefined) {
            return yield* Effect.fail(new TaskAlreadyExists({ taskId: spec.id, sessionId: other.scope.sessionId }))
          }
          return yield* make
        })

      return TaskSession.of({
        Spawn: ({ payload: { spec } }) =>
          guarded(registerOnce(
            spec,
            Effect.suspend(() => {
              const handler = deps.handlers[spec.producer]
              if (handler === undefined) {
                return Effect.fail(
                  new RegistrationError({
                    message: `invalid spec: no handler for producer ${
                      JSON.stringify(spec.producer)
                    } on the runner that owns session ${sessionId}: a task spawned through the cluster is built by its producer's handler (TaskCluster handlers option)`
                  })
                )
              }
              return host.spawnManaged(sessionId, registrationOf(spec), bodyFor(handler, host, sessionId, spec.producer))
            })
          )),
        RegisterExternal: ({ payload: { spec } }) =>
          guarded(registerOnce(
            spec,
            Effect.suspend(() => {
              const handler = deps.recoverExternal[spec.producer]
              const cancel = handler === undefined ? undefined : Effect.gen(function*() {
                const record = yield* held(spec.id)
                if (record === undefined) return
                const made = handler(record)
                if (Effect.isEffect(made)) yield* (made as Effect.Effect<void>)
              })
              return host.registerExternal(sessionId, registrationOf(spec), cancel)
            })
          )),
        Register: ({ payload: { spec } }) =>
          guarded(registerOnce(spec, host.register({ ...registrationOf(spec), scope: { sessionId } }))),
        Update: ({ payload: { progress, state, taskId } }) =>
          guarded(host.update(taskId, {
            ...(state === undefined ? {} : { state }),
            ...(progress === undefined ? {} : { progress })
          })),
        Complete: ({ payload: { state, summary, taskId } }) =>
          guarded(Effect.gen(function*() {
            const record = yield* held(taskId)
            // delivered again after it took effect
            if (record !== undefined && record.state === state) return record
            return yield* host.complete(taskId, { state: state as never, ...(summary === undefined ? {} : { summary }) })
          })),
        RequestCancel: ({ payload: { reason, taskId } }) =>
          guarded(Effect.gen(function*() {
            const record = yield* held(taskId)
            if (record !== undefined && record.state === "cancelled") return record
            return yield* host.requestCancel(taskId, reason)
          })),
        CancelManaged: ({ payload: { taskId } }) => guarded(host.cancelManaged(sessionId, taskId)),
        MarkTerminal: ({ payload: { state, taskId } }) => guarded(host.markTerminal(sessionId, taskId, state as never)),
        MarkLiveState: ({ payload: { state, taskId } }) => guarded(host.markLiveState(sessionId, taskId, state)),
        UnregisterExternal: ({ payload: { taskId } }) => guarded(host.unregisterExternal(sessionId, taskId)),
        CancelAll: () => guarded(host.cancelAllManaged(sessionId)),
        // the close policies; `transfer` tasks have no successor on a cluster (a session's tasks stay in its host)
        Close: () => guarded(Effect.scoped(Effect.asVoid(host.openSession(sessionId)))),
        Wake: () => guarded(Effect.succeed(deps.runnerName))
      })
    }),
    { maxIdleTime: deps.maxIdleTime }
  )

/**
 * A singleton (one runner of the cluster runs it) that wakes the sessions
 * whose tasks are live in the store but whose lease has run out or was
 * released: their owner died, or stopped and handed them over, and no client
 * has called them since. The woken session takes its lease and recovers its
 * tasks where the cluster places it.
 */
export const orphanScanner = (store: ClusterStore, every: Duration.Duration) =>
  Singleton.make(
    "effect-task-host/orphan-scanner",
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      const client = yield* sharding.makeClient(TaskSession)
      const scan = Effect.gen(function*() {
        const orphans = yield* store.orphanedSessions(yield* Clock.currentTimeMillis, 500)
        yield* Effect.forEach(
          orphans,
          (sessionId) =>
            client(sessionId).Wake().pipe(
              Effect.timeout(Duration.times(every, 2)),
              Effect.catchCause((cause) =>
                Effect.logDebug(`waking session ${sessionId} failed: ${Cause.pretty(cause)}`)
              )
            ),
          { concurrency: 16, discard: true }
        )
      }).pipe(Effect.catchCause((cause) => Effect.logWarning(`the orphan scan failed: ${Cause.pretty(cause)}`)))
      yield* scan.pipe(Effect.repeat(Schedule.spaced(every)), Effect.delay(every))
    })
  )

/** Both, for a runner. */
export const runnerLayers = (deps: RunnerDeps, scanEvery: Duration.Duration) =>
  Layer.mergeAll(entityLayer(deps), orphanScanner(deps.store, scanEvery))

