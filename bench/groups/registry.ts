/**
 * Scenario 2, registry lifecycle without fibers: `register` → `update(running)`
 * → `complete` for N tasks, one after another — vs the same three steps on a
 * raw `Ref<Map>` holding records of the same shape (with the same timestamps
 * from the Clock and a minimal legality check).
 */
import { DateTime, Effect, Option, Ref } from "effect"
import { type BackgroundTaskRecord, defaultAttempt, isTerminal } from "../../src/index.ts"
import { check, type GroupResult, measure, medianOf, runNumber, type Settings, timed } from "../harness.ts"
import { withHost } from "../host.ts"

const session = "bench"

const hostRun = (n: number) =>
  withHost({}, (host) =>
    Effect.gen(function*() {
      const ms = yield* timed(Effect.gen(function*() {
        for (let i = 0; i < n; i++) {
          const id = `t-${i}`
          yield* host.register({ scope: { sessionId: session }, id, kind: "other", producer: "bench" })
          yield* host.update(id, { state: "running" })
          yield* host.complete(id, { state: "completed" })
        }
      }))
      // default retention: the host holds the newest 10,000 and counts them all
      const stats = yield* host.stats
      check(stats.completed === n && stats.live === 0, "every record completed")
      return ms
    })
  )

class NotFound extends Error {}

const refMapRun = (n: number) =>
  Effect.gen(function*() {
    const ref = yield* Ref.make(new Map<string, BackgroundTaskRecord>())
    const step = (id: string, f: (record: BackgroundTaskRecord, now: DateTime.Utc) => BackgroundTaskRecord) =>
      Effect.flatMap(DateTime.now, (now) =>
        Ref.modify(ref, (map) => {
          const record = map.get(id)
          if (record === undefined || isTerminal(record.state)) throw new NotFound(id)
          const next = f(record, now)
          map.set(id, next)
          return [next, map] as const
        }))
    const ms = yield* timed(Effect.gen(function*() {
      for (let i = 0; i < n; i++) {
        const id = `t-${i}`
        yield* Effect.flatMap(DateTime.now, (now) =>
          Ref.modify(ref, (map) => {
            const record: BackgroundTaskRecord = {
              id,
              kind: "other",
              producer: "bench",
              scope: { sessionId: session },
              parentTaskId: Option.none(),
              childSessionId: Option.none(),
              state: "pending",
              cancelPolicy: "cooperative",
              closePolicy: "keep",
              attempt: defaultAttempt,
              result: Option.none(),
              failure: Option.none(),
              createdAt: now,
              updatedAt: now,
              completedAt: Option.none(),
              progress: Option.none(),
              revision: 0
            }
            map.set(id, record)
            return [record, map] as const
          }))
        yield* step(id, (record, now) => ({ ...record, state: "running", updatedAt: now }))
        yield* step(id, (record, now) => ({
          ...record,
          state: "completed",
          updatedAt: now,
          completedAt: Option.some(now),
          result: Option.some({ summary: Option.none() })
        }))
      }
    }))
    const map = yield* Ref.get(ref)
    check(map.size === n && Array.from(map.values()).every((r) => r.state === "completed"), "every record completed")
    return ms
  })

export const run = async (settings: Settings): Promise<GroupResult> => {
  const n = settings.quick ? 300 : 100_000
  const results = await measure("2 registry lifecycle", settings, [
    { name: "host register/update/complete", role: "host", run: () => runNumber(hostRun(n)) },
    { name: "Ref<Map> same three steps", role: "baseline", run: () => runNumber(refMapRun(n)) }
  ])
  return {
    group: "registry",
    scenarios: [{
      id: "registry-lifecycle",
      scenario: 2,
      group: "registry",
      title: "Registry lifecycle without fibers: register → update(running) → complete, N tasks",
      unit: "ms",
      params: { n },
      variants: results,
      ratios: [{
        id: "vs-ref-map",
        label: "host time / Ref<Map> time",
        value: medianOf(results, "host register/update/complete") / medianOf(results, "Ref<Map> same three steps")
      }],
      notes: [
        "baseline: records of the same shape in a mutable Map inside a Ref, timestamps from the Clock, terminal check; no input validation, no indexes, no events"
      ]
    }]
  }
}
