/**
 * How a failure becomes a record's summary: the error's (or defect's)
 * `message`, else its string form.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"
import * as Result from "effect/Result"

/** A failure's message: the error's (or defect's) `message`, else its string form. */
export const causeMessage = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error)) return messageOf(error.value)
  const defect = Cause.findDefect(cause)
  if (Result.isSuccess(defect)) return messageOf(defect.success)
  return "interrupted"
}

/** A value's `message` when it has a non-empty one, else its `_tag`, else its string form. */
export const messageOf = (u: unknown): string => {
  if (typeof u === "string") return u
  if (typeof u === "object" && u !== null && "message" in u && typeof u.message === "string" && u.message !== "") {
    return u.message
  }
  if (typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string") return u._tag
  return String(u)
}
