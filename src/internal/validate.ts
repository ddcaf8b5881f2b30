/**
 * A fast path for the registrations the host decodes on every call.
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
import {
  CancelPolicy,
  ClosePolicy,
  type RegisterRequest,
  TaskKind,
  type TaskRegistration
} from "../BackgroundTask.ts"

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
