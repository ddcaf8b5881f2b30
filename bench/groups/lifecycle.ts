/**
 * Scenario 1, managed lifecycle: `spawnManaged` of N tasks whose body is
 * `Effect.yieldNow`, until every record is `completed` and its terminal event
 * has been published (a subscriber counts the terminal events) — vs raw
 * `FiberMap.run` + `awaitEmpty` of the same bodies, and vs p-queue running N
 * async no-op functions while keeping a `Map` of records with state updates.
 */
import { Effect, Fiber, FiberMap, Stream } from "effect"
import PQueue from "p-queue"
import { isTerminalEvent } from "../events.ts"
import { check, type GroupResult, measure, medianOf, runNumber, type Settings, timed } from "../harness.ts"
import { withHost } from "../host.ts"

const session = "bench"

const hostRun = (n: number) =>
  // default retention (terminal records beyond 10,000 are evicted, as users get
  // them); the counting subscriber's buffer holds N so it never lags
  withHost({ losslessSubscribers: true }, (host) =>
    Effect.gen(function*() {
      const events = yield* host.subscribe({ sessionId: session })
      const terminal = yield* Effect.forkChild(
        events.pipe(Stream.filter(isTerminalEvent), Stream.take(n), Stream.runCount)
      )
      const ms = yield* timed(Effect.gen(function*() {
        for (let i = 0; i < n; i++) {
          yield* host.spawnManaged(session, { id: `t-${i}`, kind: "other", producer: "bench" }, Effect.yieldNow)
        }
        return yield* Fiber.join(terminal)
      }))
      // checked once, after the clock stopped
      const stats = yield* host.stats
      check(stats.completed === n && stats.live === 0, "every managed task completed")
      return ms
    })
  )

const fiberMapRun = (n: number) =>
  Effect.scoped(Effect.gen(function*() {
    const map = yield* FiberMap.make<string>()
    const ms = yield* timed(Effect.gen(function*() {
      for (let i = 0; i < n; i++) {
        yield* FiberMap.run(map, `t-${i}`, Effect.yieldNow)
      }
      yield* FiberMap.awaitEmpty(map)
    }))
    check((yield* FiberMap.size(map)) === 0, "FiberMap empty")
    return ms
  }))

type PlainState = "pending" | "running" | "completed" | "failed"

interface PlainRecord {
  readonly id: string
  readonly sessionId: string
  readonly kind: string
  readonly producer: string
  state: PlainState
  readonly createdAt: number
  updatedAt: number
  completedAt: number | undefined
  failure: string | undefined
}

const noop = async (): Promise<void> => {}

/** What a user would write instead: p-queue plus a Map of records kept by hand. */
const pQueueRun = async (n: number): Promise<number> => {
  const queue = new PQueue()
  const records = new Map<string, PlainRecord>()
  const start = performance.now()
  for (let i = 0; i < n; i++) {
    const now = Date.now()
    const record: PlainRecord = {
      id: `t-${i}`,
      sessionId: session,
      kind: "other",
      producer: "bench",
      state: "pending",
      createdAt: now,
      updatedAt: now,
      completedAt: undefined,
      failure: undefined
    }
    records.set(record.id, record)
    void queue.add(async () => {
      record.state = "running"
      record.updatedAt = Date.now()
      try {
        await noop()
        record.state = "completed"
      } catch (error) {
        record.state = "failed"
        record.failure = String(error)
      }
      record.completedAt = record.updatedAt = Date.now()
    })
  }
  await queue.onIdle()
  const ms = performance.now() - start
  let completed = 0
  for (const record of records.values()) if (record.state === "completed") completed++
  check(completed === n, "every p-queue job completed")
  return ms
}

export const run = async (settings: Settings): Promise<GroupResult> => {
  const n = settings.quick ? 300 : 100_000
  const results = await measure("1 managed lifecycle", settings, [
    { name: "host spawnManaged", role: "host", run: () => runNumber(hostRun(n)) },
    { name: "FiberMap.run + awaitEmpty", role: "baseline", run: () => runNumber(fiberMapRun(n)) },
    { name: "p-queue + Map of records", role: "baseline", run: () => pQueueRun(n) }
  ])
  const host = medianOf(results, "host spawnManaged")
  return {
    group: "lifecycle",
    scenarios: [{
      id: "managed-lifecycle",
      scenario: 1,
      group: "lifecycle",
      title: "Managed lifecycle: spawn N tasks (body Effect.yieldNow) until all completed with events",
      unit: "ms",
      params: { n },
      variants: results,
      ratios: [
        { id: "vs-fibermap", label: "host time / FiberMap time", value: host / medianOf(results, "FiberMap.run + awaitEmpty") },
        { id: "vs-pqueue", label: "host time / p-queue time", value: host / medianOf(results, "p-queue + Map of records") }
      ],
      notes: [
        "host: one subscriber counts the N terminal events; the clock stops when it has seen all of them",
        "p-queue: default options (concurrency Infinity), records are mutable objects in a Map, no events"
      ]
    }]
  }
}
