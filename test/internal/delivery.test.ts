/**
 * The delivery of one routed call (src/internal/cluster/delivery.ts): an
 * interruption that is not the caller's is delivered again, then a
 * `SessionError`; the caller's own interruption interrupts it at once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Schedule } from "effect"
import { ClusterError, ClusterSchema, EntityAddress, EntityId, EntityType, ShardId } from "effect/cluster"
import { TestClock } from "effect/testing"
import { SessionError, TaskNotFound } from "../../src/PluginError.ts"
import { defaultSchedule, delivered, type Target } from "../../src/internal/cluster/delivery.ts"

const target: Target = { sessionId: "s-1", tag: "Spawn", requestId: "req-1" }

/** A fake call: answers each delivery in turn (the last one from then on); counts deliveries and reopenings. */
const scripted = <A, E>(answers: ReadonlyArray<Effect.Effect<A, E>>) => {
  const seen = { deliveries: 0, reopened: [] as Array<Target> }
  const call = Effect.suspend(() => answers[Math.min(seen.deliveries++, answers.length - 1)]!)
  const redelivery = {
    schedule: defaultSchedule,
    reopen: (t: Target) => Effect.sync(() => (seen.reopened.push(t), true))
  }
  return { call, redelivery, seen }
}

/** An interruption by a fiber that is not the caller: the id of a fiber of another process, say. */
const foreign = Effect.failCause(Cause.interrupt(987_654))

/** How the cluster abandons a call: the fiber that sends it interrupts itself, annotated `Abandon`; the caller joins it. */
const abandoned = Effect.flatMap(
  Effect.forkDetach(Effect.interruptible(Effect.withFiber((fiber) => {
    fiber.interruptUnsafe(fiber.id, ClusterSchema.Abandon.annotation)
    return Effect.never
  }))),
  Fiber.join
)

/** Runs a delivery in a fiber and moves the TestClock past every backoff. */
const settle = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    yield* TestClock.adjust("1 minute")
    return yield* Fiber.await(fiber)
  })

