/**
 * Registering a task: its record as it starts, its parent, its idempotency key.
 *
 * Owns: making a new record from a validated registration and adding it in
 * one step. Calls the registry and `telemetry.ts`.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import {
  type BackgroundTaskRecord,
  defaultAttempt,
  type TaskAttempt,
  type TaskRegistration,
  type TaskState
} from "../BackgroundTask.ts"
import { InvalidTransition, type TaskAlreadyExists, TaskNotFound } from "../PluginError.ts"
import type { RegistryService } from "./registry.ts"
import type { Control, Owner, Task } from "./task.ts"
import type { Telemetry } from "./telemetry.ts"

/** A registration, with the attempt a recovered task resumes from. */
export type Spec = TaskRegistration & { readonly attempt?: TaskAttempt }

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

export class Registration {
  private readonly registry: RegistryService
  private readonly telemetry: Telemetry

  constructor(registry: RegistryService, telemetry: Telemetry) {
    this.registry = registry
    this.telemetry = telemetry
  }

  /** The live task holding this idempotency key, if any. */
  holderOf(key: string | undefined): Task | undefined {
    return key === undefined ? undefined : this.registry.findByKey(key)
  }

  /**
   * Registers a task in one step: its parent, its idempotency key, its
   * record. `existing` is set when a live task held the key.
   */
  add(
    sessionId: string,
    spec: Spec,
    state: TaskState,
    now: DateTime.Utc,
    owner: Owner,
    control: Control
  ): Result.Result<{ readonly task: Task; readonly existing: boolean }, TaskNotFound | InvalidTransition | TaskAlreadyExists> {
    const holder = this.holderOf(spec.idempotencyKey ?? Option.getOrUndefined(spec.attempt?.idempotencyKey ?? Option.none()))
    if (holder !== undefined) return Result.succeed({ task: holder, existing: true })
    const parent = this.parentOf(spec)
    if (Result.isFailure(parent)) return Result.fail(parent.failure)
    const added = this.registry.add(
      (revision) => newRecord(sessionId, spec, state, now, revision),
      spec.id,
      sessionId,
      owner,
      control,
      parent.success
    )
    if (Result.isFailure(added)) return Result.fail(added.failure)
    this.telemetry.registered(added.success.record)
    return Result.succeed({ task: added.success, existing: false })
  }

  /** The live parent a registration names, or why it cannot be one. */
  private parentOf(spec: Spec): Result.Result<Task | undefined, TaskNotFound | InvalidTransition> {
    const parentId = spec.parentTaskId
    if (parentId === undefined) return Result.succeed(undefined)
    const parent = this.registry.findLive(parentId)
    if (parent !== undefined) return Result.succeed(parent)
    const ended = this.registry.resolve(parentId)
    return Result.fail(
      ended === undefined
        ? new TaskNotFound({ taskId: parentId })
        : new InvalidTransition({ taskId: parentId, from: ended.record.state, to: `parent of ${spec.id}` })
    )
  }
}
