/**
 * Scenario 1, managed lifecycle: `spawnManaged` of N tasks whose body is
 * `Effect.yieldNow`, until every record is `completed` and its terminal event
 * has been published (a subscriber counts the terminal events) — vs raw
 * `FiberMap.run` + `awaitEmpty` of the same bodies, and vs p-queue running N
 * async no-op functions while keeping a `Map` of records and delivering the
 * same `Registered` / `Completed` events through an `EventEmitter` to one
 * listener that counts the `Completed` ones (the fair p-queue baseline). The
 * p-queue variant without events (the old baseline) is kept for reference.
 */
import { Effect, Fiber, FiberMap, Stream } from "effect"
import { EventEmitter } from "node:events"
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

interface PlainEvent {
  readonly _tag: "Registered" | "Completed" | "Failed"
  readonly seq: number
  readonly taskId: string
  readonly sessionId: string
  readonly kind: string
  readonly record: Readonly<PlainRecord>
}

/**
 * What a user would write to get what the host gives: p-queue, a Map of
 * records (a new record at each state change, as events carry it), and an
 * `EventEmitter` delivering `Registered` and `Completed` (or `Failed`) with
 * the record to one listener, which counts the terminal events; the clock
 * stops when it has seen N.
 */
const pQueueEventsRun = async (n: number): Promise<number> => {
  const queue = new PQueue()
  const records = new Map<string, Readonly<PlainRecord>>()
  const emitter = new EventEmitter()
  let seq = 0
  const publish = (tag: PlainEvent["_tag"], record: Readonly<PlainRecord>) => {
    const event: PlainEvent = { _tag: tag, seq: ++seq, taskId: record.id, sessionId: record.sessionId, kind: record.kind, record }
    emitter.emit("event", event)
  }
  let terminal = 0
  let allTerminal!: () => void
  const terminalSeen = new Promise<void>((resolve) => (allTerminal = resolve))
  emitter.on("event", (event: PlainEvent) => {
    if (event._tag !== "Registered" && ++terminal === n) allTerminal()
  })
  const start = performance.now()
  for (let i = 0; i < n; i++) {
    const now = Date.now()
    const id = `t-${i}`
    const registered: PlainRecord = {
      id,
      sessionId: session,
      kind: "other",
      producer: "bench",
      state: "pending",
      createdAt: now,
      updatedAt: now,
      completedAt: undefined,
      failure: undefined
    }
    records.set(id, registered)
    publish("Registered", registered)
    void queue.add(async () => {
      const running = { ...records.get(id)!, state: "running" as const, updatedAt: Date.now() }
      records.set(id, running)
      let done: PlainRecord
      try {
        await noop()
        const at = Date.now()
        done = { ...running, state: "completed", updatedAt: at, completedAt: at }
      } catch (error) {
        const at = Date.now()
        done = { ...running, state: "failed", updatedAt: at, completedAt: at, failure: String(error) }
      }
      records.set(id, done)
      publish(done.state === "completed" ? "Completed" : "Failed", done)
    })
  }
  await terminalSeen
  const ms = performance.now() - start
  await queue.onIdle()
  let completed = 0
  for (const record of records.values()) if (record.state === "completed") completed++
  check(completed === n && seq === 2 * n, "every p-queue job completed, with its two events")
  return ms
}

const hostVariant = "host spawnManaged"
const fiberMapVariant = "FiberMap.run + awaitEmpty"
const pQueueEventsVariant = "p-queue + Map of records + EventEmitter (Registered, Completed)"
const pQueueVariant = "p-queue + Map of records, no events (old baseline)"

export const run = async (settings: Settings): Promise<GroupResult> => {
  const n = settings.quick ? 300 : 100_000
  const results = await measure("1 managed lifecycle", settings, [
    { name: hostVariant, role: "host", run: () => runNumber(hostRun(n)) },
    { name: fiberMapVariant, role: "baseline", run: () => runNumber(fiberMapRun(n)) },
    { name: pQueueEventsVariant, role: "baseline", run: () => pQueueEventsRun(n) },
    { name: pQueueVariant, role: "info", run: () => pQueueRun(n) }
  ])
  const host = medianOf(results, hostVariant)
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
        { id: "vs-fibermap", label: "host time / FiberMap time", value: host / medianOf(results, fiberMapVariant) },
        {
          id: "vs-pqueue-events",
          label: "host time / p-queue + Map + EventEmitter time",
          value: host / medianOf(results, pQueueEventsVariant)
        },
        {
          id: "vs-pqueue",
          label: "host time / p-queue + Map (no events) time; not a target",
          value: host / medianOf(results, pQueueVariant)
        }
      ],
      notes: [
        "host: one subscriber counts the N terminal events; the clock stops when it has seen all of them",
        "p-queue: default options (concurrency Infinity); with events, a new record object per state change " +
        "(pending, running, completed) and two events per task, delivered synchronously by node:events",
        "p-queue without events (info): records are mutable objects in a Map, no events; the old baseline, kept to show what the events cost"
      ],
      fairness: [
        {
          baseline: fiberMapVariant,
          why: "it forks the same bodies on the same runtime and waits for all of them, but keeps no record and publishes " +
            "no event: it is the floor the host is built on, which is why the target is a multiple of it"
        },
        {
          baseline: pQueueEventsVariant,
          why: "it does by hand what the host's managed lifecycle promises: a record per task kept in a Map through its " +
            "states, and the same Registered and Completed events carrying the record, delivered to one subscriber " +
            "that counts the terminal ones, the clock stopping when it has seen N, exactly as for the host"
        }
      ]
    }]
  }
}
