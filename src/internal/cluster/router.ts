/**
 * The `BackgroundTaskHost` service of a cluster, in any process (a runner or
 * a client): writes are routed to the `TaskSession` entity of the session
 * they name (a call naming only a task id finds its session in the store);
 * reads (`get`, `list`, `listTree`, `stats`, `await`, `subscribe`, `watch`)
 * read the store.
 *
 * Owns: the routing, the session handles, and the step that makes a stored
 * message deliverable again (`reopen`). Calls `delivery.ts` (each write's
 * delivery: the cluster's errors as `SessionError`, an interruption that is
 * not the caller's delivered again), `protocol.ts`, `feed.ts`,
 * `store.ts` (cluster), and the runner's `LocalSessions` for what cannot
 * cross processes (a task body, a hidden task), which run only on the runner
 * that owns the session.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { EntityAddress, EntityId, MessageStorage, Sharding } from "effect/cluster"
import {
  type BackgroundTaskRecord,
  isTerminal,
  matchesRecord,
  type TaskFilter,
  type TaskStats
} from "../../BackgroundTask.ts"
import {
  InvokeError,
  type PluginError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskNotFound
} from "../../PluginError.ts"
import type { TaskStoreError } from "../../TaskStoreError.ts"
import type {
  BackgroundTaskHostService,
  BackgroundTaskSession,
  RecoveryReport,
  TaskTree,
  TaskWatch
} from "../service.ts"
import {
  awaitOptionsOf,
  checkAll,
  checked,
  effectOf,
  filterOf,
  reasonOf,
  registerRequestOf,
  registrationOf,
  sessionFilterOf,
  sessionIdOf,
  sessionOptionsOf,
  stringOf,
  subscriptionOf,
  taskIdOf,
  watchOptionsOf
} from "../validate.ts"
import { defaultSchedule, delivered, type Redelivery, type Target } from "./delivery.ts"
import { follow, type FeedSignal } from "./feed.ts"
import { routedSpecOf, TaskSession } from "./protocol.ts"
import type { LocalSession } from "./runner.ts"
import type { ClusterStore } from "./store.ts"

/** The sentinel body of a spawn built on the owner by its producer's handler (`TaskCluster.byProducer`). */
export const byProducer: Effect.Effect<never, InvokeError> = Effect.fail(
  new InvokeError({
    message: "TaskCluster.byProducer is a marker for a cluster host's spawnManaged: the owner builds the body with the producer's handler"
  })
)

type Client = Effect.Success<typeof TaskSession.client> extends (id: string) => infer C ? C : never

export interface RouterDeps {
  readonly store: ClusterStore
  readonly signal: FeedSignal
  /** This runner's sessions (empty in a client-only process). */
  readonly sessions: Map<string, LocalSession>
  /** This runner's name, as `Wake` answers it (undefined in a client-only process). */
  readonly runnerName: string | undefined
  /** The backoff (and bound) of redeliveries (`delivery.ts`'s `defaultSchedule` if not given). */
  readonly redelivery?: Schedule.Schedule<unknown, unknown> | undefined
}

/** A stored reply that is an interruption only (the stored form of an `Exit`). */
const isInterruptReply = (reply: unknown): boolean => {
  if (typeof reply !== "object" || reply === null) return false
  const { _tag, exit } = reply as { readonly _tag?: unknown; readonly exit?: unknown }
  if (_tag !== "WithExit" || typeof exit !== "object" || exit === null) return false
  const { _tag: outcome, cause } = exit as { readonly _tag?: unknown; readonly cause?: unknown }
  return outcome === "Failure" && Array.isArray(cause) && cause.length > 0 &&
    cause.every((reason) => typeof reason === "object" && reason !== null && (reason as { _tag?: unknown })._tag === "Interrupt")
}

const storeFailure = (error: TaskStoreError) => new SessionError({ message: `the cluster's store: ${error.message}` })

