/**
 * Scenario 3, fan-out: 1, 10 and 100 subscribers each reading N events — vs a
 * raw `PubSub` with the same subscriber count and events of the same shape.
 * The host's events are N `Progress` events of one task (`update(id, {
 * progress })`); the baseline publishes N hand-built `Progress` events.
 * Then the publisher alone: N progress updates with one subscriber that never
 * reads vs with no subscriber.
 */
import { Effect, Fiber, PubSub, Stream } from "effect"
import type { BackgroundTaskEvent, SubscriptionEvent } from "../../src/index.ts"
import { isProgressEvent, progressEvent } from "../events.ts"
import {
  check,
  type GroupResult,
  measure,
  medianOf,
  runNumber,
  type ScenarioResult,
  type Settings,
  timed
} from "../harness.ts"
import { type Host, withHost } from "../host.ts"

const session = "bench"
const taskId = "publisher"
const message = "tick"

/** Reads until it has seen `n` progress events; the count is checked after the clock stops. */
const reader = (events: Stream.Stream<SubscriptionEvent>, n: number) =>
  events.pipe(Stream.filter(isProgressEvent), Stream.take(n), Stream.runCount)

const publishProgress = (host: Host, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) yield* host.update(taskId, { progress: message })
  })

const hostFanout = (subscribers: number, n: number) =>
  withHost({ losslessSubscribers: true }, (host) =>
    Effect.gen(function*() {
      yield* host.register({ scope: { sessionId: session }, id: taskId, kind: "other", producer: "bench" })
      const readers: Array<Fiber.Fiber<number>> = []
      for (let s = 0; s < subscribers; s++) {
        const events = yield* host.subscribe({ sessionId: session })
        readers.push(yield* Effect.forkChild(reader(events, n)))
      }
      let counts: ReadonlyArray<number> = []
      const ms = yield* timed(Effect.gen(function*() {
        yield* publishProgress(host, n)
        counts = yield* Fiber.joinAll(readers)
      }))
      check(counts.length === subscribers && counts.every((c) => c === n), "every subscriber read N events")
      return ms
    })
  )

const pubsubFanout = (subscribers: number, n: number) =>
  Effect.scoped(Effect.gen(function*() {
    const pubsub = yield* PubSub.unbounded<BackgroundTaskEvent>()
    const readers: Array<Fiber.Fiber<number>> = []
    for (let s = 0; s < subscribers; s++) {
      const subscription = yield* PubSub.subscribe(pubsub)
      readers.push(yield* Effect.forkChild(reader(Stream.fromSubscription(subscription), n)))
    }
    let counts: ReadonlyArray<number> = []
    const ms = yield* timed(Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* PubSub.publish(pubsub, progressEvent(i + 1, taskId, session, message))
      counts = yield* Fiber.joinAll(readers)
    }))
    check(counts.length === subscribers && counts.every((c) => c === n), "every subscriber read N events")
    return ms
  }))

/** The publisher alone: N progress updates, with one never-reading subscriber or none. */
const hostPublisher = (withSubscriber: boolean, n: number) =>
  withHost({}, (host) =>
    Effect.gen(function*() {
      yield* host.register({ scope: { sessionId: session }, id: taskId, kind: "other", producer: "bench" })
      if (withSubscriber) yield* host.subscribe() // held open, never read
      return yield* timed(publishProgress(host, n))
    })
  )

export const run = async (settings: Settings): Promise<GroupResult> => {
  const n = settings.quick ? 300 : 100_000
  const scenarios: Array<ScenarioResult> = []
  for (const subscribers of [1, 10, 100]) {
    // the warm-up reads a tenth of the events: with 100 subscribers that is still 1M deliveries
    const warm = Math.max(1, Math.round(n / 10))
    const results = await measure(`3 fan-out ${subscribers}`, settings, [
      { name: "host subscribe", role: "host", run: () => runNumber(hostFanout(subscribers, n)) },
      { name: "raw PubSub", role: "baseline", run: () => runNumber(pubsubFanout(subscribers, n)) }
    ], [
      { name: "host subscribe", role: "host", run: () => runNumber(hostFanout(subscribers, warm)) },
      { name: "raw PubSub", role: "baseline", run: () => runNumber(pubsubFanout(subscribers, warm)) }
    ])
    scenarios.push({
      id: `fanout-${subscribers}`,
      scenario: 3,
      group: "fanout",
      title: `Fan-out: ${subscribers} subscriber${subscribers === 1 ? "" : "s"} each reading N events`,
      unit: "ms",
      params: { n, subscribers },
      variants: results,
      ratios: [{
        id: "throughput-vs-pubsub",
        label: "host throughput / raw PubSub throughput (= PubSub time / host time)",
        value: medianOf(results, "raw PubSub") / medianOf(results, "host subscribe")
      }],
      notes: [
        "host time includes producing the events (N update(id, { progress }) calls); the baseline builds and publishes N event objects"
      ]
    })
  }
  const results = await measure("3 publisher, never-reading subscriber", settings, [
    { name: "host, no subscriber", role: "baseline", run: () => runNumber(hostPublisher(false, n)) },
    { name: "host, one never-reading subscriber", role: "host", run: () => runNumber(hostPublisher(true, n)) }
  ])
  scenarios.push({
    id: "publisher-slow-subscriber",
    scenario: 3,
    group: "fanout",
    title: "Publisher throughput with one subscriber that never reads vs none",
    unit: "ms",
    params: { n },
    variants: results,
    ratios: [{
      id: "throughput-vs-no-subscriber",
      label: "throughput with a never-reading subscriber / throughput with none",
      value: medianOf(results, "host, no subscriber") / medianOf(results, "host, one never-reading subscriber")
    }],
    notes: [
      "today a subscription is an unbounded PubSub subscription: the never-reading subscriber holds all N events; the target applies once bounded per-subscriber buffers land"
    ]
  })
  return { group: "fanout", scenarios }
}
