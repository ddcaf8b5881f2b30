/**
 * Retention: the fibers that keep what the host holds bounded.
 *
 * Owns: the sweeper, which evicts terminal records as they reach `maxAge`
 * (it sleeps until the next one is due, ends when none is held, and is
 * started again by the record that ends an idle spell, so an idle host never
 * wakes), and, on a durable store, the pruner of stored events beyond
 * `eventRetention.maxEvents` (in the background, once they are committed).
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
import type { Durability } from "./durable.ts"
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
    readonly eventRetention: { readonly maxEvents: number; readonly pruneEvery: Duration.Duration } | undefined
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
        const { maxEvents, pruneEvery } = deps.eventRetention
        /** Deletes the stored events beyond `maxEvents`, once they are committed. */
        const prune = Effect.gen(function*() {
          if (!steps.isOpen()) return
          const through = registry.lastSeq - maxEvents
          if (through <= state.prunedThrough) return
          yield* durability.sync
          // from now on a replay from below `through` is refused: its events are going
          state.prunedThrough = through
          yield* durable.pruneEvents(through).pipe(
            Effect.catch((error) => Effect.logWarning(`pruning the stored events failed (tried again later): ${error.message}`))
          )
        })
        if (Number.isFinite(maxEvents)) yield* Effect.forkScoped(Effect.repeat(Effect.delay(prune, pruneEvery), Schedule.forever))
      }
      return state
    })
}
