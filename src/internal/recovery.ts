/**
 * Recovery: what a host on a durable store does, at start, with the tasks a
 * previous process left live.
 *
 * Owns: putting the stored records back, each live task's fate (re-run by
 * its producer's handler with the next attempt, or ended `failed` /
 * `cancelled` with the reason), and the report. Calls the registry,
 * and `supervisor.ts` (a re-run task starts, or queues, as a
 * retry does).
 *
 * @internal
 */
import type * as Context from "effect/Context"
import type * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import { type BackgroundTaskRecord, isTerminal } from "../BackgroundTask.ts"
import { backoffSchedule } from "./options.ts"
import type { StoredState } from "./store.ts"
import type { Ending } from "./ending.ts"
import type { RegistryService } from "./registry.ts"
import type * as Scope from "effect/Scope"
import type { TaskContext } from "../TaskContext.ts"
import type { ExternalRecoveryHandler, RecoveryDecision, RecoveryHandler, RecoveryReport } from "./service.ts"
import type { Steps } from "./state.ts"
import type { Supervisor } from "./supervisor.ts"
import * as Task from "./task.ts"
import type { Telemetry } from "./telemetry.ts"

/** Why a task left live by a previous process was not re-run. */
export const stoppedReason = "host stopped before the task finished"


export interface RecoveryOptions {
  readonly handlers: ReadonlyMap<string, RecoveryHandler<unknown>>
  readonly external: ReadonlyMap<string, ExternalRecoveryHandler<unknown>>
  /** The host's grace period (a stored task's own is not stored). */
  readonly grace: Duration.Duration
  readonly retrySchedule: Schedule.Schedule<unknown, unknown>
  /** The context re-run tasks run with (the layer's). */
  readonly context: Context.Context<never>
}

/**
 * Puts the stored records back (no event: they are already in the store's
 * history) and resolves every live one, parents first: a task re-runs only
 * under a parent that re-runs too (a parent that ends takes its children
 * with it, as a cancellation would).
 */
export const recover = (
  stored: StoredState,
  deps: {
    readonly steps: Steps
    readonly registry: RegistryService
    readonly ending: Ending
    readonly supervisor: Supervisor
    readonly telemetry: Telemetry
  },
  options: RecoveryOptions
): Effect.Effect<RecoveryReport> =>
  Effect.suspend(() => {
    const { registry, steps, telemetry } = deps
    const report = { respawned: [] as Array<string>, failed: [] as Array<string>, cancelled: [] as Array<string> }
    const restored = registry.restore(
      stored.tasks.map(({ order, owner, record }) => ({
        order,
        record,
        owner: owner === "host" ? Task.managed() : owner === "external" ? Task.external(undefined) : Task.caller,
        // the task's own grace period, when its record kept one
        control: Task.control(
          record.settings?.cancelGracePeriodMillis === undefined
            ? options.grace
            : Duration.millis(record.settings.cancelGracePeriodMillis)
        )
      })),
      stored.lastSeq
    )
    // records a host left live at a `release` shutdown: stopped, not crashed
    const released = new Set<BackgroundTaskRecord>()
    for (const task of stored.tasks) if (task.released === true) released.add(task.record)
    const live = restored.filter((task) => !isTerminal(task.record.state))
    for (const task of live) telemetry.registered(task.record)
    if (live.length === 0) return Effect.succeed({ ...report, quarantined: stored.quarantined })
    const fates = new Map<Task.Task, Resolution>()
    const byAge = live.sort((a, b) => a.order - b.order)
    for (const task of byAge) {
      const parentKept = task.parent === undefined || fates.get(task.parent)?._tag === "Respawn" ||
        fates.get(task.parent)?._tag === "Reattach" || !fates.has(task.parent)
      fates.set(task, decide(task, parentKept, released.has(task.record), options))
    }
    // applied newest first: a child is resolved before its parent
    return Effect.as(
      steps.internal((now) =>
        Effect.sync(() => {
          for (const task of byAge.reverse()) {
            if (isTerminal(task.record.state)) continue
            const fate = fates.get(task)!
            switch (fate._tag) {
              case "Respawn":
                report.respawned.push(task.record.id)
                respawn(task, fate.body, released.has(task.record), now, deps, options)
                break
              case "Reattach":
                report.respawned.push(task.record.id)
                if (task.owner._tag === "External") task.owner.cancel = fate.cancel
                deps.registry.progress(task, "reattached after the host stopped")
                break
              case "End":
                report[fate.to].push(task.record.id)
                deps.ending.move(task, fate.to, now, { summary: Option.some(fate.reason) })
            }
          }
        })
      ),
      { ...report, quarantined: stored.quarantined }
    )
  })

type Resolution =
  | { readonly _tag: "Respawn"; readonly body: Effect.Effect<unknown, unknown, TaskContext | Scope.Scope> }
  | { readonly _tag: "Reattach"; readonly cancel: Effect.Effect<void> }
  | { readonly _tag: "End"; readonly to: "failed" | "cancelled"; readonly reason: string }

