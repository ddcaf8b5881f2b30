/**
 * `TaskScope`, a task's own scope: it must behave as the scope
 * `Scope.makeUnsafe()` makes, for everything a task body does with one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { TaskScope } from "../../src/internal/launch.ts"

/** What happens to a scope: finalizers added through it, a child scope forked from it, then two closes. */
const story = (scope: Scope.Closeable) =>
  Effect.gen(function*() {
    const log: Array<string> = []
    yield* Effect.addFinalizer((exit) => Effect.sync(() => log.push(`first ${Exit.isFailure(exit) ? "failed" : "ok"}`))).pipe(
      Scope.provide(scope)
    )
    yield* Scope.addFinalizer(scope, Effect.sync(() => log.push("second")))
    const child = yield* Scope.fork(scope)
    yield* Scope.addFinalizer(child, Effect.sync(() => log.push("child")))
    yield* Effect.acquireRelease(Effect.succeed(1), () => Effect.sync(() => log.push("released"))).pipe(Scope.provide(scope))
    yield* Scope.close(scope, Exit.fail("boom"))
    yield* Scope.close(scope, Exit.void)
    return { log, state: scope.state._tag, strategy: scope.strategy }
  })

describe("TaskScope", () => {
  it.effect("behaves as Scope.makeUnsafe(): finalizers in reverse order with the exit, a forked child closed with it, closed once", () =>
    Effect.gen(function*() {
      const ours = yield* story(new TaskScope())
      assert.deepStrictEqual(ours, yield* story(Scope.makeUnsafe()))
      assert.deepStrictEqual(ours.log, ["released", "child", "second", "first failed"])
      assert.strictEqual(ours.state, "Closed")
    }))

  it("each is a scope of its own", () => {
    const one = new TaskScope()
    const two = new TaskScope()
    Scope.closeUnsafe(one, Exit.void)
    assert.strictEqual(one.state._tag, "Closed")
    assert.strictEqual(two.state._tag, "Empty")
  })
})
