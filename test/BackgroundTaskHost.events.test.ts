/**
 * Events through the host (docs/contract.md §4.6, §7, §8): `seq` and `revision`, `watch`, slow subscribers
 * (`Lagged`), retention (`Evicted`), `stats`, and the indexes behind `list`.
 * The concurrent replay checks are in `BackgroundTaskHost.replay.test.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type BackgroundTaskRecord,
  type SubscriptionEvent
} from "../src/index.ts"
import { makeTestHost, spec, tags, taskEvents, terminalEvents } from "./utils/host.ts"

const request = (id: string, sessionId = "s1", kind: "monitor" | "observer" = "monitor") => ({
  scope: { sessionId },
  id,
  kind,
  producer: "test"
})

const ids = (records: ReadonlyArray<BackgroundTaskRecord>) => records.map((record) => `${record.scope.sessionId}/${record.id}`)

/** Takes events from a stream up to and including the one numbered `last`. */
const upTo = (stream: Stream.Stream<SubscriptionEvent>, last: number) =>
  Stream.runCollect(Stream.takeUntil(stream, (event) => event._tag !== "Lagged" && event.seq >= last))

describe("BackgroundTaskHost events", () => {
  describe("seq and revision", () => {
    it.effect("every event carries seq, one more than the event before it, across every kind of change", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost({ retention: { maxTerminal: 1 } })
        yield* host.register(request("a"))
        yield* host.update("a", { state: "running", progress: "half" })
        yield* host.transfer("a", { sessionId: "s2" })
        yield* host.complete("a", { state: "completed" })
        yield* host.spawnManaged("s1", spec("m"), Effect.never)
        yield* host.requestCancel("m", "stop")
        yield* host.registerExternal("s1", spec("x"))
        yield* host.unregisterExternal("s1", "x")
        const last = (yield* host.stats).seq
        const all = yield* events
        const seqs = all.map((event) => (event._tag === "Lagged" ? -1 : event.seq))
        assert.deepStrictEqual(seqs, Array.from({ length: all.length }, (_, i) => i + 1))
        // the shutdown adds two: the Cancelled of m, and the Evicted of a (maxTerminal 1)
        assert.strictEqual(last, all.length - 2)
        assert.deepStrictEqual(tags(all.slice(-2)), ["Cancelled:m", "Evicted:a"])
        // the tags cover record changes, progress, transfers and evictions
        assert.includeMembers(all.map((event) => event._tag), [
          "Registered",
          "StateChanged",
          "Progress",
          "Transferred",
          "Completed",
          "Evicted",
          "CancelRequested",
          "Cancelled"
        ])
      }))

    it.effect("a record's revision is the seq of the event that last changed it, progress included", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        const registered = yield* host.register(request("a"))
        assert.strictEqual(registered.revision, 1)
        const running = yield* host.update("a", { state: "running" })
        assert.strictEqual(running.revision, 2)
        assert.deepStrictEqual(running.progress, Option.none())
        const reported = yield* host.update("a", { progress: "still going" })
        assert.strictEqual(reported.revision, 3, "a Progress event changes the record")
        assert.deepStrictEqual(reported.progress, Option.some("still going"))
        assert.strictEqual(reported.state, "running")
        const moved = yield* host.transfer("a", { sessionId: "s2" })
        assert.strictEqual(moved.revision, 4)
        const done = yield* host.complete("a", { state: "completed" })
        assert.strictEqual(done.revision, 5)
        // the latest message stays on the record after it ends
        assert.deepStrictEqual(done.progress, Option.some("still going"))
        assert.deepStrictEqual(yield* host.get("a"), Option.some(done))
        for (const event of taskEvents(yield* events)) {
          assert.strictEqual(event.record.revision, event.seq, event._tag)
        }
      }))

    it.effect("every event that changes a record carries the record after the change", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        yield* host.register(request("a"))
        const waiting = yield* host.update("a", { state: "waiting" })
        const requested = yield* host.requestCancel("a", "enough")
        const moved = yield* host.transfer("a", { sessionId: "s2" })
        const cancelled = yield* host.complete("a", { state: "cancelled" })
        const all = taskEvents(yield* events)
        const byTag = (tag: string) => all.find((event) => event._tag === tag)
        const recordOf = (tag: string) => {
          const event = byTag(tag)
          return event !== undefined && "record" in event ? event.record : undefined
        }
        assert.deepStrictEqual(recordOf("StateChanged"), waiting)
        assert.deepStrictEqual(recordOf("CancelRequested"), requested)
        assert.deepStrictEqual(recordOf("Transferred"), moved)
        assert.deepStrictEqual(recordOf("Cancelled"), cancelled)
      }))
  })

  describe("watch", () => {
    it.effect("returns the records as of seq S and exactly the events after S", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a"))
        yield* host.register(request("b"))
        yield* host.update("a", { state: "running" })
        const watched = yield* host.watch()
        assert.strictEqual(watched.seq, 3)
        assert.deepStrictEqual(ids(watched.snapshot), ["s1/a", "s1/b"])
        assert.deepStrictEqual(watched.snapshot, yield* host.list())
        for (const record of watched.snapshot) assert.isAtMost(record.revision, watched.seq)
        yield* host.complete("b", { state: "completed" })
        yield* host.update("a", { progress: "p" })
        const after = yield* upTo(watched.events, 5)
        assert.deepStrictEqual(after.map((event) => event._tag === "Lagged" ? 0 : event.seq), [4, 5])
      }))

    it.effect("filters the snapshot as list does and the events as subscribe does", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a", "s1"))
        yield* host.register(request("b", "s2"))
        yield* host.register(request("c", "s1", "observer"))
        yield* host.complete("c", { state: "failed" })
        const live = yield* host.watch({ sessionId: "s1" })
        assert.deepStrictEqual(ids(live.snapshot), ["s1/a"])
        const all = yield* host.watch({ sessionId: "s1", includeTerminal: true })
        assert.deepStrictEqual(ids(all.snapshot), ["s1/a", "s1/c"])
        const observers = yield* host.watch({ kind: "observer", includeTerminal: true })
        assert.deepStrictEqual(ids(observers.snapshot), ["s1/c"])
        yield* host.update("b", { progress: "not s1" })
        yield* host.transfer("b", { sessionId: "s1" })
        const last = (yield* host.stats).seq
        const events = yield* upTo(live.events, last)
        assert.deepStrictEqual(tags(events), ["Transferred:b"])
      }))

    it.effect("fails with SnapshotError on a bad filter and SessionError on a closed host", () =>
      Effect.gen(function*() {
        const { close, host } = yield* makeTestHost()
        const bad = yield* Effect.flip(host.watch({ kind: "nope" as never }))
        assert.strictEqual(bad._tag, "SnapshotError")
        yield* close
        const closed = yield* Effect.flip(host.watch())
        assert.strictEqual(closed._tag, "SessionError")
      }))

    it.effect("its stream ends when the host shuts down, after the shutdown's own events", () =>
      Effect.gen(function*() {
        const { close, host } = yield* makeTestHost()
        yield* host.spawnManaged("s1", spec("m"), Effect.never)
        const watched = yield* host.watch()
        const reader = yield* Effect.forkChild(Stream.runCollect(watched.events))
        yield* close
        assert.deepStrictEqual(tags(yield* Fiber.join(reader)), ["Cancelled:m"])
      }))

    it.effect("closing the watch's scope ends its stream and frees the subscriber", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const before = (yield* host.stats).subscribers
        const events = yield* Effect.scoped(
          Effect.gen(function*() {
            const watched = yield* host.watch()
            assert.strictEqual((yield* host.stats).subscribers, before + 1)
            yield* host.register(request("a"))
            return watched.events
          })
        )
        assert.strictEqual((yield* host.stats).subscribers, before)
        yield* host.register(request("b"))
        assert.deepStrictEqual(tags(yield* Stream.runCollect(events)), ["Registered:a"])
      }))
  })

  describe("slow subscribers", () => {
    it.effect("publishing never waits for a subscriber that does not read; it then gets an exact Lagged", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ subscriberBuffer: 8 })
        yield* host.register(request("a"))
        const idle = yield* host.subscribe()
        const from = (yield* host.stats).seq
        for (let i = 0; i < 100; i++) yield* host.update("a", { progress: `step ${i}` })
        const last = (yield* host.stats).seq
        assert.strictEqual(last - from, 100)
        const read = yield* upTo(idle, last)
        assert.deepStrictEqual(read[0], { _tag: "Lagged", skipped: 92 })
        assert.deepStrictEqual(
          read.slice(1).map((event) => event._tag === "Lagged" ? 0 : event.seq),
          Array.from({ length: 8 }, (_, i) => last - 7 + i)
        )
      }))

    it.effect("a subscriber that keeps up with its buffer never lags, while another one lags", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ subscriberBuffer: 16 })
        yield* host.register(request("a"))
        const fast = yield* host.subscribe()
        const slow = yield* host.subscribe()
        const start = (yield* host.stats).seq
        const reader = yield* Effect.forkChild(upTo(fast, start + 200))
        for (let i = 0; i < 200; i++) {
          yield* host.update("a", { progress: String(i) })
          if (i % 10 === 9) yield* Effect.yieldNow // the reader runs: at most 10 events wait
        }
        const fastEvents = yield* Fiber.join(reader)
        assert.isFalse(fastEvents.some((event) => event._tag === "Lagged"))
        assert.strictEqual(fastEvents.length, 200)
        const slowEvents = yield* upTo(slow, start + 200)
        assert.deepStrictEqual(slowEvents[0], { _tag: "Lagged", skipped: 184 })
      }))

    it.effect("a watch that lags can resync from list", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ subscriberBuffer: 4 })
        const watched = yield* host.watch({ includeTerminal: true })
        for (let i = 0; i < 20; i++) yield* host.register(request(`t${i}`))
        const read = yield* upTo(watched.events, (yield* host.stats).seq)
        assert.deepStrictEqual(read[0], { _tag: "Lagged", skipped: 16 })
        assert.strictEqual((yield* host.list({ includeTerminal: true })).length, 20)
      }))
  })

  describe("retention", () => {
    it.effect("beyond maxTerminal the oldest terminal records are evicted, with Evicted", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ retention: { maxTerminal: 2 } })
        for (const id of ["a", "b", "c", "d"]) yield* host.register(request(id))
        // terminal order is b, a, d: the oldest *ended* goes first, not the oldest registered
        yield* host.complete("b", { state: "completed" })
        yield* host.complete("a", { state: "failed", summary: "x" })
        yield* host.complete("d", { state: "cancelled" })
        assert.isTrue(Option.isNone(yield* host.get("b")))
        assert.deepStrictEqual(ids(yield* host.list({ includeTerminal: true })), ["s1/a", "s1/c", "s1/d"])
        assert.deepStrictEqual(ids(yield* host.listManaged("s1")), ["s1/a", "s1/c", "s1/d"])
        const all = yield* events
        const evicted = all.filter((event) => event._tag === "Evicted")
        assert.deepStrictEqual(evicted.map((event) => ({ ...event, seq: 0 })), [
          { _tag: "Evicted", seq: 0, sessionId: "s1", kind: "monitor", taskIds: ["b"], reason: "max_terminal" },
          // at shutdown, c is cancelled: a is the oldest terminal record then
          { _tag: "Evicted", seq: 0, sessionId: "s1", kind: "monitor", taskIds: ["a"], reason: "max_terminal" }
        ])
        // right after the terminal event that made room short
        const at = all.findIndex((event) => event._tag === "Evicted")
        assert.deepStrictEqual(tags(all.slice(at - 1, at + 1)), ["Cancelled:d", "Evicted:b"])
      }))

    it.effect("live records are never evicted", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ retention: { maxTerminal: 0, maxAge: 0 } })
        for (let i = 0; i < 5; i++) yield* host.register(request(`live${i}`))
        yield* host.spawnManaged("s1", spec("m"), Effect.never)
        yield* host.register(request("done"))
        yield* host.complete("done", { state: "completed" })
        yield* TestClock.adjust("1 day")
        assert.strictEqual((yield* host.list()).length, 6)
        assert.deepStrictEqual(ids(yield* host.list({ includeTerminal: true })), [
          "s1/live0",
          "s1/live1",
          "s1/live2",
          "s1/live3",
          "s1/live4",
          "s1/m"
        ])
        const stats = yield* host.stats
        assert.strictEqual(stats.live, 6)
        assert.strictEqual(stats.retained, 0)
      }))

    it.effect("terminal records go when they reach maxAge, by the Clock", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ retention: { maxAge: "1 minute" } })
        yield* host.register(request("a"))
        yield* host.register(request("b"))
        yield* host.complete("a", { state: "completed" })
        yield* TestClock.adjust("30 seconds")
        yield* host.complete("b", { state: "completed" })
        yield* TestClock.adjust("29999 millis")
        assert.deepStrictEqual(ids(yield* host.list({ includeTerminal: true })), ["s1/a", "s1/b"])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(ids(yield* host.list({ includeTerminal: true })), ["s1/b"])
        yield* TestClock.adjust("30 seconds")
        assert.deepStrictEqual(yield* host.list({ includeTerminal: true }), [])
        const evicted = (yield* events).filter((event) => event._tag === "Evicted")
        assert.deepStrictEqual(evicted.map((event) => [event.taskIds, event.reason]), [
          [["a"], "max_age"],
          [["b"], "max_age"]
        ])
      }))

    it.effect("records that expire together are evicted in one Evicted per session and kind", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost({ retention: { maxAge: "10 seconds" } })
        yield* host.register(request("a", "s1"))
        yield* host.register(request("b", "s2"))
        yield* host.register(request("c", "s1"))
        yield* host.register(request("d", "s1", "observer"))
        for (const id of ["a", "b", "c", "d"]) yield* host.complete(id, { state: "completed" })
        yield* TestClock.adjust("10 seconds")
        const evicted = (yield* events).filter((event) => event._tag === "Evicted")
        assert.deepStrictEqual(evicted.map((event) => [event.sessionId, event.kind, event.taskIds]), [
          ["s1", "monitor", ["a", "c"]],
          ["s2", "monitor", ["b"]],
          ["s1", "observer", ["d"]]
        ])
      }))

    it.effect("the default keeps 10,000 terminal records for an hour", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        for (let i = 0; i < 10_001; i++) {
          yield* host.register(request(`t${i}`))
          yield* host.complete(`t${i}`, { state: "completed" })
        }
        const stats = yield* host.stats
        assert.strictEqual(stats.retained, 10_000)
        assert.strictEqual(stats.evicted, 1)
        assert.isTrue(Option.isNone(yield* host.get("t0")))
        yield* TestClock.adjust("59 minutes")
        assert.strictEqual((yield* host.stats).retained, 10_000)
        yield* TestClock.adjust("1 minute")
        assert.strictEqual((yield* host.stats).retained, 0)
      }))

    it.effect("stats counts every ended task exactly, evicted or not", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost({ retention: { maxTerminal: 3 } })
        const outcomes = ["completed", "failed", "cancelled"] as const
        for (let i = 0; i < 20; i++) {
          yield* host.register(request(`t${i}`))
          yield* host.complete(`t${i}`, { state: outcomes[i % 3]! })
        }
        const watch = yield* host.subscribe()
        yield* host.spawnManaged("s1", spec("ok"), Effect.succeed("fine"))
        yield* host.spawnManaged("s1", spec("bad"), Effect.fail("no"))
        yield* host.spawnManaged("s1", spec("live"), Effect.never)
        yield* terminalEvents(watch, ["ok", "bad"])
        const stats = yield* host.stats
        assert.deepStrictEqual(
          { ...stats, seq: 0, subscribers: 0 },
          {
            seq: 0,
            live: 1,
            retained: 3,
            completed: 8,
            failed: 8,
            cancelled: 6,
            evicted: 19,
            subscribers: 0,
            fibers: 1,
            queued: 0,
            commits: 0
          }
        )
      }))

    it.effect("unregisterExternal publishes Evicted with reason unregistered", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        yield* host.registerExternal("s1", spec("x", { kind: "subagent" }))
        yield* host.unregisterExternal("s1", "x")
        const evicted = (yield* events).filter((event) => event._tag === "Evicted")
        assert.deepStrictEqual(evicted.map((event) => ({ ...event, seq: 0 })), [
          { _tag: "Evicted", seq: 0, sessionId: "s1", kind: "subagent", taskIds: ["x"], reason: "unregistered" }
        ])
      }))

    it.effect("invalid retention or buffer options fail the layer with a SessionError naming the option", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [BackgroundTaskHostOptions, string]> = [
          [{ retention: { maxTerminal: -1 } }, "retention.maxTerminal"],
          [{ retention: { maxTerminal: 1.5 } }, "retention.maxTerminal"],
          [{ retention: { maxTerminal: Number.NaN } }, "retention.maxTerminal"],
          [{ retention: { maxAge: -5 } }, "retention.maxAge"],
          [{ retention: { maxAge: "soon" as never } }, "retention.maxAge"],
          [{ subscriberBuffer: 0 }, "subscriberBuffer"],
          [{ subscriberBuffer: Infinity }, "subscriberBuffer"]
        ]
        for (const [options, name] of cases) {
          const error = yield* Effect.flip(Effect.scoped(Layer.build(BackgroundTaskHost.layerWith(options))))
          assert.strictEqual(error._tag, "InvalidOptions", name)
          assert.strictEqual(error.option, name)
          assert.include(error.message, name)
        }
        // Infinity lifts a retention limit
        const { host } = yield* makeTestHost({ retention: { maxTerminal: Infinity, maxAge: Infinity } })
        yield* host.register(request("a"))
        yield* host.complete("a", { state: "completed" })
        yield* TestClock.adjust("1000 days")
        assert.strictEqual((yield* host.stats).retained, 1)
      }))
  })

  describe("indexes", () => {
    it.effect("list by session, kind or both returns the matching records in registration order, after transfers too", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a", "s1"))
        yield* host.register(request("b", "s2", "observer"))
        yield* host.register(request("c", "s2"))
        yield* host.register(request("d", "s1", "observer"))
        yield* host.register(request("e", "s1"))
        // a moves to s2 after c was registered there: s2 lists it first all the same
        yield* host.transfer("a", { sessionId: "s2" })
        yield* host.complete("e", { state: "completed" })
        assert.deepStrictEqual(ids(yield* host.list({ sessionId: "s2" })), ["s2/a", "s2/b", "s2/c"])
        assert.deepStrictEqual(ids(yield* host.list({ sessionId: "s1" })), ["s1/d"])
        assert.deepStrictEqual(ids(yield* host.list({ sessionId: "s1", includeTerminal: true })), ["s1/d", "s1/e"])
        assert.deepStrictEqual(ids(yield* host.list({ kind: "monitor" })), ["s2/a", "s2/c"])
        assert.deepStrictEqual(ids(yield* host.list({ kind: "monitor", includeTerminal: true })), [
          "s2/a",
          "s2/c",
          "s1/e"
        ])
        assert.deepStrictEqual(ids(yield* host.list({ kind: "observer", sessionId: "s2" })), ["s2/b"])
        assert.deepStrictEqual(ids(yield* host.list({ kind: "observer", sessionId: "s1" })), ["s1/d"])
        assert.deepStrictEqual(ids(yield* host.list({ kind: "other" })), [])
        assert.deepStrictEqual(ids(yield* host.list({ sessionId: "nobody" })), [])
        assert.deepStrictEqual(ids(yield* host.listManaged("s2")), ["s2/a", "s2/b", "s2/c"])
        assert.deepStrictEqual(ids(yield* host.list()), ["s2/a", "s2/b", "s2/c", "s1/d"])
      }))

    it.effect("a re-registered id replaces its terminal record in the indexes and in stats, with Evicted", () =>
      Effect.gen(function*() {
        const { events, host } = yield* makeTestHost()
        yield* host.register(request("a"))
        yield* host.complete("a", { state: "completed" })
        yield* host.register(request("a", "s1", "observer"))
        const all = yield* events
        // a kind-filtered view learns that the old monitor record is gone
        assert.deepStrictEqual(tags(all).slice(2, 4), ["Evicted:a", "Registered:a"])
        const evicted = all[2]
        assert.deepStrictEqual(evicted?._tag === "Evicted" ? [evicted.kind, evicted.reason] : [], ["monitor", "replaced"])
      }))

    it.effect("a re-registered id: stats and indexes", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a"))
        yield* host.complete("a", { state: "completed" })
        yield* host.register(request("a"))
        assert.deepStrictEqual(ids(yield* host.list({ kind: "monitor", includeTerminal: true })), ["s1/a"])
        const stats = yield* host.stats
        assert.strictEqual(stats.live, 1)
        assert.strictEqual(stats.retained, 0)
        assert.strictEqual(stats.completed, 1)
      }))
  })

  it.effect("a managed task cancelled by cancelManaged is counted as cancelled", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const started = yield* Deferred.make<void>()
      yield* host.spawnManaged("s1", spec("coop"), Effect.andThen(Deferred.succeed(started, undefined), Effect.never))
      yield* Deferred.await(started)
      yield* host.cancelManaged("s1", "coop")
      const stats = yield* host.stats
      assert.strictEqual(stats.cancelled, 1)
      assert.strictEqual(stats.live, 0)
    }))
})
