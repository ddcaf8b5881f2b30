/**
 * The task bodies of the cluster bench (scenario 8), by producer: the same
 * on the cluster's runners (their `handlers`) and on the single-node host it
 * is compared with.
 *
 * - `noop`: ends at once (spawn → `Registered` latency);
 * - `forever`: runs until cancelled (cancel → `Cancelled` latency, fail-over);
 * - `burst`: `input.events` progress messages as fast as it can (events/s).
 */
import { Effect } from "effect"
import { TaskContext } from "../../src/index.ts"

export const handlers = {
  noop: () => Effect.void,
  forever: () => Effect.never,
  burst: (record: { readonly input?: unknown }) =>
    Effect.gen(function*() {
      const ctx = yield* TaskContext
      const { events = 100 } = (record.input ?? {}) as { events?: number }
      for (let i = 1; i <= events; i++) yield* ctx.progress(`event ${i}`)
    })
}
