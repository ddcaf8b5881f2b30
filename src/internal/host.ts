/**
 * The local host: the rooms, wired together, and the service they make.
 *
 * Owns: nothing but the wiring, the service object (each method checks its
 * input, then runs one step in the room that owns it), the host's own stop
 * (shutdown, and `fence` for a durable host that can no longer own its
 * store). May call every room; no room calls it.
 *
 * The rooms, and what each may touch (see docs/design.md):
 * - `state.ts`: the state union in its `Ref`, the atomic step
 * - `registry.ts` (+ `tables.ts`, `links.ts`, `lifecycle.ts`): records, indexes, `seq`, retention
 * - `supervisor.ts` (+ `slots.ts`, `ending.ts`, `launch.ts`): managed fibers,
 *   attempts, `TaskContext`, limits and the queue, and what a terminal move
 *   means beyond the record
 * - `spawn.ts`: `spawnManaged` as one operation (budget, checks, step)
 * - `cancellation.ts`: cancel policies, trees, grace timers
 * - `sessions.ts`: open, close, handoff, the handle
 * - `events.ts`: the `PubSub` and its subscriptions
 * - `subscriptions.ts`: `subscribe`, `watch` (snapshot and replay), `await`
 * - `durable.ts`, `recovery.ts`: the sinks, the journal, the lease, replay, recovery
 * - `retention.ts`: the sweeper of terminal records, the pruner of stored events
 * - `validate.ts`: the input checks, pure functions
 *
 * @internal
 */
