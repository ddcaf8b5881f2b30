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
 * Trees: whatever ends a task other than its own success (a cancellation by
 * any path, a failure) first cancels its live descendants, each one's own
 * descendants before it, so a parent's terminal event always follows its
 * children's.
 *
 * @internal
 */
import { hostname } from "node:os"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  type BackgroundTaskRecord,
  defaultAttempt,
  isTerminal,
  matchesEvent,
  type SubscriptionEvent,
  RegisterRequest,
  type TaskAttempt,
  TaskFilter,
  TaskRegistration,
  TaskScope,
  type TaskState
} from "../BackgroundTask.ts"
import type {
  BackgroundTaskHostOptions,
  BackgroundTaskHostService,
  BackgroundTaskHostStoreOptions,
  RecoveryHandler,
  RecoveryReport,
  RegisterError,
  SessionOptions,
  TaskTree,
  TaskWatch
} from "../BackgroundTaskHost.ts"
import {
  InvalidTransition,
  InvokeError,
  RegistrationError,
  SessionError,
  SnapshotError,
  type TaskAlreadyExists,
  TaskNotFound
} from "../PluginError.ts"
import { TaskContext } from "../TaskContext.ts"
import { type CorruptRecord, LeaseHeld, TaskStoreError, type TaskStoreService } from "../TaskStore.ts"
import { afterStep, EventHub } from "./eventHub.ts"
import { HiddenTasks } from "./hidden.ts"
import { Journal } from "./journal.ts"
import * as Lifecycle from "./lifecycle.ts"
import { causeMessage } from "./messages.ts"
import { optionsOf, storeOptionsOf } from "./options.ts"
import { type Entry, Registry } from "./registry.ts"
import { makeSession } from "./session.ts"
import { type Slot, Slots } from "./slots.ts"
import { Telemetry } from "./telemetry.ts"
import { isPlainRegisterRequest, isPlainRegistration } from "./validate.ts"

/** What the host can act on for one record. */
interface Control {
  readonly owner: "caller" | "host" | "external"
  /** host: the task's fiber, from its launch on. */
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  /** host: completed with the reason when cancellation is requested (after the step that requested it). */
  readonly signal: Deferred.Deferred<Option.Option<string>> | undefined
  /** Set, in the step, when cancellation is requested. */
  requested: boolean
  /** external: the cancel effect, until it is taken (it runs at most once). */
  cancel: Effect.Effect<void> | undefined
  /** external: completed once the cancel effect has run and the record is cancelled. */
  cancelled: Deferred.Deferred<void> | undefined
  /** cooperative cancellation: the grace-period timer. */
  timer: Fiber.Fiber<void> | undefined
  /** The task's grace period: its own, or the host's. */
  readonly grace: Duration.Duration
  /** Why the host stopped the task, for the summary of its record. */
  stopReason: string | undefined
  /** Completed when the record becomes terminal (made when someone waits). */
  ended: Deferred.Deferred<void> | undefined
  /** host: the concurrency slot the running task holds. */
  slot: Slot | undefined
  /** host: starts the task's fiber; set until it is launched. */
  launch: (() => void) | undefined
}

type TaskEntry = Entry<Control>

type HostState = { readonly _tag: "Open" } | { readonly _tag: "Closing" } | { readonly _tag: "Closed" }

const closedError = new SessionError({ message: "the background task host has shut down" })

/** How a tree is cancelled: through each task's policy, or now, whatever the policy. */
type Mode = "policy" | "now"

/** The in-memory host. */
export const make = (
  options: BackgroundTaskHostOptions
): Effect.Effect<BackgroundTaskHostService, SessionError, Scope.Scope> =>
  makeWith(options, undefined) as Effect.Effect<BackgroundTaskHostService, SessionError, Scope.Scope>

/** Why a task left live by a previous process was not re-run. */
const stoppedReason = "host stopped before the task finished"

/** Stored events read per query when `watch` replays. */
const replayPage = 1_000

/**
 * The stored events after `fromSeq` up to `toSeq` that match `filter`, read a
 * page at a time. The store's events have no gap in `seq` but where a row no
 * longer decoded and was quarantined (now or by an earlier read): each such
 * gap stands as a `Lagged` where it is, so the reader knows it missed
 * something there.
 */
const replay = (
  store: TaskStoreService,
  fromSeq: number,
  toSeq: number,
  filter: TaskFilter | undefined
): Stream.Stream<SubscriptionEvent> =>
  Stream.paginate(fromSeq, (from: number) =>
    store.events(from, toSeq, replayPage).pipe(
      Effect.tap(({ quarantined }) =>
        Effect.forEach(quarantined, (error) => Effect.logWarning(`quarantined a stored event: ${error.message}`, error))
      ),
      Effect.map(({ events, lastRead }) => {
        const out: Array<SubscriptionEvent> = []
        const lag = (skipped: number) => {
          if (skipped > 0) out.push({ _tag: "Lagged", skipped })
        }
        let expected = from + 1
        for (const event of events) {
          lag(event.seq - expected)
          if (matchesEvent(filter, event)) out.push(event)
          expected = event.seq + 1
        }
        // nothing more to read: the rest up to `toSeq` is missing; else the
        // page's last rows (up to `lastRead`) did not decode
        const done = lastRead <= from || lastRead >= toSeq
        lag((done ? toSeq : lastRead) - expected + 1)
        return [out, done ? Option.none() : Option.some(lastRead)] as const
      }),
      Effect.orDie
    ))

