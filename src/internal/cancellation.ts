/**
 * Cancellation: cancel policies, trees and grace periods.
 *
 * Owns: how a task is asked to stop and how it is made to (interrupt its
 * fiber, run its cancel effect once, give a cooperative task its grace
 * period and then stop it), and the order across a tree: whatever ends a
 * task other than its own success first cancels its live descendants, each
 * one's own before it, so a parent's terminal event always follows its
 * children's. Calls `supervisor.ts`'s `Ending` (every move), `state.ts` (steps).
 *
 * Every wait here is bounded: a cancel effect that never finishes is cut
 * off after the task's grace period, wherever the task sits in a tree.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import type * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { type BackgroundTaskRecord, isTerminal } from "../BackgroundTask.ts"
import type { InvalidTransition } from "../PluginError.ts"
import type { Ending } from "./ending.ts"
import * as Lifecycle from "./lifecycle.ts"
import { afterStep, type Steps } from "./state.ts"
import { isQueued, type Managed, requestCancel as requestSignal, type Task } from "./task.ts"

/** How a tree is cancelled: through each task's policy, or now, whatever the policy. */
export type Mode = "policy" | "now"

/** Interrupts a fiber and waits for it; a fiber that cancels itself just stops. */
export const interruptFiber = (fiber: Fiber.Fiber<unknown, unknown>): Effect.Effect<void> =>
  Effect.withFiber((current) => current === fiber ? Effect.interrupt : Fiber.interrupt(fiber))

/**
 * Interrupts a managed task's fiber and waits until the task's work is done,
 * including what its exit left to run (the scope's finalizers, the
 * children's end: `Supervisor`'s exit observer), which then stands as its
 * fiber.
 */
export const stopManaged = (owner: Managed): Effect.Effect<void> =>
  Effect.suspend(() => {
    const fiber = owner.fiber
    if (fiber === undefined) return Effect.void
    return Effect.andThen(
      interruptFiber(fiber),
      Effect.suspend(() => owner.fiber !== undefined && owner.fiber !== fiber ? stopManaged(owner) : Effect.void)
    )
  })

/** Whether a live task is registered under this one. */
export const hasLiveChildren = (task: Task): boolean => {
  if (task.children !== undefined) {
    for (const child of task.children) if (!isTerminal(child.record.state)) return true
  }
  return false
}

/** The live tasks registered under this one. */
export const liveChildren = (task: Task): Array<Task> => {
  const out: Array<Task> = []
  if (task.children !== undefined) {
    for (const child of task.children) if (!isTerminal(child.record.state)) out.push(child)
  }
  return out
}

export class Cancellation {
  private readonly steps: Steps
  private readonly ending: Ending

  constructor(steps: Steps, ending: Ending) {
    this.steps = steps
    this.ending = ending
  }

  /** After a terminal move by someone else: stop the task's fiber, if it runs. */
  stopTask(task: Task): Effect.Effect<void> {
    return task.owner._tag === "Managed" ? stopManaged(task.owner) : Effect.void
  }

