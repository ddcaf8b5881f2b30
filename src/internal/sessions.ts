/**
 * Sessions: opening one, its handle, handing it off, and closing it.
 *
 * Owns: which sessions are open and their successors, the close policies
 * applied when a session closes (`keep` runs on, `transfer` moves to the
 * successor, `cancel` is cancelled through its policy), and the session
 * handle (the host's session methods bound to one id, refused once closed).
 * Calls the registry, `cancellation.ts`, `supervisor.ts` (transfers move
 * slots) and `state.ts`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import { SessionError } from "../PluginError.ts"
import type { Cancellation } from "./cancellation.ts"
import type { RegistryService } from "./registry.ts"
import type { RegisterRequest, TaskFilter } from "../BackgroundTask.ts"
import type { BackgroundTaskHostService, BackgroundTaskSession, SessionOptions, WatchOptions } from "./service.ts"
import type { Steps } from "./state.ts"
import type { Supervisor } from "./supervisor.ts"
import type { Task } from "./task.ts"
import { checked, checkAll, sessionFilterOf, sessionIdOf, sessionOptionsOf, sessionRequestOf } from "./validate.ts"


interface OpenSession {
  successor: string | undefined
}

export class Sessions {
  private readonly steps: Steps
  private readonly registry: RegistryService
  private readonly cancellation: Cancellation
  private readonly supervisor: Supervisor
  /** Waits until the session's writes are committed (a durable host). */
  private readonly afterClose: Effect.Effect<void>
  private readonly open = new Map<string, OpenSession>()

  constructor(
    steps: Steps,
    registry: RegistryService,
    cancellation: Cancellation,
    supervisor: Supervisor,
    afterClose: Effect.Effect<void>
  ) {
    this.steps = steps
    this.registry = registry
    this.cancellation = cancellation
    this.supervisor = supervisor
    this.afterClose = afterClose
  }

  /** Forgets every open session (shutdown closes every session as `cancel`). */
  clear(): void {
    this.open.clear()
  }

  /** Opens a session in the caller's scope; closing the scope closes it. */
  openSession(
    host: BackgroundTaskHostService,
    sessionId: unknown,
    options: SessionOptions | undefined
  ): Effect.Effect<BackgroundTaskSession, SessionError, Scope.Scope> {
    return Effect.suspend(() => {
      // both arguments, before anything is looked up
      const valid = checkAll(sessionIdOf(sessionId), sessionOptionsOf(options))
      if (Result.isFailure(valid)) return Effect.fail(valid.failure)
      const [id, { successor }] = valid.success
      return Effect.acquireRelease(
        this.steps.whenOpen(() => {
          if (this.open.has(id)) {
            return Effect.fail(new SessionError({ message: `session ${JSON.stringify(id)} is already open` }))
          }
          const bad = successor === undefined ? undefined : successorError(id, successor)
          if (bad !== undefined) return Effect.fail(bad)
          const state: OpenSession = { successor }
          this.open.set(id, state)
          return Effect.succeed(state)
        }),
        () => this.close(id)
      ).pipe(Effect.map((state) => this.handle(host, id, state)))
    })
  }

  /**
   * Applies the close policies of a session's live tasks: `keep` runs on,
   * `transfer` moves to the successor (or is cancelled without one), `cancel`
   * is cancelled through its policy. Waits for the cancellations.
   */
  private close(sessionId: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      const session = this.open.get(sessionId)
      this.open.delete(sessionId)
      if (session === undefined || !this.steps.isOpen()) return Effect.void
      const successor = session.successor
      return this.steps.internal((now) => {
        const cancel: Array<readonly [Task, string]> = []
        for (const task of this.registry.liveInSession(sessionId)) {
          switch (task.record.closePolicy) {
            case "keep":
              break
            case "cancel":
              cancel.push([task, "session closed"])
              break
            case "transfer": {
              if (successor === undefined) {
                cancel.push([task, "session closed without a successor"])
                break
              }
              const moved = this.supervisor.transferTasks([task], successor, now)
              if (Result.isFailure(moved)) {
                cancel.push([task, `session closed; transfer to ${successor} failed: ${moved.failure.message}`])
              }
            }
          }
        }
        return Effect.forEach(cancel, ([task, reason]) => this.cancellation.cancelTree(task, "policy", reason), {
          concurrency: "unbounded",
          discard: true
        })
      })
    }).pipe(Effect.ensuring(this.afterClose))
  }

  /** The host's session methods bound to one session, refusing every call once it is closed. */
  private handle(host: BackgroundTaskHostService, sessionId: string, state: OpenSession): BackgroundTaskSession {
    const closed = new SessionError({ message: `session ${JSON.stringify(sessionId)} is closed` })
    const open = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionError, R> =>
      Effect.suspend((): Effect.Effect<A, E | SessionError, R> =>
        this.open.get(sessionId) === state ? effect : Effect.fail(closed)
      )
    return {
      sessionId,
      spawn: (spec, task) => open(host.spawnManaged(sessionId, spec, task)),
      registerExternal: (spec, cancel) => open(host.registerExternal(sessionId, spec, cancel)),
      // the caller's spec and filters are read (copied) when the call runs, before the handle adds its session id
      register: (spec) => open(checked(() => sessionRequestOf(spec, sessionId), (request) => host.register(request as RegisterRequest))),
      get: (taskId) => open(host.getManaged(sessionId, taskId)),
      await: (taskId) => open(host.await(taskId, { sessionId })),
      list: (filter) => open(checked(() => sessionFilterOf<TaskFilter>(filter, sessionId), host.list)),
      cancel: (taskId) => open(host.cancelManaged(sessionId, taskId)),
      cancelAll: open(host.cancelAllManaged(sessionId)),
      transfer: (toSessionId, taskIds) => open(host.transferManaged(sessionId, toSessionId, taskIds)),
      handoff: (successor) =>
        open(Effect.suspend(() => {
          const invalid = successorError(sessionId, successor, "successorSessionId")
          if (invalid !== undefined) return Effect.fail(invalid)
          state.successor = successor
          return Effect.void
        })),
      subscribe: (filter) => open(checked(() => sessionFilterOf<TaskFilter>(filter, sessionId), host.subscribe)),
      watch: (filter) => open(checked(() => sessionFilterOf<WatchOptions>(filter, sessionId), host.watch)),
      spawnHidden: (label, task) => open(host.spawnHidden(sessionId, label, task)),
      awaitHidden: open(host.awaitHidden(sessionId))
    }
  }
}

/** Why `successor` cannot take over `sessionId`'s tasks, if it cannot. */
const successorError = (sessionId: string, successor: unknown, name = "successor"): SessionError | undefined =>
  Result.match(sessionIdOf(successor, name), { onFailure: (error) => error, onSuccess: () => undefined }) ??
    (successor === sessionId
      ? new SessionError({ message: `session ${JSON.stringify(sessionId)} cannot be its own successor` })
      : undefined)
