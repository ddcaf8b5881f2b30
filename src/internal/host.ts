/**
 * The local host: the registry, the event hub and the fibers, composed.
 *
 * Every public method validates its input, then runs one atomic registry
 * step (see `registry.ts`) and, when the step says so, a follow-up that acts
 * on fibers or cancel effects (interrupt and await, run a cancel effect,
 * start a grace timer). Fibers report their own exit through another atomic
 * step, so "exactly one terminal state" is decided by whichever step runs
 * first; every later one sees a terminal record and does nothing.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import {
  type BackgroundTaskRecord,
  defaultAttempt,
  isTerminal,
  RegisterRequest,
  type TaskAttempt,
  TaskFilter,
  TaskRegistration,
  TaskScope,
  type TaskState
} from "../BackgroundTask.ts"
import type { BackgroundTaskHostOptions, BackgroundTaskHostService } from "../BackgroundTaskHost.ts"
import {
  InvalidTransition,
  InvokeError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskNotFound
} from "../PluginError.ts"
import { TaskContext } from "../TaskContext.ts"
import { EventHub } from "./eventHub.ts"
import { HiddenTasks } from "./hidden.ts"
import * as Lifecycle from "./lifecycle.ts"
import { causeMessage } from "./messages.ts"
import { type Entry, Registry } from "./registry.ts"
import { isPlainRegisterRequest, isPlainRegistration } from "./validate.ts"

/** What the host can act on for one record. */
interface Control {
  readonly owner: "caller" | "host" | "external"
  /** host: the task's fiber, once it has started. */
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  /** host: completed with the reason when cancellation is requested. */
  readonly signal: Deferred.Deferred<Option.Option<string>> | undefined
  /** external: the cancel effect, until it is taken (it runs at most once). */
  cancel: Effect.Effect<void> | undefined
  /** external: completed once the cancel effect has run and the record is cancelled. */
  cancelled: Deferred.Deferred<void> | undefined
  /** cooperative cancellation: the grace-period timer. */
  timer: Fiber.Fiber<void> | undefined
}

type TaskEntry = Entry<Control>

type HostState = { readonly _tag: "Open" } | { readonly _tag: "Closing" } | { readonly _tag: "Closed" }

const closedError = new SessionError({ message: "the background task host has shut down" })

const invalidOption = (name: string, expected: string, input: unknown) =>
  new SessionError({
    message: `the background task host cannot start: ${name} must be ${expected}, got ${
      typeof input === "number" ? String(input) : String(JSON.stringify(input))
    }`
  })

/** A duration option, or why it is not valid. */
const durationOption = (
  name: string,
  input: Duration.Input | undefined,
  fallback: Duration.Input
): Effect.Effect<Duration.Duration, SessionError> => {
  const value = input ?? fallback
  const duration = typeof value === "number" && Number.isNaN(value) ? Option.none() : Duration.fromInput(value)
  return Option.isSome(duration) && !Duration.isNegative(duration.value)
    ? Effect.succeed(duration.value)
    : Effect.fail(invalidOption(name, "a non-negative duration", value))
}

/** A count option: a non-negative integer, or `Infinity` where `infinite` allows it. */
const countOption = (
  name: string,
  input: unknown,
  fallback: number,
  range: { readonly min: number; readonly infinite: boolean }
): Effect.Effect<number, SessionError> => {
  const value = input ?? fallback
  return typeof value === "number" &&
      ((Number.isSafeInteger(value) && value >= range.min) || (range.infinite && value === Infinity))
    ? Effect.succeed(value)
    : Effect.fail(
      invalidOption(name, `an integer >= ${range.min}${range.infinite ? " or Infinity" : ""}`, value)
    )
}

/** The options, checked, with their defaults. */
const optionsOf = (options: BackgroundTaskHostOptions) =>
  Effect.all({
    grace: durationOption("cancelGracePeriod", options.cancelGracePeriod, "5 seconds"),
    maxTerminal: countOption("retention.maxTerminal", options.retention?.maxTerminal, 10_000, {
      min: 0,
      infinite: true
    }),
    maxAge: durationOption("retention.maxAge", options.retention?.maxAge, "1 hour"),
    subscriberBuffer: countOption("subscriberBuffer", options.subscriberBuffer, 4_096, { min: 1, infinite: false })
  })

