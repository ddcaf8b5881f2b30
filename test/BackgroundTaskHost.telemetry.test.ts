/**
 * Telemetry (docs/policies.md §8): one `background_task` span per attempt of a managed
 * task, a child of the caller's span, read with an in-memory tracer; the
 * started / completed / failed / cancelled counters, the live gauge and the
 * duration histogram, by kind, read as deltas from the metric registry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, Metric, Option, Ref, Schedule, Tracer } from "effect"
import { TestClock } from "effect/testing"
import type { TaskKind } from "../src/index.ts"
import { TaskMetrics as metrics } from "../src/index.ts"
import { makeTestHost, spec, terminalEvents } from "./utils/host.ts"

// -- an in-memory tracer -----------------------------------------------------------------

const collectingTracer = () => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer } as const
}

const taskSpans = (spans: ReadonlyArray<Tracer.Span>, taskId: string) =>
  spans.filter((span) => span.name === "background_task" && span.attributes.get("task_id") === taskId)

const parentId = (span: Tracer.Span | undefined) =>
  span === undefined ? undefined : Option.getOrUndefined(Option.map(span.parent, (parent) => parent.spanId))

const attributesOf = (span: Tracer.Span | undefined) =>
  span === undefined ? undefined : Object.fromEntries(span.attributes)

/** Runs `effect` inside a span named `name`, with the tracer; returns the span as well. */
const asCaller = <A, E, R>(name: string, tracer: Tracer.Tracer, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const span = yield* Effect.currentSpan
    const value = yield* effect
    return { span, value } as const
  }).pipe(Effect.withSpan(name), Effect.withTracer(tracer))

// -- metrics as deltas ---------------------------------------------------------------------

interface Reading {
  readonly started: number
  readonly completed: number
  readonly failed: number
  readonly cancelled: number
  readonly live: number
  readonly durations: number
  readonly durationSum: number
}

const read = (kind: TaskKind): Effect.Effect<Reading> =>
  Effect.gen(function*() {
    const attributes = { kind }
    const counter = (metric: Metric.Counter<number>) => Metric.value(Metric.withAttributes(metric, attributes))
    const histogram = yield* Metric.value(Metric.withAttributes(metrics.duration, attributes))
    return {
      started: (yield* counter(metrics.started)).count,
      completed: (yield* counter(metrics.completed)).count,
      failed: (yield* counter(metrics.failed)).count,
      cancelled: (yield* counter(metrics.cancelled)).count,
      live: (yield* Metric.value(Metric.withAttributes(metrics.live, attributes))).value,
      durations: histogram.count,
      durationSum: histogram.sum
    }
  })

const zero: Reading = { started: 0, completed: 0, failed: 0, cancelled: 0, live: 0, durations: 0, durationSum: 0 }

/** What changed for a kind since `before`. */
const delta = (kind: TaskKind, before: Reading) =>
  Effect.map(read(kind), (after): Reading => ({
    started: after.started - before.started,
    completed: after.completed - before.completed,
    failed: after.failed - before.failed,
    cancelled: after.cancelled - before.cancelled,
    live: after.live - before.live,
    durations: after.durations - before.durations,
    // the process-wide sum may hold fractions from other files' tasks: a difference of floats, to the microsecond
    durationSum: Math.round((after.durationSum - before.durationSum) * 1e6) / 1e6
  }))

