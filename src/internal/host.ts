/**
 * The local host: the rooms, wired together, and the service they make.
 *
 * Owns: nothing but the wiring, the service object (each method checks its
 * input, then runs one step in the room that owns it), the host's own stop
 * (shutdown, and `fence` for a durable host that can no longer own its
 * store) and the retention sweeper. May call every room; no room calls it.
 *
 * The rooms, and what each may touch (see docs/design.md):
 * - `state.ts`: the state union in its `Ref`, the atomic step
 * - `registry.ts` (+ `tables.ts`, `lifecycle.ts`): records, indexes, `seq`, retention
 * - `supervisor.ts` (+ `slots.ts`): managed fibers, attempts, `TaskContext`,
 *   limits and the queue, and what a terminal move means beyond the record
 * - `cancellation.ts`: cancel policies, trees, grace timers
 * - `sessions.ts`: open, close, handoff, the handle
 * - `events.ts`: the `PubSub` and its subscriptions
 * - `durable.ts`, `recovery.ts`: the sinks, the journal, the lease, replay, recovery
 * - `validate.ts`: the input checks, pure functions
 *
 * @internal
 */
import { hostname } from "node:os"
import * as Clock from "effect/Clock"
import type * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BackgroundTaskRecord, isTerminal, type TaskFilter } from "../BackgroundTask.ts"
import { type SubscriptionEvent } from "../TaskEvent.ts"
import {
  type InvalidOptions,
  InvalidTransition,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskNotFound
} from "../PluginError.ts"
import type { TaskContext } from "../TaskContext.ts"
import { HostStopped, type LeaseHeld, TaskStoreError } from "../TaskStoreError.ts"
import { type StoredState, type StoredTask, type TaskStoreService } from "./store.ts"
import { Cancellation, liveChildren } from "./cancellation.ts"
import { type Durability, holdLease, type Journal, journaled, type LeaseHeldUntil, memory } from "./durable.ts"
import { EventHub } from "./events.ts"
import { HiddenTasks } from "./hidden.ts"
import * as Lifecycle from "./lifecycle.ts"
import { backoffSchedule, optionsOf, storeOptionsOf } from "./options.ts"
import { recover } from "./recovery.ts"
import { RegistryService } from "./registry.ts"
import type {
  BackgroundTaskHostOptions,
  BackgroundTaskHostService,
  BackgroundTaskHostStoreOptions,
  RecoveryReport,
  RegisterError,
  TaskTree,
  TaskWatch
} from "./service.ts"
import { Sessions } from "./sessions.ts"
import { Slots } from "./slots.ts"
import { Steps } from "./state.ts"
import { Ending, Supervisor } from "./supervisor.ts"
import * as T from "./task.ts"
import { Telemetry } from "./telemetry.ts"
import { checkOutcomeInput, checkSession, filterOf, registerRequestOf, registrationOf, scopeOf } from "./validate.ts"

/** The summary of a task the host cancels as it shuts down. */
export const hostShutDown = "host shut down"

/** The in-memory host. */
export const make = (
  options: BackgroundTaskHostOptions
): Effect.Effect<BackgroundTaskHostService, InvalidOptions, Scope.Scope> =>
  makeWith(options, undefined) as Effect.Effect<BackgroundTaskHostService, InvalidOptions, Scope.Scope>

