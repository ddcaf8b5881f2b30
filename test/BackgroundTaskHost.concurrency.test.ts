/**
 * Rule 3: every mutation is atomic, concurrent calls never lose an update, and
 * events reach every subscriber in the order the mutations took effect.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Ref, Stream } from "effect"
import { makeTestHost, spec, taskEvents } from "./utils/host.ts"

describe("BackgroundTaskHost concurrency", () => {
  it.effect("1,000 concurrent updates on one task lose nothing and arrive in mutation order", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      const first = yield* host.subscribe({ sessionId: "s1" })
      const second = yield* host.subscribe()
      const firstEvents = yield* Effect.forkChild(Stream.runCollect(first))
      const secondEvents = yield* Effect.forkChild(Stream.runCollect(second))
      yield* host.registerExternal("s1", spec("t1"))
      const writers = 20
      const perWriter = 50
      yield* Effect.forEach(
        Array.from({ length: writers }, (_, w) => w),
        (w) =>
          Effect.forEach(
            Array.from({ length: perWriter }, (_, i) => i),
            (i) =>
              host.update("t1", {
                state: (w + i) % 2 === 0 ? "waiting" : "running",
                progress: `${w}:${i}`
              }).pipe(Effect.andThen(Effect.yieldNow)),
            { discard: true }
          ),
        { concurrency: "unbounded", discard: true }
      )
      const final = Option.getOrThrow(yield* host.get("t1"))
      yield* close
      const a = yield* Fiber.join(firstEvents)
      const b = yield* Fiber.join(secondEvents)
      // every subscriber saw the same events in the same order
      assert.deepStrictEqual(a, b)
      const progress = a.flatMap((e) => e._tag === "Progress" ? [e.message] : [])
      assert.strictEqual(progress.length, writers * perWriter)
      assert.strictEqual(new Set(progress).size, writers * perWriter)
      // each writer's updates arrive in the order that writer made them
      for (let w = 0; w < writers; w++) {
        const mine = progress.filter((m) => m.startsWith(`${w}:`)).map((m) => Number(m.split(":")[1]))
        assert.deepStrictEqual(mine, Array.from({ length: perWriter }, (_, i) => i))
      }
      // state events are real changes only, and the last one is the record's state
      const states = a.flatMap((e) => e._tag === "StateChanged" ? [e.state] : [])
      for (let i = 1; i < states.length; i++) assert.notStrictEqual(states[i], states[i - 1])
      assert.strictEqual(states[states.length - 1], final.state)
      // an update's state change is published right before its progress message
      for (let i = 0; i < a.length; i++) {
        const event = a[i]!
        if (event._tag === "StateChanged") assert.strictEqual(a[i + 1]?._tag, "Progress")
      }
    }))

  it.effect("concurrent registrations of one id: exactly one wins", () =>
    Effect.gen(function*() {
      const { host } = yield* makeTestHost()
      const results = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => `s${i}`),
        (sessionId) => Effect.result(host.registerExternal(sessionId, spec("same"))),
        { concurrency: "unbounded" }
      )
      const wins = results.filter((r) => r._tag === "Success")
      assert.strictEqual(wins.length, 1)
      for (const r of results) {
        if (r._tag === "Failure") assert.strictEqual(r.failure._tag, "TaskAlreadyExists")
      }
      assert.strictEqual((yield* host.list()).length, 1)
    }))

  it.effect("concurrent completes of one task: one wins, the rest are InvalidTransition, one terminal event", () =>
    Effect.gen(function*() {
      const { host, events } = yield* makeTestHost()
      yield* host.registerExternal("s1", spec("t1"))
      const states = ["completed", "failed", "cancelled"] as const
      const results = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => states[i % 3]!),
        (state) => Effect.result(host.complete("t1", { state })),
        { concurrency: "unbounded" }
      )
      const wins = results.flatMap((r) => r._tag === "Success" ? [r.success] : [])
      assert.strictEqual(wins.length, 1)
      const final = Option.getOrThrow(yield* host.get("t1"))
      assert.strictEqual(final.state, wins[0]?.state)
      const terminal = (yield* events).filter((e) => ["Completed", "Failed", "Cancelled"].includes(e._tag))
      assert.strictEqual(terminal.length, 1)
    }))
})

describe("BackgroundTaskHost task fibers and the event loop", () => {
  /** Resolves after a `setTimeout` of `ms`: a timer set outside every task. */
  const timer = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

  it.live("managed tasks that yield in a loop take turns, and a timer set outside them still fires", () =>
    Effect.gen(function*() {
      const { host, close } = yield* makeTestHost()
      const turns = Array.from({ length: 50 }, () => 0)
      for (let i = 0; i < turns.length; i++) {
        yield* host.spawnManaged(
          "s1",
          spec(`y${i}`),
          Effect.forever(Effect.sync(() => turns[i]!++).pipe(Effect.andThen(Effect.yieldNow)))
        )
      }
      // the task fibers share one dispatcher: a yield resumes in a later turn of
      // the event loop, never in the same one, so the timer phase comes round
      yield* timer(20)
      const first = [...turns]
      assert.isTrue(first.every((n) => n > 0), `every task ran: ${first.join(",")}`)
      yield* timer(20)
      assert.isTrue(turns.every((n, i) => n > first[i]!), "every task ran again between the two timers")
      // and shutdown stops them
      yield* close
      const stopped = [...turns]
      yield* timer(5)
      assert.deepStrictEqual(turns, stopped)
    }))
})

