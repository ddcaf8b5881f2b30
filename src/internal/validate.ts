/**
 * The host's input checks: every public method's arguments are checked here,
 * before its step, and bad input becomes a typed error.
 *
 * A fast path for the registrations the host decodes on every call:
 *
 * Decoding a `RegisterRequest` with Schema costs more than the registration
 * itself (measured: `npm run bench`, registry lifecycle). These guards accept
 * only the plain, common shape — every field of the right primitive type, no
 * `attempt` — and say nothing about anything else: the host then decodes with
 * the Schema, which stays the one authority on what is valid and on the error
 * message. A guard must never accept what the Schema rejects;
 * `test/internal/validate.test.ts` checks that over random inputs.
 *
 * @internal
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import {
  CancelPolicy,
  ClosePolicy,
  RegisterRequest,
  TaskFilter,
  TaskKind,
  TaskRegistration,
  TaskScope
} from "../BackgroundTask.ts"
import { InvokeError, RegistrationError, SessionError, SnapshotError } from "../PluginError.ts"

const kinds: ReadonlySet<unknown> = new Set(TaskKind.literals)
const cancelPolicies: ReadonlySet<unknown> = new Set(CancelPolicy.literals)
const closePolicies: ReadonlySet<unknown> = new Set(ClosePolicy.literals)

const isId = (u: unknown): u is string => typeof u === "string" && u.length > 0

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const hasOwn = Object.prototype.hasOwnProperty

/** An optional key: absent, or present with a valid value (never `undefined`). */
const optional = (input: Record<string, unknown>, key: string, valid: (u: unknown) => boolean): boolean =>
  !hasOwn.call(input, key) || valid(input[key])

const isAttempts = (u: unknown): boolean => typeof u === "number" && Number.isSafeInteger(u) && u >= 1

/** The plain shape of a `TaskRegistration`: no `attempt`, `timeout`, `cancelGracePeriod` or `retry`. */
export const isPlainRegistration = (input: unknown): input is TaskRegistration =>
  isObject(input) &&
  isId(input.id) &&
  kinds.has(input.kind) &&
  typeof input.producer === "string" &&
  !hasOwn.call(input, "attempt") &&
  !hasOwn.call(input, "timeout") &&
  !hasOwn.call(input, "cancelGracePeriod") &&
  !hasOwn.call(input, "retry") &&
  !hasOwn.call(input, "backoff") &&
  !hasOwn.call(input, "input") &&
  optional(input, "maxAttempts", isAttempts) &&
  optional(input, "idempotencyKey", isId) &&
  optional(input, "parentTaskId", isId) &&
  optional(input, "childSessionId", isId) &&
  optional(input, "cancelPolicy", (u) => cancelPolicies.has(u)) &&
  optional(input, "closePolicy", (u) => closePolicies.has(u))

/** The plain shape of a `RegisterRequest` (see `isPlainRegistration`). */
export const isPlainRegisterRequest = (input: unknown): input is RegisterRequest =>
  isPlainRegistration(input) && isObject((input as Record<string, unknown>).scope) &&
  isId(((input as Record<string, unknown>).scope as Record<string, unknown>).sessionId)

// -----------------------------------------------------------------------------
// the host's input checks: every public method's arguments, before its step
// -----------------------------------------------------------------------------

const decodeRegister = Schema.decodeUnknownResult(Schema.toType(RegisterRequest))
const decodeRegistration = Schema.decodeUnknownResult(Schema.toType(TaskRegistration))
const decodeFilter = Schema.decodeUnknownResult(Schema.toType(TaskFilter))
const decodeScope = Schema.decodeUnknownResult(Schema.toType(TaskScope))

/** A registration decoded synchronously: the plain shape passes a fast guard, anything else goes through the Schema. */
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

export const registerRequestOf = (input: unknown): Result.Result<RegisterRequest, RegistrationError> =>
  registration("registration", input, isPlainRegisterRequest, decodeRegister)

export const registrationOf = (input: unknown): Result.Result<TaskRegistration, RegistrationError> =>
  registration("task registration", input, isPlainRegistration, decodeRegistration)

export const filterOf = (filter: unknown): Result.Result<TaskFilter | undefined, SnapshotError> =>
  filter === undefined ? Result.succeed(undefined) : Result.mapError(
    decodeFilter(filter, { errors: "all" }),
    (error) => new SnapshotError({ message: `invalid task filter: ${error.message}` })
  )

export const scopeOf = (scope: unknown): Result.Result<TaskScope, SessionError> =>
  Result.mapError(
    decodeScope(scope, { errors: "all" }),
    (error) => new SessionError({ message: `invalid target scope: ${error.message}` })
  )

/** Why a session id is not one, if it is not. */
export const checkSession = (sessionId: unknown): SessionError | undefined =>
  typeof sessionId === "string" && sessionId.length > 0
    ? undefined
    : new SessionError({ message: `invalid session id ${String(JSON.stringify(sessionId))}: expected a non-empty string` })

/** `update`'s and `complete`'s argument: an object whose `field`, when given, is a string. */
export const checkOutcomeInput = (
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
