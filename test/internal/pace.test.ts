/**
 * The host's pace on its own: at most `budget` steps in one turn of the
 * event loop; past it a call waits for the next turn (a macrotask set then);
 * a caller that gave way by itself finds the turn over and a new budget.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Pace } from "../../src/internal/state.ts"

/** The next macrotask (what ends a turn), as an effect. */
const nextMacrotask = Effect.callback<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/** Steps `take` grants in one synchronous run (no macrotask in between), up to `max`. */
const takenNow = (pace: Pace, max: number): number => {
  let n = 0
  while (n < max && pace.take()) n++
  return n
}

describe("Pace", () => {
  it.effect("grants at most the budget in one turn, and a new budget once a macrotask has passed, waited for or not", () =>
    Effect.gen(function*() {
      const pace = new Pace(() => 4)
      assert.strictEqual(takenNow(pace, 100), 4, "the first turn")
      // the caller gave way by itself (no call waited for the turn): the turn ended anyway
      yield* nextMacrotask
      assert.strictEqual(takenNow(pace, 100), 4, "the turn after a macrotask")
      // an effectful step past the budget waits for the end of the turn, then takes a step of the next one
      yield* nextMacrotask
      let turnEnded = false
      setImmediate(() => {
        turnEnded = true
      })
      assert.strictEqual(takenNow(pace, 100), 4, "the third turn")
      yield* pace.step
      assert.isTrue(turnEnded, "a step past the budget did not wait for the next macrotask")
      assert.strictEqual(takenNow(pace, 100), 3, "the waiting step took the first of the new turn's")
    }))

  it.effect("a step past the budget waits for readers woken by a microtask and for what the turn set for the next macrotask", () =>
    Effect.gen(function*() {
      const pace = new Pace(() => 2)
      const order: Array<string> = []
      yield* nextMacrotask
      setImmediate(() => order.push("before the turn"))
      takenNow(pace, 2)
      // set during the turn (a fiber it started, a timer): it too runs before the next turn's steps
      setImmediate(() => order.push("during the turn"))
      queueMicrotask(() => order.push("reader"))
      yield* pace.step
      order.push("step")
      assert.deepStrictEqual(order, ["reader", "before the turn", "during the turn", "step"])
    }))

  it.effect("many callers past the budget: at most the budget of them go on in each turn", () =>
    Effect.gen(function*() {
      const pace = new Pace(() => 3)
      const turns: Array<number> = []
      let turn = 0
      // counts turns: each macrotask is a new one
      const tick = () => {
        turn++
        if (turn < 50) setImmediate(tick)
      }
      setImmediate(tick)
      yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => i),
        () => Effect.andThen(pace.step, Effect.sync(() => turns.push(turn))),
        { concurrency: "unbounded", discard: true }
      )
      const perTurn = new Map<number, number>()
      for (const t of turns) perTurn.set(t, (perTurn.get(t) ?? 0) + 1)
      assert.strictEqual(turns.length, 12)
      for (const [t, n] of perTurn) assert.isAtMost(n, 3, `turn ${t}: ${n} steps`)
    }))

  it.effect("a budget lowered during a turn applies at once", () =>
    Effect.gen(function*() {
      let budget = 100
      const pace = new Pace(() => budget)
      assert.strictEqual(takenNow(pace, 5), 5)
      budget = 6
      assert.strictEqual(takenNow(pace, 100), 1)
      yield* nextMacrotask
      assert.strictEqual(takenNow(pace, 100), 6, "the next turn's budget is the lowered one")
    }))
})