describe("BackgroundTaskHost shutdown under load", () => {
  // close after a varying number of scheduler turns: from "before anything ran" to "mid-way"
  it.effect.each([0, 1, 3, 10, 15])(
    "closing after %i turns while tasks spawn, run, cancel and finish leaves nothing running",
    (turns) =>
      Effect.gen(function*() {
        const { host, events } = yield* makeTestHost()
        const live = yield* Ref.make(0)
        // a body that counts itself while it runs; some finish, some fail, some never end
        const body = (i: number) =>
          Effect.acquireRelease(Ref.update(live, (n) => n + 1), () => Ref.update(live, (n) => n - 1)).pipe(
            Effect.andThen(Effect.repeat(Effect.yieldNow, { times: i % 7 })),
            Effect.andThen(
              i % 5 === 0 ? Effect.fail(new Error(`task ${i} failed`)) : i % 3 === 0 ? Effect.never : Effect.void
            ),
            Effect.scoped
          )
        const writers = yield* Effect.forkChild(Effect.forEach(
          Array.from({ length: 300 }, (_, i) => i),
          (i) =>
            Effect.gen(function*() {
              yield* Effect.yieldNow // spread the spawns over many scheduler turns
              yield* host.spawnManaged(`s${i % 4}`, spec(`t${i}`), body(i))
              if (i % 4 === 1) yield* host.cancelManaged(`s${i % 4}`, `t${i}`)
              if (i % 4 === 2) yield* host.requestCancel(`t${i}`)
              if (i % 6 === 3) yield* host.spawnHidden(`s${i % 4}`, `h${i}`, body(i + 1).pipe(Effect.orDie))
            }).pipe(Effect.ignore), // calls made after the close fail with SessionError
          { concurrency: 16, discard: true }
        ))
        yield* Effect.repeat(Effect.yieldNow, { times: turns })
        const all = taskEvents(yield* events)
        yield* Fiber.interrupt(writers)
        assert.strictEqual(yield* Ref.get(live), 0, "no task body is still running")
        // every registered task has exactly one terminal event, its last, after its Registered
        const registered = all.filter((e) => e._tag === "Registered").map((e) => e.taskId)
        assert.isBelow(registered.length, 300, "the host closed while tasks were still being spawned")
        for (const id of registered) {
          const mine = all.filter((e) => e.taskId === id)
          const ends = mine.filter((e) => e._tag === "Completed" || e._tag === "Failed" || e._tag === "Cancelled")
          assert.strictEqual(ends.length, 1, `one terminal event for ${id}`)
          assert.strictEqual(mine[0]?._tag, "Registered")
          assert.strictEqual(mine[mine.length - 1], ends[0])
        }
      })
  )
})
