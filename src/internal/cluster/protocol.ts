/**
 * The `TaskSession` entity's protocol: what a routed call says to the runner
 * that owns a session, and back. Pure data: Schemas, and the conversion of a
 * registration to the form that crosses processes.
 *
 * A task's body (an Effect) and an external task's cancel effect cannot
 * cross processes: a routed spawn names a producer and its input, and the
 * owner builds the body with that producer's handler. A registration's
 * `timeout` and `cancelGracePeriod` cross as milliseconds; a `retry`
 * `Schedule` cannot cross (use `backoff`).
 *
 * Every write is persisted by the cluster (it survives the death of the
 * runner that was to handle it, and is delivered again to the next owner)
 * and carries a `requestId`, the message's primary key: a caller that sends
 * the same request again gets the stored reply.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { ClusterSchema, Entity } from "effect/cluster"
import { Rpc } from "effect/rpc"
import {
  BackgroundTaskRecord,
  CancelPolicy,
  ClosePolicy,
  Id,
  LiveState,
  TaskBackoff,
  TaskInput,
  TaskKind,
  type TaskRegistration,
  TaskState
} from "../../BackgroundTask.ts"
import {
  InvalidTransition,
  InvokeError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskAlreadyExists,
  TaskNotFound
} from "../../PluginError.ts"

/** The errors a session's host answers a routed call with. */
export const RoutedError = Schema.Union([
  RegistrationError,
  SnapshotError,
  InvokeError,
  SessionError,
  TaskNotFound,
  TaskAlreadyExists,
  InvalidTransition
])

const Millis = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/** A registration as it crosses processes. */
export const RoutedSpec = Schema.Struct({
  id: Id,
  kind: TaskKind,
  producer: Schema.String,
  parentTaskId: Schema.optionalKey(Id),
  childSessionId: Schema.optionalKey(Id),
  cancelPolicy: Schema.optionalKey(CancelPolicy),
  closePolicy: Schema.optionalKey(ClosePolicy),
  timeoutMillis: Schema.optionalKey(Millis),
  cancelGracePeriodMillis: Schema.optionalKey(Millis),
  maxAttempts: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  idempotencyKey: Schema.optionalKey(Id),
  backoff: Schema.optionalKey(TaskBackoff),
  input: Schema.optionalKey(TaskInput)
})
export type RoutedSpec = typeof RoutedSpec.Type

const finiteMillis = (input: Duration.Input | undefined): number | undefined | "infinite" => {
  if (input === undefined) return undefined
  const d = Duration.fromInputUnsafe(input)
  return Duration.isFinite(d) ? Math.round(Duration.toMillis(d)) : "infinite"
}

/** A checked registration in the form that crosses processes; a `retry` schedule cannot. */
export const routedSpecOf = (spec: TaskRegistration): Result.Result<RoutedSpec, RegistrationError> => {
  if (spec.retry !== undefined) {
    return Result.fail(
      new RegistrationError({
        message:
          `invalid spec: a retry Schedule cannot be sent to the runner that owns the session (task ${spec.id}); give backoff (data) instead`
      })
    )
  }
  const timeout = finiteMillis(spec.timeout)
  const grace = finiteMillis(spec.cancelGracePeriod)
  const { backoff, cancelPolicy, childSessionId, closePolicy, id, idempotencyKey, input, kind, maxAttempts, parentTaskId, producer } =
    spec
  return Result.succeed({
    id,
    kind,
    producer,
    ...(parentTaskId === undefined ? {} : { parentTaskId }),
    ...(childSessionId === undefined ? {} : { childSessionId }),
    ...(cancelPolicy === undefined ? {} : { cancelPolicy }),
    ...(closePolicy === undefined ? {} : { closePolicy }),
    ...(timeout === undefined || timeout === "infinite" ? {} : { timeoutMillis: timeout }),
    ...(grace === undefined || grace === "infinite" ? {} : { cancelGracePeriodMillis: grace }),
    ...(maxAttempts === undefined ? {} : { maxAttempts }),
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
    ...(backoff === undefined ? {} : { backoff }),
    ...(input === undefined ? {} : { input })
  })
}

/** The registration a session's host is given for a routed spec. */
export const registrationOf = (spec: RoutedSpec): TaskRegistration => {
  const { cancelGracePeriodMillis, timeoutMillis, ...rest } = spec
  return {
    ...rest,
    ...(timeoutMillis === undefined ? {} : { timeout: Duration.millis(timeoutMillis) }),
    ...(cancelGracePeriodMillis === undefined ? {} : { cancelGracePeriod: Duration.millis(cancelGracePeriodMillis) })
  }
}

const requestId = { requestId: Schema.String }
const write = <const Tag extends string, Payload extends Schema.Struct.Fields, Success extends Schema.Top>(
  tag: Tag,
  payload: Payload,
  success: Success
) =>
  Rpc.make(tag, {
    payload: { ...requestId, ...payload },
    success,
    error: RoutedError,
    primaryKey: (p: { readonly requestId: string }) => p.requestId
  } as never as { payload: Payload & typeof requestId; success: Success; error: typeof RoutedError }).annotate(
    ClusterSchema.Persisted,
    true
  )

export const Spawn = write("Spawn", { spec: RoutedSpec }, BackgroundTaskRecord)
export const RegisterExternal = write("RegisterExternal", { spec: RoutedSpec }, BackgroundTaskRecord)
export const Register = write("Register", { spec: RoutedSpec }, BackgroundTaskRecord)
export const Update = write("Update", {
  taskId: Schema.String,
  state: Schema.optionalKey(TaskState),
  progress: Schema.optionalKey(Schema.String)
}, BackgroundTaskRecord)
export const Complete = write("Complete", {
  taskId: Schema.String,
  state: Schema.String,
  summary: Schema.optionalKey(Schema.String)
}, BackgroundTaskRecord)
export const RequestCancel = write("RequestCancel", {
  taskId: Schema.String,
  reason: Schema.optionalKey(Schema.String)
}, BackgroundTaskRecord)
export const CancelManaged = write("CancelManaged", { taskId: Schema.String }, Schema.Void)
export const MarkTerminal = write("MarkTerminal", { taskId: Schema.String, state: Schema.String }, Schema.Void)
export const MarkLiveState = write("MarkLiveState", { taskId: Schema.String, state: LiveState }, Schema.Void)
export const UnregisterExternal = write("UnregisterExternal", { taskId: Schema.String }, Schema.Void)
export const CancelAll = write("CancelAll", {}, Schema.Array(BackgroundTaskRecord))
export const Close = write("Close", {}, Schema.Void)
/** Activates the session where it is placed (recovering what its last owner left) and says which runner that is. */
export const Wake = Rpc.make("Wake", { success: Schema.String, error: RoutedError })

/** The entity: one per session, keyed by the session id. */
export const TaskSession = Entity.make("TaskSession", [
  Spawn,
  RegisterExternal,
  Register,
  Update,
  Complete,
  RequestCancel,
  CancelManaged,
  MarkTerminal,
  MarkLiveState,
  UnregisterExternal,
  CancelAll,
  Close,
  Wake
])
