/**
 * The end of a task: what a move means beyond its record.
 *
 * Owns: `Ending`, the path every move takes, and what ending a task means
 * beyond its record (its grace timer stops, its waiters wake, the metrics
 * count it, its slot frees and the queued tasks that now fit start), the
 * grace timers running, and the count of launched tasks whose fiber is not
 * made yet. Part of the supervisor's room (`supervisor.ts`); calls the
 * registry, `slots.ts`, `telemetry.ts` and `state.ts`.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { type BackgroundTaskRecord, isTerminal, type TaskState, type TerminalState } from "../BackgroundTask.ts"
import type { InvalidTransition } from "../PluginError.ts"
import type { RegistryService } from "./registry.ts"
import type { Slots } from "./slots.ts"
import { afterStep, type Steps } from "./state.ts"
import type { Telemetry } from "./telemetry.ts"
import type { Task } from "./task.ts"

/** What ending a task means beyond its record: the terminal bookkeeping, in the step that ends it. */
export class Ending {
  private readonly steps: Steps
  private readonly registry: RegistryService
  readonly slots: Slots<Task>
  private readonly telemetry: Telemetry
  /** The grace timers running now (`cancellation.ts` starts them; a terminal move stops its task's). */
  readonly timers = new Set<Fiber.Fiber<void>>()
  /** Managed tasks launched whose fiber is not made yet (it will be, after the step). */
  starting = 0
  /**
   * Managed tasks whose fiber has exited leaving work to run (their scope's
   * finalizers, their children's end), in a fiber that now stands as theirs
   * (`Supervisor`): a cancel that interrupted their fibers waits for it too.
   */
  continuing = 0

  constructor(steps: Steps, registry: RegistryService, slots: Slots<Task>, telemetry: Telemetry) {
    this.steps = steps
    this.registry = registry
    this.slots = slots
    this.telemetry = telemetry
  }

  /** Moves a record (inside a step); a terminal move does its bookkeeping in the same step. */
  move(
    task: Task,
    to: TaskState,
    now: DateTime.Utc,
    options?: { readonly summary?: Option.Option<string>; readonly reason?: Option.Option<string> }
  ): Result.Result<BackgroundTaskRecord, InvalidTransition> {
    const wasLive = !isTerminal(task.record.state)
    const moved = this.registry.move(task, to, now, options)
    if (wasLive && Result.isSuccess(moved) && isTerminal(moved.success.state)) this.ended(task, now)
    return moved
  }

  /** A managed task's end as its fiber exits (`Supervisor`): the move and, if it moved, the bookkeeping. */
  end(task: Task, to: TerminalState, now: DateTime.Utc, summary: Option.Option<string>): void {
    if (this.registry.end(task, to, now, summary)) this.ended(task, now)
  }

  /** Ends a live record `cancelled`, saying why when the host knows. */
  markCancelled(task: Task, now: DateTime.Utc): void {
    if (!isTerminal(task.record.state)) {
      this.move(task, "cancelled", now, { summary: Option.fromUndefinedOr(task.control.stopReason) })
    }
  }

  /** Stops a task's grace timer, if one runs. */
  stopTimer(task: Task): void {
    const timer = task.control.timer
    if (timer === undefined) return
    task.control.timer = undefined
    this.timers.delete(timer)
    timer.interruptUnsafe()
  }

  /** Waits until a record is terminal (or no longer held). */
  awaitEnd(task: Task): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (isTerminal(task.record.state) || !task.held) return Effect.void
      return Deferred.await(task.control.ended ??= Deferred.makeUnsafe<void>())
    })
  }

  /** Starts the queued tasks that fit now that a slot is free (inside a step). */
  startQueued(now: DateTime.Utc): void {
    for (const task of this.slots.takeStartable()) {
      const owner = task.owner
      if (owner._tag !== "Managed") continue
      owner.slot = { sessionId: task.record.scope.sessionId, kind: task.record.kind }
      this.registry.move(task, "running", now)
      owner.launch?.()
    }
  }

  /** A task was let go of without ending (`unregisterExternal`): wake whoever waits for it. */
  released(task: Task): void {
    this.stopTimer(task)
    this.wakeWaiters(task)
  }

  private ended(task: Task, now: DateTime.Utc): void {
    this.stopTimer(task)
    this.wakeWaiters(task)
    this.telemetry.ended(task.record)
    const owner = task.owner
    if (owner._tag === "Managed" && owner.starting) {
      // ended before its fiber was made: it never will be
      owner.starting = false
      this.starting--
    }
    if (owner._tag === "Managed" && owner.slot !== undefined) {
      this.slots.release(owner.slot)
      owner.slot = undefined
      // a closing host starts nothing: queued tasks end cancelled, never run
      if (this.steps.isOpen()) this.startQueued(now)
    }
  }

  private wakeWaiters(task: Task): void {
    const ended = task.control.ended
    if (ended !== undefined) afterStep(() => Deferred.doneUnsafe(ended, Effect.void))
  }
}