/** A host on a store: a durable one adds the lease, the journal and recovery. */
export const makeWith = (
  options: BackgroundTaskHostStoreOptions,
  store: TaskStoreService | undefined
): Effect.Effect<BackgroundTaskHostService, SessionError | TaskStoreError | LeaseHeld, Scope.Scope> =>
  Effect.gen(function*() {
    const { grace, limits, maxAge, maxTerminal, retrySchedule, subscriberBuffer } = yield* optionsOf(options)
    const durable = store?.durable === true ? store : undefined
    // checked on any store, so a bad option fails before it matters
    const checkedStoreOptions = store === undefined ? undefined : yield* storeOptionsOf(options)
    const storeOptions = durable === undefined ? undefined : checkedStoreOptions
    const leaseOwner = storeOptions === undefined
      ? ""
      : storeOptions.owner ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`
    const leaseTtl = storeOptions === undefined ? 0 : Duration.toMillis(storeOptions.ttl)
    const hub = new EventHub(subscriberBuffer)
    const journal = durable === undefined ? undefined : new Journal(
      durable,
      Effect.map(Clock.currentTimeMillis, (now) => ({ owner: leaseOwner, expiresAt: now + leaseTtl })),
      (events) => {
        for (const event of events) hub.publish(event)
      }
    )
    /** Waits for the commit of everything written so far; a host whose commits fail stops first (`fence`). */
    const syncWrites: Effect.Effect<void> = journal === undefined ? Effect.void : journal.sync.pipe(
      // a failed commit is a defect here (an interrupted wait is not a failure)
      Effect.tapDefect((defect) => fence(stopReason(defect)))
    )
    const layerContext = yield* Effect.context<never>()
    const telemetry = new Telemetry(layerContext)
    const maxAgeMillis = Duration.toMillis(maxAge)
    const slots = new Slots<TaskEntry>(limits)
    const registry = new Registry<Control>({
      // with a durable store, events reach subscribers once committed (the journal publishes them)
      publish: journal === undefined ? (event) => hub.publish(event) : () => {},
      maxTerminal,
      maxAgeMillis,
      onTerminal: (entry) => ended(entry),
      journal: journal === undefined
        ? undefined
        : (event, entry) => journal.record(event, entry?.order ?? 0, entry?.handle.owner)
    })
    const state = yield* Ref.make<HostState>({ _tag: "Open" })
    const hidden = new HiddenTasks(() => Ref.getUnsafe(state)._tag === "Open")
    const timers = new Set<Fiber.Fiber<void>>()
    const managed = new Set<Fiber.Fiber<unknown, unknown>>()
    const openSessions = new Map<string, { successor: string | undefined }>()

    const isOpen = () => Ref.getUnsafe(state)._tag === "Open"
    /** What a call on a host that is not open fails with. */
    let closedReason = closedError

    // -- atomic steps ---------------------------------------------------------

    /** A public step that reads no clock (lookups, subscriptions): fails with `SessionError` unless the host is open. */
    const whenOpen = <A, E, R>(f: () => Effect.Effect<A, E, R>) =>
      Effect.suspend((): Effect.Effect<A, E | SessionError, R> => isOpen() ? f() : Effect.fail(closedReason))

    // The time of a step, as a `DateTime.Utc`: steps in the same millisecond share one (it is immutable).
    let lastMillis = Number.NaN
    let lastNow: DateTime.Utc | undefined
    const nowOf = (fiber: Fiber.Fiber<unknown, unknown>): DateTime.Utc => {
      const millis = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      if (millis !== lastMillis || lastNow === undefined) {
        lastMillis = millis
        lastNow = DateTime.makeUnsafe(millis)
      }
      return lastNow
    }

    /**
     * A public step that writes: as `whenOpen`, with the current time for the
     * records it changes. One primitive: the step runs inside the fiber lookup.
     */
    const atomic = <A, E, R>(f: (now: DateTime.Utc) => Effect.Effect<A, E, R>) =>
      Effect.withFiber((fiber): Effect.Effect<A, E | SessionError, R> =>
        isOpen() ? f(nowOf(fiber)) : Effect.fail(closedReason)
      )

    /**
     * `atomic`, for input that is decoded first (bad input fails before a
     * closed host does); `f` also gets the caller's context.
     */
    const atomicWith = <I, E1, A, E, R>(
      input: () => Result.Result<I, E1>,
      f: (input: I, now: DateTime.Utc, context: Context.Context<never>) => Effect.Effect<A, E, R>
    ) =>
      Effect.withFiber((fiber): Effect.Effect<A, E1 | E | SessionError, R> => {
        const valid = input()
        if (Result.isFailure(valid)) return Effect.fail(valid.failure)
        return isOpen() ? f(valid.success, nowOf(fiber), fiber.context) : Effect.fail(closedReason)
      })

    /** An internal step (a fiber's exit, a cancel effect's end): also runs while closing. */
    const internal = (f: (now: DateTime.Utc) => Effect.Effect<void>) =>
      Effect.withFiber((fiber) => Ref.getUnsafe(state)._tag === "Closed" ? Effect.void : f(nowOf(fiber)))

    // -- the end of a record ----------------------------------------------------

    /** Runs in the step that made a record terminal (see `Registry.onTerminal`). */
    const ended = (entry: TaskEntry) => {
      const control = entry.handle
      stopTimer(control)
      const endedSignal = control.ended
      if (endedSignal !== undefined) afterStep(() => Deferred.doneUnsafe(endedSignal, Effect.void))
      telemetry.ended(entry.record)
      if (control.slot !== undefined) {
        slots.release(control.slot)
        control.slot = undefined
        // a closing host starts nothing: queued tasks end cancelled, never run
        if (isOpen()) startQueued(entry.record.updatedAt)
      }
    }

    /** Waits until a record is terminal. */
    const awaitEnd = (entry: TaskEntry): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (isTerminal(entry.record.state)) return Effect.void
        return Deferred.await(entry.handle.ended ??= Deferred.makeUnsafe<void>())
      })

    /** The summary the host gives a record it cancels: why, when it knows. */
    const stopSummary = (control: Control) => Option.fromUndefinedOr(control.stopReason)

    // (a terminal move stops the record's grace timer: see `ended`)
    const markCancelled = (entry: TaskEntry, now: DateTime.Utc) => {
      if (!isTerminal(entry.record.state)) registry.move(entry, "cancelled", now, { summary: stopSummary(entry.handle) })
    }

    const stopTimer = (control: Control) => {
      const timer = control.timer
      if (timer === undefined) return
      control.timer = undefined
      timers.delete(timer)
      timer.interruptUnsafe()
    }

    // -- fibers -----------------------------------------------------------------

    /** Interrupts a fiber and waits for it; a fiber that cancels itself just stops. */
    const interruptFiber = (fiber: Fiber.Fiber<unknown, unknown>) =>
      Effect.withFiber((current) => current === fiber ? Effect.interrupt : Fiber.interrupt(fiber))

    /** After a terminal move by someone else: stop the task's fiber, if it runs. */
    const stopTask = (entry: TaskEntry): Effect.Effect<void> => {
      const fiber = entry.handle.fiber
      return fiber === undefined ? Effect.void : interruptFiber(fiber)
    }

    /** The live tasks registered under this one. */
    const liveChildren = (entry: TaskEntry): Array<TaskEntry> => {
      const out: Array<TaskEntry> = []
      if (entry.children !== undefined) {
        for (const child of entry.children) if (!isTerminal(child.record.state)) out.push(child)
      }
      return out
    }

    /** Cancels a task's live descendants, each one's own before it, and waits until they have ended. */
    const cancelChildren = (entry: TaskEntry, mode: Mode, reason: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const children = liveChildren(entry)
        return children.length === 0
          ? Effect.void
          : Effect.forEach(children, (child) => cancelTree(child, mode, reason), {
            concurrency: "unbounded",
            discard: true
          })
      })

    /** Cancels a task after its descendants, and waits until it has ended (or its policy has acted). */
    const cancelTree = (entry: TaskEntry, mode: Mode, reason: string): Effect.Effect<void> =>
      Effect.andThen(
        cancelChildren(entry, mode, reason),
        mode === "now" ? hardCancelSelf(entry, true) : cancelThroughPolicy(entry, reason)
      )

    /**
     * Cancels through the task's handle: interrupts its fiber or runs its
     * cancel effect, after its descendants. With `force`, a record with
     * nothing to act on is marked `cancelled` too; without, it is left as it is.
     */
    const hardCancel = (entry: TaskEntry, force: boolean): Effect.Effect<void> =>
      Effect.andThen(cancelChildren(entry, "now", "parent cancelled"), hardCancelSelf(entry, force))

    const hardCancelSelf = (entry: TaskEntry, force: boolean): Effect.Effect<void> =>
      internal((now) => {
        if (isTerminal(entry.record.state)) return Effect.void
        const control = entry.handle
        switch (control.owner) {
          case "host": {
            if (control.fiber !== undefined) return interruptFiber(control.fiber)
            // queued, not launched: it never will be
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
                    afterStep(() => Deferred.doneUnsafe(cancelled, Effect.void))
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

    /**
     * A cancel request with a reason, then the policy, then a wait for the end:
     * a cooperative task gets its grace period, and whatever is still live after
     * it (a caller-owned record has nothing to act on) is marked `cancelled`.
     */
    const cancelThroughPolicy = (entry: TaskEntry, reason: string): Effect.Effect<void> =>
      internal((now) => {
        if (isTerminal(entry.record.state)) return Effect.void
        const control = entry.handle
        control.stopReason ??= reason
        // a closing host gives no grace period: everything stops now
        if (!isOpen()) return hardCancelSelf(entry, true)
        // the request and what the policy does first (a grace timer, a hard cancel)
        let policy: Effect.Effect<unknown> = startGracePeriod(entry)
        if (entry.record.state !== "cancel_requested") {
          const begun = beginCancel(entry, Option.some(reason), now)
          if (Result.isFailure(begun)) return Effect.void
          policy = begun.success
        }
        return Effect.andThen(
          policy,
          Effect.suspend(() => {
            if (isTerminal(entry.record.state)) return Effect.void
            // a grace timer runs: it ends the task, and its record says why
            if (control.timer !== undefined) return awaitEnd(entry)
            if (entry.record.cancelPolicy !== "cooperative") return hardCancelSelf(entry, true)
            // nothing the host can act on: the owner has the grace period to end it
            return Effect.andThen(
              Effect.timeoutOption(awaitEnd(entry), control.grace),
              Effect.suspend(() => {
                if (isTerminal(entry.record.state)) return Effect.void
                control.stopReason = lateReason(control)
                return hardCancelSelf(entry, true)
              })
            )
          })
        )
      })

    /** The stop reason of a task that outlived its grace period. */
    const lateReason = (control: Control) => {
      const late = `did not stop within its ${Duration.format(control.grace)} grace period`
      return control.stopReason === undefined ? late : `${control.stopReason}; ${late}`
    }

    /** Starts the cooperative grace period: when it ends, the host cancels the task itself. */
    const startGracePeriod = (entry: TaskEntry): Effect.Effect<void> => {
      const control = entry.handle
      const actionable = control.owner === "host" || (control.owner === "external" && control.cancel !== undefined)
      if (!actionable || control.timer !== undefined) return Effect.void
      const timer = Effect.sleep(control.grace).pipe(
        Effect.andThen(Effect.suspend(() => {
          control.timer = undefined
          control.stopReason = lateReason(control)
          return hardCancel(entry, false)
        })),
        Effect.onExit(() => Effect.withFiber((self) => Effect.sync(() => timers.delete(self as Fiber.Fiber<void>))))
      )
      return Effect.forkDetach(timer).pipe(
        Effect.flatMap((fiber) =>
          Effect.sync(() => {
            if (!isOpen() || isTerminal(entry.record.state)) {
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
      const control = entry.handle
      control.requested = true
      const signal = control.signal
      if (signal !== undefined) afterStep(() => Deferred.doneUnsafe(signal, Effect.succeed(reason)))
      if (Option.isSome(reason)) control.stopReason ??= reason.value
      // a queued managed task never started: nothing to wait for
      const queued = control.owner === "host" && control.fiber === undefined
      // cooperative: the record as the request left it (the task may end itself at once);
      // otherwise the record once the policy has acted
      return Result.succeed(
        entry.record.cancelPolicy === "cooperative" && !queued
          ? Effect.as(startGracePeriod(entry), moved.success)
          : Effect.andThen(hardCancelSelf(entry, queued), Effect.sync(() => entry.record))
      )
    }

    // -- managed tasks ------------------------------------------------------------

    const finishManaged = (entry: TaskEntry, exit: Exit.Exit<unknown, unknown>) =>
      Effect.suspend(() => {
        const control = entry.handle
        if (control.fiber !== undefined) managed.delete(control.fiber)
        control.fiber = undefined
        stopTimer(control)
        if (isTerminal(entry.record.state)) return Effect.void
        const outcome = Exit.isSuccess(exit) ? "success" : Cause.hasInterruptsOnly(exit.cause) ? "interrupt" : "failure"
        const summary = Exit.isSuccess(exit)
          ? (typeof exit.value === "string" ? Option.some(exit.value) : Option.none())
          : outcome === "failure"
          ? Option.some(causeMessage(exit.cause))
          : stopSummary(control)
        // a failed or cancelled parent (a task that returns after a cancel request
        // ends cancelled) ends after its children
        const children = Lifecycle.exitState(outcome, entry.record.state) === "completed"
          ? Effect.void
          : cancelChildren(entry, "policy", outcome === "failure" ? "parent failed" : "parent cancelled")
        return Effect.andThen(
          children,
          internal((now) =>
            Effect.sync(() => {
              if (isTerminal(entry.record.state)) return
              registry.move(entry, Lifecycle.exitState(outcome, entry.record.state), now, { summary })
            })
          )
        )
      })

    /** What a managed task runs with: its body, its limits, the caller's context. */
    interface Launch {
      readonly run: Effect.Effect<unknown, unknown>
      readonly timeout: Duration.Duration | undefined
      readonly schedule: Schedule.Schedule<unknown, unknown>
      readonly context: Context.Context<never>
    }

    /** One attempt: the body, bounded by the timeout, in a `background_task` span. */
    const attempt = (entry: TaskEntry, launch: Launch): Effect.Effect<unknown, unknown> => {
      const { record } = entry
      const body = launch.timeout === undefined
        ? launch.run
        : Effect.flatMap(
          Effect.timeoutOption(launch.run, launch.timeout),
          (result) =>
            Option.isSome(result)
              ? Effect.succeed(result.value)
              : Effect.fail(`timed out after ${Duration.format(launch.timeout!)}`)
        )
      return Effect.withSpan(body, "background_task", {
        // a stack trace per span costs more than the rest of a short task
        captureStackTrace: false,
        attributes: {
          task_id: record.id,
          kind: record.kind,
          session_id: record.scope.sessionId,
          producer: record.producer,
          attempt: record.attempt.attempt
        }
      })
    }

    /** Whether a failed attempt may be retried now. */
    const retryable = (entry: TaskEntry, exit: Exit.Exit<unknown, unknown>): exit is Exit.Failure<unknown, unknown> => {
      if (Exit.isSuccess(exit) || !Cause.hasFails(exit.cause) || !isOpen()) return false
      const { attempt, state } = entry.record
      if (state !== "running" && state !== "waiting") return false
      return Option.isSome(attempt.maxAttempts) && attempt.attempt + 1 < attempt.maxAttempts.value
    }

    /** The attempts of a managed task: each failure retried after the schedule's delay while attempts remain. */
    const attempts = (entry: TaskEntry, launch: Launch) =>
      Effect.gen(function*() {
        let step: ((now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>) | undefined
        while (true) {
          const exit = yield* Effect.exit(attempt(entry, launch))
          if (!retryable(entry, exit)) return yield* exit
          step ??= yield* Schedule.toStep(launch.schedule)
          const now = yield* Clock.currentTimeMillis
          const next = yield* Effect.exit(step(now, Cause.squash(exit.cause)))
          // the schedule is done: the last failure stands
          if (Exit.isFailure(next)) return yield* exit
          const delay = next.value[1]
          const message = causeMessage(exit.cause)
          yield* internal((now) =>
            Effect.sync(() => {
              const { attempt } = entry.record
              registry.update(entry, (record) => ({
                ...record,
                state: "waiting",
                attempt: { ...attempt, attempt: attempt.attempt + 1 }
              }), now)
              registry.progress(
                entry,
                `attempt ${attempt.attempt + 1} of ${Option.getOrElse(attempt.maxAttempts, () => 1)} failed: ${message}; retrying in ${
                  Duration.format(delay)
                }`
              )
            })
          )
          // a cancel request ends the wait at once
          const signal = entry.handle.signal
          yield* signal === undefined
            ? Effect.sleep(delay)
            : Effect.raceFirst(Effect.sleep(delay), Effect.asVoid(Deferred.await(signal)))
          const resumed = yield* Effect.withFiber((fiber) =>
            Effect.sync(() => {
              if (entry.record.state !== "waiting" || !isOpen()) return false
              registry.move(entry, "running", nowOf(fiber))
              return true
            })
          )
          // cancelled while waiting for the next attempt
          if (!resumed) return yield* Effect.interrupt
        }
      })

    /**
     * Launches a managed task's fiber, from inside a step: the fiber exists at
     * once (so shutdown and cancellation can reach it) and starts running
     * after the step, with the caller's context.
     */
    const launchTask = (entry: TaskEntry, launch: Launch): void => {
      const control = entry.handle
      control.launch = undefined
      const body = Effect.suspend(() => {
        // a task cancelled, or a host closed, before its fiber ran never runs
        if (!isOpen() || isTerminal(entry.record.state)) return Effect.interrupt
        // one attempt allowed: no retry loop to run
        const { maxAttempts } = entry.record.attempt
        return Option.isNone(maxAttempts) || maxAttempts.value <= 1 ? attempt(entry, launch) : attempts(entry, launch)
      })
      const fiber = Effect.runForkWith(launch.context)(
        Effect.andThen(Effect.yieldNow, body).pipe(Effect.onExit((exit) => finishManaged(entry, exit)))
      )
      if (fiber.pollUnsafe() === undefined) {
        control.fiber = fiber
        managed.add(fiber)
      }
    }

    /** Starts the queued tasks that fit now that a slot is free. */
    const startQueued = (now: DateTime.Utc) => {
      for (const entry of slots.takeStartable()) {
        entry.handle.slot = { sessionId: entry.record.scope.sessionId, kind: entry.record.kind }
        registry.move(entry, "running", now)
        entry.handle.launch?.()
      }
    }

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
        isCancelRequested: Effect.sync(() => entry.handle.requested)
      })

    const moveLive = (entry: TaskEntry, to: unknown, now: DateTime.Utc) => {
      const from = entry.record.state
      if (
        (to === "running" || to === "waiting") && (from === "running" || from === "waiting" || from === "pending") &&
        !isQueued(entry)
      ) {
        registry.move(entry, to, now)
      }
    }

    /** A managed task waiting for a concurrency slot: only a free slot starts it. */
    const isQueued = (entry: TaskEntry) => entry.handle.owner === "host" && entry.handle.launch !== undefined

    /**
     * Transfers records (all or none); a running task's concurrency slot goes
     * with it, so its old session may start a queued task.
     */
    const transferEntries = (entries: ReadonlyArray<TaskEntry>, to: string, now: DateTime.Utc) => {
      const moved = registry.transfer(entries, to, now)
      if (Result.isFailure(moved)) return moved
      // a moved slot frees one in the old session; a moved queued task may fit in the new one
      let check = false
      for (const entry of entries) {
        if (isQueued(entry)) check = true
        const slot = entry.handle.slot
        if (slot === undefined || slot.sessionId === to) continue
        entry.handle.slot = slots.moveSession(slot, to)
        check = true
      }
      if (check && isOpen()) startQueued(now)
      return moved
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

    type Spec = TaskRegistration & { readonly attempt?: TaskAttempt }

    const attemptOf = (spec: Spec): TaskAttempt => {
      const base = spec.attempt ?? defaultAttempt
      if (spec.maxAttempts === undefined && spec.idempotencyKey === undefined) return base
      return {
        attempt: base.attempt,
        maxAttempts: spec.maxAttempts === undefined ? base.maxAttempts : Option.some(spec.maxAttempts),
        idempotencyKey: spec.idempotencyKey === undefined ? base.idempotencyKey : Option.some(spec.idempotencyKey)
      }
    }

    const newRecord = (
      sessionId: string,
      spec: Spec,
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
      attempt: attemptOf(spec),
      result: Option.none(),
      failure: Option.none(),
      createdAt: now,
      updatedAt: now,
      completedAt: Option.none(),
      revision
    })

    const control = (owner: Control["owner"], spec: Spec, cancel?: Effect.Effect<void>): Control => ({
      owner,
      fiber: undefined,
      signal: owner === "host" ? Deferred.makeUnsafe<Option.Option<string>>() : undefined,
      requested: false,
      cancel,
      cancelled: undefined,
      timer: undefined,
      grace: spec.cancelGracePeriod === undefined ? grace : Duration.fromInputUnsafe(spec.cancelGracePeriod),
      stopReason: undefined,
      ended: undefined,
      slot: undefined,
      launch: undefined
    })

    /** The live parent a registration names, or why it cannot be one. */
    const parentOf = (spec: Spec): Result.Result<TaskEntry | undefined, TaskNotFound | InvalidTransition> => {
      const parentId = spec.parentTaskId
      if (parentId === undefined) return Result.succeed(undefined)
      const parent = registry.findLive(parentId)
      if (parent !== undefined) return Result.succeed(parent)
      const ended = registry.resolve(parentId)
      return Result.fail(
        ended === undefined
          ? new TaskNotFound({ taskId: parentId })
          : new InvalidTransition({ taskId: parentId, from: ended.record.state, to: `parent of ${spec.id}` })
      )
    }

    /**
     * Registers a task in one step: its parent, its idempotency key, its
     * record. `existing` is set when a live task held the key.
     */
    const addTask = (
      sessionId: string,
      spec: Spec,
      state: TaskState,
      now: DateTime.Utc,
      handle: Control
    ): Result.Result<{ readonly entry: TaskEntry; readonly existing: boolean }, TaskNotFound | InvalidTransition | TaskAlreadyExists> => {
      const key = spec.idempotencyKey ?? Option.getOrUndefined(spec.attempt?.idempotencyKey ?? Option.none())
      if (key !== undefined) {
        const holder = registry.findByKey(key)
        if (holder !== undefined) return Result.succeed({ entry: holder, existing: true })
      }
      const parent = parentOf(spec)
      if (Result.isFailure(parent)) return Result.fail(parent.failure)
      const added = registry.add(
        (revision) => newRecord(sessionId, spec, state, now, revision),
        spec.id,
        sessionId,
        handle,
        parent.success
      )
      if (Result.isFailure(added)) return Result.fail(added.failure)
      telemetry.registered(added.success.record)
      return Result.succeed({ entry: added.success, existing: false })
    }

    const recordOf = <E>(
      added: Result.Result<{ readonly entry: TaskEntry }, E>
    ): Effect.Effect<BackgroundTaskRecord, E> =>
      Result.isFailure(added) ? Effect.fail(added.failure) : Effect.succeed(added.success.entry.record)

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

    const treeOf = (entry: TaskEntry): TaskTree => ({
      record: entry.record,
      children: entry.children === undefined
        ? []
        : Array.from(entry.children).sort((a, b) => a.order - b.order).map(treeOf)
    })

    // -- sessions -----------------------------------------------------------------

    /**
     * Applies the close policies of a session's live tasks: `keep` runs on,
     * `transfer` moves to the successor (or is cancelled without one), `cancel`
     * is cancelled through its policy. Waits for the cancellations.
     */
    const closeSession = (sessionId: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const session = openSessions.get(sessionId)
        openSessions.delete(sessionId)
        if (session === undefined || !isOpen()) return Effect.void
        const successor = session.successor
        return internal((now) => {
          const cancel: Array<readonly [TaskEntry, string]> = []
          for (const entry of registry.liveInSession(sessionId)) {
            switch (entry.record.closePolicy) {
              case "keep":
                break
              case "cancel":
                cancel.push([entry, "session closed"])
                break
              case "transfer": {
                if (successor === undefined) {
                  cancel.push([entry, "session closed without a successor"])
                  break
                }
                const moved = transferEntries([entry], successor, now)
                if (Result.isFailure(moved)) {
                  cancel.push([entry, `session closed; transfer to ${successor} failed: ${moved.failure.message}`])
                }
              }
            }
          }
          return Effect.forEach(cancel, ([entry, reason]) => cancelTree(entry, "policy", reason), {
            concurrency: "unbounded",
            discard: true
          })
        })
      }).pipe(Effect.ensuring(syncWrites))

    /** Why `successor` cannot take over `sessionId`'s tasks, if it cannot. */
    const successorError = (sessionId: string, successor: string): SessionError | undefined =>
      checkSession(successor) ??
        (successor === sessionId
          ? new SessionError({ message: `session ${JSON.stringify(sessionId)} cannot be its own successor` })
          : undefined)

    const openSession = (sessionId: string, sessionOptions: SessionOptions = {}) =>
      withSession(
        sessionId,
        Effect.acquireRelease(
          whenOpen(() => {
            if (openSessions.has(sessionId)) {
              return Effect.fail(new SessionError({ message: `session ${JSON.stringify(sessionId)} is already open` }))
            }
            const successor = sessionOptions.successor
            const invalid = successor === undefined ? undefined : successorError(sessionId, successor)
            if (invalid !== undefined) return Effect.fail(invalid)
            const state = { successor }
            openSessions.set(sessionId, state)
            return Effect.succeed(state)
          }),
          () => closeSession(sessionId)
        ).pipe(
          Effect.map((sessionState) =>
            makeSession(service, sessionId, {
              isOpen: () => openSessions.get(sessionId) === sessionState,
              handoff: (successor) => {
                const invalid = successorError(sessionId, successor)
                if (invalid !== undefined) return invalid
                sessionState.successor = successor
                return undefined
              }
            })
          )
        )
      )

    // -- the durable store: lease, writer, records back -------------------------

    /** Why a failed commit stops the host. */
    const stopReason = (error: unknown) =>
      error instanceof LeaseHeld
        ? `another host has taken its store's lease (${error.message})`
        : `writing to its store failed (${error instanceof Error ? error.message : String(error)})`

    /**
     * Stops a durable host that can no longer own its store (its lease is
     * gone, or it cannot write): every task fiber is interrupted, calls fail
     * with a `SessionError` saying why, subscribers' streams end. Nothing more
     * is written: the tasks stay live in the store, the next lease holder's to
     * recover.
     */
    const fence = (why: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!isOpen()) return Effect.void
        const message = `the background task host ${leaseOwner} stopped: ${why}`
        closedReason = new SessionError({ message })
        // the tasks' ends below are not written: the store keeps them live, to be recovered
        journal?.stop(new TaskStoreError({ operation: "write", message }))
        return Ref.set<HostState>(state, { _tag: "Closing" }).pipe(
          Effect.andThen(Effect.logError(message)),
          Effect.andThen(Effect.suspend(() => Fiber.interruptAll([...timers, ...hidden.fibers(), ...managed]))),
          Effect.andThen(Effect.sync(() => hub.close()))
        )
      })


    const report: { respawned: Array<string>; failed: Array<string>; cancelled: Array<string>; quarantined: Array<CorruptRecord> } = {
      respawned: [],
      failed: [],
      cancelled: [],
      quarantined: []
    }
    let restoredLive: Array<TaskEntry> = []
    if (durable !== undefined && journal !== undefined && storeOptions !== undefined) {
      const takeLease = Effect.flatMap(Clock.currentTimeMillis, (now) => durable.acquireLease(leaseOwner, now, now + leaseTtl))
      let told = false
      yield* storeOptions.onHeld === "fail"
        ? takeLease
        : takeLease.pipe(
          Effect.tapError((error) => {
            if (told || error._tag !== "LeaseHeld") return Effect.void
            told = true
            return Effect.logInfo(`waiting for the task store: ${error.message}`)
          }),
          Effect.retry({
            while: (error) => error._tag === "LeaseHeld",
            schedule: Schedule.spaced(Duration.min(storeOptions.renewEvery, Duration.seconds(1)))
          })
        )
      // closed last: after the shutdown below has written its last batch
      yield* Effect.addFinalizer(() => Effect.ignore(durable.releaseLease(leaseOwner)))
      // when the lease we hold runs out, unless renewed
      let leaseExpiry = (yield* Clock.currentTimeMillis) + leaseTtl
      const renewEveryMillis = Duration.toMillis(storeOptions.renewEvery)
      const renew = Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const renewed = yield* Effect.result(durable.renewLease(leaseOwner, now + leaseTtl))
        if (renewed._tag === "Success" && renewed.success) {
          leaseExpiry = now + leaseTtl
          return
        }
        if (renewed._tag === "Success") return yield* fence("another host has taken its store's lease")
        yield* Effect.logWarning(`renewing the store's lease failed: ${renewed.failure.message}`)
        // stop before the lease can run out and another host take these tasks
        if (now + renewEveryMillis >= leaseExpiry) {
          yield* fence(`it could not renew its store's lease before it runs out (${renewed.failure.message})`)
        }
      }).pipe(
        Effect.repeat(Schedule.spaced(storeOptions.renewEvery)),
        Effect.delay(storeOptions.renewEvery)
      )
      yield* Effect.forkScoped(renew)
      yield* Effect.forkScoped(journal.run)
      // a commit that failed for good, with no call waiting for it: the host stops
      yield* Effect.forkScoped(Effect.flatMap(Deferred.await(journal.failed), (error) => fence(stopReason(error))))
      const stored = yield* durable.load
      report.quarantined.push(...stored.quarantined)
      for (const error of stored.quarantined) {
        yield* Effect.logWarning(`quarantined a stored row: ${error.message}`, error)
      }
      const restored = registry.restore(
        stored.tasks.map(({ order, owner, record }) => ({
          order,
          record,
          handle: control(owner, { id: record.id, kind: record.kind, producer: record.producer })
        })),
        stored.lastSeq
      )
      restoredLive = restored.filter((entry) => !isTerminal(entry.record.state))
      for (const entry of restoredLive) telemetry.registered(entry.record)
    }

    // -- shutdown ---------------------------------------------------------------

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Ref.set<HostState>(state, { _tag: "Closing" })
        openSessions.clear()
        const fibers: Array<Fiber.Fiber<unknown, unknown>> = [...timers, ...hidden.fibers(), ...managed]
        yield* Fiber.interruptAll(fibers)
        yield* Effect.forEach(
          registry.liveEntries(),
          (entry) => hardCancel(entry, true).pipe(Effect.timeoutOption(entry.handle.grace)),
          { concurrency: "unbounded", discard: true }
        )
        yield* internal((now) =>
          Effect.sync(() => {
            for (const entry of registry.liveEntries()) markCancelled(entry, now)
          })
        )
        yield* Ref.set<HostState>(state, { _tag: "Closed" })
        // the last events reach subscribers once committed; then their streams end
        if (journal !== undefined) yield* Effect.exit(journal.flush)
        hub.close()
      })
    )

    // -- retention ----------------------------------------------------------------

    /** Evicts terminal records as they reach `maxAge`, sleeping until the next one is due. */
    const sweep: Effect.Effect<never> = Effect.gen(function*() {
      while (true) {
        const now = yield* Clock.currentTimeMillis
        const due = Ref.getUnsafe(state)._tag === "Closed" ? undefined : registry.evictExpired(now)
        yield* Effect.sleep(Duration.millis((due ?? now + maxAgeMillis) - now))
      }
    })
    // forked after the finalizer above, so it is interrupted before that runs
    if (Number.isFinite(maxAgeMillis)) yield* Effect.forkScoped(sweep)

    /**
     * Subscribes, and takes what `snapshot` reads, in one step: the snapshot is
     * the state as of `seq`, the subscription gets every event after it.
     */
    const attach = <S>(filter: TaskFilter | undefined, snapshot: (filter: TaskFilter | undefined) => S) =>
      Effect.flatMap(filterOf(filter), (valid) =>
        Effect.acquireRelease(
          whenOpen(() => {
            const subscription = hub.attach(valid, registry.lastSeq)
            if (subscription === undefined) return Effect.fail(closedReason)
            return Effect.succeed({
              filter: valid,
              snapshot: snapshot(valid),
              subscription: { seq: registry.lastSeq, stream: subscription.stream, handle: subscription }
            })
          }),
          ({ subscription }) => Effect.sync(() => hub.detach(subscription.handle))
        ))

    /**
     * Launches a managed task now, in the slot it holds (`slot`), or queues
     * it until one frees (`slot` undefined); inside a step.
     */
    const startOrQueue = (entry: TaskEntry, launch: Launch, slot: Slot | undefined) => {
      const handle = entry.handle
      handle.launch = () => launchTask(entry, launch)
      if (slot !== undefined) {
        if (slots.limited) handle.slot = slot
        handle.launch()
      } else {
        slots.enqueue(entry, () =>
          entry.record.state === "pending" && entry.handle.fiber === undefined
            ? { sessionId: entry.record.scope.sessionId, kind: entry.record.kind }
            : undefined)
      }
    }

    const spawnManaged = <A, E, R>(
      sessionId: string,
      spec: TaskRegistration,
      task: Effect.Effect<A, E, R>
    ) =>
      withSession(
        sessionId,
        atomicWith(
          () => registration("task registration", spec, isPlainRegistration, decodeRegistration),
          (valid, now, context) => {
            // a live task holding the key is the answer: no slot, no new task
            const holder = valid.idempotencyKey === undefined ? undefined : registry.findByKey(valid.idempotencyKey)
            if (holder !== undefined) return Effect.succeed(holder.record)
            const handle = control("host", valid)
            const slot: Slot = { sessionId, kind: valid.kind }
            const runsNow = !slots.limited || slots.tryAcquire(slot)
            const added = addTask(sessionId, valid, runsNow ? "running" : "pending", now, handle)
            if (Result.isFailure(added)) {
              if (runsNow && slots.limited) slots.release(slot)
              return Effect.fail(added.failure)
            }
            const { entry } = added.success
            // the task gets its own context and a scope that closes when it ends
            const run = Effect.scoped(Effect.provideService(task, TaskContext, taskContext(entry, handle.signal!)))
            const launch: Launch = {
              run: run as Effect.Effect<unknown, unknown>,
              timeout: valid.timeout === undefined ? undefined : Duration.fromInputUnsafe(valid.timeout),
              schedule: valid.retry ?? retrySchedule,
              context
            }
            startOrQueue(entry, launch, runsNow ? slot : undefined)
            return Effect.succeed(entry.record)
          }
        )
      ) as Effect.Effect<BackgroundTaskRecord, RegisterError, Exclude<R, TaskContext | Scope.Scope>>

    // -- the service --------------------------------------------------------------

    const service: BackgroundTaskHostService = {
      register: (request) =>
        atomicWith(
          () => registration("registration", request, isPlainRegisterRequest, decodeRegister),
          (req, now) => recordOf(addTask(req.scope.sessionId, req, "pending", now, control("caller", req)))
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
              if (liveChildren(entry).length > 0) {
                if (progress !== undefined) registry.progress(entry, progress)
                return requestCancel(entry, Option.none(), now)
              }
              const begun = beginCancel(entry, Option.none(), now)
              if (Result.isFailure(begun)) return Effect.fail(begun.failure)
              if (progress !== undefined) registry.progress(entry, progress)
              return begun.success
            }
            if (to !== undefined) {
              // a queued managed task starts when a slot frees, not on request
              if (isQueued(entry) && to !== from) {
                return Effect.fail(new InvalidTransition({ taskId, from, to }))
              }
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
            const move = (now: DateTime.Utc) => {
              const moved = registry.move(entry, to, now, { summary: Option.fromUndefinedOr(completion.summary) })
              if (Result.isFailure(moved)) return Effect.fail(moved.failure)
              return entry.handle.fiber === undefined
                ? Effect.succeed(moved.success)
                : Effect.as(stopTask(entry), moved.success)
            }
            // a parent that fails or is cancelled ends after its children
            if (to === "completed" || liveChildren(entry).length === 0) return move(now)
            const check = Lifecycle.checkMove(taskId, entry.record.state, to)
            if (check !== undefined) return Effect.fail(check)
            return Effect.andThen(
              cancelChildren(entry, "policy", to === "failed" ? "parent failed" : "parent cancelled"),
              atomic(move)
            )
          })
        )
      },

      requestCancel: (taskId, reason) =>
        atomic((now) => withTask(taskId, (entry) => requestCancel(entry, Option.fromUndefinedOr(reason), now))),

      get: (taskId) =>
        whenOpen(() => Effect.succeed(Option.fromUndefinedOr(registry.resolve(taskId)?.record))),

      list: (filter) => Effect.flatMap(filterOf(filter), (valid) => whenOpen(() => Effect.succeed(registry.list(valid)))),

      transfer: (taskId, scope) =>
        decodeScope(scope).pipe(
          Effect.mapError((error) => new SessionError({ message: `invalid target scope: ${error.message}` })),
          Effect.flatMap((target) =>
            atomic((now) =>
              withTask(taskId, (entry) =>
                Effect.fromResult(transferEntries([entry], target.sessionId, now)).pipe(
                  Effect.map(() => entry.record)
                ))
            )
          )
        ),

      subscribe: (filter) => Effect.map(attach(filter, () => undefined), ({ subscription }) => subscription.stream),

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
          ({ filter, snapshot, subscription }): Effect.Effect<TaskWatch, SnapshotError> => {
            const watch = { filter, snapshot, seq: subscription.seq, events: subscription.stream }
            if (fromSeq === undefined || fromSeq === watch.seq) return Effect.succeed(watch)
            if (fromSeq > watch.seq) {
              return Effect.fail(
                new SnapshotError({ message: `fromSeq ${fromSeq} is beyond the last event's seq, ${watch.seq}` })
              )
            }
            if (durable === undefined) {
              return Effect.fail(
                new SnapshotError({
                  message: `resuming from seq ${fromSeq} needs a durable store: this host keeps no event history`
                })
              )
            }
            // everything up to `seq` is committed before it is read back
            return Effect.as(syncWrites, {
              ...watch,
              events: Stream.concat(replay(durable, fromSeq, watch.seq, filter), watch.events)
            })
          }
        )
      },

      stats: whenOpen(() =>
        Effect.sync(() => {
          let queued = 0
          for (const entry of registry.liveEntries()) {
            if (entry.handle.owner === "host" && entry.handle.launch !== undefined) queued++
          }
          return registry.stats(
            hub.subscriberCount,
            managed.size + timers.size + hidden.fibers().length,
            queued,
            journal?.commits ?? 0
          )
        })
      ),

      spawnHidden: (sessionId, label, task) =>
        withSession(sessionId, whenOpen(() => hidden.spawn(sessionId, String(label), task))),

      awaitHidden: (sessionId) => withSession(sessionId, whenOpen(() => hidden.await(sessionId))),

      spawnManaged,

      registerExternal: (sessionId, spec, cancel) =>
        withSession(
          sessionId,
          atomicWith(
            () => registration("task registration", spec, isPlainRegistration, decodeRegistration),
            (valid, now) => recordOf(addTask(sessionId, valid, "running", now, control("external", valid, cancel)))
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
                if (!isTerminal(entry.record.state)) telemetry.removed(entry.record)
                registry.remove(entry)
              }
            })
          )
        ),

      markTerminal: (sessionId, taskId, to) =>
        withSession(
          sessionId,
          whenOpen(() => {
            const entry = registry.find(sessionId, taskId)
            if (entry === undefined || isTerminal(entry.record.state)) return Effect.void
            if (!Lifecycle.isTaskState(to) || !isTerminal(to)) return Effect.void
            const move = internal((now) => {
              if (isTerminal(entry.record.state)) return Effect.void
              registry.move(entry, to, now)
              return stopTask(entry)
            })
            return to === "completed"
              ? move
              : Effect.andThen(
                cancelChildren(entry, "policy", to === "failed" ? "parent failed" : "parent cancelled"),
                move
              )
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
              return Effect.asVoid(Effect.fromResult(transferEntries(Array.from(entries), toSessionId, now)))
            })
          )
        ),

      cancelAllManaged: (sessionId) =>
        withSession(
          sessionId,
          whenOpen(() => Effect.sync(() => registry.liveInSession(sessionId))).pipe(
            Effect.tap((entries) => {
              // running managed tasks without live children: one interruption
              // of all their fibers (each one's exit still moves its record);
              // the rest through their handles, each after its descendants
              const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
              const others: Array<TaskEntry> = []
              for (const entry of entries) {
                const fiber = entry.handle.fiber
                if (fiber !== undefined && liveChildren(entry).length === 0) fibers.push(fiber)
                else others.push(entry)
              }
              return Effect.andThen(
                Effect.forEach(others, (entry) => hardCancel(entry, true), { concurrency: "unbounded", discard: true }),
                Effect.withFiber((current) => {
                  // a task that cancels its own session stops last
                  const self = fibers.includes(current)
                  const rest = self ? fibers.filter((fiber) => fiber !== current) : fibers
                  return Effect.andThen(Fiber.interruptAll(rest), self ? Effect.interrupt : Effect.void)
                })
              )
            }),
            Effect.map((entries) => entries.map((entry) => entry.record))
          )
        ),

      openSession,

      listTree: (taskId) => whenOpen(() => withTask(taskId, (entry) => Effect.succeed(treeOf(entry)))),

      recovery: whenOpen(() =>
        Effect.succeed<RecoveryReport>({
          respawned: [...report.respawned],
          failed: [...report.failed],
          cancelled: [...report.cancelled],
          quarantined: [...report.quarantined]
        })
      )
    }

    // -- durability: a call returns once its writes are committed ------------------

    /** A call refused because the host is not open: it wrote nothing, so there is nothing to wait for. */
    const refused = (exit: Exit.Exit<unknown, unknown>) => {
      if (Exit.isSuccess(exit) || isOpen()) return false
      const error = Cause.findError(exit.cause)
      return error._tag === "Success" && error.success instanceof SessionError
    }

    if (journal !== undefined) {
      const writes = service as unknown as Record<string, (...args: ReadonlyArray<unknown>) => Effect.Effect<unknown, unknown, unknown>>
      for (
        const method of [
          "register",
          "update",
          "complete",
          "requestCancel",
          "transfer",
          "spawnManaged",
          "registerExternal",
          "unregisterExternal",
          "markTerminal",
          "markLiveState",
          "cancelManaged",
          "transferManaged",
          "cancelAllManaged"
        ] as const
      ) {
        const write = writes[method]!
        writes[method] = (...args) => Effect.onExit(write(...args), (exit) => refused(exit) ? Effect.void : syncWrites)
      }
    }

    // -- recovery -------------------------------------------------------------------

    /**
     * Re-runs a task a previous process left live, in one step: the record
     * moves to its next attempt and the handler's body starts (or queues for
     * a slot), as a retry does.
     */
    const respawn = (entry: TaskEntry, handler: RecoveryHandler, now: DateTime.Utc) => {
      const handle = entry.handle
      const stored = entry.record
      const { attempt } = stored
      const slot: Slot = { sessionId: entry.record.scope.sessionId, kind: entry.record.kind }
      const runsNow = !slots.limited || slots.tryAcquire(slot)
      registry.update(entry, (record) => ({
        ...record,
        state: runsNow ? "running" : "pending",
        attempt: { ...attempt, attempt: attempt.attempt + 1 }
      }), now)
      registry.progress(
        entry,
        `recovered after the host stopped: attempt ${attempt.attempt + 2} of ${
          Option.getOrElse(attempt.maxAttempts, () => 1)
        }`
      )
      // the handler sees the record as the previous process left it, once: its
      // effect is the task's body, run again for each later attempt (as spawnManaged's is)
      let made: Effect.Effect<unknown, unknown, TaskContext | Scope.Scope> | undefined
      const body = Effect.suspend(() => made ??= handler(stored))
      const launch: Launch = {
        run: Effect.scoped(Effect.provideService(body, TaskContext, taskContext(entry, handle.signal!))),
        timeout: undefined,
        schedule: retrySchedule,
        context: layerContext
      }
      startOrQueue(entry, launch, runsNow ? slot : undefined)
    }

    if (storeOptions !== undefined && restoredLive.length > 0) {
      // each task's fate, parents first: a task re-runs only under a parent that re-runs
      // too (a parent that ends takes its children with it, as a cancellation would)
      const fates = new Map<TaskEntry, "respawned" | "failed" | "cancelled">()
      const byAge = restoredLive.sort((a, b) => a.order - b.order)
      for (const entry of byAge) {
        const { attempt, producer, state } = entry.record
        const handler = storeOptions.recovery.get(producer)
        const allowed = Option.isSome(attempt.maxAttempts) && attempt.attempt + 1 < attempt.maxAttempts.value
        const parentFate = entry.parent === undefined ? "respawned" : fates.get(entry.parent) ?? "respawned"
        fates.set(
          entry,
          entry.handle.owner === "external" || state === "cancel_requested" || parentFate !== "respawned"
            ? "cancelled"
            : entry.handle.owner === "host" && handler !== undefined && allowed
            ? "respawned"
            : "failed"
        )
      }
      // applied newest first: a child is resolved before its parent
      yield* internal((now) =>
        Effect.sync(() => {
          for (const entry of byAge.reverse()) {
            if (isTerminal(entry.record.state)) continue
            const fate = fates.get(entry)!
            report[fate].push(entry.record.id)
            if (fate === "respawned") respawn(entry, storeOptions.recovery.get(entry.record.producer)!, now)
            else registry.move(entry, fate, now, { summary: Option.some(stoppedReason) })
          }
        })
      )
    }
    // the layer is ready once everything it found is resolved, and written
    yield* syncWrites

    /**
     * A cancel request: the live descendants are cancelled first, then the
     * request and the policy; returns the record as it stands then.
     */
    const requestCancel = (
      entry: TaskEntry,
      reason: Option.Option<string>,
      now: DateTime.Utc
    ): Effect.Effect<BackgroundTaskRecord, InvalidTransition> => {
      if (entry.record.state === "cancel_requested") return Effect.succeed(entry.record)
      if (liveChildren(entry).length === 0) {
        // the common case: the request in this very step
        const begun = beginCancel(entry, reason, now)
        return Result.isFailure(begun) ? Effect.fail(begun.failure) : begun.success
      }
      const check = Lifecycle.checkMove(entry.record.id, entry.record.state, "cancel_requested")
      if (check !== undefined) return Effect.fail(check)
      const request = Effect.withFiber((fiber): Effect.Effect<BackgroundTaskRecord, InvalidTransition> => {
        if (entry.record.state === "cancel_requested" || isTerminal(entry.record.state)) {
          return Effect.succeed(entry.record)
        }
        const begun = beginCancel(entry, reason, nowOf(fiber))
        return Result.isFailure(begun) ? Effect.fail(begun.failure) : begun.success
      })
      return Effect.andThen(cancelChildren(entry, "policy", "parent cancelled"), request)
    }

    return service
  })
