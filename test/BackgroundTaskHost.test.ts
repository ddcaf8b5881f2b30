/**
 * The host's methods (docs/contract.md §3) and rules 1, 2, 6 and 7 (§4), plus
 * the fine points of §6 and bad input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  BackgroundTaskHost,
  InvokeError,
  LocalBackgroundTaskHost,
  TaskAlreadyExists,
  TaskContext,
  type TaskState
} from "../src/index.ts"
import { makeTestHost, spec, tags, terminalEvents } from "./utils/host.ts"

const request = (id: string, sessionId = "s1") => ({
  scope: { sessionId },
  id,
  kind: "monitor" as const,
  producer: "test"
})

describe("BackgroundTaskHost", () => {
  describe("register / get / list", () => {
    it.effect("register creates a pending record with defaults and publishes Registered", () =>
      Effect.gen(function*() {
        yield* TestClock.adjust("1 minute")
        const { host, events } = yield* makeTestHost()
        const record = yield* host.register(request("t1"))
        assert.strictEqual(record.state, "pending")
        assert.strictEqual(record.cancelPolicy, "cooperative")
        assert.strictEqual(record.closePolicy, "keep")
        assert.strictEqual(record.attempt.attempt, 0)
        assert.isTrue(Option.isNone(record.completedAt))
        assert.strictEqual(record.createdAt.epochMilliseconds, 60_000)
        assert.deepStrictEqual(yield* host.get("t1"), Option.some(record))
        const all = yield* events
        assert.deepStrictEqual(tags(all), ["Registered:t1", "Cancelled:t1"])
        assert.deepStrictEqual(all[0], {
          _tag: "Registered",
          seq: 1,
          taskId: "t1",
          sessionId: "s1",
          kind: "monitor",
          record
        })
        assert.strictEqual(record.revision, 1)
      }))

    it.effect("timestamps come from the Clock", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1"))
        yield* TestClock.adjust("5 seconds")
        const running = yield* host.update("t1", { state: "running" })
        assert.strictEqual(running.createdAt.epochMilliseconds, 0)
        assert.strictEqual(running.updatedAt.epochMilliseconds, 5_000)
        yield* TestClock.adjust("5 seconds")
        const done = yield* host.complete("t1", { state: "completed", summary: "ok" })
        assert.deepStrictEqual(done.completedAt.pipe(Option.map((t) => t.epochMilliseconds)), Option.some(10_000))
      }))

    it.effect("list: live only by default, oldest first, filtered by session and kind", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a", "s1"))
        yield* TestClock.adjust("1 second")
        yield* host.register({ ...request("b", "s2"), kind: "observer" })
        yield* host.register(request("c", "s1"))
        yield* host.complete("c", { state: "completed" })
        const ids = (records: ReadonlyArray<{ readonly id: string }>) => records.map((r) => r.id)
        assert.deepStrictEqual(ids(yield* host.list()), ["a", "b"])
        assert.deepStrictEqual(ids(yield* host.list({ includeTerminal: true })), ["a", "b", "c"])
        assert.deepStrictEqual(ids(yield* host.list({ sessionId: "s1" })), ["a"])
        assert.deepStrictEqual(ids(yield* host.list({ sessionId: "s1", includeTerminal: true })), ["a", "c"])
        assert.deepStrictEqual(ids(yield* host.list({ kind: "observer" })), ["b"])
        assert.deepStrictEqual(ids(yield* host.listManaged("s1")), ["a", "c"])
        assert.deepStrictEqual(yield* host.getManaged("s2", "a"), Option.none())
        assert.strictEqual(Option.getOrThrow(yield* host.getManaged("s1", "c")).state, "completed")
      }))

    it.effect("get of an unknown id is None; update of one is TaskNotFound", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        assert.deepStrictEqual(yield* host.get("nope"), Option.none())
        const error = yield* Effect.flip(host.update("nope", { progress: "x" }))
        assert.strictEqual(error._tag, "TaskNotFound")
      }))
  })

  describe("rule 1: ids", () => {
    it.effect("an id live anywhere cannot be registered, spawned or registered externally again", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1", "s1"))
        const again = yield* Effect.flip(host.register(request("t1", "s2")))
        assert.instanceOf(again, TaskAlreadyExists)
        assert.strictEqual(again.sessionId, "s1")
        const spawned = yield* Effect.flip(host.spawnManaged("s3", spec("t1"), Effect.never))
        assert.strictEqual(spawned._tag, "TaskAlreadyExists")
        const external = yield* Effect.flip(host.registerExternal("s1", spec("t1")))
        assert.strictEqual(external._tag, "TaskAlreadyExists")
        assert.strictEqual((yield* host.list({ includeTerminal: true })).length, 1)
      }))

    it.effect("a terminal record is replaced by a new one with the same id in the same session", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1", "s1"))
        yield* host.complete("t1", { state: "completed" })
        const fresh = yield* host.register(request("t1", "s1"))
        assert.strictEqual(fresh.state, "pending")
        const all = yield* host.listManaged("s1")
        assert.deepStrictEqual(all.map((r) => r.state), ["pending"])
      }))

    it.effect("terminal records with one id coexist in different sessions", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1", "s1"))
        yield* host.complete("t1", { state: "failed", summary: "first" })
        yield* host.register(request("t1", "s2"))
        yield* host.complete("t1", { state: "completed", summary: "second" })
        assert.strictEqual((yield* host.listManaged("s1")).length, 1)
        assert.strictEqual((yield* host.listManaged("s2")).length, 1)
      }))

    it.effect("unscoped lookups find the live record first, else the most recently updated terminal one", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1", "s1"))
        yield* host.complete("t1", { state: "failed" })
        yield* host.register(request("t1", "s2"))
        yield* host.complete("t1", { state: "completed" })
        // both terminal: s2's was updated last
        assert.strictEqual(Option.getOrThrow(yield* host.get("t1")).scope.sessionId, "s2")
        yield* host.register(request("t1", "s3"))
        assert.strictEqual(Option.getOrThrow(yield* host.get("t1")).scope.sessionId, "s3")
        const updated = yield* host.update("t1", { state: "running" })
        assert.strictEqual(updated.scope.sessionId, "s3")
        yield* host.complete("t1", { state: "cancelled" })
        // now all three are terminal; s3's is the most recent
        assert.strictEqual(Option.getOrThrow(yield* host.get("t1")).scope.sessionId, "s3")
      }))
  })

  describe("rule 2: lifecycle", () => {
    it.effect("update moves through legal live states and publishes StateChanged only on a real change", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.register(request("t1"))
        yield* host.update("t1", { state: "running" })
        yield* host.update("t1", { state: "running" })
        yield* host.update("t1", { state: "waiting", progress: "waiting for input" })
        yield* host.update("t1", { progress: "still waiting" })
        yield* host.update("t1", { state: "running" })
        yield* host.complete("t1", { state: "completed", summary: "done" })
        const all = yield* events
        assert.deepStrictEqual(
          all.map((e) => e._tag === "StateChanged" ? `state:${e.state}` : e._tag === "Progress" ? `progress:${e.message}` : e._tag),
          [
            "Registered",
            "state:running",
            "state:waiting",
            "progress:waiting for input",
            "progress:still waiting",
            "state:running",
            "Completed"
          ]
        )
      }))

    it.effect("update to a terminal state, and any move out of a terminal state, fail with InvalidTransition", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1"))
        const toTerminal = yield* Effect.flip(host.update("t1", { state: "completed" }))
        assert.strictEqual(toTerminal._tag, "InvalidTransition")
        yield* host.update("t1", { state: "running" })
        const backToPending = yield* Effect.flip(host.update("t1", { state: "pending" }))
        assert.strictEqual(backToPending._tag, "InvalidTransition")
        yield* host.complete("t1", { state: "completed", summary: "ok" })
        // the fix: update cannot resurrect a completed task, not even with progress only
        for (const update of [{ state: "running" as const }, { progress: "late" }]) {
          const error = yield* Effect.flip(host.update("t1", update))
          assert.strictEqual(error._tag, "InvalidTransition")
        }
        const again = yield* Effect.flip(host.complete("t1", { state: "failed" }))
        assert.strictEqual(again._tag, "InvalidTransition")
        const record = Option.getOrThrow(yield* host.get("t1"))
        assert.strictEqual(record.state, "completed")
        assert.deepStrictEqual(record.result, Option.some({ summary: Option.some("ok") }))
      }))

    it.effect("complete with a non-terminal state fails; cancel_requested only goes to a terminal state", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1"))
        const error = yield* Effect.flip(host.complete("t1", { state: "running" }))
        assert.strictEqual(error._tag, "InvalidTransition")
        assert.strictEqual(error._tag === "InvalidTransition" && error.to, "running")
        yield* host.requestCancel("t1", "stop")
        const back = yield* Effect.flip(host.update("t1", { state: "running" }))
        assert.strictEqual(back._tag, "InvalidTransition")
        const done = yield* host.complete("t1", { state: "cancelled" })
        assert.strictEqual(done.state, "cancelled")
      }))

    it.effect("a failed completion's summary goes to failure, any other to result", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a"))
        yield* host.register(request("b"))
        const failed = yield* host.complete("a", { state: "failed", summary: "broke" })
        const cancelled = yield* host.complete("b", { state: "cancelled", summary: "stopped" })
        assert.deepStrictEqual(failed.failure, Option.some({ summary: Option.some("broke") }))
        assert.isTrue(Option.isNone(failed.result))
        assert.deepStrictEqual(cancelled.result, Option.some({ summary: Option.some("stopped") }))
        assert.isTrue(Option.isNone(cancelled.failure))
      }))
  })

  describe("bad input", () => {
    it.effect("an empty id or session, a negative attempt or an unknown kind fails typed and changes nothing", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const bad = [
          { ...request("t1"), id: "" },
          { ...request("t1"), scope: { sessionId: "" } },
          {
            ...request("t1"),
            attempt: { attempt: -1, maxAttempts: Option.none(), idempotencyKey: Option.none() }
          },
          { ...request("t1"), kind: "daemon" as "monitor" }
        ]
        for (const input of bad) {
          const error = yield* Effect.flip(host.register(input))
          assert.strictEqual(error._tag, "RegistrationError")
          assert.isTrue(error.message.length > 0)
        }
        const emptySession = yield* Effect.flip(host.spawnManaged("", spec("t1"), Effect.void))
        assert.strictEqual(emptySession._tag, "SessionError")
        const emptyId = yield* Effect.flip(host.spawnManaged("s1", spec(""), Effect.void))
        assert.strictEqual(emptyId._tag, "RegistrationError")
        const external = yield* Effect.flip(host.registerExternal("s1", spec("x", { cancelPolicy: "later" as "external" })))
        assert.strictEqual(external._tag, "RegistrationError")
        assert.strictEqual((yield* Effect.flip(host.listManaged("")))._tag, "SessionError")
        assert.deepStrictEqual(yield* host.list({ includeTerminal: true }), [])
        assert.deepStrictEqual(tags(yield* events), [])
      }))

    it.effect("an unknown state string passed to update or complete is InvalidTransition, record unchanged", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const before = yield* host.register(request("t1"))
        const viaUpdate = yield* Effect.flip(host.update("t1", { state: "exploded" as TaskState }))
        assert.strictEqual(viaUpdate._tag, "InvalidTransition")
        assert.include(viaUpdate.message, "not a task state")
        const viaComplete = yield* Effect.flip(host.complete("t1", { state: "exploded" as TaskState }))
        assert.strictEqual(viaComplete._tag, "InvalidTransition")
        const badProgress = yield* Effect.flip(host.update("t1", { progress: 42 as unknown as string }))
        assert.instanceOf(badProgress, InvokeError)
        assert.deepStrictEqual(yield* host.get("t1"), Option.some(before))
      }))

    it.effect("a bad filter is a SnapshotError", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const error = yield* Effect.flip(host.list({ kind: "daemon" as "monitor" }))
        assert.strictEqual(error._tag, "SnapshotError")
        const sub = yield* Effect.flip(host.subscribe({ sessionId: "" }))
        assert.strictEqual(sub._tag, "SnapshotError")
      }))
  })

  describe("transfer", () => {
    it.effect("transfer moves one task to another session with a Transferred event", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.register(request("t1", "s1"))
        const moved = yield* host.transfer("t1", { sessionId: "s2" })
        assert.strictEqual(moved.scope.sessionId, "s2")
        assert.deepStrictEqual(yield* host.listManaged("s1"), [])
        assert.strictEqual((yield* host.listManaged("s2")).length, 1)
        const same = yield* host.transfer("t1", { sessionId: "s2" })
        assert.strictEqual(same.scope.sessionId, "s2")
        const all = yield* events
        assert.deepStrictEqual(tags(all), ["Registered:t1", "Transferred:t1", "Cancelled:t1"])
        const transferred = all[1]
        assert.deepStrictEqual(transferred, {
          _tag: "Transferred",
          taskId: "t1",
          sessionId: "s2",
          kind: "monitor",
          seq: 2,
          scope: { sessionId: "s2" },
          fromSessionId: "s1",
          record: moved
        })
        assert.strictEqual(moved.revision, 2)
      }))

    it.effect("transferring onto a live id fails; onto a terminal one replaces it", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("t1", "s1"))
        yield* host.complete("t1", { state: "completed" })
        yield* host.register(request("t1", "s2"))
        // s1's terminal t1 cannot move onto s2's live t1
        yield* host.transferManaged("s1", "s2", ["t1"]).pipe(
          Effect.flip,
          Effect.map((error) => assert.strictEqual(error._tag, "TaskAlreadyExists"))
        )
        // s2's live t1 may move onto s1's terminal t1, which it replaces
        yield* host.transfer("t1", { sessionId: "s1" })
        const s1 = yield* host.listManaged("s1")
        assert.deepStrictEqual(s1.map((r) => r.state), ["pending"])
        assert.deepStrictEqual(yield* host.listManaged("s2"), [])
      }))

    it.effect("transferManaged moves several tasks, skips unknown ids and keeps fibers running", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const seen = yield* Deferred.make<string>()
        const gate = yield* Deferred.make<void>()
        yield* host.spawnManaged(
          "s1",
          spec("m1"),
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            yield* Deferred.await(gate)
            yield* Deferred.succeed(seen, yield* ctx.sessionId)
          })
        )
        yield* host.register(request("r1", "s1"))
        yield* host.transferManaged("s1", "s2", ["m1", "r1", "ghost"])
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Deferred.await(seen), "s2")
        yield* terminalEvents(watch, ["m1"])
        assert.deepStrictEqual((yield* host.listManaged("s2")).map((r) => r.id), ["m1", "r1"])
        const all = tags(yield* events)
        assert.deepStrictEqual(all.filter((t) => t.startsWith("Transferred")), ["Transferred:m1", "Transferred:r1"])
        assert.include(all, "Completed:m1")
      }))

    it.effect("a colliding transferManaged moves nothing", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.register(request("a", "s1"))
        yield* host.register(request("b", "s1"))
        yield* host.register(request("b", "s2")).pipe(Effect.flip)
        yield* host.complete("b", { state: "completed" })
        yield* host.register(request("b", "s2"))
        // b now live in s2, terminal in s1
        const error = yield* Effect.flip(host.transferManaged("s1", "s2", ["a", "b"]))
        assert.strictEqual(error._tag, "TaskAlreadyExists")
        assert.deepStrictEqual((yield* host.listManaged("s1")).map((r) => r.id), ["a", "b"])
        assert.deepStrictEqual((yield* host.listManaged("s2")).map((r) => r.id), ["b"])
      }))
  })

  describe("rule 6: subscriber filters", () => {
    it.effect("session and kind filters apply to every event, Transferred matching both sessions", () =>
      Effect.gen(function*() {
        const { host, close } = yield* makeTestHost()
        const s1 = yield* host.subscribe({ sessionId: "s1" })
        const observers = yield* host.subscribe({ kind: "observer" })
        const s1Events = yield* Effect.forkChild(Stream.runCollect(s1))
        const observerEvents = yield* Effect.forkChild(Stream.runCollect(observers))
        yield* host.register(request("a", "s1"))
        yield* host.register({ ...request("b", "s2"), kind: "observer" })
        yield* host.update("a", { progress: "p" })
        yield* host.update("b", { state: "running" })
        yield* host.transfer("b", { sessionId: "s1" })
        yield* host.requestCancel("a")
        yield* host.complete("b", { state: "completed" })
        yield* close
        assert.deepStrictEqual(tags(yield* Fiber.join(s1Events)), [
          "Registered:a",
          "Progress:a",
          "Transferred:b",
          "CancelRequested:a",
          "Completed:b",
          "Cancelled:a"
        ])
        assert.deepStrictEqual(tags(yield* Fiber.join(observerEvents)), [
          "Registered:b",
          "StateChanged:b",
          "Transferred:b",
          "Completed:b"
        ])
      }))

    it.effect("the subscription is live when subscribe returns", () =>
      Effect.gen(function*() {
        const { host, close } = yield* makeTestHost()
        const stream = yield* host.subscribe()
        // published before anyone pulls from the stream
        yield* host.register(request("t1"))
        yield* host.update("t1", { progress: "x" })
        const first = yield* Stream.runCollect(Stream.take(stream, 2))
        assert.deepStrictEqual(tags(first), ["Registered:t1", "Progress:t1"])
        yield* close
      }))

    it.effect("a subscriber that never reads does not block the host", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.subscribe()
        yield* host.register(request("t1"))
        for (let i = 0; i < 10_000; i++) yield* host.update("t1", { progress: `p${i}` })
        assert.strictEqual(Option.getOrThrow(yield* host.get("t1")).state, "pending")
      }))
  })

  describe("managed tasks", () => {
    it.effect("a managed task that succeeds ends completed, its string result as summary", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const record = yield* host.spawnManaged("s1", spec("m1", { kind: "subagent" }), Effect.succeed("all done"))
        assert.strictEqual(record.state, "running")
        yield* terminalEvents(watch, ["m1"])
        const all = yield* events
        assert.deepStrictEqual(tags(all), ["Registered:m1", "Completed:m1"])
        const completed = all[1]!
        assert.isTrue(completed._tag === "Completed")
        if (completed._tag === "Completed") {
          assert.deepStrictEqual(completed.record.result, Option.some({ summary: Option.some("all done") }))
        }
      }))

    it.effect("rule 7: a failure, a defect and an interruption each leave a record that says so", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        yield* host.spawnManaged("s1", spec("fails"), Effect.fail(new InvokeError({ message: "tool crashed" })))
        yield* host.spawnManaged("s1", spec("dies"), Effect.die(new Error("null pointer")))
        yield* host.spawnManaged("s1", spec("interrupted"), Effect.interrupt)
        yield* terminalEvents(watch, ["fails", "dies", "interrupted"])
        const all = yield* events
        const final = new Map(all.flatMap((e) => "record" in e && e._tag !== "Registered" ? [[e.taskId, e.record]] : []))
        assert.strictEqual(final.get("fails")?.state, "failed")
        assert.deepStrictEqual(final.get("fails")?.failure, Option.some({ summary: Option.some("tool crashed") }))
        assert.strictEqual(final.get("dies")?.state, "failed")
        assert.deepStrictEqual(final.get("dies")?.failure, Option.some({ summary: Option.some("null pointer") }))
        assert.strictEqual(final.get("interrupted")?.state, "cancelled")
        assert.deepStrictEqual(tags(all).filter((t) => !t.startsWith("Registered")).sort(), [
          "Cancelled:interrupted",
          "Failed:dies",
          "Failed:fails"
        ])
      }))

    it.effect("the host keeps working after tasks fail and die", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const done = yield* Deferred.make<void>()
        yield* host.spawnManaged("s1", spec("dies"), Effect.die("boom").pipe(Effect.ensuring(Deferred.succeed(done, undefined))))
        yield* Deferred.await(done)
        const next = yield* host.spawnManaged("s1", spec("next"), Effect.never)
        assert.strictEqual(next.state, "running")
      }))

    it.effect("a task runs with its caller's services", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const result = yield* Deferred.make<number>()
        const task = Effect.gen(function*() {
          const clockTime = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          yield* Deferred.succeed(result, clockTime)
        })
        yield* TestClock.adjust("42 millis")
        yield* host.spawnManaged("s1", spec("m1"), task)
        assert.strictEqual(yield* Deferred.await(result), 42)
      }))

    it.effect("markTerminal interrupts a running managed fiber, with the state it names", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const started = yield* Deferred.make<void>()
        const finalized = yield* Deferred.make<void>()
        yield* host.spawnManaged(
          "s1",
          spec("m1"),
          Deferred.succeed(started, undefined).pipe(
            Effect.andThen(Effect.never),
            Effect.ensuring(Deferred.succeed(finalized, undefined))
          )
        )
        yield* Deferred.await(started)
        yield* host.markTerminal("s1", "m1", "completed")
        assert.isTrue(yield* Deferred.isDone(finalized))
        // no-ops: terminal already, unknown, not terminal
        yield* host.markTerminal("s1", "m1", "failed")
        yield* host.markTerminal("s1", "ghost", "failed")
        assert.deepStrictEqual(tags(yield* events), ["Registered:m1", "Completed:m1"])
      }))

    it.effect("markLiveState flips running and waiting and ignores everything else", () =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        yield* host.registerExternal("s1", spec("x1"))
        yield* host.markLiveState("s1", "x1", "waiting")
        yield* host.markLiveState("s1", "x1", "waiting")
        yield* host.markLiveState("s1", "x1", "completed" as "running")
        yield* host.markLiveState("s1", "x1", "running")
        yield* host.markLiveState("s2", "x1", "waiting")
        yield* host.requestCancel("x1")
        yield* host.markLiveState("s1", "x1", "running")
        assert.strictEqual(Option.getOrThrow(yield* host.get("x1")).state, "cancel_requested")
        assert.deepStrictEqual(
          (yield* events).map((e) => e._tag === "StateChanged" ? e.state : e._tag),
          ["Registered", "waiting", "running", "CancelRequested", "Cancelled"]
        )
      }))

    it.effect("unregisterExternal removes an external record and ignores managed and unknown ones", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.registerExternal("s1", spec("x1"))
        yield* host.spawnManaged("s1", spec("m1"), Effect.never)
        yield* host.unregisterExternal("s1", "x1")
        yield* host.unregisterExternal("s1", "m1")
        yield* host.unregisterExternal("s1", "ghost")
        assert.deepStrictEqual((yield* host.listManaged("s1")).map((r) => r.id), ["m1"])
        // the id is free again
        const again = yield* host.registerExternal("s1", spec("x1"))
        assert.strictEqual(again.state, "running")
      }))
  })

  describe("hidden tasks", () => {
    it.effect("awaitHidden waits for every hidden task, including ones spawned while waiting", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const log: Array<string> = []
        const gate1 = yield* Deferred.make<void>()
        const gate2 = yield* Deferred.make<void>()
        yield* host.spawnHidden("s1", "first", Deferred.await(gate1).pipe(Effect.andThen(Effect.sync(() => log.push("first")))))
        const waiter = yield* Effect.forkChild(host.awaitHidden("s1"))
        yield* host.spawnHidden("s1", "second", Deferred.await(gate2).pipe(Effect.andThen(Effect.sync(() => log.push("second")))))
        yield* Deferred.succeed(gate1, undefined)
        yield* Effect.yieldNow
        assert.isUndefined(waiter.pollUnsafe())
        yield* Deferred.succeed(gate2, undefined)
        yield* Fiber.join(waiter)
        assert.deepStrictEqual(log.sort(), ["first", "second"])
      }))

    it.effect("awaitHidden reports the first failure without abandoning the other tasks", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const finished: Array<string> = []
        const slow = yield* Deferred.make<void>()
        yield* host.spawnHidden("s1", "slow", Deferred.await(slow).pipe(Effect.andThen(Effect.sync(() => finished.push("slow")))))
        yield* host.spawnHidden("s1", "bad", Effect.fail(new InvokeError({ message: "first failure" })))
        yield* host.spawnHidden("s1", "worse", Effect.yieldNow.pipe(Effect.andThen(Effect.fail(new InvokeError({ message: "second failure" })))))
        const waiter = yield* Effect.forkChild(Effect.flip(host.awaitHidden("s1")))
        yield* Effect.yieldNow
        assert.isUndefined(waiter.pollUnsafe())
        yield* Deferred.succeed(slow, undefined)
        const error = yield* Fiber.join(waiter)
        assert.strictEqual(error.message, "first failure")
        assert.deepStrictEqual(finished, ["slow"])
        // reported once
        yield* host.awaitHidden("s1")
      }))

    it.effect("a hidden defect is reported as InvokeError; other sessions are independent", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* host.spawnHidden("s1", "crash", Effect.die(new Error("kaput")))
        yield* host.spawnHidden("s2", "fine", Effect.void)
        yield* host.awaitHidden("s2")
        const error = yield* Effect.flip(host.awaitHidden("s1"))
        assert.strictEqual(error._tag, "InvokeError")
        assert.include(error.message, "kaput")
        yield* host.awaitHidden("nobody")
      }))
  })

  describe("layers", () => {
    it.effect("BackgroundTaskHost.layer and LocalBackgroundTaskHost.layer provide the service", () =>
      Effect.gen(function*() {
        for (const layer of [BackgroundTaskHost.layer, LocalBackgroundTaskHost.layer, LocalBackgroundTaskHost.layerWith({ cancelGracePeriod: "1 second" })]) {
          const record = yield* BackgroundTaskHost.use((host) => host.register(request("t1"))).pipe(Effect.provide(layer))
          assert.strictEqual(record.id, "t1")
        }
      }))

    it.effect("invalid options fail the layer with InvalidOptions", () =>
      Effect.gen(function*() {
        for (const cancelGracePeriod of ["-1 second", "soon", Number.NaN] as const) {
          const error = yield* BackgroundTaskHost.use((host) => host.list()).pipe(
            Effect.provide(BackgroundTaskHost.layerWith({ cancelGracePeriod: cancelGracePeriod as "1 second" })),
            Effect.flip
          )
          assert.strictEqual(error._tag, "InvalidOptions")
          assert.strictEqual(error._tag === "InvalidOptions" ? error.option : undefined, "cancelGracePeriod")
          assert.include(error.message, "cancelGracePeriod")
        }
      }))

    it.effect("a call on a host whose layer has closed fails with SessionError", () =>
      Effect.gen(function*() {
        const { host, close } = yield* makeTestHost()
        yield* close
        const errors = [
          yield* Effect.flip(host.register(request("t1"))),
          yield* Effect.flip(host.get("t1")),
          yield* Effect.flip(host.list()),
          yield* Effect.flip(host.spawnManaged("s1", spec("m1"), Effect.void)),
          yield* Effect.flip(host.spawnHidden("s1", "h", Effect.void)),
          yield* Effect.flip(Effect.scoped(host.subscribe()))
        ]
        for (const error of errors) assert.strictEqual(error._tag, "SessionError")
      }))
  })
})

