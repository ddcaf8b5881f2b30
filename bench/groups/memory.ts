/**
 * Scenario 6, memory (run with `--expose-gc`): heap bytes per retained
 * terminal record at 1M records, with a forced major GC before and after —
 * beside a plain `Map` of records of the same shape; and heap growth while a
 * subscriber that never reads sits through 1M events — beside a raw `PubSub`
 * with one never-reading subscription and the host with no subscriber.
 */
import { DateTime, Effect, Option, PubSub } from "effect"
import { type BackgroundTaskRecord, defaultAttempt } from "../../src/index.ts"
import { progressEvent } from "../events.ts"
import {
  check,
  collectGarbage,
  consume,
  type GroupResult,
  hasGc,
  measure,
  medianOf,
  runNumber,
  type Settings
} from "../harness.ts"
import { type Host, withHost } from "../host.ts"

const session = "bench"
const heapUsed = () =>
  Effect.sync(() => {
    collectGarbage()
    return process.memoryUsage().heapUsed
  })

/** Heap growth per item across `fill`, with GC before and after; `keep` holds what must stay reachable. */
const growthPer = <E, R>(items: number, fill: Effect.Effect<unknown, E, R>) =>
  Effect.gen(function*() {
    const before = yield* heapUsed()
    const kept = yield* fill
    const after = yield* heapUsed()
    consume(kept)
    return (after - before) / items
  })

const hostRecords = (m: number) =>
  withHost({ retainAllTerminal: true }, (host) =>
    Effect.gen(function*() {
      const perRecord = yield* growthPer(
        m,
        Effect.gen(function*() {
          for (let i = 0; i < m; i++) {
            const id = `t-${i}`
            yield* host.register({ scope: { sessionId: session }, id, kind: "other", producer: "bench" })
            yield* host.complete(id, { state: "completed" })
          }
        })
      )
      const records = yield* host.list({ sessionId: session, includeTerminal: true })
      check(records.length === m && records.every((r) => r.state === "completed"), "every record retained, completed")
      return perRecord
    })
  )

const plainRecords = (m: number) =>
  growthPer(
    m,
    Effect.sync(() => {
      const map = new Map<string, BackgroundTaskRecord>()
      for (let i = 0; i < m; i++) {
        const id = `t-${i}`
        const created = DateTime.makeUnsafe(Date.now())
        const done = DateTime.makeUnsafe(Date.now())
        map.set(id, {
          id,
          kind: "other",
          producer: "bench",
          scope: { sessionId: session },
          parentTaskId: Option.none(),
          childSessionId: Option.none(),
          state: "completed",
          cancelPolicy: "cooperative",
          closePolicy: "keep",
          attempt: defaultAttempt,
          result: Option.some({ summary: Option.none() }),
          failure: Option.none(),
          createdAt: created,
          updatedAt: done,
          completedAt: Option.some(done),
          progress: Option.none(),
          revision: 0
        })
      }
      return map
    })
  )

const taskId = "publisher"
const message = "tick"

const publishProgress = (host: Host, m: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < m; i++) yield* host.update(taskId, { progress: message })
  })

const hostSubscriber = (withSubscriber: boolean, m: number) =>
  withHost({}, (host) =>
    Effect.gen(function*() {
      yield* host.register({ scope: { sessionId: session }, id: taskId, kind: "other", producer: "bench" })
      if (withSubscriber) yield* host.subscribe() // held open, never read
      return yield* growthPer(m, publishProgress(host, m))
    })
  )

const pubsubSubscriber = (m: number) =>
  Effect.scoped(Effect.gen(function*() {
    const pubsub = yield* PubSub.unbounded<ReturnType<typeof progressEvent>>()
    yield* PubSub.subscribe(pubsub) // held open, never read
    return yield* growthPer(
      m,
      Effect.gen(function*() {
        for (let i = 0; i < m; i++) yield* PubSub.publish(pubsub, progressEvent(i + 1, taskId, session, message))
      })
    )
  }))

export const run = async (settings: Settings): Promise<GroupResult> => {
  if (!hasGc()) throw new Error("the memory group needs node --expose-gc (npm run bench passes it)")
  const m = settings.quick ? 2_000 : 1_000_000
  const warm = settings.quick ? 500 : 100_000
  const records = await measure(
    "6 memory, retained records",
    settings,
    [
      { name: "host, terminal records", role: "host", run: () => runNumber(hostRecords(m)) },
      { name: "plain Map of the same records", role: "baseline", run: () => runNumber(plainRecords(m)) }
    ],
    [
      { name: "warm-up host", role: "host", run: () => runNumber(hostRecords(warm)) },
      { name: "warm-up plain", role: "baseline", run: () => runNumber(plainRecords(warm)) }
    ]
  )
  const subscriber = await measure(
    "6 memory, never-reading subscriber",
    settings,
    [
      { name: "host, one never-reading subscriber", role: "host", run: () => runNumber(hostSubscriber(true, m)) },
      { name: "raw PubSub, one never-reading subscription", role: "baseline", run: () => runNumber(pubsubSubscriber(m)) },
      { name: "host, no subscriber", role: "info", run: () => runNumber(hostSubscriber(false, m)) }
    ],
    [
      { name: "warm-up host", role: "host", run: () => runNumber(hostSubscriber(true, warm)) },
      { name: "warm-up pubsub", role: "baseline", run: () => runNumber(pubsubSubscriber(warm)) }
    ]
  )
  const perRecord = medianOf(records, "host, terminal records")
  return {
    group: "memory",
    scenarios: [
      {
        id: "memory-records",
        scenario: 6,
        group: "memory",
        title: "Memory: heap bytes per retained terminal record",
        unit: "bytes/record",
        params: { records: m },
        variants: records,
        ratios: [
          { id: "vs-1kb", label: "host bytes per record / 1024", value: perRecord / 1024 },
          {
            id: "vs-plain-map",
            label: "host bytes per record / plain Map bytes per record",
            value: perRecord / medianOf(records, "plain Map of the same records")
          }
        ],
        notes: ["records made by register + complete; forced major GC before and after; the host keeps its indexes too"]
      },
      {
        id: "memory-subscriber",
        scenario: 6,
        group: "memory",
        title: "Memory: heap growth per event while one subscriber never reads",
        unit: "bytes/event",
        params: { events: m },
        variants: subscriber,
        ratios: [{
          id: "vs-pubsub",
          label: "host growth / raw PubSub growth",
          value: medianOf(subscriber, "host, one never-reading subscriber") /
            medianOf(subscriber, "raw PubSub, one never-reading subscription")
        }],
        notes: [
          "events are progress updates of one task; the subscriber has the default buffer (4,096 events): past it, each event overwrites the oldest"
        ]
      }
    ]
  }
}