  /** Cancels a task's live descendants, each one's own before it, and waits until they have ended. */
  cancelChildren(task: Task, mode: Mode, reason: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      const children = liveChildren(task)
      return children.length === 0
        ? Effect.void
        : Effect.forEach(children, (child) => this.cancelTree(child, mode, reason), {
          concurrency: "unbounded",
          discard: true
        })
    })
  }

  /** Cancels a task after its descendants, and waits until it has ended (or its policy has acted). */
  cancelTree(task: Task, mode: Mode, reason: string): Effect.Effect<void> {
    return Effect.andThen(
      this.cancelChildren(task, mode, reason),
      mode === "now" ? this.hardCancelSelf(task, true) : this.cancelThroughPolicy(task, reason)
    )
  }

  /**
   * Cancels through the task's owner: interrupts its fiber or runs its
   * cancel effect, after its descendants. With `force`, a record with
   * nothing to act on is marked `cancelled` too; without, it is left as it is.
   */
  hardCancel(task: Task, force: boolean): Effect.Effect<void> {
    return Effect.andThen(this.cancelChildren(task, "now", "parent cancelled"), this.hardCancelSelf(task, force))
  }

  hardCancelSelf(task: Task, force: boolean): Effect.Effect<void> {
    return this.steps.internal((now) => {
      if (isTerminal(task.record.state) || !task.held) return Effect.void
      const owner = task.owner
      switch (owner._tag) {
        case "Managed": {
          if (owner.fiber !== undefined) return stopManaged(owner)
          // queued, or launched with its fiber not made yet: it never will be
          this.ending.markCancelled(task, now)
          return Effect.void
        }
        case "External": {
          const cancel = owner.cancel
          if (cancel !== undefined) {
            owner.cancel = undefined
            const cancelled = Deferred.makeUnsafe<void>()
            owner.cancelled = cancelled
            // bounded by the task's grace period: a cancel effect that never ends cannot hold a close
            return Effect.exit(Effect.timeoutOption(cancel, task.control.grace)).pipe(
              Effect.ensuring(this.steps.internal((now) =>
                Effect.sync(() => {
                  this.ending.markCancelled(task, now)
                  afterStep(() => Deferred.doneUnsafe(cancelled, Effect.void))
                })
              ))
            )
          }
          if (owner.cancelled !== undefined) return Deferred.await(owner.cancelled)
          break
        }
        case "Caller":
          break
      }
      if (force) this.ending.markCancelled(task, now)
      return Effect.void
    })
  }

  /**
   * A cancel request with a reason, then the policy, then a wait for the end:
   * a cooperative task gets its grace period, and whatever is still live after
   * it (a caller-owned record has nothing to act on) is marked `cancelled`.
   */
  cancelThroughPolicy(task: Task, reason: string): Effect.Effect<void> {
    return this.steps.internal((now) => {
      if (isTerminal(task.record.state) || !task.held) return Effect.void
      const control = task.control
      control.stopReason ??= reason
      // a closing host gives no grace period: everything stops now
      if (!this.steps.isOpen()) return this.hardCancelSelf(task, true)
      // the request and what the policy does first (a grace timer, a hard cancel)
      let policy: Effect.Effect<unknown> = this.startGracePeriod(task)
      if (task.record.state !== "cancel_requested") {
        const begun = this.beginCancel(task, Option.some(reason), now)
        if (Result.isFailure(begun)) return Effect.void
        policy = begun.success
      }
      return Effect.andThen(
        policy,
        Effect.suspend(() => {
          if (isTerminal(task.record.state)) return Effect.void
          // a grace timer runs: it ends the task, and its record says why
          if (control.timer !== undefined) return this.ending.awaitEnd(task)
          if (task.record.cancelPolicy !== "cooperative") return this.hardCancelSelf(task, true)
          // nothing the host can act on: the owner has the grace period to end it
          return Effect.andThen(
            Effect.timeoutOption(this.ending.awaitEnd(task), control.grace),
            Effect.suspend(() => {
              if (isTerminal(task.record.state)) return Effect.void
              control.stopReason = lateReason(task)
              return this.hardCancelSelf(task, true)
            })
          )
        })
      )
    })
  }

  /** Starts the cooperative grace period: when it ends, the host cancels the task itself. */
  startGracePeriod(task: Task): Effect.Effect<void> {
    const { control, owner } = task
    const actionable = owner._tag === "Managed" || (owner._tag === "External" && owner.cancel !== undefined)
    if (!actionable || control.timer !== undefined) return Effect.void
    const timers = this.ending.timers
    const timer = Effect.sleep(control.grace).pipe(
      Effect.andThen(Effect.suspend(() => {
        control.timer = undefined
        if (!task.held) return Effect.void
        control.stopReason = lateReason(task)
        return this.hardCancel(task, false)
      })),
      Effect.onExit(() => Effect.withFiber((self) => Effect.sync(() => timers.delete(self as Fiber.Fiber<void>))))
    )
    return Effect.forkDetach(timer).pipe(
      Effect.flatMap((fiber) =>
        Effect.sync(() => {
          if (!this.steps.isOpen() || isTerminal(task.record.state) || !task.held) {
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
  beginCancel(
    task: Task,
    reason: Option.Option<string>,
    now: DateTime.Utc
  ): Result.Result<Effect.Effect<BackgroundTaskRecord>, InvalidTransition> {
    const moved = this.ending.move(task, "cancel_requested", now, { reason })
    if (Result.isFailure(moved)) return Result.fail(moved.failure)
    const { control, owner } = task
    control.requested = true
    if (owner._tag === "Managed") requestSignal(owner, reason, afterStep)
    if (Option.isSome(reason)) control.stopReason ??= reason.value
    // a queued managed task never started: nothing to wait for (a launched
    // one about to start runs, and sees the request)
    const queued = isQueued(task)
    // cooperative: the record as the request left it (the task may end itself at once);
    // otherwise the record once the policy has acted
    return Result.succeed(
      task.record.cancelPolicy === "cooperative" && !queued
        ? Effect.as(this.startGracePeriod(task), moved.success)
        : Effect.andThen(this.hardCancelSelf(task, queued), Effect.sync(() => task.record))
    )
  }

  /**
   * Cancels tasks now (`cancelAllManaged`): the running managed tasks without
   * live children by one interruption of all their fibers (each one's exit
   * still moves its record), the rest through their owners, each after its
   * descendants. A task that cancels its own session stops last.
   */
  cancelAll(tasks: ReadonlyArray<Task>): Effect.Effect<void> {
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    const owners: Array<Managed> = []
    const others: Array<Task> = []
    for (const task of tasks) {
      const owner = task.owner
      if (owner._tag === "Managed" && owner.fiber !== undefined && !hasLiveChildren(task)) {
        fibers.push(owner.fiber)
        owners.push(owner)
      } else {
        others.push(task)
      }
    }
    return Effect.andThen(
      Effect.forEach(others, (task) => this.hardCancel(task, true), { concurrency: "unbounded", discard: true }),
      Effect.withFiber((current) => {
        const self = fibers.includes(current)
        const rest = self ? fibers.filter((fiber) => fiber !== current) : fibers
        return Effect.andThen(
          Fiber.interruptAll(rest),
          Effect.suspend(() => {
            // an exit that left work to run (finalizers, children) is waited for too
            const left = this.ending.continuing === 0
              ? Effect.void
              : Effect.forEach(owners, (owner) => owner.fiber === current ? Effect.void : stopManaged(owner), {
                concurrency: "unbounded",
                discard: true
              })
            return self ? Effect.andThen(left, Effect.interrupt) : left
          })
        )
      })
    )
  }

  /**
   * A cancel request: the live descendants are cancelled first, then the
   * request and the policy; returns the record as it stands then.
   */
  requestCancel(
    task: Task,
    reason: Option.Option<string>,
    now: DateTime.Utc
  ): Effect.Effect<BackgroundTaskRecord, InvalidTransition> {
    if (task.record.state === "cancel_requested") return Effect.succeed(task.record)
    if (liveChildren(task).length === 0) {
      // the common case: the request in this very step
      const begun = this.beginCancel(task, reason, now)
      return Result.isFailure(begun) ? Effect.fail(begun.failure) : begun.success
    }
    const check = Lifecycle.checkMove(task.record.id, task.record.state, "cancel_requested")
    if (check !== undefined) return Effect.fail(check)
    const request = Effect.withFiber((fiber): Effect.Effect<BackgroundTaskRecord, InvalidTransition> => {
      if (task.record.state === "cancel_requested" || isTerminal(task.record.state)) {
        return Effect.succeed(task.record)
      }
      const begun = this.beginCancel(task, reason, this.steps.nowOf(fiber))
      return Result.isFailure(begun) ? Effect.fail(begun.failure) : begun.success
    })
    return Effect.andThen(this.cancelChildren(task, "policy", "parent cancelled"), request)
  }
}

/** The stop reason of a task that outlived its grace period. */
export const lateReason = (task: Task): string => {
  const { control } = task
  const late = `did not stop within its ${Duration.format(control.grace)} grace period`
  return control.stopReason === undefined ? late : `${control.stopReason}; ${late}`
}
