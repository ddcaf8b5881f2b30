/**
 * A database outage under a durable host on PostgreSQL: while callers spawn
 * tasks, register, update and complete records and the tasks write their
 * progress, the PostgreSQL server of the test's own (`makePgServer`) is
 * stopped for 1–3 s and started again, twice (a clean stop, then a crash).
 * The host must keep running (no fence: its lease, 30 s, outlives the
 * outage), every call must return successfully, the calls made while the
 * server was down must return after it came back, and every write a call was
 * acknowledged for must be in the store.
 */
import { assert, describe, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Deferred, Effect, Exit, Fiber } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { type BackgroundTaskRecord, TaskContext } from "../../src/index.ts"
import { clientConfig, makePgServer } from "../utils/postgres.ts"
import { encodeRecord, eventRows, startHost, taskRows } from "../utils/store.ts"

/** One call: when it was made and returned (epoch ms), how it ended. */
interface Call {
  readonly what: string
  readonly startedAt: number
  readonly endedAt: number
  readonly exit: Exit.Exit<BackgroundTaskRecord, unknown>
}

/** One outage: the server had exited at `downAt`; `start` was called at `upAt`. */
interface Outage {
  readonly mode: "fast" | "immediate"
  readonly downAt: number
  readonly upAt: number
}

/** Callers writing all the time. */
const writers = 6