/** A host on a store: a durable one adds the journal, the lease and recovery. */
export const makeWith = (
  options: BackgroundTaskHostStoreOptions<unknown>,
  store: TaskStoreService | undefined
): Effect.Effect<BackgroundTaskHostService, InvalidOptions | TaskStoreError | LeaseHeld, Scope.Scope> =>
  Effect.gen(function*() {
    const { grace, limits, maxAge, maxInputBytes, maxTerminal, retrySchedule, subscriberBuffer } = yield* optionsOf(options)
    // checked on any store, so a bad option fails before it matters
    const storeOptions = store === undefined ? undefined : yield* storeOptionsOf(options)
    const durable = store?.durable === true && storeOptions !== undefined ? store : undefined
    const leaseOwner = storeOptions?.owner ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`

    // -- the rooms --------------------------------------------------------------
    const steps = yield* Steps.make
    const hub = yield* EventHub.make
    const layerContext = yield* Effect.context<never>()
    const telemetry = new Telemetry(layerContext)
    let journal: Journal | undefined
    let durability: Durability
    const leaseHeld: LeaseHeldUntil = { until: 0 }
    if (durable === undefined) {
      durability = memory(hub)
    } else {
      const made = yield* journaled(durable, hub, steps, {
        owner: leaseOwner,
        ttlMillis: Duration.toMillis(storeOptions!.ttl),
        held: leaseHeld
      }, (why) => fence(why))
      durability = made.durability
      journal = made.journal
    }
    const maxAgeMillis = Duration.toMillis(maxAge)
    const registry = new RegistryService(steps, durability.sink, { maxTerminal, maxAgeMillis })
    const ending = new Ending(steps, registry, new Slots<T.Task>(limits), telemetry)
    const cancellation = new Cancellation(steps, ending)
    const supervisor = new Supervisor(
      steps,
      registry,
      ending,
      (task, mode, reason) => cancellation.cancelChildren(task, mode, reason)
    )
    /** Registers a task (see `RegistryService.register`), its input within `maxInputBytes`; a new one counts in the metrics. */
    const register = (
      ...args: Parameters<RegistryService["register"]>
    ): Result.Result<{ readonly task: T.Task; readonly existing: boolean }, RegisterError> => {
      const tooLarge = inputTooLarge(args[1].id, args[1].input, maxInputBytes)
      if (tooLarge !== undefined) return Result.fail(tooLarge)
      const added = registry.register(...args)
      if (Result.isSuccess(added) && !added.success.existing) telemetry.registered(added.success.task.record)
      return added
    }
    const hidden = new HiddenTasks(() => steps.isOpen())
    const sessions = new Sessions(steps, registry, cancellation, supervisor, durability.sync)

    const allFibers = (): Array<Fiber.Fiber<unknown, unknown>> => [
      ...ending.timers,
      ...hidden.fibers(),
      ...supervisor.fibers
    ]

    /**
     * Stops a durable host that can no longer own its store (its lease is
     * gone, or it cannot write): every task fiber is interrupted, calls fail
     * with a `SessionError` saying why, subscribers' streams end. Nothing more
     * is written: the tasks stay live in the store, the next lease holder's to
     * recover.
     */
    const fence = (why: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!steps.isOpen()) return Effect.void
        const message = `the background task host ${leaseOwner} stopped: ${why}`
        // the tasks' ends below are not written: the store keeps them live, to be recovered
        journal?.stop(new TaskStoreError({ reason: new HostStopped({ operation: "write", message }) }))
        return steps.closing(new SessionError({ message })).pipe(
          Effect.andThen(Effect.logError(message)),
          Effect.andThen(Effect.suspend(() => Fiber.interruptAll(allFibers()))),
          Effect.andThen(Effect.sync(() => hub.close()))
        )
      })

    // -- the store's lease and records -----------------------------------------
    let stored: StoredState | undefined
    if (durable !== undefined) {
      supervisor.fencingToken = yield* holdLease(durable, leaseOwner, storeOptions!, fence, leaseHeld, storeOptions!.shutdown.flushTimeout)
      stored = yield* durable.load
      for (const error of stored.quarantined) {
        yield* Effect.logWarning(`quarantined a stored row: ${error.message}`, error)
      }
    }

    // -- shutdown ---------------------------------------------------------------
    const shutdownMode = durable === undefined ? "cancel" : storeOptions!.shutdown.mode
    const drain = durable === undefined ? Duration.zero : storeOptions!.shutdown.drain
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* steps.closing()
        sessions.clear()
        // drain: running managed tasks get `drain` to finish (no queued task starts on a closing host)
        if (Duration.isGreaterThan(drain, Duration.zero)) {
          const running = registry.liveTasks().filter((task) => task.owner._tag === "Managed" && !T.isQueued(task))
          yield* Effect.forEach(running, (task) => ending.awaitEnd(task), { concurrency: "unbounded", discard: true })
            .pipe(Effect.timeoutOption(drain))
        }
        if (journal !== undefined && shutdownMode === "release") return yield* release(journal)
        for (const task of registry.liveTasks()) task.control.stopReason ??= hostShutDown
        yield* Fiber.interruptAll(allFibers())
        yield* Effect.forEach(
          registry.liveTasks(),
          (task) => cancellation.hardCancel(task, true).pipe(Effect.timeoutOption(task.control.grace)),
          { concurrency: "unbounded", discard: true }
        )
        yield* steps.internal((now) =>
          Effect.sync(() => {
            for (const task of registry.liveTasks()) ending.markCancelled(task, now)
          })
        )
        yield* steps.closed
        // the last events reach subscribers once committed; then their streams end
        if (journal !== undefined) yield* finalFlush(journal)
        hub.close()
      })
    )

    /**
     * The shutdown's last commits, bounded by `shutdown.flushTimeout`: a
     * database that stopped answering cannot hold the process. `false` when
     * they did not all commit (what did not stays as the store has it: the
     * next host recovers those tasks as after a crash).
     */
    const finalFlush = (journal: Journal): Effect.Effect<boolean> =>
      Effect.exit(Effect.timeoutOption(journal.flush, storeOptions!.shutdown.flushTimeout)).pipe(
        Effect.flatMap((exit) => {
          if (exit._tag === "Success" && exit.value._tag === "Some") return Effect.succeed(true)
          const why = exit._tag === "Success" ? `not committed within ${Duration.format(storeOptions!.shutdown.flushTimeout)}` : "a commit failed"
          return Effect.as(
            Effect.logError(`the background task host ${leaseOwner} shut down before its last writes were committed (${why}): the next host recovers what they would have changed`),
            false
          )
        })
      )

    /**
     * A `release` shutdown: in one step the journal stops taking events and
     * the host closes (no step runs after it, so a stopped fiber moves no
     * record); what was written before is committed, the live records are
     * marked released, then the fibers are stopped. External work is left
     * running; the lease is given up after this (its finalizer runs last).
     */
    const release = (journal: Journal): Effect.Effect<void> =>
      Effect.gen(function*() {
        let live: Array<StoredTask> = []
        yield* Effect.andThen(
          Effect.sync(() => {
            live = registry.liveTasks().map((task) => ({ order: task.order, owner: T.ownerName(task.owner), record: task.record }))
            journal.freeze()
          }),
          steps.closed
        )
        if (!(yield* finalFlush(journal))) return yield* Effect.andThen(Fiber.interruptAll(allFibers()), Effect.sync(() => hub.close()))
        yield* journal.release(live).pipe(
          Effect.catch((error) =>
            Effect.logWarning(
              `the background task host ${leaseOwner} could not mark its live tasks released (the next host recovers them as after a crash): ${error.message}`
            )
          )
        )
        yield* Fiber.interruptAll(allFibers())
        hub.close()
      })

    // -- retention ----------------------------------------------------------------
    /** Evicts terminal records as they reach `maxAge`, sleeping until the next one is due. */
    const sweep: Effect.Effect<never> = Effect.gen(function*() {
      while (true) {
        const now = yield* Clock.currentTimeMillis
        const due = steps.isClosed() ? undefined : registry.evictExpired(now)
        yield* Effect.sleep(Duration.millis((due ?? now + maxAgeMillis) - now))
      }
    })
    // forked after the finalizer above, so it is interrupted before that runs
    if (Number.isFinite(maxAgeMillis)) yield* Effect.forkScoped(sweep)

    // -- stored events' retention ---------------------------------------------------
    /** The stored events up to this `seq` were pruned: `watch({ fromSeq })` below it cannot replay. */
    let prunedThrough = 0
    if (durable !== undefined) {
      prunedThrough = yield* Effect.orElseSucceed(durable.prunedThrough, () => 0)
      const { maxEvents, pruneEvery } = storeOptions!.eventRetention
      /** Deletes the stored events beyond `maxEvents`, once they are committed; in the background. */
      const prune = Effect.gen(function*() {
        if (!steps.isOpen()) return
        const last = registry.lastSeq
        const through = last - maxEvents
        if (through <= prunedThrough) return
        yield* durability.sync
        // from now on a replay from below `through` is refused: its events are going
        prunedThrough = through
        yield* durable.pruneEvents(through).pipe(
          Effect.catch((error) => Effect.logWarning(`pruning the stored events failed (tried again later): ${error.message}`))
        )
      })
      if (Number.isFinite(maxEvents)) yield* Effect.forkScoped(Effect.repeat(Effect.delay(prune, pruneEvery), Schedule.forever))
    }

    // -- the service --------------------------------------------------------------

    /** Runs `f` on the task an unscoped call names, in the same step as the lookup. */
    const withTask = <A, E>(
      taskId: string,
      f: (task: T.Task) => Effect.Effect<A, E>
    ): Effect.Effect<A, E | TaskNotFound> => {
      const task = typeof taskId === "string" ? registry.resolve(taskId) : undefined
      return task === undefined ? Effect.fail(new TaskNotFound({ taskId: String(taskId) })) : f(task)
    }

    const withSession = <A, E, R>(sessionId: string, f: Effect.Effect<A, E, R>) => {
      const invalid = checkSession(sessionId)
      return invalid === undefined ? f : Effect.fail(invalid)
    }

    const recordOf = <E>(
      added: Result.Result<{ readonly task: T.Task }, E>
    ): Effect.Effect<BackgroundTaskRecord, E> =>
      Result.isFailure(added) ? Effect.fail(added.failure) : Effect.succeed(added.success.task.record)

    const treeOf = (task: T.Task): TaskTree => ({
      record: task.record,
      children: task.children === undefined
        ? []
        : Array.from(task.children).sort((a, b) => a.order - b.order).map(treeOf)
    })

    /**
     * Subscribes, and takes what `snapshot` reads, in one step: the snapshot is
     * the state as of `seq`, the subscription gets every event after it.
     */
    const attach = <S>(
      filter: unknown,
      snapshot: (filter: TaskFilter | undefined) => S
    ): Effect.Effect<
      {
        readonly filter: TaskFilter | undefined
        readonly snapshot: S
        readonly seq: number
        readonly stream: Stream.Stream<SubscriptionEvent>
      },
      SnapshotError | SessionError,
      Scope.Scope
    > => {
      const valid = filterOf(filter)
      if (Result.isFailure(valid)) return Effect.fail(valid.failure)
      return Effect.flatMap(hub.subscribe(), (pending) =>
        steps.whenOpen(() => {
          const seq = registry.lastSeq
          pending.activate(valid.success, subscriberBuffer, seq)
          return Effect.succeed({ filter: valid.success, snapshot: snapshot(valid.success), seq, stream: pending.stream })
        }))
    }

    /**
     * Moves a task to a terminal state on request, in the step that found it;
     * a failed or cancelled parent ends after its children (then in a step of its own).
     */
    const endOnRequest = (
      task: T.Task,
      to: "completed" | "failed" | "cancelled",
      summary: Option.Option<string>,
      now: DateTime.Utc
    ): Effect.Effect<BackgroundTaskRecord, InvalidTransition | SessionError> => {
      const move = (now: DateTime.Utc) => {
        const moved = ending.move(task, to, now, { summary })
        if (Result.isFailure(moved)) return Effect.fail(moved.failure)
        return Effect.as(cancellation.stopTask(task), moved.success)
      }
      if (to === "completed" || liveChildren(task).length === 0) return move(now)
      const check = Lifecycle.checkMove(task.record.id, task.record.state, to)
      if (check !== undefined) return Effect.fail(check)
      return Effect.andThen(
        cancellation.cancelChildren(task, "policy", to === "failed" ? "parent failed" : "parent cancelled"),
        steps.atomic(move)
      )
    }

    const spawnManaged = <A, E, R>(sessionId: string, spec: unknown, body: Effect.Effect<A, E, R>) =>
      withSession(
        sessionId,
        steps.atomicWith(
          () => registrationOf(spec),
          (valid, now, context) => {
            // a live task holding the key is the answer: no slot, no new task
            const holder = valid.idempotencyKey === undefined ? undefined : registry.findByKey(valid.idempotencyKey)
            if (holder !== undefined) return Effect.succeed(holder.record)
            const owner = T.managed()
            const control = T.control(
              valid.cancelGracePeriod === undefined ? grace : Duration.fromInputUnsafe(valid.cancelGracePeriod)
            )
            const slot = supervisor.tryAcquire({ sessionId, kind: valid.kind })
            const added = register(sessionId, valid, slot !== undefined ? "running" : "pending", now, owner, control)
            if (Result.isFailure(added)) {
              supervisor.releaseUnused(slot)
              return Effect.fail(added.failure)
            }
            const { task } = added.success
            supervisor.startOrQueue(task, owner, {
              run: supervisor.body(task, owner, body as Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>),
              timeout: valid.timeout === undefined ? undefined : Duration.fromInputUnsafe(valid.timeout),
              schedule: valid.retry ?? (valid.backoff === undefined ? retrySchedule : backoffSchedule(valid.backoff)),
              context
            }, slot)
            return Effect.succeed(task.record)
          }
        )
      ) as Effect.Effect<BackgroundTaskRecord, RegisterError, Exclude<R, TaskContext | Scope.Scope>>

    const write = durability.write

    const service: BackgroundTaskHostService = {
      register: (request) =>
        write(steps.atomicWith(
          () => registerRequestOf(request),
          (req, now) =>
            recordOf(register(
              req.scope.sessionId,
              req,
              "pending",
              now,
              T.caller,
              T.control(req.cancelGracePeriod === undefined ? grace : Duration.fromInputUnsafe(req.cancelGracePeriod))
            ))
        )),

      update: (taskId, update) => {
        const invalid = checkOutcomeInput("update", update, "progress")
        if (invalid !== undefined) return Effect.fail(invalid)
        return write(steps.atomic((now) =>
          withTask(taskId, (task) => {
            const from = task.record.state
            const to: unknown = update.state
            if (isTerminal(from) || (to !== undefined && (!Lifecycle.isTaskState(to) || isTerminal(to)))) {
              return Effect.fail(new InvalidTransition({ taskId, from, to: Lifecycle.describeState(to ?? from) }))
            }
            const progress = update.progress
            if (to === "cancel_requested" && from !== to) {
              if (liveChildren(task).length > 0) {
                if (progress !== undefined) registry.progress(task, progress)
                return cancellation.requestCancel(task, Option.none(), now)
              }
              const begun = cancellation.beginCancel(task, Option.none(), now)
              if (Result.isFailure(begun)) return Effect.fail(begun.failure)
              if (progress !== undefined) registry.progress(task, progress)
              return begun.success
            }
            if (to !== undefined) {
              // a queued managed task starts when a slot frees, not on request
              if (T.isQueued(task) && to !== from) {
                return Effect.fail(new InvalidTransition({ taskId, from, to }))
              }
              const moved = ending.move(task, to, now)
              if (Result.isFailure(moved)) return Effect.fail(moved.failure)
            }
            if (progress !== undefined) registry.progress(task, progress)
            return Effect.succeed(task.record)
          })
        ))
      },

      complete: (taskId, completion) => {
        const invalid = checkOutcomeInput("complete", completion, "summary")
        if (invalid !== undefined) return Effect.fail(invalid)
        return write(steps.atomic((now) =>
          withTask(taskId, (task) => {
            const to: unknown = completion.state
            if (!Lifecycle.isTaskState(to) || !isTerminal(to)) {
              return Effect.fail(
                new InvalidTransition({ taskId, from: task.record.state, to: Lifecycle.describeState(to) })
              )
            }
            return endOnRequest(task, to, Option.fromUndefinedOr(completion.summary), now)
          })
        ))
      },

      requestCancel: (taskId, reason) =>
        write(steps.atomic((now) =>
          withTask(taskId, (task) => cancellation.requestCancel(task, Option.fromUndefinedOr(reason), now))
        )),

      get: (taskId) => steps.whenOpen(() => Effect.succeed(Option.fromUndefinedOr(registry.resolve(taskId)?.record))),

      list: (filter) => {
        const valid = filterOf(filter)
        if (Result.isFailure(valid)) return Effect.fail(valid.failure)
        return steps.whenOpen(() => Effect.succeed(registry.list(valid.success)))
      },

      transfer: (taskId, scope) => {
        const target = scopeOf(scope)
        if (Result.isFailure(target)) return Effect.fail(target.failure)
        return write(steps.atomic((now) =>
          withTask(taskId, (task) =>
            Effect.as(
              Effect.fromResult(supervisor.transferTasks([task], target.success.sessionId, now)),
              task.record
            ))
        ))
      },

      subscribe: (filter) => Effect.map(attach(filter, () => undefined), ({ stream }) => stream),

      watch: (options) => {
        const { fromSeq, ...rest } = options ?? {}
        if (fromSeq !== undefined && !(typeof fromSeq === "number" && Number.isSafeInteger(fromSeq) && fromSeq >= 0)) {
          return Effect.fail(new SnapshotError({ message: `fromSeq must be an integer >= 0, got ${String(fromSeq)}` }))
        }
        const filter = options === undefined || (fromSeq !== undefined && Object.keys(rest).length === 0)
          ? undefined
          : rest
        return Effect.flatMap(
          attach(filter, (valid) => registry.list(valid)),
          ({ filter, seq, snapshot, stream }): Effect.Effect<TaskWatch, SnapshotError> => {
            const watch = { filter, snapshot, seq, events: stream }
            if (fromSeq === undefined || fromSeq === seq) return Effect.succeed(watch)
            if (fromSeq > seq) {
              return Effect.fail(new SnapshotError({ message: `fromSeq ${fromSeq} is beyond the last event's seq, ${seq}` }))
            }
            if (fromSeq < prunedThrough) {
              return Effect.fail(
                new SnapshotError({
                  message: `resuming from seq ${fromSeq}: the stored events up to seq ${prunedThrough} were pruned ` +
                    `(eventRetention.maxEvents); watch without fromSeq for a fresh snapshot`
                })
              )
            }
            if (durability.replay === undefined) {
              return Effect.fail(
                new SnapshotError({
                  message: `resuming from seq ${fromSeq} needs a durable store: this host keeps no event history`
                })
              )
            }
            // everything up to `seq` is committed before it is read back
            return Effect.as(durability.sync, {
              ...watch,
              events: Stream.concat(durability.replay(fromSeq, seq, filter), watch.events)
            })
          }
        )
      },

      stats: steps.whenOpen(() =>
        Effect.sync(() => {
          let queued = 0
          for (const task of registry.liveTasks()) if (T.isQueued(task)) queued++
          return registry.stats({
            subscribers: hub.subscriberCount,
            fibers: supervisor.fibers.size + ending.timers.size + hidden.fibers().length,
            queued,
            commits: durability.commits()
          })
        })
      ),

      spawnHidden: (sessionId, label, task) =>
        withSession(sessionId, steps.whenOpen(() => hidden.spawn(sessionId, String(label), task))),

      awaitHidden: (sessionId) => withSession(sessionId, steps.whenOpen(() => hidden.await(sessionId))),

      spawnManaged: (sessionId, spec, task) => write(spawnManaged(sessionId, spec, task)),

      registerExternal: (sessionId, spec, cancel) =>
        write(withSession(
          sessionId,
          steps.atomicWith(
            () => registrationOf(spec),
            (valid, now) =>
              recordOf(register(
                sessionId,
                valid,
                "running",
                now,
                T.external(cancel),
                T.control(valid.cancelGracePeriod === undefined ? grace : Duration.fromInputUnsafe(valid.cancelGracePeriod))
              ))
          )
        )),

      unregisterExternal: (sessionId, taskId) =>
        write(withSession(
          sessionId,
          steps.whenOpen(() =>
            Effect.sync(() => {
              const task = registry.find(sessionId, taskId)
              if (task?.owner._tag === "External") {
                if (!isTerminal(task.record.state)) telemetry.removed(task.record)
                registry.remove(task)
                ending.released(task)
              }
            })
          )
        )),

      markTerminal: (sessionId, taskId, to) =>
        write(withSession(
          sessionId,
          steps.whenOpen(() => {
            const task = registry.find(sessionId, taskId)
            if (task === undefined || isTerminal(task.record.state)) return Effect.void
            if (!Lifecycle.isTaskState(to) || !isTerminal(to)) return Effect.void
            const move = steps.internal((now) => {
              if (isTerminal(task.record.state)) return Effect.void
              ending.move(task, to, now)
              return cancellation.stopTask(task)
            })
            return to === "completed"
              ? move
              : Effect.andThen(
                cancellation.cancelChildren(task, "policy", to === "failed" ? "parent failed" : "parent cancelled"),
                move
              )
          })
        )),

      markLiveState: (sessionId, taskId, to) =>
        write(withSession(
          sessionId,
          steps.atomic((now) =>
            Effect.sync(() => {
              const task = registry.find(sessionId, taskId)
              if (task !== undefined) supervisor.moveLive(task, to, now)
            })
          )
        )),

      cancelManaged: (sessionId, taskId) =>
        write(withSession(
          sessionId,
          steps.whenOpen(() => {
            const task = registry.find(sessionId, taskId)
            return task === undefined ? Effect.void : cancellation.hardCancel(task, true)
          })
        )),

      listManaged: (sessionId) =>
        withSession(sessionId, steps.whenOpen(() => Effect.sync(() => registry.session(sessionId).map((task) => task.record)))),

      getManaged: (sessionId, taskId) =>
        withSession(
          sessionId,
          steps.whenOpen(() => Effect.sync(() => Option.fromUndefinedOr(registry.find(sessionId, taskId)?.record)))
        ),

      transferManaged: (fromSessionId, toSessionId, taskIds) =>
        write(withSession(
          fromSessionId,
          withSession(
            toSessionId,
            steps.atomic((now) => {
              const tasks = new Set<T.Task>()
              for (const taskId of taskIds) {
                const task = registry.find(fromSessionId, taskId)
                if (task !== undefined) tasks.add(task)
              }
              return Effect.asVoid(Effect.fromResult(supervisor.transferTasks(Array.from(tasks), toSessionId, now)))
            })
          )
        )),

      cancelAllManaged: (sessionId) =>
        write(withSession(
          sessionId,
          steps.whenOpen(() => Effect.sync(() => registry.liveInSession(sessionId))).pipe(
            Effect.tap((tasks) => cancellation.cancelAll(tasks)),
            Effect.map((tasks) => tasks.map((task) => task.record))
          )
        )),

      openSession: (sessionId, sessionOptions) => sessions.openSession(service, sessionId, sessionOptions),

      listTree: (taskId) => steps.whenOpen(() => withTask(taskId, (task) => Effect.succeed(treeOf(task)))),

      recovery: steps.whenOpen(() => Effect.succeed<RecoveryReport>(copyReport(report)))
    }

    // -- recovery -------------------------------------------------------------------
    let report: RecoveryReport = { respawned: [], failed: [], cancelled: [], quarantined: [] }
    if (stored !== undefined) {
      report = yield* recover(stored, { steps, registry, ending, supervisor, telemetry }, {
        handlers: storeOptions!.recovery,
        external: storeOptions!.recoverExternal,
        grace,
        retrySchedule,
        context: layerContext
      })
      // the layer is ready once everything it found is resolved, and written
      yield* durability.sync
    }
    return service
  })