const end = (to: "failed" | "cancelled", reason: string = stoppedReason): Resolution => ({ _tag: "End", to, reason })

/**
 * What a handler returns to keep a task: its body (or a cancel effect). Beyond
 * `TaskContext` and `Scope` it may need the application's services: the
 * layer requires them (`layerStore<R>`), and the task runs with the layer's
 * context, so they are provided.
 */
type HandlerEffect = Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>

/** A handler's answer: a body (or cancel effect) to keep the task with, or a decision to end it. */
const answerOf = (
  producer: string,
  call: () => unknown
): { readonly _tag: "Keep"; readonly effect: HandlerEffect } | Resolution => {
  let answer: unknown
  try {
    answer = call()
  } catch (error) {
    return end("failed", `${stoppedReason}; the recovery handler of ${producer} threw: ${String(error)}`)
  }
  if (Effect.isEffect(answer)) return { _tag: "Keep", effect: answer as HandlerEffect }
  const decision = answer as RecoveryDecision | undefined
  if (decision?._tag === "Fail" || decision?._tag === "Cancel") {
    return end(decision._tag === "Fail" ? "failed" : "cancelled", String(decision.reason))
  }
  return end("failed", `${stoppedReason}; the recovery handler of ${producer} returned neither an effect nor a decision`)
}

/**
 * A live task's fate, decided parents first. A managed task of a producer
 * with a handler is offered to it (unless a crash spent its attempts); an
 * external one to its `recoverExternal` hook.
 */
const decide = (task: Task.Task, parentKept: boolean, released: boolean, options: RecoveryOptions): Resolution => {
  const { attempt, producer, state } = task.record
  if (state === "cancel_requested" || !parentKept) return end("cancelled")
  switch (task.owner._tag) {
    case "Managed": {
      const handler = options.handlers.get(producer)
      if (handler === undefined) return end("failed")
      // a released task resumes with the attempt it was on: a graceful stop is not a failed attempt
      const spent = !released && Option.isSome(attempt.maxAttempts) && attempt.attempt + 1 >= attempt.maxAttempts.value
      if (spent) return end("failed")
      const answer = answerOf(producer, () => handler(task.record))
      return answer._tag === "Keep" ? { _tag: "Respawn", body: answer.effect } : answer
    }
    case "External": {
      const hook = options.external.get(producer)
      if (hook === undefined) return end("cancelled")
      const answer = answerOf(producer, () => hook(task.record))
      // the cancel effect runs with the layer's context (the hook's requirements)
      return answer._tag === "Keep"
        ? { _tag: "Reattach", cancel: Effect.provideContext(Effect.asVoid(answer.effect), options.context) as Effect.Effect<void> }
        : answer
    }
    case "Caller":
      return end("failed")
  }
}

/**
 * Re-runs a task a previous process left live, in one step: the record
 * moves to its next attempt and the handler's body starts (or queues for a
 * slot), as a retry does.
 */
const respawn = (
  task: Task.Task,
  made: Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>,
  released: boolean,
  now: DateTime.Utc,
  deps: { readonly registry: RegistryService; readonly supervisor: Supervisor },
  options: RecoveryOptions
): void => {
  const { registry, supervisor } = deps
  const owner = task.owner
  if (owner._tag !== "Managed") return
  const stored = task.record
  const { attempt } = stored
  const next = released ? attempt.attempt : attempt.attempt + 1
  const slot = supervisor.tryAcquire(stored.scope.sessionId, stored.kind)
  registry.update(task, (record) => ({
    ...record,
    state: slot !== undefined ? "running" : "pending",
    attempt: { ...attempt, attempt: next }
  }), now)
  const of = Option.match(attempt.maxAttempts, { onNone: () => "", onSome: (max) => ` of ${max}` })
  registry.progress(
    task,
    released
      ? `resumed after the host shut down: attempt ${next + 1}${of}`
      : `recovered after the host stopped: attempt ${next + 1}${of === "" ? " of 1" : of}`
  )
  // the handler sees the record as the previous process left it, once: its
  // effect is the task's body, run again for each later attempt (as spawnManaged's is)
  supervisor.startOrQueue(task, owner, {
    run: made,
    // the options its record kept; a `retry` Schedule is not stored: the host's then
    timeout: stored.settings?.timeoutMillis === undefined ? undefined : Duration.millis(stored.settings.timeoutMillis),
    schedule: stored.settings?.backoff === undefined ? options.retrySchedule : backoffSchedule(stored.settings.backoff),
    context: options.context
  }, slot)
}

/** A copy of the report, as `host.recovery` hands it out. */
export const copyReport = (report: RecoveryReport): RecoveryReport => ({
  respawned: [...report.respawned],
  failed: [...report.failed],
  cancelled: [...report.cancelled],
  quarantined: [...report.quarantined]
})