/** The latest record with this id: the live one, else the terminal one updated last. */
const pick = (records: ReadonlyArray<BackgroundTaskRecord>): BackgroundTaskRecord | undefined =>
  records.find((r) => !isTerminal(r.state)) ??
    [...records].sort((a, b) => b.updatedAt.epochMilliseconds - a.updatedAt.epochMilliseconds)[0]

const oldestFirst = (records: ReadonlyArray<BackgroundTaskRecord>) =>
  [...records].sort((a, b) => a.createdAt.epochMilliseconds - b.createdAt.epochMilliseconds)

export const make = (deps: RouterDeps): Effect.Effect<BackgroundTaskHostService, never, Sharding.Sharding> =>
  Effect.gen(function*() {
    const clientFor = yield* TaskSession.client
    const { sessions, signal, store } = deps
    const client = (sessionId: string): Client => clientFor(sessionId) as Client
    const sharding = yield* Sharding.Sharding
    const storage = yield* Effect.serviceOption(MessageStorage.MessageStorage)

    /**
     * Makes a stored message deliverable again unless an answer is stored
     * for it: removes its stored interruption (a message sent again is
     * otherwise answered with it) and the `Interrupt` the client stored for it.
     */
    const reopen = ({ requestId, sessionId, tag }: Target): Effect.Effect<boolean> => {
      if (requestId === undefined || Option.isNone(storage)) return Effect.succeed(false)
      const messages = storage.value
      return Effect.gen(function*() {
        const entityId = EntityId.make(sessionId)
        const address = EntityAddress.make({
          entityType: TaskSession.type,
          entityId,
          shardId: sharding.getShardId(entityId, TaskSession.getShardGroup(entityId))
        })
        const id = yield* messages.requestIdForPrimaryKey({ address, tag, id: requestId })
        if (Option.isNone(id)) return false
        // an answer is stored: sent again, the message gets it
        const replies = yield* messages.repliesForUnfiltered([id.value])
        if (replies.some((reply) => reply._tag === "WithExit" && !isInterruptReply(reply))) return false
        // Not the reset that checks the latest reply: that one keeps the message's stored
        // `Interrupt` (which the cluster's client sends whenever a call ends interrupted, the
        // caller's or not) and makes it deliverable again too, so each delivery would be
        // interrupted anew. This one removes it, and the interrupted reply.
        return yield* sharding.reset(id.value)
      }).pipe(
        // the storage cannot be read: the message is sent again as it is
        Effect.catch((error) => Effect.as(Effect.logWarning(`reading the stored reply of ${tag} to session ${sessionId}: ${error.message}`), false))
      )
    }
    const redelivery: Redelivery = { schedule: deps.redelivery ?? defaultSchedule, reopen }
    const rid = () => randomUUID()
    /** A write to a session: a fresh `requestId` (the message's primary key), delivered. */
    const write = <A, E>(sessionId: string, tag: string, call: (requestId: string) => Effect.Effect<A, E>) => {
      const requestId = rid()
      return delivered(call(requestId), { sessionId, tag, requestId }, redelivery)
    }

    const resolve = (taskId: string) =>
      Effect.mapError(Effect.map(store.recordsWithId(taskId), pick), storeFailure)
    /** The session of the task an unscoped call names. */
    const sessionOf = (taskId: string) =>
      Effect.flatMap(resolve(taskId), (record) =>
        record === undefined
          ? Effect.fail(new TaskNotFound({ taskId }))
          : Effect.succeed(record.scope.sessionId))

    /** The local host of a session this runner owns, once it is placed (else why not). */
    const local = (sessionId: string, what: string): Effect.Effect<BackgroundTaskHostService, SessionError> =>
      Effect.gen(function*() {
        const refuse = (why: string) =>
          new SessionError({ message: `${what} cannot cross processes, and session ${sessionId} ${why}` })
        if (deps.runnerName === undefined) return yield* Effect.fail(refuse("is not run by this process (a cluster client)"))
        const owner = yield* Effect.mapError(
          delivered(client(sessionId).Wake(), { sessionId, tag: "Wake", requestId: undefined }, redelivery) as Effect.Effect<string, { readonly message: string }>,
          (e) => e instanceof SessionError ? e : new SessionError({ message: e.message })
        )
        const held = sessions.get(sessionId)
        if (owner !== deps.runnerName || held === undefined || held.fenced()) {
          return yield* Effect.fail(refuse(`is owned by runner ${owner}; spawn it there, or by producer (TaskCluster.byProducer)`))
        }
        return held.host
      })

    const listOf = (filter: TaskFilter | undefined) =>
      Effect.map(
        Effect.mapError(store.snapshot(filter?.sessionId, filter?.includeTerminal === true), storeFailure),
        (snap) => oldestFirst(snap.records.filter((r) => matchesRecord(filter, r)))
      )

    const treeOf = (record: BackgroundTaskRecord): Effect.Effect<TaskTree, SessionError> =>
      Effect.map(store.snapshot(record.scope.sessionId, true).pipe(Effect.mapError(storeFailure)), ({ records }) => {
        const children = new Map<string, Array<BackgroundTaskRecord>>()
        for (const r of oldestFirst(records)) {
          const parent = Option.getOrUndefined(r.parentTaskId)
          if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), r])
        }
        const build = (r: BackgroundTaskRecord, seen: Set<string>): TaskTree => ({
          record: r,
          children: seen.has(r.id) ? [] : (children.get(r.id) ?? []).map((c) => build(c, new Set([...seen, r.id])))
        })
        return build(record, new Set())
      })

    /** Waits until the task ends (woken by the feed), returns its final record. */
    const awaitEnd = (taskId: string, sessionId: string | undefined): Effect.Effect<BackgroundTaskRecord, TaskNotFound | SessionError> =>
      Effect.gen(function*() {
        while (true) {
          const wake = signal.current()
          const record = sessionId === undefined
            ? yield* resolve(taskId)
            : yield* Effect.mapError(store.record(sessionId, taskId), storeFailure)
          if (record === undefined) {
            return yield* Effect.fail(new TaskNotFound({ taskId, ...(sessionId === undefined ? {} : { sessionId }) }))
          }
          if (isTerminal(record.state)) return record
          if (signal.isClosed) return yield* Effect.fail(new SessionError({ message: "the cluster host has shut down" }))
          yield* signal.wait(wake)
        }
      })

    const subscribeWith = (method: string, options: unknown, after: Effect.Effect<number, SessionError>) =>
      checked((): Result.Result<{ filter: TaskFilter | undefined; types: ReadonlySet<string> | undefined }, SnapshotError> => {
        const split = subscriptionOf(method, options)
        if (Result.isFailure(split)) return Result.fail(split.failure)
        return Result.map(filterOf(split.success.filter), (filter) => ({ filter, types: split.success.options.types }))
      }, ({ filter, types }) => Effect.map(after, (position) => follow(store, signal, position, filter, types)))

    const watch = (options: unknown): Effect.Effect<TaskWatch, SnapshotError | SessionError> =>
      checked((): Result.Result<
        { filter: TaskFilter | undefined; fromSeq: number | undefined; types: ReadonlySet<string> | undefined },
        SnapshotError
      > => {
        const split = watchOptionsOf(options)
        if (Result.isFailure(split)) return Result.fail(split.failure)
        const sub = subscriptionOf("watch", split.success.filter)
        if (Result.isFailure(sub)) return Result.fail(sub.failure)
        return Result.map(filterOf(sub.success.filter), (filter) => ({ filter, fromSeq: split.success.fromSeq, types: sub.success.options.types }))
      }, ({ filter, fromSeq, types }) =>
        Effect.gen(function*() {
          const snap = yield* Effect.mapError(store.snapshot(filter?.sessionId, filter?.includeTerminal === true), storeFailure)
          const snapshot = oldestFirst(snap.records.filter((r) => matchesRecord(filter, r)))
          // one session: its own `seq` (gap-free, as on a single host); else the global feed's position
          const seq = filter?.sessionId === undefined ? snap.gseq : snap.sessionSeq
          let from = snap.gseq
          if (fromSeq !== undefined && fromSeq !== seq) {
            if (fromSeq > seq) {
              return yield* Effect.fail(new SnapshotError({ message: `fromSeq ${fromSeq} is beyond the snapshot's seq ${seq}` }))
            }
            if (filter?.sessionId === undefined) {
              const floor = yield* Effect.mapError(store.feedFloor, storeFailure)
              if (fromSeq < floor) {
                return yield* Effect.fail(new SnapshotError({ message: `fromSeq ${fromSeq} was pruned: the feed keeps events after ${floor}; watch without fromSeq for a fresh snapshot` }))
              }
              from = fromSeq
            } else if (fromSeq === 0) {
              from = 0
            } else {
              const at = yield* Effect.mapError(store.gseqOf(filter.sessionId, fromSeq), storeFailure)
              if (at === undefined) {
                return yield* Effect.fail(new SnapshotError({ message: `fromSeq ${fromSeq} of session ${filter.sessionId} was pruned; watch without fromSeq for a fresh snapshot` }))
              }
              from = at
            }
          }
          const events = follow(store, signal, from, filter, types)
          // across sessions, each event keeps its session's seq: TaskView folds per session
          return filter?.sessionId === undefined
            ? { filter, snapshot, seq, events, seqPerSession: true as const }
            : { filter, snapshot, seq, events }
        }))

    const lastGseq = Effect.map(Effect.mapError(store.counts, storeFailure), (c) => c.gseq)

    const routeSpec = (sessionId: unknown, spec: unknown) =>
      checkAll(sessionIdOf(sessionId), Result.flatMap(registrationOf(spec), routedSpecOf))

    const service: BackgroundTaskHostService = {
      register: (request) =>
        checked(() => Result.flatMap(registerRequestOf(request), (req) => Result.map(routedSpecOf(req), (spec) => ({ req, spec }))), ({ req, spec }) =>
          write(req.scope.sessionId, "Register", (requestId) => client(req.scope.sessionId).Register({ requestId, spec }))) as never,
      update: (taskId, update) =>
        checked(() => taskIdOf(taskId), (taskId) =>
          Effect.flatMap(sessionOf(taskId), (s) =>
            write(s, "Update", (requestId) => client(s).Update({ requestId, taskId, ...(update as object) } as never)))) as never,
      complete: (taskId, completion) =>
        checked(() => taskIdOf(taskId), (taskId) =>
          Effect.flatMap(sessionOf(taskId), (s) =>
            write(s, "Complete", (requestId) => client(s).Complete({ requestId, taskId, ...(completion as object) } as never)))) as never,
      requestCancel: (taskId, reason) =>
        checked(() => checkAll(taskIdOf(taskId), reasonOf(reason)), ([taskId, reason]) =>
          Effect.flatMap(sessionOf(taskId), (s) =>
            write(s, "RequestCancel", (requestId) => client(s).RequestCancel({ requestId, taskId, ...(reason === undefined ? {} : { reason }) })))) as never,
      await: (taskId, options) =>
        checked(() => checkAll(taskIdOf(taskId), awaitOptionsOf(options)), ([taskId, sessionId]) => awaitEnd(taskId, sessionId)),
      get: (taskId) => checked(() => taskIdOf(taskId), (taskId) => Effect.map(resolve(taskId), Option.fromUndefinedOr)),
      list: (filter) => checked(() => filterOf(filter), listOf),
      transfer: () =>
        Effect.fail(new SessionError({ message: "transfer is not supported on a cluster host: a session's tasks stay with the runner that owns it" })),
      subscribe: (options) => subscribeWith("subscribe", options, lastGseq) as never,
      watch,
      stats: Effect.gen(function*() {
        const { byState, gseq } = yield* Effect.mapError(store.counts, storeFailure)
        const n = (state: string) => byState[state] ?? 0
        const live = n("pending") + n("running") + n("waiting") + n("cancel_requested")
        const stats: TaskStats = {
          seq: gseq,
          live,
          retained: live + n("completed") + n("failed") + n("cancelled"),
          completed: n("completed"),
          failed: n("failed"),
          cancelled: n("cancelled"),
          evicted: 0,
          subscribers: 0,
          fibers: 0,
          queued: n("pending"),
          commits: 0
        }
        return stats
      }),
      spawnHidden: (sessionId, label, task) =>
        checked(
          () => checkAll(sessionIdOf(sessionId), stringOf(label, "label"), effectOf(task, "task", (message) => new SessionError({ message }))),
          ([sessionId, label, task]) =>
            Effect.flatMap(local(sessionId, "a hidden task"), (host) =>
              host.spawnHidden(sessionId, label, task as Effect.Effect<void, PluginError>))
        ) as never,
      awaitHidden: (sessionId) =>
        checked(() => sessionIdOf(sessionId), (sessionId) => {
          const held = sessions.get(sessionId)
          return held === undefined ? Effect.void : held.host.awaitHidden(sessionId)
        }),
      spawnManaged: (sessionId, spec, body) =>
        checked(
          () => checkAll(sessionIdOf(sessionId), registrationOf(spec), effectOf(body, "task", (message) => new RegistrationError({ message }))),
          ([sessionId, valid, body]) => {
            if (body === byProducer) {
              return checked(() => routedSpecOf(valid), (spec) => write(sessionId, "Spawn", (requestId) => client(sessionId).Spawn({ requestId, spec })))
            }
            return Effect.flatMap(
              Effect.mapError(local(sessionId, "a task body (an Effect)"), (e: SessionError) => new RegistrationError({ message: e.message })),
              (host) => host.spawnManaged(sessionId, valid, body!)
            )
          }
        ) as never,
      registerExternal: (sessionId, spec, cancel) =>
        checked(
          () => checkAll(routeSpec(sessionId, spec), effectOf(cancel, "cancel", (message) => new RegistrationError({ message }), true)),
          ([[sessionId, spec], cancel]) =>
            cancel === undefined
              ? write(sessionId, "RegisterExternal", (requestId) => client(sessionId).RegisterExternal({ requestId, spec }))
              : Effect.flatMap(
                Effect.mapError(local(sessionId, "a cancel effect"), (e: SessionError) => new RegistrationError({ message: e.message })),
                (host) => host.registerExternal(sessionId, spec as never, cancel as Effect.Effect<void>)
              )
        ) as never,
      unregisterExternal: (sessionId, taskId) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId)), ([s, taskId]) =>
          write(s, "UnregisterExternal", (requestId) => client(s).UnregisterExternal({ requestId, taskId }))) as never,
      markTerminal: (sessionId, taskId, state) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId), stringOf(state, "state")), ([s, taskId, state]) =>
          write(s, "MarkTerminal", (requestId) => client(s).MarkTerminal({ requestId, taskId, state }))) as never,
      markLiveState: (sessionId, taskId, state) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId), stringOf(state, "state")), ([s, taskId, state]) =>
          state === "running" || state === "waiting"
            ? write(s, "MarkLiveState", (requestId) => client(s).MarkLiveState({ requestId, taskId, state }))
            : Effect.void) as never,
      cancelManaged: (sessionId, taskId) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId)), ([s, taskId]) =>
          write(s, "CancelManaged", (requestId) => client(s).CancelManaged({ requestId, taskId }))) as never,
      listManaged: (sessionId) =>
        checked(() => sessionIdOf(sessionId), (s) => listOf({ sessionId: s, includeTerminal: true })),
      getManaged: (sessionId, taskId) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId)), ([s, taskId]) =>
          Effect.map(Effect.mapError(store.record(s, taskId), storeFailure), Option.fromUndefinedOr)),
      transferManaged: () =>
        Effect.fail(new SessionError({ message: "transferManaged is not supported on a cluster host: a session's tasks stay with the runner that owns it" })),
      cancelAllManaged: (sessionId) =>
        checked(() => sessionIdOf(sessionId), (s) => write(s, "CancelAll", (requestId) => client(s).CancelAll({ requestId }))) as never,
      openSession: (sessionId, options) =>
        checked(() => checkAll(sessionIdOf(sessionId), sessionOptionsOf(options)), ([s, { successor }]) =>
          successor !== undefined
            ? Effect.fail(new SessionError({ message: "a cluster session has no successor: a session's tasks stay with the runner that owns it" }))
            : openSession(s)),
      listTree: (taskId) =>
        checked(() => taskIdOf(taskId), (taskId) =>
          Effect.flatMap(resolve(taskId), (record): Effect.Effect<TaskTree, TaskNotFound | SessionError> =>
            record === undefined ? Effect.fail(new TaskNotFound({ taskId })) : treeOf(record))),
      recovery: Effect.sync((): RecoveryReport => ({ respawned: [], failed: [], cancelled: [], quarantined: [] }))
    }

    /** A session handle: the router's methods bound to the session; closing it sends `Close` (the close policies). */
    const openSession = (sessionId: string): Effect.Effect<BackgroundTaskSession, SessionError, Scope.Scope> =>
      Effect.gen(function*() {
        let open = true
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            open = false
            return write(sessionId, "Close", (requestId) => client(sessionId).Close({ requestId }))
          }).pipe(Effect.catchCause((cause) => Effect.logWarning(`closing session ${sessionId} failed: ${Cause.pretty(cause)}`)))
        )
        const bound = <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionError, R> =>
          Effect.suspend((): Effect.Effect<A, E | SessionError, R> =>
            open ? call : Effect.fail(new SessionError({ message: `session ${JSON.stringify(sessionId)} is closed` }))
          )
        const handle: BackgroundTaskSession = {
          sessionId,
          spawn: (spec, task) => bound(service.spawnManaged(sessionId, spec, task)) as never,
          registerExternal: (spec, cancel) => bound(service.registerExternal(sessionId, spec, cancel)) as never,
          register: (spec) =>
            bound(service.register({ ...(spec as object), scope: { sessionId } } as never)) as never,
          get: (taskId) => bound(service.getManaged(sessionId, taskId)),
          await: (taskId) => bound(service.await(taskId, { sessionId })),
          list: (filter) =>
            checked(() => sessionFilterOf<object>(filter, sessionId), (f) => bound(service.list(f))),
          cancel: (taskId) => bound(service.cancelManaged(sessionId, taskId)),
          cancelAll: bound(service.cancelAllManaged(sessionId)),
          transfer: (toSessionId, taskIds) => bound(service.transferManaged(sessionId, toSessionId, taskIds)),
          handoff: () => Effect.fail(new SessionError({ message: "a cluster session has no successor: a session's tasks stay with the runner that owns it" })),
          subscribe: (filter) =>
            checked(() => sessionFilterOf<object>(filter, sessionId), (f) => bound(service.subscribe(f as never))),
          watch: (filter) => checked(() => sessionFilterOf<object>(filter, sessionId), (f) => bound(service.watch(f as never))),
          spawnHidden: (label, task) => bound(service.spawnHidden(sessionId, label, task)),
          awaitHidden: service.awaitHidden(sessionId)
        }
        return handle
      })

    return service
  })