describe("BackgroundTaskHost telemetry", () => {
  describe("spans", () => {
    it.effect("one background_task span per attempt, with task_id, kind, session_id, producer, attempt, child of the caller's span", () =>
      Effect.gen(function*() {
        const { spans, tracer } = collectingTracer()
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const runs = yield* Ref.make(0)
        const inner = yield* Ref.make<ReadonlyArray<string>>([])
        const body = Effect.gen(function*() {
          // the task's own code runs inside its attempt's span
          const current = yield* Effect.currentSpan
          yield* Ref.update(inner, (all) => [...all, current.spanId])
          const n = yield* Ref.updateAndGet(runs, (k) => k + 1)
          if (n === 1) return yield* Effect.fail(new Error("first attempt fails"))
          return "ok"
        })
        const { span: caller } = yield* asCaller(
          "caller",
          tracer,
          host.spawnManaged(
            "s1",
            spec("t", { kind: "subagent", producer: "planner", maxAttempts: 2, retry: Schedule.spaced("1 second") }),
            body
          )
        )
        yield* TestClock.adjust("1 second")
        yield* terminalEvents(watch, ["t"])
        const attempts = taskSpans(spans, "t")
        assert.strictEqual(attempts.length, 2)
        attempts.forEach((span, attempt) => {
          assert.deepStrictEqual(attributesOf(span), {
            task_id: "t",
            kind: "subagent",
            session_id: "s1",
            producer: "planner",
            attempt
          })
          assert.strictEqual(parentId(span), caller.spanId, "child of the caller's span")
          assert.strictEqual(span.traceId, caller.traceId)
          assert.strictEqual(span.status._tag, "Ended")
        })
        const [first, second] = attempts
        assert.isTrue(first?.status._tag === "Ended" && Exit.isFailure(first.status.exit), "the failed attempt's span ends failed")
        assert.isTrue(second?.status._tag === "Ended" && Exit.isSuccess(second.status.exit))
        assert.deepStrictEqual(yield* Ref.get(inner), attempts.map((span) => span.spanId))
      }))

    it.effect("each task's span is a child of the span current when it was spawned (host, session handle, queued task)", () =>
      Effect.gen(function*() {
        const { spans, tracer } = collectingTracer()
        const { host } = yield* makeTestHost({ concurrency: { perKind: { observer: 1 } } })
        const watch = yield* host.subscribe()
        const release = yield* Deferred.make<void>()
        const a = yield* asCaller("caller-a", tracer, host.spawnManaged("s1", spec("a", { kind: "observer" }), Deferred.await(release)))
        // queued behind "a": it starts later, still under the span of its own caller
        const b = yield* asCaller("caller-b", tracer, host.spawnManaged("s1", spec("b", { kind: "observer" }), Effect.void))
        assert.strictEqual(b.value.state, "pending")
        const c = yield* Effect.scoped(Effect.gen(function*() {
          const session = yield* host.openSession("s2")
          return yield* asCaller("caller-c", tracer, session.spawn(spec("c"), Effect.void))
        }))
        yield* Deferred.succeed(release, undefined)
        yield* terminalEvents(watch, ["a", "b", "c"])
        for (const [id, caller] of [["a", a.span], ["b", b.span], ["c", c.span]] as const) {
          const [span, ...rest] = taskSpans(spans, id)
          assert.strictEqual(rest.length, 0, id)
          assert.strictEqual(parentId(span), caller.spanId, id)
        }
        assert.strictEqual(attributesOf(taskSpans(spans, "c")[0])?.session_id, "s2")
      }))

    it.effect("with no tracer installed, Effect.currentSpan in a task is its background_task span, child of the caller's, ended with the task's exit", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const seen = yield* Deferred.make<Tracer.Span>()
        const finalized = yield* Ref.make<ReadonlyArray<string>>([])
        const body = Effect.gen(function*() {
          yield* Effect.addFinalizer(() => Ref.update(finalized, (all) => [...all, "finalizer"]))
          const span = yield* Effect.currentSpan
          yield* Deferred.succeed(seen, span)
          return "done"
        })
        const caller = yield* Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          yield* host.spawnManaged("s1", spec("n", { kind: "subagent", producer: "planner" }), body)
          return span
        }).pipe(Effect.withSpan("caller"))
        yield* terminalEvents(watch, ["n"])
        const span = yield* Deferred.await(seen)
        assert.strictEqual(span.name, "background_task")
        assert.deepStrictEqual(attributesOf(span), { task_id: "n", kind: "subagent", session_id: "s1", producer: "planner", attempt: 0 })
        assert.strictEqual(parentId(span), caller.spanId)
        assert.strictEqual(span.traceId, caller.traceId)
        assert.isTrue(span.status._tag === "Ended" && Exit.isSuccess(span.status.exit))
        // the task's scope closed before its terminal event
        assert.deepStrictEqual(yield* Ref.get(finalized), ["finalizer"])
        // a failing task's span ends failed
        const failing = yield* Deferred.make<Tracer.Span>()
        yield* host.spawnManaged(
          "s1",
          spec("f"),
          Effect.currentSpan.pipe(Effect.tap((s) => Deferred.succeed(failing, s)), Effect.andThen(Effect.fail(new Error("no"))))
        )
        yield* terminalEvents(watch, ["f"])
        const failed = yield* Deferred.await(failing)
        assert.isTrue(failed.status._tag === "Ended" && Exit.isFailure(failed.status.exit))
        assert.isTrue(Option.isNone(failed.parent), "no caller span: a root span")
      }))

    it.live("on Effect's own clock, a task span's end time is the clock's time when the task ended", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const seen = yield* Deferred.make<Tracer.Span>()
        yield* host.spawnManaged("s1", spec("n"), Effect.currentSpan.pipe(Effect.tap((s) => Deferred.succeed(seen, s)), Effect.andThen(Effect.never)))
        const span = yield* Deferred.await(seen)
        yield* Effect.sleep("20 millis")
        const before = yield* Clock.currentTimeNanos
        yield* host.cancelManaged("s1", "n")
        const after = yield* Clock.currentTimeNanos
        const status = span.status
        assert.isTrue(status._tag === "Ended" && Exit.hasInterrupts(status.exit))
        if (status._tag !== "Ended") return
        assert.strictEqual(typeof status.endTime, "bigint")
        assert.isTrue(before <= status.endTime && status.endTime <= after, `${before} <= ${status.endTime} <= ${after}`)
        // the task lived through the 20 ms sleep (less a millisecond: Node's timers run on a clock of whole
        // milliseconds, so a 20 ms timer can fire a fraction of one early by the nanosecond clock)
        assert.isTrue(status.endTime - status.startTime >= BigInt(19_000_000), `${status.endTime - status.startTime} ns`)
      }))

    it.effect("a task span read by its task: its status on the task's clock, one object while it stands; nothing added once ended", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        yield* TestClock.adjust("3 seconds")
        const seen = yield* Deferred.make<readonly [Tracer.Span, Tracer.Span]>()
        const proceed = yield* Deferred.make<void>()
        const body = Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          span.attribute("step", "one")
          span.event("checkpoint", BigInt(7), { at: 1 })
          // a span made in the task is the task span's child
          const child = yield* Effect.currentSpan.pipe(Effect.withSpan("child"))
          yield* Deferred.succeed(seen, [span, child])
          yield* Deferred.await(proceed)
          return "done"
        })
        const caller = yield* Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          yield* host.spawnManaged("s1", spec("t"), body)
          return span
        }).pipe(Effect.withSpan("caller"))
        const [span, child] = yield* Deferred.await(seen)
        assert.strictEqual(Option.getOrUndefined(child.parent), span)
        assert.strictEqual(child.traceId, caller.traceId)
        const started = span.status
        assert.deepStrictEqual(started, { _tag: "Started", startTime: BigInt(3_000_000_000) })
        assert.strictEqual(span.status, started, "the same status object while it stands")
        assert.strictEqual(span.traceId, caller.traceId)
        assert.match(span.spanId, /^[0-9a-f]{16}$/)
        assert.strictEqual(span.spanId, span.spanId)
        assert.strictEqual(span.attributes.get("step"), "one")
        assert.deepStrictEqual((span as Tracer.NativeSpan).events, [["checkpoint", BigInt(7), { at: 1 }]])
        assert.deepStrictEqual(span.links, [])
        span.addLinks([{ span: caller, attributes: { why: "test" } }])
        assert.strictEqual(span.links.length, 1)
        yield* TestClock.adjust("5 seconds")
        yield* Deferred.succeed(proceed, undefined)
        yield* host.await("t")
        const ended = span.status
        assert.isTrue(ended._tag === "Ended" && Exit.isSuccess(ended.exit))
        if (ended._tag !== "Ended") return
        assert.strictEqual(ended.startTime, BigInt(3_000_000_000))
        assert.strictEqual(ended.endTime, BigInt(8_000_000_000))
        assert.strictEqual(span.status, ended, "the same status object once ended")
        // once ended, it takes nothing more; a second end changes nothing
        span.attribute("step", "two")
        span.event("late", BigInt(9))
        span.addLinks([{ span: caller, attributes: {} }])
        span.end(BigInt(1), Exit.void)
        assert.strictEqual(span.attributes.get("step"), "one")
        assert.strictEqual((span as Tracer.NativeSpan).events.length, 1)
        assert.strictEqual(span.links.length, 1)
        assert.strictEqual(span.status, ended)
      }))

    it.effect("external and registered tasks have no span; a managed task's attempt span ends when it is cancelled", () =>
      Effect.gen(function*() {
        const { spans, tracer } = collectingTracer()
        const { host } = yield* makeTestHost()
        const started = yield* Deferred.make<void>()
        yield* asCaller("caller", tracer, Effect.gen(function*() {
          yield* host.registerExternal("s1", spec("x"))
          yield* host.register({ ...spec("r"), scope: { sessionId: "s1" } })
          yield* host.spawnManaged("s1", spec("m"), Deferred.succeed(started, undefined).pipe(Effect.andThen(Effect.never)))
        }))
        yield* Deferred.await(started)
        assert.strictEqual(taskSpans(spans, "m")[0]?.status._tag, "Started")
        yield* host.cancelManaged("s1", "m")
        assert.deepStrictEqual(spans.filter((s) => s.name === "background_task").map((s) => s.attributes.get("task_id")), ["m"])
        const span = taskSpans(spans, "m")[0]
        assert.isTrue(span?.status._tag === "Ended" && Exit.hasInterrupts(span.status.exit))
      }))
  })

  describe("metrics, labelled by kind", () => {
    it.effect("started / completed / failed / cancelled counters, the live gauge and the duration histogram", () =>
      Effect.gen(function*() {
        const { close, host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const before = yield* read("observer")
        const otherKind = yield* read("subagent")
        yield* host.spawnManaged("s1", spec("ok", { kind: "observer" }), Effect.sleep("3 seconds"))
        yield* host.spawnManaged("s1", spec("bad", { kind: "observer" }), Effect.sleep("1 second").pipe(Effect.andThen(Effect.fail("no"))))
        yield* host.registerExternal("s1", spec("ext", { kind: "observer" }))
        yield* host.register({ ...spec("mine", { kind: "observer" }), scope: { sessionId: "s1" } })
        assert.deepStrictEqual(yield* delta("observer", before), { ...zero, started: 4, live: 4 })
        yield* TestClock.adjust("2 seconds")
        yield* host.cancelManaged("s1", "ext") // at 2 s
        yield* TestClock.adjust("1 second")
        yield* terminalEvents(watch, ["ok", "bad", "ext"])
        assert.deepStrictEqual(yield* delta("observer", before), {
          started: 4,
          completed: 1,
          failed: 1,
          cancelled: 1,
          live: 1,
          durations: 3,
          durationSum: 3 + 1 + 2 // seconds from registration to the end, by the TestClock
        })
        yield* host.complete("mine", { state: "completed" }) // at 3 s
        assert.deepStrictEqual(yield* delta("observer", before), {
          started: 4,
          completed: 2,
          failed: 1,
          cancelled: 1,
          live: 0,
          durations: 4,
          durationSum: 9
        })
        yield* close
        assert.deepStrictEqual(yield* delta("subagent", otherKind), zero, "another kind's series did not move")
      }))

    it.effect("a retried task counts once: started once, failed once at the end", () =>
      Effect.gen(function*() {
        const { host } = yield* makeTestHost()
        const watch = yield* host.subscribe()
        const before = yield* read("monitor")
        yield* host.spawnManaged("s1", spec("r", { maxAttempts: 3, retry: Schedule.spaced("1 second") }), Effect.fail("again"))
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* delta("monitor", before), { ...zero, started: 1, live: 1 })
        yield* TestClock.adjust("1 second")
        yield* terminalEvents(watch, ["r"])
        assert.deepStrictEqual(yield* delta("monitor", before), { ...zero, started: 1, failed: 1, durations: 1, durationSum: 2 })
      }))

    it.effect("shutdown counts every live task cancelled and brings the gauge back; unregisterExternal leaves the gauge only", () =>
      Effect.gen(function*() {
        const { close, host } = yield* makeTestHost()
        const before = yield* read("other")
        yield* host.spawnManaged("s1", spec("m", { kind: "other" }), Effect.never)
        yield* host.registerExternal("s1", spec("x", { kind: "other" }))
        yield* host.registerExternal("s1", spec("gone", { kind: "other" }))
        yield* host.unregisterExternal("s1", "gone")
        assert.deepStrictEqual(yield* delta("other", before), { ...zero, started: 3, live: 2 })
        yield* TestClock.adjust(Duration.seconds(4))
        yield* close
        assert.deepStrictEqual(yield* delta("other", before), {
          ...zero,
          started: 3,
          cancelled: 2,
          durations: 2,
          durationSum: 8
        })
      }))

    it.effect("a host built with its own metric registry and attributes updates its series there, labelled with both", () =>
      Effect.gen(function*() {
        const registry: Metric.MetricRegistry = new Map()
        const inHostContext = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
          effect.pipe(
            Effect.provideService(Metric.CurrentMetricAttributes, { service: "billing" }),
            Effect.provideService(Metric.MetricRegistry, registry)
          )
        const { close, host } = yield* inHostContext(makeTestHost())
        const watch = yield* host.subscribe()
        const global = yield* read("monitor")
        yield* host.spawnManaged("s1", spec("a", { kind: "monitor" }), Effect.sleep("2 seconds"))
        yield* host.spawnManaged("s1", spec("b", { kind: "monitor" }), Effect.never)
        yield* TestClock.adjust("2 seconds")
        yield* terminalEvents(watch, ["a"])
        // the series carry the layer's attributes and `kind`, in the layer's registry
        const inRegistry = yield* inHostContext(read("monitor"))
        assert.deepStrictEqual(inRegistry, { ...zero, started: 2, completed: 1, live: 1, durations: 1, durationSum: 2 })
        assert.isTrue(
          Array.from(registry.values()).some((series) =>
            series.id === "background_tasks_started" && series.attributes?.["service"] === "billing" &&
            series.attributes?.["kind"] === "monitor"
          )
        )
        // and not in the process-wide registry
        assert.deepStrictEqual(yield* delta("monitor", global), zero)
        yield* close
        assert.deepStrictEqual(yield* inHostContext(read("monitor")), {
          ...zero,
          started: 2,
          completed: 1,
          cancelled: 1,
          durations: 2,
          durationSum: 4
        })
      }))

    it.effect("two hosts in one process add up on the gauge", () =>
      Effect.gen(function*() {
        const one = yield* makeTestHost()
        const two = yield* makeTestHost()
        const before = yield* read("monitor")
        yield* one.host.registerExternal("s1", spec("x"))
        yield* two.host.registerExternal("s1", spec("x"))
        assert.strictEqual((yield* delta("monitor", before)).live, 2)
        yield* one.close
        assert.strictEqual((yield* delta("monitor", before)).live, 1)
        yield* two.close
        assert.strictEqual((yield* delta("monitor", before)).live, 0)
      }))
  })
})
