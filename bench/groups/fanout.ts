/**
 * Scenario 3, fan-out: 1, 10 and 100 subscribers each reading N events — vs a
 * raw `PubSub` with the same subscriber count, events of the same shape and
 * the same wake rule.
 *
 * The wake rule decides the result, so the baseline copies the host's. The
 * host never resumes a reader inside `publish`: it wakes a waiting reader
 * after the publishing step (`afterStep`, a microtask), so the reader runs
 * once the publisher gives way and takes everything buffered in one pull. A
 * raw `PubSub` resumes a waiting reader inside `publish`, so a plain reader
 * takes one event per pull. The fair baseline's reader yields once before
 * each `takeAll` (on a `PubSub.bounded(4096)`, the host's default buffer):
 * it too runs when the publisher gives way and takes everything published
 * meanwhile. An untimed probe counts each side's pulls to show it.
 *
 * The host's events are N `Progress` events of one task (`update(id, {
 * progress })`); the baseline publishes N hand-built `Progress` events. So
 * the host's side also pays for its call (input check, pace, step, lookup, a
 * new record) where the baseline only builds an event. Two info variants,
 * the floor, split the two: the host's own event hub (`EventHub`: the
 * contract's filter, `seq` order, exact `Lagged` against a capacity, readers
 * woken after the step) fed the baseline's hand-built events, one per step;
 * and the same hub fed by a minimal update (a map of records; one primitive
 * per call that checks its input, finds the record, makes the next record
 * and its event and publishes it).
 *
 * Then the publisher alone: N progress updates with one subscriber that never
 * reads vs with no subscriber, and (info) the baseline's publisher alone; and,
 * measured apart, that target's floor (info): a bare loop keeping the newest
 * 4,096 hand-built events vs dropping them, so each run shows how much of the
 * host's extra time with the idle subscriber keeping its window costs anyway.
 */
import { Effect, Fiber, Option, PubSub, Stream } from "effect"
import type { BackgroundTaskEvent, BackgroundTaskRecord, SubscriptionEvent } from "../../src/index.ts"
import { EventHub } from "../../src/internal/events.ts"
import { isProgressEvent, progressEvent } from "../events.ts"
import {
  check,
  type GroupResult,
  measure,
  medianOf,
  runNumber,
  type ScenarioResult,
  type Settings,
  shortRuns,
  timed,
  type Variant
} from "../harness.ts"
import { type Host, withHost } from "../host.ts"

const session = "bench"
const taskId = "publisher"
const message = "tick"
/** The fair baseline's capacity: the host's default subscriber buffer. */
const fairCapacity = 4096

const hostVariant = "host subscribe"
const fairVariant = "raw PubSub, reader yields before each takeAll (fair)"
const eagerVariant = "raw PubSub, reader resumed inside publish (old baseline)"
const hubFloorVariant = "floor: the host's event hub, hand-built events (info)"
const updateFloorVariant = "floor: the host's event hub, minimal update (info)"

/** Counts the pulls (chunks) a reader makes; off the clock, in the probe only. */
type PullCounter = { pulls: number } | undefined

/** Reads until it has seen `n` progress events; the count is checked after the clock stops. */
const reader = (events: Stream.Stream<SubscriptionEvent>, n: number, counter: PullCounter) =>
  (counter === undefined ? events : Stream.mapArray(events, (chunk) => {
    counter.pulls++
    return chunk
  })).pipe(Stream.filter(isProgressEvent), Stream.take(n), Stream.runCount)

const publishProgress = (host: Host, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) yield* host.update(taskId, { progress: message })
  })

