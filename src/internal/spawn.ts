/**
 * `spawnManaged` as one operation.
 *
 * Owns: the `spawnManaged` call in the common case as a single `withFiber`:
 * the step of the budget (`Pace`), the input checks (the plain shape checked
 * without allocating, anything else through `validate.ts`'s full checks; bad
 * input fails before a closed host does), the open check, and the step that
 * registers the task and launches it (or queues it for a slot). Calls
 * `validate.ts`, the registry (through the host's `register`), the
 * supervisor and `state.ts`; the host wires it.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import type * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { BackgroundTaskRecord, TaskRegistration, TaskState } from "../BackgroundTask.ts"
import { RegistrationError } from "../PluginError.ts"
import type { TaskContext } from "../TaskContext.ts"
import { backoffSchedule } from "./options.ts"
import type { RegistryService } from "./registry.ts"
import type { RegisterError } from "./service.ts"
import type { Pace, Steps } from "./state.ts"
import type { Supervisor } from "./supervisor.ts"
import * as T from "./task.ts"
import { checkAll, effectOf, isPlainSpawn, registrationOf, sessionIdOf } from "./validate.ts"

export interface SpawnDeps {
  readonly steps: Steps
  readonly pace: Pace
  /** The durability's `write` (a durable host returns once the registration is committed). */
  readonly write: <A, E, R>(call: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly registry: RegistryService
  /** The host's registration: the input limit, the registry, the metrics. */
  readonly register: (
    sessionId: string,
    spec: TaskRegistration,
    state: TaskState,
    now: DateTime.Utc,
    owner: T.Owner,
    control: T.Control
  ) => Result.Result<{ readonly task: T.Task; readonly existing: boolean }, RegisterError>
  readonly supervisor: Supervisor
  /** The host's cancel grace period. */
  readonly grace: Duration.Duration
  /** The host's retry schedule. */
  readonly retrySchedule: Schedule.Schedule<unknown, unknown>
}

/** The host's `spawnManaged`. */
export const spawner = (deps: SpawnDeps) => {
  const { grace, pace, register, registry, retrySchedule, steps, supervisor, write } = deps

  /** The step, its input checked and the host open. */
  const spawnStep = (
    sessionId: string,
    valid: TaskRegistration,
    body: Effect.Effect<unknown, unknown, unknown>,
    now: DateTime.Utc,
    context: Context.Context<never>
  ): Effect.Effect<BackgroundTaskRecord, RegisterError> => {
    // a live task holding the key is the answer: no slot, no new task
    const holder = valid.idempotencyKey === undefined ? undefined : registry.findByKey(valid.idempotencyKey)
    if (holder !== undefined) return Effect.succeed(holder.record)
    const owner = T.managed()
    const control = T.control(
      valid.cancelGracePeriod === undefined ? grace : Duration.fromInputUnsafe(valid.cancelGracePeriod)
    )
    const slot = supervisor.tryAcquire(sessionId, valid.kind)
    const added = register(sessionId, valid, slot !== undefined ? "running" : "pending", now, owner, control)
    if (Result.isFailure(added)) {
      supervisor.releaseUnused(slot)
      return Effect.fail(added.failure)
    }
    const { task } = added.success
    const record = task.record
    supervisor.startOrQueue(task, owner, {
      // its own `TaskContext` and scope are given when it starts
      run: body as Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>,
      timeout: valid.timeout === undefined ? undefined : Duration.fromInputUnsafe(valid.timeout),
      schedule: valid.retry ?? (valid.backoff === undefined ? retrySchedule : backoffSchedule(valid.backoff)),
      context
    }, slot)
    return Effect.succeed(record)
  }

  return <A, E, R>(
    sessionId: unknown,
    spec: unknown,
    body: Effect.Effect<A, E, R>
  ): Effect.Effect<BackgroundTaskRecord, RegisterError, Exclude<R, TaskContext | Scope.Scope>> => {
    const step = (fiber: Fiber.Fiber<unknown, unknown>): Effect.Effect<BackgroundTaskRecord, RegisterError> => {
      let sid: string
      let valid: TaskRegistration
      if (isPlainSpawn(sessionId, spec, body)) {
        sid = sessionId as string
        valid = spec as TaskRegistration
      } else {
        const checked = checkAll(
          sessionIdOf(sessionId),
          registrationOf(spec),
          effectOf(body, "task", (message) => new RegistrationError({ message }))
        )
        if (Result.isFailure(checked)) return Effect.fail(checked.failure)
        ;[sid, valid] = checked.success
      }
      if (!steps.isOpen()) return Effect.fail(steps.closedReason)
      return spawnStep(sid, valid, body as Effect.Effect<unknown, unknown, unknown>, steps.nowOf(fiber), fiber.context)
    }
    // the common case (budget left) is this one operation; otherwise it waits for its turn first
    return write(
      Effect.withFiber((fiber) => pace.take() ? step(fiber) : Effect.andThen(pace.step, Effect.withFiber(step)))
    ) as Effect.Effect<BackgroundTaskRecord, RegisterError, Exclude<R, TaskContext | Scope.Scope>>
  }
}
