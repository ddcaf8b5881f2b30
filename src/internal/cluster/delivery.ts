/**
 * How one routed call is delivered to its session's entity, and what its
 * caller sees when the cluster, not the session, ends it.
 *
 * Owns: the mapping of the cluster's delivery errors (a mailbox full, a
 * runner unreachable, storage) to `SessionError`, and the redelivery of a
 * call whose remote side ended interrupted. A caller's fiber sees an
 * interruption only when it is itself interrupted: a call that ends with an
 * interruption that is not the caller's (its handler on the runner was
 * interrupted and the cluster stored that as the reply; the runner's side of
 * the call was interrupted as the runner stopped; the cluster abandoned it)
 * is delivered again, the same message (same `requestId`: the handlers are
 * idempotent), after a short backoff, a bounded number of times; then it
 * fails with `SessionError`. Calls only what it is given (the call, the
 * schedule, the step that makes a stored message deliverable again).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { ClusterSchema } from "effect/cluster"
import { SessionError } from "../../PluginError.ts"

/** The cluster's own failures a call can end with, beside the session's typed errors. */
export type ClusterTag = "MailboxFull" | "AlreadyProcessingMessage" | "PersistenceError" | "EntityNotAssignedToRunner" | "RpcClientError"
const clusterTags: ReadonlySet<string> = new Set<ClusterTag>([
  "MailboxFull",
  "AlreadyProcessingMessage",
  "PersistenceError",
  "EntityNotAssignedToRunner",
  "RpcClientError"
])

/** What a call is, for redelivery and for the messages of its errors. */
export interface Target {
  readonly sessionId: string
  /** The RPC's tag (`Spawn`, `Close`, …). */
  readonly tag: string
  /** The message's primary key; undefined for a call that is not persisted (`Wake`). */
  readonly requestId: string | undefined
}

export interface Redelivery {
  /** The backoff before each redelivery; its recurrences bound them. */
  readonly schedule: Schedule.Schedule<unknown, unknown>
  /**
   * Makes the stored message deliverable again when its stored reply is an
   * interruption (the cluster answers a message sent again with its stored
   * reply). True if it did.
   */
  readonly reopen: (target: Target) => Effect.Effect<boolean>
}

/** 100 ms, doubling: five redeliveries within ~3 s of backoff. */
export const defaultSchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential(Duration.millis(100), 2).pipe(
  Schedule.upTo({ times: 5 })
)

/** A call that ended with interruptions only, none of them its caller's. */
class RemoteInterrupt extends Data.TaggedError("RemoteInterrupt")<{ readonly cause: Cause.Cause<unknown> }> {}

/** Who interrupted, in words (fiber ids are per process: they only tell interruptions apart). */
const describe = (cause: Cause.Cause<unknown>): string => {
  const abandoned = cause.reasons.some((r) => Cause.isInterruptReason(r) && r.annotations.has(ClusterSchema.Abandon.key))
  const ids = [...Cause.interruptors(cause)]
  return `${abandoned ? "abandoned by the cluster (a runner was stopping)" : "interrupted on the cluster's side"}${
    ids.length === 0 ? "" : ` (fiber ${ids.map((id) => `#${id}`).join(", ")})`
  }`
}

/**
 * The call, delivered: its success or the session's typed error; the
 * cluster's failures as `SessionError`; an interruption that is not the
 * caller's delivered again, then `SessionError`. The caller's own
 * interruption interrupts it, at once (the call is not sent again).
 */
export const delivered = <A, E>(
  call: Effect.Effect<A, E>,
  target: Target,
  redelivery: Redelivery
): Effect.Effect<A, Exclude<E, { readonly _tag: ClusterTag }> | SessionError> =>
  Effect.suspend(() => {
    let attempts = 0
    let last: Cause.Cause<unknown> = Cause.empty
    const once = Effect.suspend(() => {
      attempts++
      const send = attempts === 1 ? call : Effect.andThen(
        Effect.logWarning(
          `delivering again (delivery ${attempts}) the call ${target.tag} to session ${target.sessionId}` +
            `${target.requestId === undefined ? "" : ` (request ${target.requestId})`}: it was ${describe(last)}`,
          last
        ),
        target.requestId === undefined ? call : Effect.andThen(redelivery.reopen(target), call)
      )
      // A handler of an interruption runs only if the caller's fiber is not interrupted: an
      // interrupted fiber skips every handler on its way out (an uninterruptible one cannot be
      // interrupted). So the interruptions seen here are not the caller's; its own end the call,
      // and the retry, as interruptions.
      return Effect.catchCause(send, (cause): Effect.Effect<A, E | RemoteInterrupt> => {
        if (!Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause as Cause.Cause<E>)
        last = cause
        return Effect.fail(new RemoteInterrupt({ cause }))
      })
    })
    const redelivered = Effect.retry(once, {
      schedule: redelivery.schedule,
      while: (error) => error instanceof RemoteInterrupt
    })
    return Effect.catch(redelivered, (error: E | RemoteInterrupt): Effect.Effect<never, E | SessionError> => {
      if (error instanceof RemoteInterrupt) {
        return Effect.fail(
          new SessionError({
            message: `the call ${target.tag} to session ${target.sessionId} was ${describe(last)} each of the ${attempts} times it was delivered: whether it took effect is unknown`
          })
        )
      }
      const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : undefined
      if (tag === undefined || !clusterTags.has(tag)) return Effect.fail(error)
      const message = (error as { readonly message?: unknown }).message
      return Effect.fail(
        new SessionError({
          message: `the cluster could not deliver the call to session ${target.sessionId}: ${tag}${message === undefined ? "" : `: ${String(message)}`}`
        })
      )
    }) as Effect.Effect<A, Exclude<E, { readonly _tag: ClusterTag }> | SessionError>
  })