const hostFanout = (subscribers: number, n: number, counters: ReadonlyArray<PullCounter> = []) =>
  withHost({ losslessSubscribers: true }, (host) =>
    Effect.gen(function*() {
      yield* host.register({ scope: { sessionId: session }, id: taskId, kind: "other", producer: "bench" })
      const readers: Array<Fiber.Fiber<number>> = []
      for (let s = 0; s < subscribers; s++) {
        const events = yield* host.subscribe({ sessionId: session })
        readers.push(yield* Effect.forkChild(reader(events, n, counters[s])))
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

/**
 * A subscription read with the host's wake rule: yield first, so a reader
 * resumed inside `publish` hands control back to the publisher, then take
 * everything published meanwhile.
 */
const deferredPull = (subscription: PubSub.Subscription<BackgroundTaskEvent>) =>
  Stream.fromPull(Effect.succeed(Effect.andThen(Effect.yieldNow, PubSub.takeAll(subscription))))

const pubsubFanout = (
  wake: "fair" | "eager",
  subscribers: number,
  n: number,
  counters: ReadonlyArray<PullCounter> = []
) =>
  Effect.scoped(Effect.gen(function*() {
    const pubsub = wake === "fair"
      ? yield* PubSub.bounded<BackgroundTaskEvent>(fairCapacity)
      : yield* PubSub.unbounded<BackgroundTaskEvent>()
    const readers: Array<Fiber.Fiber<number>> = []
    for (let s = 0; s < subscribers; s++) {
      const subscription = yield* PubSub.subscribe(pubsub)
      const events = wake === "fair" ? deferredPull(subscription) : Stream.fromSubscription(subscription)
      readers.push(yield* Effect.forkChild(reader(events, n, counters[s])))
    }
    let counts: ReadonlyArray<number> = []
    const ms = yield* timed(Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* PubSub.publish(pubsub, progressEvent(i + 1, taskId, session, message))
      counts = yield* Fiber.joinAll(readers)
    }))
    check(counts.length === subscribers && counts.every((c) => c === n), "every subscriber read N events")
    return ms
  }))

/**
 * The floor (info): the host's own event hub with subscribers as the host
 * makes them (filter on the session, a buffer no scenario reaches), fed
 * either the baseline's hand-built events, one per step, or a minimal
 * update. No host, no registry, no pace.
 */
const hubFloor = (publisher: "events" | "update", subscribers: number, n: number) =>
  Effect.scoped(Effect.gen(function*() {
    const hub = yield* EventHub.make
    const readers: Array<Fiber.Fiber<number>> = []
    for (let s = 0; s < subscribers; s++) {
      const pending = yield* hub.subscribe()
      pending.activate({ sessionId: session }, 1_000_000_000, 0)
      readers.push(yield* Effect.forkChild(reader(pending.stream, n, undefined)))
    }
    const first = progressEvent(0, taskId, session, message)
    const records = new Map<string, { record: BackgroundTaskRecord }>([[taskId, { record: first._tag === "Progress" ? first.record : (undefined as never) }]])
    let seq = 0
    const update = (id: unknown, change: unknown) =>
      Effect.suspend(() => {
        const progress = typeof change === "object" && change !== null ? (change as { progress?: unknown }).progress : undefined
        if (typeof id !== "string" || typeof progress !== "string") return Effect.die("invalid input")
        const task = records.get(id)
        if (task === undefined) return Effect.die("no such task")
        const record: BackgroundTaskRecord = { ...task.record, progress: Option.some(progress), revision: ++seq }
        task.record = record
        hub.publish({ _tag: "Progress", seq, taskId: id, sessionId: record.scope.sessionId, kind: record.kind, message: progress, record })
        return Effect.succeed(record)
      })
    let counts: ReadonlyArray<number> = []
    const ms = yield* timed(Effect.gen(function*() {
      if (publisher === "update") for (let i = 0; i < n; i++) yield* update(taskId, { progress: message })
      else for (let i = 0; i < n; i++) yield* Effect.sync(() => hub.publish(progressEvent(i + 1, taskId, session, message)))
      counts = yield* Fiber.joinAll(readers)
    }))
    check(counts.length === subscribers && counts.every((c) => c === n), "every subscriber read N events")
    return ms
  }))

/** Pulls per reader (median over the readers) in one untimed run of `run`. */
const pullsPerReader = async (
  subscribers: number,
  run: (counters: ReadonlyArray<PullCounter>) => Effect.Effect<number, unknown>
): Promise<number> => {
  const counters = Array.from({ length: subscribers }, () => ({ pulls: 0 }))
  await runNumber(run(counters))
  const pulls = counters.map((c) => c.pulls).sort((a, b) => a - b)
  return pulls[pulls.length >> 1]!
}

/** The baseline's publisher alone (info): N hand-built events published on a PubSub without a subscriber. */
const pubsubPublisher = (n: number) =>
  Effect.scoped(Effect.gen(function*() {
    const pubsub = yield* PubSub.bounded<BackgroundTaskEvent>(fairCapacity)
    return yield* timed(Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* PubSub.publish(pubsub, progressEvent(i + 1, taskId, session, message))
    }))
  }))