import { hostname } from "node:os"
import type * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import { type BackgroundTaskRecord, isTerminal } from "../BackgroundTask.ts"
import {
  type InvalidOptions,
  InvalidTransition,
  type PluginError,
  RegistrationError,
  SessionError,
  TaskNotFound
} from "../PluginError.ts"
import { HostStopped, type LeaseHeld, TaskStoreError } from "../TaskStoreError.ts"
import { type StoredState, type TaskStoreService } from "./store.ts"
import { Cancellation, liveChildren } from "./cancellation.ts"
import { type Durability, flushAtShutdown, holdLease, type Journal, journaled, type LeaseHeldUntil, memory, releaseAtShutdown } from "./durable.ts"
import { EventHub } from "./events.ts"
import { HiddenTasks } from "./hidden.ts"
import * as Lifecycle from "./lifecycle.ts"
import { optionsOf, storeOptionsOf } from "./options.ts"
import { copyReport, recover } from "./recovery.ts"
import { Registry, RegistryService } from "./registry.ts"
import type {
  BackgroundTaskHostOptions,
  BackgroundTaskHostService,
  BackgroundTaskHostStoreOptions,
  RecoveryReport
} from "./service.ts"
import { Sessions } from "./sessions.ts"
import { Slots } from "./slots.ts"
import { Pace, Steps } from "./state.ts"
import { Retention } from "./retention.ts"
import { type SpawnDeps, spawner } from "./spawn.ts"
import { Subscriptions } from "./subscriptions.ts"
import { Ending } from "./ending.ts"
import { Supervisor } from "./supervisor.ts"
import * as T from "./task.ts"
import { Telemetry } from "./telemetry.ts"
import {
  checkAll,
  effectOf,
  filterOf,
  outcomeOf,
  reasonOf,
  registerRequestOf,
  registrationOf,
  scopeOf,
  sessionIdOf,
  stringOf,
  inputTooLarge,
  taskIdOf,
  taskIdsOf,
  type UpdateArgs,
  updateArgsOf,
  checkUpdateArgs,
  isRefusal,
  checked
} from "./validate.ts"

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
    const telemetry = yield* Telemetry.make(layerContext)
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
    const register: SpawnDeps["register"] = (sessionId, spec, state, now, owner, control) => {
      const tooLarge = spec.input === undefined ? undefined : inputTooLarge(spec.id, spec.input, maxInputBytes)
      if (tooLarge !== undefined) return Result.fail(tooLarge)
      const added = registry.register(sessionId, spec, state, now, owner, control)
      if (Result.isSuccess(added) && !added.success.existing) telemetry.registered(added.success.task.record)
      return added
    }
    const hidden = new HiddenTasks(() => steps.isOpen())
    const sessions = new Sessions(steps, registry, cancellation, supervisor, durability.sync)
    const subscriptions = new Subscriptions(steps, registry, ending, hub, durability, subscriberBuffer, () => retention.prunedThrough)

    const allFibers = (): Array<Fiber.Fiber<unknown, unknown>> => [
      ...ending.timers,
      ...hidden.fibers(),
      ...supervisor.fibers()
    ]
    /** Interrupts every fiber the host runs and waits for them, and for what their tasks' exits left to run. */
    const stopFibers = (): Effect.Effect<void> =>
      Effect.suspend(() => {
        const fibers = allFibers()
        return fibers.length === 0 ? Effect.void : Effect.andThen(
          Fiber.interruptAll(fibers),
          Effect.suspend(() => ending.continuing === 0 ? Effect.void : stopFibers())
        )
      })

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
          Effect.andThen(stopFibers()),
          // the tasks it does not run (external, caller-owned) stay live: whoever awaits them is told why
          Effect.andThen(Effect.sync(() => {
            for (const task of registry.liveTasks()) ending.released(task)
          })),
          Effect.andThen(Effect.sync(() => hub.close()))
        )
      })

    // -- the store's lease and records -----------------------------------------
    let stored: StoredState | undefined
    if (durable !== undefined) {
      const lease = yield* holdLease(durable, leaseOwner, storeOptions!, fence, leaseHeld, storeOptions!.shutdown.flushTimeout)
      supervisor.fencingToken = lease.token
      supervisor.lease = lease.gate
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
        yield* stopFibers()
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

    const finalFlush = (journal: Journal) => flushAtShutdown(journal, storeOptions!.shutdown.flushTimeout, leaseOwner)
    const release = (journal: Journal) =>
      releaseAtShutdown({
        journal,
        registry,
        steps,
        hub,
        stopFibers: stopFibers(),
        flushTimeout: storeOptions!.shutdown.flushTimeout,
        owner: leaseOwner
      })

    // -- retention: the sweeper of terminal records, the pruner of stored events ------
    const retention = yield* Retention.start({
      steps,
      layerContext,
      maxAge,
      durable,
      durability,
      eventRetention: storeOptions?.eventRetention,
      lease: supervisor.lease
    }).pipe(Effect.provideService(Registry, registry))

    // -- the service --------------------------------------------------------------

    /** Runs `f` on the task an unscoped call names, in the same step as the lookup. */
    const withTask = <A, E>(
      taskId: string,
      f: (task: T.Task) => Effect.Effect<A, E>
    ): Effect.Effect<A, E | TaskNotFound> => {
      const task = registry.resolve(taskId)
      return task === undefined ? Effect.fail(new TaskNotFound({ taskId })) : f(task)
    }


    const recordOf = <E>(
      added: Result.Result<{ readonly task: T.Task }, E>
    ): Effect.Effect<BackgroundTaskRecord, E> =>
      Result.isFailure(added) ? Effect.fail(added.failure) : Effect.succeed(added.success.task.record)


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


    // a burst of writes lets readers and timers run (see `Pace`)
    const pace = new Pace(
      () => Pace.budgetFor(hub.smallestBuffer),
      journal === undefined ? undefined : () => journal!.backlog,
      journal === undefined ? undefined : Effect.exit(journal.sync)
    )
    const write = <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      durability.write(pace.gate(call))
    /** `update`'s step (made once: `update` is called in bursts): a move, if asked, and the progress message. */
    const updateStep = (
      { taskId, state: to, text: progress }: UpdateArgs,
      fiber: Fiber.Fiber<unknown, unknown>
    ): Effect.Effect<BackgroundTaskRecord, TaskNotFound | InvalidTransition | SessionError> => {
      const task = registry.resolve(taskId)
      if (task === undefined) return Effect.fail(new TaskNotFound({ taskId }))
      const from = task.record.state
      if (isTerminal(from) || (to !== undefined && (!Lifecycle.isTaskState(to) || isTerminal(to)))) {
        return Effect.fail(new InvalidTransition({ taskId, from, to: Lifecycle.describeState(to ?? from) }))
      }
      if (to === "cancel_requested" && from !== to) {
        if (liveChildren(task).length > 0) {
          if (progress !== undefined) registry.progress(task, progress)
          return cancellation.requestCancel(task, Option.none(), steps.nowOf(fiber))
        }
        const begun = cancellation.beginCancel(task, Option.none(), steps.nowOf(fiber))
        if (Result.isFailure(begun)) return Effect.fail(begun.failure)
        if (progress !== undefined) registry.progress(task, progress)
        return begun.success
      }
      if (to !== undefined) {
        // a queued managed task starts when a slot frees, not on request
        if (T.isQueued(task) && to !== from) {
          return Effect.fail(new InvalidTransition({ taskId, from, to }))
        }
        const moved = ending.move(task, to, steps.nowOf(fiber))
        if (Result.isFailure(moved)) return Effect.fail(moved.failure)
      }
      if (progress !== undefined) registry.progress(task, progress)
      return Effect.succeed(task.record)
    }

    const spawnManaged = spawner({
      steps,
      pace,
      write: durability.write,
      registry,
      register,
      supervisor,
      grace,
      retrySchedule
    })

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

      // in memory, the input check, the pace and the step are one primitive; on a durable store the call
      // then waits for the commit
      update: journal === undefined
        ? steps.paced(pace, checkUpdateArgs, isRefusal, updateStep)
        : (taskId, update) => checked(() => updateArgsOf(taskId, update), (args) => write(steps.open((fiber) => updateStep(args, fiber)))),

      complete: (taskId, completion) =>
        checked(
          () => checkAll(taskIdOf(taskId), outcomeOf("completion", completion, "summary")),
          ([taskId, { state: to, text: summary }]) =>
            write(steps.atomic((now) =>
              withTask(taskId, (task) => {
                if (to === undefined || !Lifecycle.isTaskState(to) || !isTerminal(to)) {
                  return Effect.fail(
                    new InvalidTransition({
                      taskId,
                      from: task.record.state,
                      to: Lifecycle.describeState(to),
                      hint: to !== undefined && Lifecycle.isTaskState(to)
                        ? `complete takes a terminal state (completed, failed or cancelled); use update to move a live task to ${to}`
                        : "complete takes a terminal state (completed, failed or cancelled)"
                    })
                  )
                }
                return endOnRequest(task, to, Option.fromUndefinedOr(summary), now)
              })
            ))
        ),

      requestCancel: (taskId, reason) =>
        checked(() => checkAll(taskIdOf(taskId), reasonOf(reason)), ([taskId, reason]) =>
          write(steps.atomic((now) =>
            withTask(taskId, (task) => cancellation.requestCancel(task, Option.fromUndefinedOr(reason), now))
          ))),

      await: (taskId, options) => subscriptions.await(taskId, options),

      get: (taskId) =>
        checked(() => taskIdOf(taskId), (taskId) =>
          steps.whenOpen(() => Effect.succeed(Option.fromUndefinedOr(registry.resolve(taskId)?.record)))),

      list: (filter) =>
        checked(() => filterOf(filter), (filter) => steps.whenOpen(() => Effect.succeed(registry.list(filter)))),

      transfer: (taskId, scope) =>
        checked(() => checkAll(taskIdOf(taskId), scopeOf(scope)), ([taskId, target]) =>
          write(steps.atomic((now) =>
            withTask(taskId, (task) =>
              Effect.as(
                Effect.fromResult(supervisor.transferTasks([task], target.sessionId, now)),
                task.record
              ))
          ))),

      subscribe: (options) => subscriptions.subscribe(options),

      watch: (options) => subscriptions.watch(options),

      stats: steps.whenOpen(() =>
        Effect.sync(() => {
          let queued = 0
          for (const task of registry.liveTasks()) if (T.isQueued(task)) queued++
          return registry.stats({
            subscribers: hub.subscriberCount,
            fibers: supervisor.fiberCount + ending.starting + ending.timers.size + hidden.fibers().length,
            queued,
            commits: durability.commits()
          })
        })
      ),

      spawnHidden: (sessionId, label, task) =>
        checked(
          () =>
            checkAll(
              sessionIdOf(sessionId),
              stringOf(label, "label"),
              effectOf(task, "task", (message) => new SessionError({ message }))
            ),
          ([sessionId, label, task]) =>
            steps.whenOpen(() => hidden.spawn(sessionId, label, task as typeof task & Effect.Effect<void, PluginError, never>))
        ) as Effect.Effect<void, SessionError, never>,

      awaitHidden: (sessionId) =>
        checked(() => sessionIdOf(sessionId), (sessionId) => steps.whenOpen(() => hidden.await(sessionId))),

      spawnManaged: (sessionId, spec, task) => spawnManaged(sessionId, spec, task),

      registerExternal: (sessionId, spec, cancel) =>
        write(steps.atomicWith(
          () =>
            checkAll(
              sessionIdOf(sessionId),
              registrationOf(spec),
              effectOf(cancel, "cancel", (message) => new RegistrationError({ message }), true)
            ),
          ([sessionId, valid, cancel], now) =>
            recordOf(register(
              sessionId,
              valid,
              "running",
              now,
              T.external(cancel as Effect.Effect<void> | undefined),
              T.control(valid.cancelGracePeriod === undefined ? grace : Duration.fromInputUnsafe(valid.cancelGracePeriod))
            ))
        )),

      unregisterExternal: (sessionId, taskId) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId)), ([sessionId, taskId]) =>
          write(steps.whenOpen(() =>
            Effect.sync(() => {
              const task = registry.find(sessionId, taskId)
              if (task?.owner._tag === "External") {
                if (!isTerminal(task.record.state)) telemetry.removed(task.record)
                registry.remove(task)
                ending.released(task)
              }
            })
          ))),

      markTerminal: (sessionId, taskId, to) =>
        checked(
          () => checkAll(sessionIdOf(sessionId), taskIdOf(taskId), stringOf(to, "state")),
          ([sessionId, taskId, to]) =>
            write(steps.whenOpen(() => {
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
            }))
        ),

      markLiveState: (sessionId, taskId, to) =>
        checked(
          () => checkAll(sessionIdOf(sessionId), taskIdOf(taskId), stringOf(to, "state")),
          ([sessionId, taskId, to]) =>
            write(steps.atomic((now) =>
              Effect.sync(() => {
                const task = registry.find(sessionId, taskId)
                if (task !== undefined) supervisor.moveLive(task, to as Parameters<Supervisor["moveLive"]>[1], now)
              })
            ))
        ),

      cancelManaged: (sessionId, taskId) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId)), ([sessionId, taskId]) =>
          write(steps.whenOpen(() => {
            const task = registry.find(sessionId, taskId)
            return task === undefined ? Effect.void : cancellation.hardCancel(task, true)
          }))),

      listManaged: (sessionId) =>
        checked(() => sessionIdOf(sessionId), (sessionId) =>
          steps.whenOpen(() => Effect.sync(() => registry.session(sessionId).map((task) => task.record)))),

      getManaged: (sessionId, taskId) =>
        checked(() => checkAll(sessionIdOf(sessionId), taskIdOf(taskId)), ([sessionId, taskId]) =>
          steps.whenOpen(() => Effect.sync(() => Option.fromUndefinedOr(registry.find(sessionId, taskId)?.record)))),

      transferManaged: (fromSessionId, toSessionId, taskIds) =>
        checked(
          () =>
            checkAll(sessionIdOf(fromSessionId, "fromSessionId"), sessionIdOf(toSessionId, "toSessionId"), taskIdsOf(taskIds)),
          ([fromSessionId, toSessionId, taskIds]) =>
            write(steps.atomic((now) => {
              const tasks = new Set<T.Task>()
              for (const taskId of taskIds) {
                const task = registry.find(fromSessionId, taskId)
                if (task !== undefined) tasks.add(task)
              }
              return Effect.asVoid(Effect.fromResult(supervisor.transferTasks(Array.from(tasks), toSessionId, now)))
            }))
        ),

      cancelAllManaged: (sessionId) =>
        checked(() => sessionIdOf(sessionId), (sessionId) =>
          write(
            steps.whenOpen(() => Effect.sync(() => registry.liveInSession(sessionId))).pipe(
              Effect.tap((tasks) => cancellation.cancelAll(tasks)),
              Effect.map((tasks) => tasks.map((task) => task.record))
            )
          )),

      openSession: (sessionId, sessionOptions) => sessions.openSession(service, sessionId, sessionOptions),

      listTree: (taskId) =>
        checked(() => taskIdOf(taskId), (taskId) => steps.whenOpen(() => withTask(taskId, (task) => Effect.succeed(registry.tree(task))))),

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