export const make = (
  options: BackgroundTaskHostOptions
): Effect.Effect<BackgroundTaskHostService, SessionError, Scope.Scope> =>
  Effect.gen(function*() {
    const { grace, maxAge, maxTerminal, subscriberBuffer } = yield* optionsOf(options)
    const hub = new EventHub(subscriberBuffer)
    const maxAgeMillis = Duration.toMillis(maxAge)
    const registry = new Registry<Control>({ publish: (event) => hub.publish(event), maxTerminal, maxAgeMillis })
    const state = yield* Ref.make<HostState>({ _tag: "Open" })
    const hidden = new HiddenTasks(() => Ref.getUnsafe(state)._tag === "Open")
    const timers = new Set<Fiber.Fiber<void>>()

    // -- atomic steps ---------------------------------------------------------

    /** A public step that reads no clock (lookups, subscriptions): fails with `SessionError` unless the host is open. */
    const whenOpen = <A, E, R>(f: () => Effect.Effect<A, E, R>) =>
      Effect.suspend((): Effect.Effect<A, E | SessionError, R> =>
        Ref.getUnsafe(state)._tag === "Open" ? f() : Effect.fail(closedError)
      )

    // The time of a step, as a `DateTime.Utc`: steps in the same millisecond share one (it is immutable).
    let lastMillis = Number.NaN
    let lastNow: DateTime.Utc | undefined
    const nowOf = (clock: Clock.Clock): DateTime.Utc => {
      const millis = clock.currentTimeMillisUnsafe()
      if (millis !== lastMillis || lastNow === undefined) {
        lastMillis = millis
        lastNow = DateTime.makeUnsafe(millis)
      }
      return lastNow
    }

    /**
     * A public step that writes: as `whenOpen`, with the current time for the
     * records it changes. One primitive: the step runs inside the clock lookup.
     */
    const atomic = <A, E, R>(f: (now: DateTime.Utc) => Effect.Effect<A, E, R>) =>
      Clock.clockWith((clock): Effect.Effect<A, E | SessionError, R> =>
        Ref.getUnsafe(state)._tag === "Open" ? f(nowOf(clock)) : Effect.fail(closedError)
      )

    /** `atomic`, for input that is decoded first (bad input fails before a closed host does). */
    const atomicWith = <I, E1, A, E, R>(
      input: () => Result.Result<I, E1>,
      f: (input: I, now: DateTime.Utc) => Effect.Effect<A, E, R>
    ) =>
      Clock.clockWith((clock): Effect.Effect<A, E1 | E | SessionError, R> => {
        const valid = input()
        if (Result.isFailure(valid)) return Effect.fail(valid.failure)
        return Ref.getUnsafe(state)._tag === "Open" ? f(valid.success, nowOf(clock)) : Effect.fail(closedError)
      })

    /** An internal step (a fiber's exit, a cancel effect's end): also runs while closing. */
    const internal = (f: (now: DateTime.Utc) => Effect.Effect<void>) =>
      Clock.clockWith((clock) => Ref.getUnsafe(state)._tag === "Closed" ? Effect.void : f(nowOf(clock)))

    const markCancelled = (entry: TaskEntry, now: DateTime.Utc) => {
      if (!isTerminal(entry.record.state)) registry.move(entry, "cancelled", now)
      stopTimer(entry.handle)
    }

    const stopTimer = (control: Control) => {
      const timer = control.timer
      if (timer === undefined) return
      control.timer = undefined
      timer.interruptUnsafe()
    }

    // -- fibers -----------------------------------------------------------------

    /** Interrupts a fiber and waits for it; a fiber that cancels itself just stops. */
    const interruptFiber = (fiber: Fiber.Fiber<unknown, unknown>) =>
      Effect.withFiber((current) => current === fiber ? Effect.interrupt : Fiber.interrupt(fiber))

    /** After a terminal move by someone else: stop the task's fiber, if it runs. */
    const stopTask = (entry: TaskEntry): Effect.Effect<void> => {
      stopTimer(entry.handle)
      const fiber = entry.handle.fiber
      return fiber === undefined ? Effect.void : interruptFiber(fiber)
    }

    /**
     * Cancels through the task's handle: interrupts its fiber or runs its
     * cancel effect. With `force`, a record with nothing to act on is marked
     * `cancelled` too; without, it is left as it is.
     */
    const hardCancel = (entry: TaskEntry, force: boolean): Effect.Effect<void> =>
      internal((now) => {
        if (isTerminal(entry.record.state)) return Effect.void
        const control = entry.handle
        switch (control.owner) {
          case "host": {
            if (control.fiber !== undefined) return interruptFiber(control.fiber)
            // not started yet: it never will (it checks its record first)
            markCancelled(entry, now)
            return Effect.void
          }
          case "external": {
            const cancel = control.cancel
            if (cancel !== undefined) {
              control.cancel = undefined
              const cancelled = Deferred.makeUnsafe<void>()
              control.cancelled = cancelled
              return Effect.exit(cancel).pipe(
                Effect.ensuring(internal((now) =>
                  Effect.sync(() => {
                    markCancelled(entry, now)
                    Deferred.doneUnsafe(cancelled, Effect.void)
                  })
                ))
              )
            }
            if (control.cancelled !== undefined) return Deferred.await(control.cancelled)
            break
          }
          case "caller":
            break
        }
        if (force) markCancelled(entry, now)
        return Effect.void
      })

    /** Starts the cooperative grace period: when it ends, the host cancels the task itself. */
    const startGracePeriod = (entry: TaskEntry): Effect.Effect<void> => {
      const control = entry.handle
      const actionable = control.owner === "host" || (control.owner === "external" && control.cancel !== undefined)
      if (!actionable || control.timer !== undefined) return Effect.void
      const timer = Effect.sleep(grace).pipe(
        Effect.andThen(Effect.suspend(() => {
          control.timer = undefined
          return hardCancel(entry, false)
        })),
        Effect.onExit(() => Effect.withFiber((self) => Effect.sync(() => timers.delete(self as Fiber.Fiber<void>))))
      )
      return Effect.forkDetach(timer).pipe(
        Effect.flatMap((fiber) =>
          Effect.sync(() => {
            if (Ref.getUnsafe(state)._tag !== "Open" || isTerminal(entry.record.state)) {
              fiber.interruptUnsafe()
              return
            }
            // a zero grace period may have run out already
            if (fiber.pollUnsafe() !== undefined) return
            control.timer = fiber
            timers.add(fiber)
          })
        )
      )
    }

    /** The sync part of a cancel request: the move and the signal; returns what the policy does next. */
    const beginCancel = (
      entry: TaskEntry,
      reason: Option.Option<string>,
      now: DateTime.Utc
    ): Result.Result<Effect.Effect<BackgroundTaskRecord>, InvalidTransition> => {
      const moved = registry.move(entry, "cancel_requested", now, { reason })
      if (Result.isFailure(moved)) return Result.fail(moved.failure)
      if (entry.handle.signal !== undefined) Deferred.doneUnsafe(entry.handle.signal, Effect.succeed(reason))
      // cooperative: the record as the request left it (the task may end itself at once);
      // otherwise the record once the policy has acted
      return Result.succeed(
        entry.record.cancelPolicy === "cooperative"
          ? Effect.as(startGracePeriod(entry), moved.success)
          : Effect.andThen(hardCancel(entry, false), Effect.sync(() => entry.record))
      )
    }

    const finishManaged = (entry: TaskEntry, exit: Exit.Exit<unknown, unknown>) =>
      internal((now) =>
        Effect.sync(() => {
          entry.handle.fiber = undefined
          stopTimer(entry.handle)
          if (isTerminal(entry.record.state)) return
          const outcome = Exit.isSuccess(exit) ? "success" : Cause.hasInterruptsOnly(exit.cause) ? "interrupt" : "failure"
          const summary = Exit.isSuccess(exit)
            ? (typeof exit.value === "string" ? Option.some(exit.value) : Option.none())
            : outcome === "failure"
            ? Option.some(causeMessage(exit.cause))
            : Option.none()
          registry.move(entry, Lifecycle.exitState(outcome, entry.record.state), now, { summary })
        })
      )

    const runManaged = <A, E, R>(entry: TaskEntry, task: Effect.Effect<A, E, R>) =>
      Effect.withFiber((self): Effect.Effect<A, E, R> => {
        // a task cancelled, or a host closed, before the fiber started never runs
        if (Ref.getUnsafe(state)._tag !== "Open" || isTerminal(entry.record.state)) return Effect.interrupt
        entry.handle.fiber = self
        return task
      }).pipe(Effect.onExit((exit) => finishManaged(entry, exit)))

    const taskContext = (entry: TaskEntry, signal: Deferred.Deferred<Option.Option<string>>) =>
      TaskContext.of({
        taskId: entry.record.id,
        sessionId: Effect.sync(() => entry.record.scope.sessionId),
        progress: (message) =>
          internal(() =>
            Effect.sync(() => {
              if (!isTerminal(entry.record.state)) registry.progress(entry, String(message))
            })
          ),
        setLiveState: (liveState) => internal((now) => Effect.sync(() => moveLive(entry, liveState, now))),
        cancelRequested: Deferred.await(signal),
        isCancelRequested: Deferred.isDone(signal)
      })

    const moveLive = (entry: TaskEntry, to: unknown, now: DateTime.Utc) => {
      const from = entry.record.state
      if ((to === "running" || to === "waiting") && (from === "running" || from === "waiting" || from === "pending")) {
        registry.move(entry, to, now)
      }
    }

    // -- validation -------------------------------------------------------------

    const checkSession = (sessionId: unknown): SessionError | undefined =>
      typeof sessionId === "string" && sessionId.length > 0
        ? undefined
        : new SessionError({ message: `invalid session id ${String(JSON.stringify(sessionId))}: expected a non-empty string` })

    const withSession = <A, E, R>(sessionId: string, f: Effect.Effect<A, E, R>) => {
      const invalid = checkSession(sessionId)
      return invalid === undefined ? f : Effect.fail(invalid)
    }

    const decodeRegister = Schema.decodeUnknownResult(Schema.toType(RegisterRequest))
    const decodeRegistration = Schema.decodeUnknownResult(Schema.toType(TaskRegistration))
    const decodeFilter = Schema.decodeUnknownEffect(Schema.toType(TaskFilter))
    const decodeScope = Schema.decodeUnknownEffect(Schema.toType(TaskScope))

    /**
     * Decodes a registration synchronously, inside the step that uses it: the
     * plain shape passes a fast guard, anything else goes through the Schema.
     */
    const registration = <A>(
      what: string,
      input: unknown,
      plain: (input: unknown) => input is A,
      decode: (input: unknown, options: { readonly errors: "all" }) => Result.Result<A, Schema.SchemaError>
    ): Result.Result<A, RegistrationError> =>
      plain(input) ? Result.succeed(input) : Result.mapError(
        decode(input, { errors: "all" }),
        (error) => new RegistrationError({ message: `invalid ${what}: ${error.message}` })
      )

    /** The record of a registration step, or its error. */
    const recordOf = <E>(added: Result.Result<TaskEntry, E>): Effect.Effect<BackgroundTaskRecord, E> =>
      Result.isFailure(added) ? Effect.fail(added.failure) : Effect.succeed(added.success.record)

    const filterOf = (filter: TaskFilter | undefined) =>
      filter === undefined ? Effect.succeed(undefined) : decodeFilter(filter, { errors: "all" }).pipe(
        Effect.mapError((error) => new SnapshotError({ message: `invalid task filter: ${error.message}` }))
      )

    const checkOutcomeInput = (
      method: string,
      input: unknown,
      field: "progress" | "summary"
    ): InvokeError | undefined => {
      if (typeof input !== "object" || input === null) {
        return new InvokeError({ message: `${method}: expected an object, got ${typeof input}` })
      }
      const value = (input as Record<string, unknown>)[field]
      return value === undefined || typeof value === "string"
        ? undefined
        : new InvokeError({ message: `${method}: ${field} must be a string, got ${typeof value}` })
    }

    /** Registers a new record, in one step. */
    const add = (
      sessionId: string,
      spec: TaskRegistration & { readonly attempt?: TaskAttempt },
      state: TaskState,
      now: DateTime.Utc,
      handle: Control
    ) => registry.add((revision) => newRecord(sessionId, spec, state, now, revision), spec.id, sessionId, handle)

    const newRecord = (
      sessionId: string,
      spec: TaskRegistration & { readonly attempt?: TaskAttempt },
      state: TaskState,
      now: DateTime.Utc,
      revision: number
    ): BackgroundTaskRecord => ({
      id: spec.id,
      kind: spec.kind,
      producer: spec.producer,
      scope: { sessionId },
      parentTaskId: Option.fromUndefinedOr(spec.parentTaskId),
      childSessionId: Option.fromUndefinedOr(spec.childSessionId),
      state,
      cancelPolicy: spec.cancelPolicy ?? "cooperative",
      closePolicy: spec.closePolicy ?? "keep",
      attempt: spec.attempt ?? defaultAttempt,
      result: Option.none(),
      failure: Option.none(),
      createdAt: now,
      updatedAt: now,
      completedAt: Option.none(),
      revision
    })

    const control = (owner: Control["owner"], cancel?: Effect.Effect<void>): Control => ({
      owner,
      fiber: undefined,
      signal: owner === "host" ? Deferred.makeUnsafe<Option.Option<string>>() : undefined,
      cancel,
      cancelled: undefined,
      timer: undefined
    })

    /**
     * Runs `f` on the record an unscoped call names, in the same synchronous
     * step as the lookup (so the record cannot change in between).
     */
    const withTask = <A, E>(
      taskId: string,
      f: (entry: TaskEntry) => Effect.Effect<A, E>
    ): Effect.Effect<A, E | TaskNotFound> => {
      const entry = typeof taskId === "string" ? registry.resolve(taskId) : undefined
      return entry === undefined ? Effect.fail(new TaskNotFound({ taskId: String(taskId) })) : f(entry)
    }

    /**
     * Subscribes, and takes what `snapshot` reads, in one step: the snapshot is
     * the state as of `seq`, the subscription gets every event after it.
     */
    const attach = <S>(filter: TaskFilter | undefined, snapshot: (filter: TaskFilter | undefined) => S) =>
      Effect.flatMap(filterOf(filter), (valid) =>
        Effect.acquireRelease(
          whenOpen(() => {
            const subscription = hub.attach(valid)
            if (subscription === undefined) return Effect.fail(closedError)
            return Effect.succeed({
              filter: valid,
              snapshot: snapshot(valid),
              subscription: { seq: registry.lastSeq, stream: subscription.stream, handle: subscription }
            })
          }),
          ({ subscription }) => Effect.sync(() => hub.detach(subscription.handle))
        ))

    // -- retention ----------------------------------------------------------------

    /** Evicts terminal records as they reach `maxAge`, sleeping until the next one is due. */
    const sweep: Effect.Effect<never> = Effect.gen(function*() {
      while (true) {
        const now = yield* Clock.currentTimeMillis
        const due = Ref.getUnsafe(state)._tag === "Closed" ? undefined : registry.evictExpired(now)
        yield* Effect.sleep(Duration.millis((due ?? now + maxAgeMillis) - now))
      }
    })

    // -- shutdown ---------------------------------------------------------------

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Ref.set<HostState>(state, { _tag: "Closing" })
        const fibers: Array<Fiber.Fiber<unknown, unknown>> = [...timers, ...hidden.fibers()]
        for (const entry of registry.liveEntries()) {
          if (entry.handle.fiber !== undefined) fibers.push(entry.handle.fiber)
        }
        yield* Fiber.interruptAll(fibers)
        yield* Effect.forEach(
          registry.liveEntries(),
          (entry) => hardCancel(entry, true).pipe(Effect.timeoutOption(grace)),
          { concurrency: "unbounded", discard: true }
        )
        yield* internal((now) =>
          Effect.sync(() => {
            for (const entry of registry.liveEntries()) markCancelled(entry, now)
            hub.close()
          })
        )
        yield* Ref.set<HostState>(state, { _tag: "Closed" })
      })
    )
    // forked after the finalizer above, so it is interrupted before that runs
    if (Number.isFinite(maxAgeMillis)) yield* Effect.forkScoped(sweep)

    const spawnManaged = <A, E, R>(
      sessionId: string,
      spec: TaskRegistration,
      task: Effect.Effect<A, E, R>
    ) =>
      withSession(
        sessionId,
        atomicWith(() => registration("task registration", spec, isPlainRegistration, decodeRegistration), (valid, now) => {
          const handle = control("host")
          const added = add(sessionId, valid, "running", now, handle)
          if (Result.isFailure(added)) return Effect.fail(added.failure)
          const entry = added.success
          // the task gets its own context and a scope that closes when it ends;
          // `Exclude<Exclude<R, A>, B>` is `Exclude<R, A | B>`, which TypeScript cannot see
          const run = Effect.scoped(
            Effect.provideService(task, TaskContext, taskContext(entry, handle.signal!))
          ) as Effect.Effect<A, E, Exclude<R, TaskContext | Scope.Scope>>
          return Effect.as(Effect.forkDetach(runManaged(entry, run)), entry.record)
        })
      )

    // -- the service --------------------------------------------------------------

    const service: BackgroundTaskHostService = {
      register: (request) =>
        atomicWith(
          () => registration("registration", request, isPlainRegisterRequest, decodeRegister),
          (req, now) => recordOf(add(req.scope.sessionId, req, "pending", now, control("caller")))
        ),

      update: (taskId, update) => {
        const invalid = checkOutcomeInput("update", update, "progress")
        if (invalid !== undefined) return Effect.fail(invalid)
        return atomic((now) =>
          withTask(taskId, (entry) => {
            const from = entry.record.state
            const to: unknown = update.state
            if (isTerminal(from) || (to !== undefined && (!Lifecycle.isTaskState(to) || isTerminal(to)))) {
              return Effect.fail(new InvalidTransition({ taskId, from, to: Lifecycle.describeState(to ?? from) }))
            }
            const progress = update.progress
            if (to === "cancel_requested" && from !== to) {
              const begun = beginCancel(entry, Option.none(), now)
              if (Result.isFailure(begun)) return Effect.fail(begun.failure)
              if (progress !== undefined) registry.progress(entry, progress)
              return begun.success
            }
            if (to !== undefined) {
              const moved = registry.move(entry, to, now)
              if (Result.isFailure(moved)) return Effect.fail(moved.failure)
            }
            if (progress !== undefined) registry.progress(entry, progress)
            return Effect.succeed(entry.record)
          })
        )
      },

      complete: (taskId, completion) => {
        const invalid = checkOutcomeInput("complete", completion, "summary")
        if (invalid !== undefined) return Effect.fail(invalid)
        return atomic((now) =>
          withTask(taskId, (entry) => {
            const to: unknown = completion.state
            if (!Lifecycle.isTaskState(to) || !isTerminal(to)) {
              return Effect.fail(new InvalidTransition({ taskId, from: entry.record.state, to: Lifecycle.describeState(to) }))
            }
            const moved = registry.move(entry, to, now, { summary: Option.fromUndefinedOr(completion.summary) })
            if (Result.isFailure(moved)) return Effect.fail(moved.failure)
            return entry.handle.fiber === undefined && entry.handle.timer === undefined
              ? Effect.succeed(moved.success)
              : Effect.as(stopTask(entry), moved.success)
          })
        )
      },

      requestCancel: (taskId, reason) =>
        atomic((now) =>
          withTask(taskId, (entry) => {
            if (entry.record.state === "cancel_requested") return Effect.succeed(entry.record)
            const begun = beginCancel(entry, Option.fromUndefinedOr(reason), now)
            return Result.isFailure(begun) ? Effect.fail(begun.failure) : begun.success
          })
        ),

      get: (taskId) =>
        whenOpen(() => Effect.succeed(Option.fromUndefinedOr(registry.resolve(taskId)?.record))),

      list: (filter) => Effect.flatMap(filterOf(filter), (valid) => whenOpen(() => Effect.succeed(registry.list(valid)))),

      transfer: (taskId, scope) =>
        decodeScope(scope).pipe(
          Effect.mapError((error) => new SessionError({ message: `invalid target scope: ${error.message}` })),
          Effect.flatMap((target) =>
            atomic((now) =>
              withTask(taskId, (entry) =>
                Effect.fromResult(registry.transfer([entry], target.sessionId, now)).pipe(
                  Effect.map(() => entry.record)
                ))
            )
          )
        ),

      subscribe: (filter) => Effect.map(attach(filter, () => undefined), ({ subscription }) => subscription.stream),

      watch: (filter) =>
        Effect.map(attach(filter, (valid) => registry.list(valid)), ({ filter, snapshot, subscription }) => ({
          filter,
          snapshot,
          seq: subscription.seq,
          events: subscription.stream
        })),

      stats: whenOpen(() => Effect.sync(() => registry.stats(hub.subscriberCount))),

      spawnHidden: (sessionId, label, task) =>
        withSession(sessionId, whenOpen(() => hidden.spawn(sessionId, String(label), task))),

      awaitHidden: (sessionId) => withSession(sessionId, whenOpen(() => hidden.await(sessionId))),

      spawnManaged,

      registerExternal: (sessionId, spec, cancel) =>
        withSession(
          sessionId,
          atomicWith(
            () => registration("task registration", spec, isPlainRegistration, decodeRegistration),
            (valid, now) => recordOf(add(sessionId, valid, "running", now, control("external", cancel)))
          )
        ),

      unregisterExternal: (sessionId, taskId) =>
        withSession(
          sessionId,
          whenOpen(() =>
            Effect.sync(() => {
              const entry = registry.find(sessionId, taskId)
              if (entry?.handle.owner === "external") {
                stopTimer(entry.handle)
                registry.remove(entry)
              }
            })
          )
        ),

      markTerminal: (sessionId, taskId, to) =>
        withSession(
          sessionId,
          atomic((now) => {
            const entry = registry.find(sessionId, taskId)
            if (entry === undefined || isTerminal(entry.record.state)) return Effect.void
            if (!Lifecycle.isTaskState(to) || !isTerminal(to)) return Effect.void
            registry.move(entry, to, now)
            return stopTask(entry)
          })
        ),

      markLiveState: (sessionId, taskId, to) =>
        withSession(
          sessionId,
          atomic((now) =>
            Effect.sync(() => {
              const entry = registry.find(sessionId, taskId)
              if (entry !== undefined) moveLive(entry, to, now)
            })
          )
        ),

      cancelManaged: (sessionId, taskId) =>
        withSession(
          sessionId,
          whenOpen(() => {
            const entry = registry.find(sessionId, taskId)
            return entry === undefined ? Effect.void : hardCancel(entry, true)
          })
        ),

      listManaged: (sessionId) =>
        withSession(sessionId, whenOpen(() => Effect.sync(() => registry.session(sessionId).map((entry) => entry.record)))),

      getManaged: (sessionId, taskId) =>
        withSession(
          sessionId,
          whenOpen(() => Effect.sync(() => Option.fromUndefinedOr(registry.find(sessionId, taskId)?.record)))
        ),

      transferManaged: (fromSessionId, toSessionId, taskIds) =>
        withSession(
          fromSessionId,
          withSession(
            toSessionId,
            atomic((now) => {
              const entries = new Set<TaskEntry>()
              for (const taskId of taskIds) {
                const entry = registry.find(fromSessionId, taskId)
                if (entry !== undefined) entries.add(entry)
              }
              return Effect.asVoid(Effect.fromResult(registry.transfer(Array.from(entries), toSessionId, now)))
            })
          )
        ),

      cancelAllManaged: (sessionId) =>
        withSession(
          sessionId,
          whenOpen(() =>
            Effect.sync(() => registry.liveInSession(sessionId))
          ).pipe(
            Effect.tap((entries) =>
              Effect.forEach(entries, (entry) => hardCancel(entry, true), { concurrency: "unbounded", discard: true })
            ),
            Effect.map((entries) => entries.map((entry) => entry.record))
          )
        )
    }
    return service
  })