/** Where a value is not plain JSON (a function, a Date, NaN, a cycle, …), if it is not. */
const notJson = (value: unknown, path: string, seen: Set<object>): string | undefined => {
  if (value === null || typeof value === "string" || typeof value === "boolean") return undefined
  if (typeof value === "number") return Number.isFinite(value) ? undefined : `${path} is ${value}`
  if (typeof value !== "object") return `${path} is a ${typeof value}`
  if (seen.has(value)) return `${path} refers to itself`
  const proto = Object.getPrototypeOf(value)
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return `${path} is not a plain object`
  seen.add(value)
  for (const [key, item] of Object.entries(value)) {
    const problem = notJson(item, Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`, seen)
    if (problem !== undefined) return problem
  }
  seen.delete(value)
  return undefined
}

/** A registration whose input is not JSON, or larger than `maxInputBytes` as JSON text, as the error it gets. */
const inputTooLarge = (taskId: string, input: unknown, maxInputBytes: number): RegistrationError | undefined => {
  if (input === undefined) return undefined
  const problem = notJson(input, "input", new Set())
  if (problem !== undefined) {
    return new RegistrationError({ message: `invalid task registration for ${taskId}: the input must be JSON, but ${problem}` })
  }
  if (maxInputBytes === Infinity) return undefined
  const bytes = Buffer.byteLength(JSON.stringify(input), "utf8")
  return bytes <= maxInputBytes ? undefined : new RegistrationError({
    message: `invalid task registration for ${taskId}: its input is ${bytes} bytes of JSON, more than maxInputBytes (${maxInputBytes})`
  })
}

const copyReport = (report: RecoveryReport): RecoveryReport => ({
  respawned: [...report.respawned],
  failed: [...report.failed],
  cancelled: [...report.cancelled],
  quarantined: [...report.quarantined]
})
