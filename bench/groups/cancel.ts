/**
 * Scenario 5, cancellation: `cancelAllManaged` over 10k live fibers — vs
 * `FiberMap.clear` over the same fibers. Every fiber has started (it counted
 * itself, then waits forever) before the clock starts.
 */
import { Effect, FiberMap } from "effect"
import { check, type GroupResult, measure, medianOf, runNumber, type Settings, shortRuns, timed } from "../harness.ts"
import { withHost } from "../host.ts"

const session = "bench"

/** Waits, off the clock, until `started()` reaches `n`. */
const allStarted = (started: () => number, n: number) =>
  Effect.gen(function*() {
    while (started() < n) yield* Effect.yieldNow
  })

const hostRun = (n: number) =>
  withHost({}, (host) =>
    Effect.gen(function*() {
      let started = 0
      const body = Effect.andThen(Effect.sync(() => started++), Effect.never)
      for (let i = 0; i < n; i++) {
        yield* host.spawnManaged(session, { id: `t-${i}`, kind: "other", producer: "bench" }, body)
      }
      yield* allStarted(() => started, n)
      let cancelled: ReadonlyArray<{ readonly state: string }> = []
      const ms = yield* timed(Effect.map(host.cancelAllManaged(session), (records) => (cancelled = records)))
      check(cancelled.length === n && cancelled.every((r) => r.state === "cancelled"), "every task cancelled")
      return ms
    })
  )

const fiberMapRun = (n: number) =>
  Effect.scoped(Effect.gen(function*() {
    const map = yield* FiberMap.make<string>()
    let started = 0
    const body = Effect.andThen(Effect.sync(() => started++), Effect.never)
    for (let i = 0; i < n; i++) yield* FiberMap.run(map, `t-${i}`, body)
    yield* allStarted(() => started, n)
    const ms = yield* timed(FiberMap.clear(map))
    check((yield* FiberMap.size(map)) === 0, "FiberMap empty")
    return ms
  }))

export const run = async (settings: Settings): Promise<GroupResult> => {
  const n = settings.quick ? 300 : 10_000
  // three warm-up runs of each variant, not one: a run is a single call over 10k fibers, and V8 is
  // still optimizing both variants' code in the second (both ran about a third slower in it than later)
  const results = await measure("5 cancellation", { ...shortRuns(settings), warmup: settings.quick ? settings.warmup : 3 }, [
    { name: "host cancelAllManaged", role: "host", run: () => runNumber(hostRun(n)) },
    { name: "FiberMap.clear", role: "baseline", run: () => runNumber(fiberMapRun(n)) }
  ])
  return {
    group: "cancel",
    scenarios: [{
      id: "cancel-all",
      scenario: 5,
      group: "cancel",
      title: "Cancellation: cancel every one of N live fibers",
      unit: "ms",
      params: { n },
      variants: results,
      ratios: [{
        id: "vs-fibermap-clear",
        label: "cancelAllManaged time / FiberMap.clear time",
        value: medianOf(results, "host cancelAllManaged") / medianOf(results, "FiberMap.clear")
      }],
      notes: [
        "host: the clock stops when cancelAllManaged returns, every record cancelled with its event published",
        "three warm-up runs of each variant before the 15 measured ones (a run is one call; V8 still optimizes in the second)"
      ],
      fairness: [{
        baseline: "FiberMap.clear",
        why: "it interrupts the same started fibers and waits for them to end, but records nothing and publishes no " +
          "event: it is the floor the host's cancellation is built on, which is why the target is a multiple of it"
      }]
    }]
  }
}