/**
 * The never-reading subscriber's floor (info): the least a publisher that keeps
 * the newest 4,096 events can do. A bare loop publishes N hand-built events,
 * one `Effect.sync` each, into a ring of 4,096 slots (`kept`) or drops them:
 * what keeping them costs is the garbage collector's (each young collection
 * copies the window of live events and their records). The host's extra time
 * with a never-reading subscriber is set beside this one's (params).
 */
const ringFloor = (kept: boolean, n: number) =>
  Effect.suspend(() => {
    const slots = new Array<BackgroundTaskEvent | undefined>(fairCapacity).fill(undefined)
    let head = 0
    const publish = (event: BackgroundTaskEvent) =>
      Effect.sync(() => {
        if (kept) slots[head++ & (fairCapacity - 1)] = event
      })
    return timed(Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* publish(progressEvent(i + 1, taskId, session, message))
      return slots
    }))
  })

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
    // the old baseline (one event per pull) only with one subscriber: at 100 it takes a minute per run
    const withEager = subscribers === 1
    const variants = (size: number): Array<Variant> => [
      { name: hostVariant, role: "host", run: () => runNumber(hostFanout(subscribers, size)) },
      { name: fairVariant, role: "baseline", run: () => runNumber(pubsubFanout("fair", subscribers, size)) },
      ...(withEager
        ? [{ name: eagerVariant, role: "info", run: () => runNumber(pubsubFanout("eager", subscribers, size)) } as const]
        : []),
      { name: hubFloorVariant, role: "info", run: () => runNumber(hubFloor("events", subscribers, size)) },
      { name: updateFloorVariant, role: "info", run: () => runNumber(hubFloor("update", subscribers, size)) }
    ]
    const results = await measure(`3 fan-out ${subscribers}`, shortRuns(settings), variants(n), variants(warm))
    const hostPulls = await pullsPerReader(subscribers, (c) => hostFanout(subscribers, n, c))
    const fairPulls = await pullsPerReader(subscribers, (c) => pubsubFanout("fair", subscribers, n, c))
    const eagerPulls = withEager ? await pullsPerReader(subscribers, (c) => pubsubFanout("eager", subscribers, n, c)) : 0
    const host = medianOf(results, hostVariant)
    scenarios.push({
      id: `fanout-${subscribers}`,
      scenario: 3,
      group: "fanout",
      title: `Fan-out: ${subscribers} subscriber${subscribers === 1 ? "" : "s"} each reading N events`,
      unit: "ms",
      params: {
        n,
        subscribers,
        fairCapacity,
        hostPullsPerReader: hostPulls,
        fairPullsPerReader: fairPulls,
        ...(withEager ? { oldBaselinePullsPerReader: eagerPulls } : {})
      },
      variants: results,
      ratios: [
        {
          id: "throughput-vs-fair-pubsub",
          label: "host throughput / fair raw PubSub throughput (= fair PubSub time / host time)",
          value: medianOf(results, fairVariant) / host
        },
        {
          id: "floor-hub-vs-fair-pubsub",
          label: "floor (info): the host's event hub fed hand-built events / fair raw PubSub, throughput",
          value: medianOf(results, fairVariant) / medianOf(results, hubFloorVariant)
        },
        {
          id: "floor-update-vs-fair-pubsub",
          label: "floor (info): the host's event hub fed a minimal update / fair raw PubSub, throughput",
          value: medianOf(results, fairVariant) / medianOf(results, updateFloorVariant)
        },
        ...(withEager
          ? [{
            id: "throughput-vs-old-pubsub",
            label: "host throughput / old raw PubSub throughput (one event per pull; not a target)",
            value: medianOf(results, eagerVariant) / host
          }]
          : [])
      ],
      notes: [
        "host time includes producing the events (N update(id, { progress }) calls); the baseline builds and publishes N event objects",
        "pulls per reader: counted in one untimed run per variant (params); the same order for the host and the fair baseline " +
        "means the same wake rule",
        "floor (info): the host's EventHub alone (the contract's filter, seq order, exact Lagged, wake after the step), fed the " +
        "baseline's hand-built events one per step, or a minimal update (a map of records; one primitive per call: input " +
        "checked, record found, next record and its event made and published); the gap from the second to the host is the " +
        "host's update call",
        ...(withEager
          ? [
            "old baseline (info, only here): Stream.fromSubscription on an unbounded PubSub; publish resumes the waiting reader " +
            "inside itself, so it takes one event per pull: the baseline of the published 4–38× figures"
          ]
          : [])
      ],
      fairness: [{
        baseline: fairVariant,
        why: "it reads with the host's wake rule: the host wakes a reader after the publishing step and the reader takes " +
          `everything buffered in one pull, and this reader yields before each PubSub.takeAll on a PubSub.bounded(${fairCapacity}) ` +
          "(the host's default buffer), so both take one pull per turn of the publisher, not one per event"
      }]
    })
  }
  const results = await measure("3 publisher, never-reading subscriber", shortRuns(settings), [
    { name: "host, no subscriber", role: "baseline", run: () => runNumber(hostPublisher(false, n)) },
    { name: "host, one never-reading subscriber", role: "host", run: () => runNumber(hostPublisher(true, n)) },
    { name: "raw PubSub, publisher alone (info)", role: "info", run: () => runNumber(pubsubPublisher(n)) }
  ])
  // measured on its own, so that its variants do not share the rotation (and the JIT's state) with the host's
  const floor = await measure("3 publisher, never-reading subscriber: floor (info)", shortRuns(settings), [
    { name: "floor: hand-built events dropped (info)", role: "info", run: () => runNumber(ringFloor(false, n)) },
    { name: "floor: hand-built events, the newest 4,096 kept (info)", role: "info", run: () => runNumber(ringFloor(true, n)) }
  ])
  const hostExtra = medianOf(results, "host, one never-reading subscriber") - medianOf(results, "host, no subscriber")
  const floorExtra = medianOf(floor, "floor: hand-built events, the newest 4,096 kept (info)") -
    medianOf(floor, "floor: hand-built events dropped (info)")
  scenarios.push({
    id: "publisher-slow-subscriber",
    scenario: 3,
    group: "fanout",
    title: "Publisher throughput with one subscriber that never reads vs none",
    unit: "ms",
    // the extra time a never-reading subscriber costs, the host's and the floor's (medians' difference; may be
    // below zero in a noisy run, so not a ratio)
    params: { n, hostExtraMs: Number(hostExtra.toFixed(2)), floorExtraMs: Number(floorExtra.toFixed(2)) },
    variants: [...results, ...floor],
    ratios: [{
      id: "throughput-vs-no-subscriber",
      label: "throughput with a never-reading subscriber / throughput with none",
      value: medianOf(results, "host, no subscriber") / medianOf(results, "host, one never-reading subscriber")
    }, {
      id: "update-vs-publish",
      label: "info: host update(id, { progress }) with no subscriber / raw PubSub publish of a hand-built event, time",
      value: medianOf(results, "host, no subscriber") / medianOf(results, "raw PubSub, publisher alone (info)")
    }, {
      id: "floor-kept-vs-dropped",
      label: "info: floor, throughput keeping the newest 4,096 events / dropping them (a bare loop of hand-built events)",
      value: medianOf(floor, "floor: hand-built events dropped (info)") /
        medianOf(floor, "floor: hand-built events, the newest 4,096 kept (info)")
    }],
    notes: [
      "the never-reading subscriber has the default buffer (4,096 events): past it, each event overwrites the oldest",
      "info: the fan-out baseline's publisher alone (N hand-built events published on a PubSub.bounded without a " +
      "subscriber), beside the host's update call alone",
      "info, the floor (measured apart, its two variants alternated): a bare loop publishing N hand-built events, one " +
      "Effect.sync each, into a ring of 4,096 slots or dropping them; keeping the window costs garbage collection (each " +
      "young collection copies the live events and their records), which the host's never-reading subscriber pays too; " +
      "hostExtraMs and floorExtraMs: what the never-reading subscriber adds to the host's median and to the floor's"
    ]
  })
  return { group: "fanout", scenarios }
}