describe("a database outage under a durable host (PostgreSQL)", () => {
  it.live("stopped for 1–3 s twice during writes: the host runs on, every call returns, no acknowledged write is lost", () =>
    Effect.gen(function*() {
      const server = yield* makePgServer
      const sql = yield* PgClient.make(clientConfig(server.settings, server.settings.database)).pipe(
        Effect.provide(Reactivity.layer)
      )
      // `cancel`, so that closing the host below writes the end of anything still live; every
      // terminal record kept (how many tasks end in the run depends on the machine's speed: past
      // the default 10,000 the oldest would be evicted, and the checks below look each one up)
      const { events, host } = yield* startHost(sql, {
        lease: { ttl: "30 seconds", renewEvery: "1 second" },
        shutdown: { mode: "cancel" },
        retention: { maxTerminal: Infinity }
      })

      const calls: Array<Call> = []
      const spawned: Array<string> = []
      const stop = yield* Deferred.make<void>()

      const call = (what: string, effect: Effect.Effect<BackgroundTaskRecord, unknown>) =>
        Effect.gen(function*() {
          const startedAt = yield* Clock.currentTimeMillis
          const exit = yield* Effect.exit(effect)
          calls.push({ what, startedAt, endedAt: yield* Clock.currentTimeMillis, exit })
          // a failed call ends the run: the checks below report it
          if (Exit.isFailure(exit)) yield* Deferred.succeed(stop, undefined)
        })

      /** A task body: progress three times, a short sleep after each, then its summary. */
      const body = (id: string) =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          for (let step = 1; step <= 3; step++) {
            yield* ctx.progress(`${id} step ${step}`)
            yield* Effect.sleep(`${10 + Math.floor(Math.random() * 40)} millis`)
          }
          return `${id} done`
        })

      /** Spawns a task, or registers, updates and completes a record. */
      const work = (id: string, spawn: boolean) =>
        spawn
          ? Effect.suspend(() => {
            spawned.push(id)
            return call(`spawn ${id}`, host.spawnManaged("s", { id, kind: "other", producer: "p" }, body(id)))
          })
          : Effect.gen(function*() {
            yield* call(`register ${id}`, host.register({ scope: { sessionId: "s" }, id, kind: "other", producer: "p" }))
            yield* call(`update ${id}`, host.update(id, { state: "running", progress: "working" }))
            yield* call(`complete ${id}`, host.complete(id, { state: "completed", summary: `${id} done` }))
          })

      const writer = (w: number) =>
        Effect.gen(function*() {
          for (let i = 0; !(yield* Deferred.isDone(stop)); i++) yield* work(`w${w}-${i}`, i % 2 === 0)
        })
      const running = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: writers }, (_, w) => w), writer, { concurrency: "unbounded", discard: true })
      )

      // while the server is down, new calls are made too (the writers' are all waiting by then)
      const probes: Array<Fiber.Fiber<void>> = []
      const outages: Array<Outage> = []
      const outage = (n: number, mode: Outage["mode"]) =>
        Effect.gen(function*() {
          yield* Effect.sleep("1500 millis")
          const millis = 1_000 + Math.floor(Math.random() * 2_000)
          yield* server.stop(mode)
          const downAt = yield* Clock.currentTimeMillis
          for (let p = 0; p < 4; p++) probes.push(yield* Effect.forkChild(work(`probe${n}-${p}`, p % 2 === 0)))
          yield* Effect.sleep(millis)
          outages.push({ mode, downAt, upAt: yield* Clock.currentTimeMillis })
          yield* server.start
        })
      yield* outage(1, "fast")
      yield* outage(2, "immediate")
      yield* Effect.sleep("1500 millis")
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(running)
      yield* Fiber.joinAll(probes)

      // every call returned successfully
      const failed = calls.filter((c) => Exit.isFailure(c.exit))
      assert.deepStrictEqual(
        failed.slice(0, 3).map((c) => `${c.what}: ${Exit.isFailure(c.exit) ? Cause.pretty(c.exit.cause) : ""}`),
        []
      )
      for (const { downAt, mode, upAt } of outages) {
        // the calls made while the server was down returned after it was started again
        const during = calls.filter((c) => c.startedAt >= downAt && c.startedAt < upAt)
        assert.isAbove(during.length, 0, `calls were made during the ${mode} outage`)
        assert.deepStrictEqual(during.filter((c) => c.endedAt < upAt).map((c) => c.what), [], mode)
        // and the writers' calls waited through it
        const across = calls.filter((c) => c.startedAt < downAt && c.endedAt >= upAt)
        assert.isAbove(across.length, 0, `calls waited through the ${mode} outage`)
      }

      // the host never stopped: every spawned task ran to its end
      for (const id of spawned) {
        const record = yield* host.await(id)
        assert.strictEqual(record.state, "completed", id)
      }
      const { seq } = yield* host.stats
      const held = yield* host.list({ includeTerminal: true })

      // every acknowledged write is in the store: the event of each returned record, with that record
      const stored = yield* eventRows(sql)
      assert.deepStrictEqual(stored.map((row) => row.seq), Array.from({ length: seq }, (_, i) => i + 1), "no seq missing")
      const bySeq = new Map(stored.map((row) => [row.seq, row.decoded]))
      for (const c of calls) {
        if (!Exit.isSuccess(c.exit)) continue
        const record = c.exit.value
        const event = bySeq.get(record.revision)
        assert.isTrue(event !== undefined && "record" in event, `${c.what}: its event (seq ${record.revision}) is stored`)
        if (event !== undefined && "record" in event) {
          assert.deepStrictEqual(encodeRecord(event.record), encodeRecord(record), c.what)
        }
      }
      // the tasks table holds exactly what the host holds
      const rows = yield* taskRows(sql)
      const byId = (records: ReadonlyArray<readonly [string, unknown]>) =>
        new Map([...records].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
      assert.deepStrictEqual(
        byId(rows.map((row) => [row.task_id, row.record])),
        byId(held.map((record) => [record.id, encodeRecord(record)])),
        "the tasks table"
      )

      // subscribers got every stored event, in order (closing the host adds nothing: nothing is live)
      const published = yield* events
      assert.deepStrictEqual(
        published.map((event) => event._tag === "Lagged" ? -1 : event.seq),
        Array.from({ length: seq }, (_, i) => i + 1)
      )
    }).pipe(Effect.scoped), 240_000)
})