describe("delivery of a routed call", () => {
  it.effect("an interruption from another fiber: the same message is delivered again (reopened first), then its answer", () =>
    Effect.gen(function*() {
      const { call, redelivery, seen } = scripted<string, never>([foreign, abandoned, Effect.succeed("record")])
      const exit = yield* settle(delivered(call, target, redelivery))
      expect(exit).toStrictEqual(Exit.succeed("record"))
      expect(seen.deliveries).toBe(3)
      // before each delivery after the first, the stored message is made deliverable again
      expect(seen.reopened).toEqual([target, target])
    }))

  it.effect("the backoff between deliveries comes from the schedule (TestClock)", () =>
    Effect.gen(function*() {
      const { call, redelivery, seen } = scripted<string, never>([foreign, Effect.succeed("record")])
      const fiber = yield* Effect.forkChild(delivered(call, target, {
        ...redelivery,
        schedule: Schedule.spaced("250 millis").pipe(Schedule.upTo({ times: 3 }))
      }))
      yield* TestClock.adjust("249 millis")
      expect(seen.deliveries).toBe(1)
      expect(fiber.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toBe("record")
      expect(seen.deliveries).toBe(2)
    }))

  it.effect("interrupted on the cluster's side every time: a SessionError once the schedule is spent, not an interruption", () =>
    Effect.gen(function*() {
      const { call, redelivery, seen } = scripted<string, never>([abandoned, foreign])
      const exit = yield* settle(delivered(call, target, redelivery))
      // the default schedule: five redeliveries after the first
      expect(seen.deliveries).toBe(6)
      expect(Exit.hasInterrupts(exit)).toBe(false)
      const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
      expect(error?._tag).toBe("Some")
      const failure = (error as { value: unknown }).value
      expect(failure).toBeInstanceOf(SessionError)
      expect((failure as SessionError).message).toBe(
        "the call Spawn to session s-1 was interrupted on the cluster's side (fiber #987654) each of the 6 times it was delivered: whether it took effect is unknown"
      )
    }))

  it.effect("abandoned by the cluster: the SessionError says so", () =>
    Effect.gen(function*() {
      const { call, redelivery } = scripted<string, never>([abandoned])
      const exit = yield* settle(delivered(call, target, { ...redelivery, schedule: Schedule.recurs(1) }))
      expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toContain(
        "the call Spawn to session s-1 was abandoned by the cluster (a runner was stopping)"
      )
    }))

  it.effect("the caller interrupted while the call is in flight: interrupted at once, the call interrupted, never sent again", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const stopped = yield* Deferred.make<void>()
      const { call, redelivery, seen } = scripted<string, never>([
        Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
          Effect.onInterrupt(() => Deferred.succeed(stopped, undefined))
        )
      ])
      const fiber = yield* Effect.forkChild(delivered(call, target, redelivery))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      const exit = yield* Fiber.await(fiber)
      expect(Exit.hasInterrupts(exit)).toBe(true)
      expect(yield* Deferred.isDone(stopped)).toBe(true)
      yield* TestClock.adjust("1 minute")
      expect(seen.deliveries).toBe(1)
      expect(seen.reopened).toEqual([])
    }))

  it.effect("the caller interrupted during the backoff: interrupted, not delivered again", () =>
    Effect.gen(function*() {
      const { call, redelivery, seen } = scripted<string, never>([foreign, Effect.succeed("record")])
      const fiber = yield* Effect.forkChild(delivered(call, target, redelivery))
      yield* TestClock.adjust("50 millis")
      expect(seen.deliveries).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect(Exit.hasInterrupts(yield* Fiber.await(fiber))).toBe(true)
      yield* TestClock.adjust("1 minute")
      expect(seen.deliveries).toBe(1)
    }))

  it.effect("the caller interrupted by a call that ends interrupted at the same time: still the caller's interruption", () =>
    Effect.gen(function*() {
      // the call interrupts its own caller, then ends with an interruption: the caller's, not redelivered
      const { call, redelivery, seen } = scripted<string, never>([
        Effect.withFiber((caller) => {
          caller.interruptUnsafe(caller.id)
          return Effect.interrupt
        })
      ])
      const exit = yield* settle(delivered(call, target, redelivery))
      expect(Exit.hasInterrupts(exit)).toBe(true)
      expect(seen.deliveries).toBe(1)
    }))

  it.effect("a call that is not persisted (no requestId) is sent again without reopening anything", () =>
    Effect.gen(function*() {
      const { call, redelivery, seen } = scripted<string, never>([foreign, Effect.succeed("runner-a")])
      const exit = yield* settle(delivered(call, { sessionId: "s-1", tag: "Wake", requestId: undefined }, redelivery))
      expect(exit).toStrictEqual(Exit.succeed("runner-a"))
      expect(seen.deliveries).toBe(2)
      expect(seen.reopened).toEqual([])
    }))

  it.effect("typed errors are not delivered again: the session's pass through, the cluster's become SessionError", () =>
    Effect.gen(function*() {
      const notFound = scripted<string, TaskNotFound>([Effect.fail(new TaskNotFound({ taskId: "t-1" }))])
      const exit1 = yield* settle(delivered(notFound.call, target, notFound.redelivery))
      expect(exit1).toStrictEqual(Exit.fail(new TaskNotFound({ taskId: "t-1" })))
      expect(notFound.seen.deliveries).toBe(1)

      const unassigned = new ClusterError.EntityNotAssignedToRunner({
        address: EntityAddress.make({ shardId: ShardId.make("default", 1), entityType: EntityType.make("TaskSession"), entityId: EntityId.make("s-1") })
      })
      const cluster = scripted<string, ClusterError.EntityNotAssignedToRunner>([Effect.fail(unassigned)])
      const exit2 = yield* settle(delivered(cluster.call, target, cluster.redelivery))
      expect(exit2._tag).toBe("Failure")
      expect(Exit.isFailure(exit2) && Cause.pretty(exit2.cause)).toContain(
        "the cluster could not deliver the call to session s-1: EntityNotAssignedToRunner"
      )
      expect(cluster.seen.deliveries).toBe(1)
    }))

  it.effect("a failure beside an interruption is the failure (not delivered again)", () =>
    Effect.gen(function*() {
      const mixed = Effect.failCause(Cause.combine(Cause.interrupt(987_654), Cause.fail(new TaskNotFound({ taskId: "t-1" }))))
      const { call, redelivery, seen } = scripted<string, TaskNotFound>([mixed])
      const exit = yield* settle(delivered(call, target, redelivery))
      expect(seen.deliveries).toBe(1)
      expect(Exit.isFailure(exit) && Cause.findErrorOption(exit.cause)).toStrictEqual(
        expect.objectContaining({ _tag: "Some" })
      )
    }))
})
