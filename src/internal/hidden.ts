/**
 * Hidden tasks: fibers tracked per session, with no record (`spawnHidden`,
 * `awaitHidden`).
 *
 * Each session counts its running hidden fibers and keeps the first failure
 * until an `awaitHidden` reports it. `FiberSet` is not used: its `join` stays
 * failed for the set's lifetime, while a hidden failure is reported once, and
 * its `awaitEmpty` does not say which failure came first.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { InvokeError, type PluginError } from "../PluginError.ts"
import { causeMessage } from "./messages.ts"

interface Session {
  running: number
  failure: PluginError | undefined
  /** Completed when `running` drops to zero. */
  idle: Deferred.Deferred<void> | undefined
}

export class HiddenTasks {
  private readonly sessions = new Map<string, Session>()
  private readonly running = new Set<Fiber.Fiber<unknown, unknown>>()
  private readonly isOpen: () => boolean

  /** `isOpen` is read when a fiber starts: a fiber that starts after the host closed never runs its task. */
  constructor(isOpen: () => boolean) {
    this.isOpen = isOpen
  }

  /** Forks `task` for the session; counted as running from this call on. */
  spawn<R>(sessionId: string, label: string, task: Effect.Effect<void, PluginError, R>): Effect.Effect<void, never, R> {
    return Effect.suspend(() => {
      let session = this.sessions.get(sessionId)
      if (session === undefined) this.sessions.set(sessionId, session = { running: 0, failure: undefined, idle: undefined })
      session.running++
      if (session.idle === undefined) session.idle = Deferred.makeUnsafe<void>()
      const run = Effect.withFiber((self): typeof task => {
        if (!this.isOpen()) return Effect.interrupt
        this.running.add(self)
        return task
      }).pipe(
        Effect.annotateLogs({ sessionId, hiddenTask: label }),
        Effect.onExit((exit) => Effect.withFiber((self) => Effect.sync(() => this.done(self, sessionId, label, exit))))
      )
      return Effect.asVoid(Effect.forkDetach(run))
    })
  }

  /** Waits until the session has no running hidden task, then fails with its first failure, once. */
  await(sessionId: string): Effect.Effect<void, PluginError> {
    return Effect.suspend(() => {
      const session = this.sessions.get(sessionId)
      if (session === undefined) return Effect.void
      if (session.running > 0 && session.idle !== undefined) {
        return Effect.andThen(Deferred.await(session.idle), this.await(sessionId))
      }
      this.sessions.delete(sessionId)
      return session.failure === undefined ? Effect.void : Effect.fail(session.failure)
    })
  }

  /** The hidden fibers running now (for shutdown). */
  fibers(): Array<Fiber.Fiber<unknown, unknown>> {
    return Array.from(this.running)
  }

  private done(self: Fiber.Fiber<unknown, unknown>, sessionId: string, label: string, exit: Exit.Exit<void, PluginError>) {
    this.running.delete(self)
    const session = this.sessions.get(sessionId)
    if (session === undefined) return
    if (Exit.isFailure(exit) && session.failure === undefined && !Cause.hasInterruptsOnly(exit.cause)) {
      const error = Cause.findErrorOption(exit.cause)
      session.failure = Option.isSome(error)
        ? error.value
        : new InvokeError({ message: `hidden task ${JSON.stringify(label)} died: ${causeMessage(exit.cause)}` })
    }
    session.running--
    if (session.running === 0) {
      const idle = session.idle
      session.idle = undefined
      if (session.failure === undefined) this.sessions.delete(sessionId)
      if (idle !== undefined) Deferred.doneUnsafe(idle, Effect.void)
    }
  }
}
