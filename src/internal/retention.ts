/**
 * Retention: the fibers that keep what the host holds bounded.
 *
 * Owns: the sweeper, which evicts terminal records as they reach `maxAge`
 * (it sleeps until the next one is due, ends when none is held, and is
 * started again by the record that ends an idle spell, so an idle host never
 * wakes), and, on a durable store, the pruner of stored events beyond
 * `eventRetention.maxEvents` or older than `eventRetention.maxAge` (in the
 * background, once they are committed, after the lease's gate).
 * Calls the registry, `durable.ts` and the store; `subscriptions.ts` reads
 * `prunedThrough` to refuse a replay of pruned events.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { Durability, LeaseGate } from "./durable.ts"
import { Registry } from "./registry.ts"
import type { Steps } from "./state.ts"
import type { TaskStoreService } from "./store.ts"

export interface Retention {
  /** The stored events up to this `seq` were pruned: `watch({ fromSeq })` below it cannot replay. */
  readonly prunedThrough: number
}

export const Retention = {
  /** Starts the sweeper (and, on a durable store, the pruner) for as long as the scope lives. */
  start: (deps: {
    readonly steps: Steps
    readonly layerContext: Context.Context<never>
    readonly maxAge: Duration.Duration
    readonly durable: TaskStoreService | undefined
    readonly durability: Durability
    readonly eventRetention:
      | { readonly maxEvents: number; readonly maxAge: Duration.Duration; readonly pruneEvery: Duration.Duration }
      | undefined
    /** The lease's gate, on a durable store: the pruner passes it like any work the host starts. */
    readonly lease: LeaseGate | undefined
  }): Effect.Effect<Retention, never, Scope.Scope | Registry> =>
    Effect.gen(function*() {
      const { durability, durable, layerContext, maxAge, steps } = deps
      const registry = yield* Registry
      const state = { prunedThrough: 0 }

      // -- the sweeper: the record that ends an idle spell starts it from inside its step; the
      // fiber's first act is to register its sleep with the `Clock` (nothing else runs inside the
      // step), so a `TestClock` moved right after the record ended already sees it
      let sweeper: Fiber.Fiber<void> | undefined
      const sweep: Effect.Effect<void> = Effect.gen(function*() {
        while (true) {
          const now = yield* Clock.currentTimeMillis
          if (steps.isClosed()) return
          const due = registry.evictExpired(now)
          if (due === undefined) {
            // idle: the next record to end starts the next sweeper
            sweeper = undefined
            registry.onRetire = startSweeper
            return
          }
          yield* Effect.sleep(Duration.millis(due - now))
        }
      })
      const startSweeper = (): void => {
        // a closing host starts no sweeper (its timer would outlive the host)
        if (!steps.isOpen() || sweeper !== undefined) return
        // the oldest held record is the first due (read only: nothing is evicted inside this step)
        const due = registry.nextDue()
        if (due === undefined) {
          registry.onRetire = startSweeper
          return
        }
        sweeper = Effect.runForkWith(layerContext)(
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.andThen(Effect.sleep(Duration.millis(Math.max(0, due - now))), sweep))
        )
      }
      if (Duration.isFinite(maxAge)) {
        registry.onRetire = startSweeper
        // registered after the host's shutdown finalizer, so it runs before that one
        yield* Effect.addFinalizer(() => Effect.suspend(() => sweeper === undefined ? Effect.void : Fiber.interrupt(sweeper)))
      }

      // -- the pruner of stored events
      if (durable !== undefined && deps.eventRetention !== undefined) {
        state.prunedThrough = yield* Effect.orElseSucceed(durable.prunedThrough, () => 0)
        const { maxAge: eventAge, maxEvents, pruneEvery } = deps.eventRetention
        const maxAgeMillis = Duration.toMillis(eventAge)
        /** When the oldest event kept may next reach `maxAge` (unknown at start: at the first prune). */
        let ageDueAt = -Infinity
        /**
         * Deletes the stored events beyond `maxEvents` and those older than
         * `maxAge`, once they are committed; the last event is always kept
         * (its `seq` is where the next host goes on from). A prune with
         * nothing to do asks the store nothing.
         */
        const prune = Effect.gen(function*() {
          if (!steps.isOpen()) return
          // events after `last` are committed after this moment
          const now = yield* Clock.currentTimeMillis
          const last = registry.lastSeq
          const byCount = last - maxEvents
          const ageDue = Number.isFinite(maxAgeMillis) && now >= ageDueAt
          if (byCount <= state.prunedThrough && !ageDue) return
          // work the host starts: past its lease's expiry, the lease is confirmed first
          const confirming = deps.lease?.check()
          if (confirming !== undefined) yield* confirming
          if (!steps.isOpen()) return
          yield* durability.sync
          let byAge = 0
          if (ageDue) {
            const aged = yield* durable.agedThrough(now - maxAgeMillis, last).pipe(
              Effect.catch((error) =>
                Effect.as(Effect.logWarning(`reading the stored events' age failed (tried again later): ${error.message}`), undefined)
              )
            )
            if (aged !== undefined) {
              byAge = aged.through
              ageDueAt = (aged.next ?? now) + maxAgeMillis
            }
          }
          const through = Math.min(Math.max(byCount, byAge), last - 1)
          if (through <= state.prunedThrough) return
          // from now on a replay from below `through` is refused: its events are going
          state.prunedThrough = through
          yield* durable.pruneEvents(through).pipe(
            Effect.catch((error) => Effect.logWarning(`pruning the stored events failed (tried again later): ${error.message}`))
          )
        })
        if (Number.isFinite(maxEvents) || Number.isFinite(maxAgeMillis)) {
          // a tick every `pruneEvery`, whatever a prune's statements take: a tick that comes while one
          // runs makes it run once more when it is done (with the time as it is then), never two at once
          const scope = yield* Effect.scope
          let running = false
          let again = false
          const drive = Effect.gen(function*() {
            do {
              again = false
              yield* prune
            } while (again)
          }).pipe(Effect.ensuring(Effect.sync(() => void (running = false))))
          const tick = Effect.suspend(() => {
            if (running) {
              again = true
              return Effect.void
            }
            running = true
            return Effect.asVoid(Effect.forkIn(drive, scope))
          })
          yield* Effect.forkScoped(Effect.repeat(Effect.delay(tick, pruneEvery), Schedule.forever))
        }
      }
      return state
    })
}
