/**
 * A session handle: the host's session methods bound to one session id,
 * refusing every call once the session is closed.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { BackgroundTaskHostService, BackgroundTaskSession } from "../BackgroundTaskHost.ts"
import { SessionError } from "../PluginError.ts"

export interface SessionControl {
  /** Whether this handle's session is still open. */
  readonly isOpen: () => boolean
  /** Names the successor; an error when it is not a valid one. */
  readonly handoff: (successor: string) => SessionError | undefined
}

export const makeSession = (
  host: BackgroundTaskHostService,
  sessionId: string,
  control: SessionControl
): BackgroundTaskSession => {
  const closed = new SessionError({ message: `session ${JSON.stringify(sessionId)} is closed` })
  /** Runs `effect` only while the session is open. */
  const open = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionError, R> =>
    Effect.suspend((): Effect.Effect<A, E | SessionError, R> => control.isOpen() ? effect : Effect.fail(closed))
  return {
    sessionId,
    spawn: (spec, task) => open(host.spawnManaged(sessionId, spec, task)),
    registerExternal: (spec, cancel) => open(host.registerExternal(sessionId, spec, cancel)),
    register: (spec) => open(host.register({ ...spec, scope: { sessionId } })),
    get: (taskId) => open(host.getManaged(sessionId, taskId)),
    list: (filter) => open(host.list({ ...filter, sessionId })),
    cancel: (taskId) => open(host.cancelManaged(sessionId, taskId)),
    cancelAll: open(host.cancelAllManaged(sessionId)),
    transfer: (toSessionId, taskIds) => open(host.transferManaged(sessionId, toSessionId, taskIds)),
    handoff: (successor) =>
      open(Effect.suspend(() => {
        const invalid = control.handoff(successor)
        return invalid === undefined ? Effect.void : Effect.fail(invalid)
      })),
    subscribe: (filter) => open(host.subscribe({ ...filter, sessionId })),
    watch: (filter) => open(host.watch({ ...filter, sessionId })),
    spawnHidden: (label, task) => open(host.spawnHidden(sessionId, label, task)),
    awaitHidden: open(host.awaitHidden(sessionId))
  }
}
