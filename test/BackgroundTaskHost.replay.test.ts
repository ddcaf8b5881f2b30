/**
 * `watch` (docs/contract.md §7.2) gives a snapshot as of `seq` S and exactly the matching
 * events after S (no gap, no duplicate), even while other fibers write. So
 * folding a watch's events into its snapshot (`TaskView`) reproduces what
 * `list` returns later, for any interleaving of calls.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  type BackgroundTaskEvent,
  BackgroundTaskHost,
  type BackgroundTaskRecord,
  matchesEvent,
  type SubscriptionEvent,
  TaskContext,
  type TaskFilter,
  TaskView
} from "../src/index.ts"
import { makeTestHost } from "./utils/host.ts"

// -- operations -------------------------------------------------------------------

const Id = Schema.Literals(["a", "b", "c", "d", "e", "f"])
const Session = Schema.Literals(["s1", "s2", "s3"])
const Kind = Schema.Literals(["monitor", "other"])
const Body = Schema.Literals(["never", "succeed", "fail", "progress", "cooperative"])

const Op = Schema.Union([
  Schema.TaggedStruct("register", { session: Session, id: Id, kind: Kind }),
  Schema.TaggedStruct("update", {
    id: Id,
    state: Schema.Literals(["running", "waiting", "cancel_requested", "none"]),
    progress: Schema.Boolean
  }),
  Schema.TaggedStruct("complete", { id: Id, state: Schema.Literals(["completed", "failed", "cancelled"]) }),
  Schema.TaggedStruct("transfer", { id: Id, session: Session }),
  Schema.TaggedStruct("requestCancel", { id: Id }),
  Schema.TaggedStruct("spawnManaged", {
    session: Session,
    id: Id,
    kind: Kind,
    body: Body,
    policy: Schema.Literals(["cooperative", "abort_local"])
  }),
  Schema.TaggedStruct("registerExternal", {
    session: Session,
    id: Id,
    policy: Schema.Literals(["cooperative", "external"]),
    withCancel: Schema.Boolean
  }),
  Schema.TaggedStruct("cancelManaged", { session: Session, id: Id }),
  Schema.TaggedStruct("unregisterExternal", { session: Session, id: Id }),
  Schema.TaggedStruct("transferManaged", { from: Session, to: Session, ids: Schema.Array(Id) }),
  // time passes: cooperative grace periods and `maxAge` run out
  Schema.TaggedStruct("tick", { minutes: Schema.Literals([1, 3]) })
])
type Op = typeof Op.Type

type Host = BackgroundTaskHost["Service"]

const managedBody = (body: typeof Body.Type) => {
  switch (body) {
    case "never":
      return Effect.never
    case "succeed":
      return Effect.succeed("done")
    case "fail":
      return Effect.fail("boom")
    case "progress":
      return Effect.gen(function*() {
        const ctx = yield* TaskContext
        yield* ctx.progress("working")
        yield* ctx.setLiveState("waiting")
        return yield* Effect.never
      })
    case "cooperative":
      return Effect.gen(function*() {
        const ctx = yield* TaskContext
        yield* ctx.cancelRequested
        return "stopped"
      })
  }
}

/** Runs one call; its errors (unknown task, illegal move, taken id) are expected and ignored. */
const runOp = (host: Host, op: Op): Effect.Effect<void> => {
  const call = ((): Effect.Effect<unknown, unknown> => {
    switch (op._tag) {
      case "register":
        return host.register({ scope: { sessionId: op.session }, id: op.id, kind: op.kind, producer: "replay" })
      case "update":
        return host.update(op.id, {
          ...(op.state === "none" ? {} : { state: op.state }),
          ...(op.progress ? { progress: "p" } : {})
        })
      case "complete":
        return host.complete(op.id, { state: op.state, summary: op.state })
      case "transfer":
        return host.transfer(op.id, { sessionId: op.session })
      case "requestCancel":
        return host.requestCancel(op.id, "asked")
      case "spawnManaged":
        return host.spawnManaged(
          op.session,
          { id: op.id, kind: op.kind, producer: "replay", cancelPolicy: op.policy },
          managedBody(op.body)
        )
      case "registerExternal":
        return host.registerExternal(
          op.session,
          { id: op.id, kind: "other", producer: "replay", cancelPolicy: op.policy },
          op.withCancel ? Effect.void : undefined
        )
      case "cancelManaged":
        return host.cancelManaged(op.session, op.id)
      case "unregisterExternal":
        return host.unregisterExternal(op.session, op.id)
      case "transferManaged":
        return host.transferManaged(op.from, op.to, op.ids)
      case "tick":
        return TestClock.adjust(Duration.minutes(op.minutes))
    }
  })()
  return Effect.asVoid(Effect.exit(call))
}

/** Lets the other fibers run, `n` times. */
const yields = (n: number): Effect.Effect<void> => n <= 0 ? Effect.void : Effect.andThen(Effect.yieldNow, yields(n - 1))

// -- checking -------------------------------------------------------------------

const keyOf = (record: BackgroundTaskRecord) => `${record.scope.sessionId}/${record.id}`

const sortByKey = (records: ReadonlyArray<BackgroundTaskRecord>) =>
  [...records].sort((x, y) => keyOf(x) < keyOf(y) ? -1 : keyOf(x) > keyOf(y) ? 1 : 0)

const describeRecord = (record: BackgroundTaskRecord) =>
  `${keyOf(record)}:${record.kind}:${record.state}@${record.revision}`

/** Same records, compared as sets keyed by (session, id), with full record equality. */
const assertSameRecords = (
  actual: ReadonlyArray<BackgroundTaskRecord>,
  expected: ReadonlyArray<BackgroundTaskRecord>,
  message: string
) => {
  assert.strictEqual(new Set(expected.map(keyOf)).size, expected.length, `${message}: one record per key`)
  const a = sortByKey(actual)
  const e = sortByKey(expected)
  assert.deepStrictEqual(a.map(describeRecord), e.map(describeRecord), message)
  assert.deepStrictEqual(a, e, message)
}

const fold = (
  start: { readonly snapshot: ReadonlyArray<BackgroundTaskRecord>; readonly seq: number },
  filter: TaskFilter | undefined,
  events: ReadonlyArray<SubscriptionEvent>
) => {
  const view = new TaskView(start.snapshot, start.seq, filter)
  for (const event of events) view.apply(event)
  return view
}

const seqs = (events: ReadonlyArray<BackgroundTaskEvent>) => events.map((event) => event.seq)

/** A watch whose events a fiber reads as they come, until the watch's scope closes. */
interface OpenWatch {
  readonly filter: TaskFilter | undefined
  readonly snapshot: ReadonlyArray<BackgroundTaskRecord>
  readonly seq: number
  /** Closes the watch and returns every event it delivered. */
  readonly stop: Effect.Effect<ReadonlyArray<SubscriptionEvent>>
}

const openWatch = (host: Host, filter: TaskFilter | undefined) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const watched = yield* host.watch(filter).pipe(Scope.provide(scope), Effect.orDie)
    const reader = yield* Effect.forkDetach(Stream.runCollect(watched.events))
    const stop = Scope.close(scope, Exit.void).pipe(Effect.andThen(Fiber.join(reader)))
    const open: OpenWatch = { filter: watched.filter, snapshot: watched.snapshot, seq: watched.seq, stop }
    return open
  })

/** Waits until the host has stopped publishing (the writers have ended, managed fibers have settled). */
const settle = (host: Host) =>
  Effect.gen(function*() {
    let last = -1
    while (true) {
      const { seq } = yield* host.stats
      if (seq === last) return
      last = seq
      yield* yields(20)
    }
  })

/** `list` for each filter, all as of one `seq` (retried if an event came in between). */
const listAll = (host: Host, filters: ReadonlyArray<TaskFilter | undefined>) =>
  Effect.gen(function*() {
    while (true) {
      const before = (yield* host.stats).seq
      const lists = yield* Effect.forEach(filters, (filter) => host.list(filter).pipe(Effect.orDie))
      const after = (yield* host.stats).seq
      if (before === after) return { seq: before, lists }
      yield* Effect.yieldNow
    }
  })

const coverage = { runs: 0, evicted: 0, transferred: 0, midWatchEvents: 0, midWatchSnapshots: 0, cancelled: 0 }

const reportFilters: ReadonlyArray<TaskFilter | undefined> = [
  undefined,
  {},
  { includeTerminal: true },
  ...(["s1", "s2", "s3"] as const).flatMap((sessionId) => [{ sessionId }, { sessionId, includeTerminal: true }]),
  { kind: "monitor", includeTerminal: true },
  { sessionId: "s1", kind: "other" }
]

interface Scenario {
  /** One list of calls per concurrent writer fiber, with the yields before each. */
  readonly writers: ReadonlyArray<ReadonlyArray<{ readonly yields: number; readonly op: Op }>>
  readonly maxTerminal: number
  readonly maxAge: Duration.Input
  /** Yields before the mid-run watches open, from their own fiber. */
  readonly midAfter: number
  readonly midFilters: ReadonlyArray<TaskFilter | undefined>
}

const check = (scenario: Scenario, store: "memory" | "sqlite" = "memory") =>
  Effect.acquireUseRelease(
    makeTestHost({
      retention: { maxTerminal: scenario.maxTerminal, maxAge: scenario.maxAge },
      subscriberBuffer: 1_000_000
    }, store),
    ({ host }) => checkWith(host, scenario),
    ({ close }) => close
  )

const checkWith = (host: Host, scenario: Scenario) =>
  Effect.gen(function*() {
    const first = yield* openWatch(host, { includeTerminal: true })
    assert.strictEqual(first.seq, 0)
    assert.deepStrictEqual(first.snapshot, [])

    const writers = scenario.writers.map((steps) =>
      Effect.forEach(steps, (step) => Effect.andThen(yields(step.yields), runOp(host, step.op)), { discard: true })
    )
    const mid = Effect.andThen(
      yields(scenario.midAfter),
      Effect.forEach(scenario.midFilters, (filter) => openWatch(host, filter))
    )
    const [mids] = yield* Effect.all([mid, Effect.all(writers, { concurrency: "unbounded" })], {
      concurrency: "unbounded"
    })
    yield* settle(host)
    // every list as of one seq: the first watch's, each mid-run watch's, and more
    const final = yield* listAll(host, [first.filter, ...mids.map((watched) => watched.filter), ...reportFilters])
    const target = final.seq
    assert.strictEqual((yield* host.stats).seq, target)

    // -- the watch opened before any call: every event, 1 to target, none lost --
    const all = (yield* first.stop).filter((e) => e._tag === "Lagged" || e.seq <= target)
    assert.isFalse(all.some((e) => e._tag === "Lagged"), "no subscriber lags")
    const allEvents = all as ReadonlyArray<BackgroundTaskEvent>
    assert.deepStrictEqual(seqs(allEvents), Array.from({ length: target }, (_, i) => i + 1), "seqs 1..target")
    const firstView = fold(first, first.filter, allEvents)
    assert.strictEqual(firstView.seq, target)
    assertSameRecords(firstView.records(), final.lists[0]!, "first watch: replay equals list")
    for (const record of firstView.records()) assert.isAtMost(record.revision, target)

    // the same event history, folded under other filters, is what `list` says for each
    for (const [i, filter] of reportFilters.entries()) {
      const view = fold({ snapshot: [], seq: 0 }, filter, allEvents.filter((e) => matchesEvent(filter, e)))
      assertSameRecords(
        view.records(),
        final.lists[1 + mids.length + i]!,
        `history folded for ${JSON.stringify(filter)}`
      )
    }

    // -- the watches opened mid-run, concurrently with the writers --
    for (const [i, watched] of mids.entries()) {
      const label = `mid watch ${JSON.stringify(watched.filter)} at seq ${watched.seq}`
      const filter = watched.filter
      assert.isAtMost(watched.seq, target)
      for (const record of watched.snapshot) assert.isAtMost(record.revision, watched.seq, label)
      // the snapshot is the state as of its seq: the history up to there, folded
      const past = fold(
        { snapshot: [], seq: 0 },
        filter,
        allEvents.filter((e) => e.seq <= watched.seq && matchesEvent(filter, e))
      )
      assertSameRecords(watched.snapshot, past.records(), `${label}: snapshot`)
      // and the events are exactly the matching ones after it
      const events = (yield* watched.stop).filter((e) => e._tag === "Lagged" || e.seq <= target)
      assert.isFalse(events.some((e) => e._tag === "Lagged"), `${label}: lagged`)
      const got = events as ReadonlyArray<BackgroundTaskEvent>
      for (const [j, event] of got.entries()) {
        assert.isAbove(event.seq, j === 0 ? watched.seq : got[j - 1]!.seq, `${label}: increasing seqs`)
      }
      const expected = allEvents.filter((e) => e.seq > watched.seq && matchesEvent(filter, e))
      assert.deepStrictEqual(seqs(got), seqs(expected), `${label}: the matching events after seq`)
      assert.deepStrictEqual(got, expected, label)
      if (filter === undefined) {
        assert.deepStrictEqual(
          seqs(got),
          Array.from({ length: target - watched.seq }, (_, k) => watched.seq + k + 1),
          `${label}: no gap`
        )
      }
      const view = fold(watched, filter, got)
      assertSameRecords(view.records(), final.lists[1 + i]!, `${label}: replay equals list`)
      coverage.midWatchEvents += got.length
      coverage.midWatchSnapshots += watched.snapshot.length
    }

    coverage.runs++
    for (const event of allEvents) {
      if (event._tag === "Evicted") coverage.evicted++
      if (event._tag === "Transferred") coverage.transferred++
      if (event._tag === "Cancelled") coverage.cancelled++
    }
  })

// -- generated programs -----------------------------------------------------------

const Step = Schema.Struct({ writer: Schema.Literals([0, 1, 2, 3]), yields: Schema.Literals([0, 1, 2]), op: Op })

const MidFilter = Schema.Struct({
  session: Schema.Literals(["any", "s1", "s2"]),
  kind: Schema.Literals(["any", "monitor"]),
  includeTerminal: Schema.Boolean
})

const filterOf = (f: typeof MidFilter.Type): TaskFilter | undefined =>
  f.session === "any" && f.kind === "any" && !f.includeTerminal ? undefined : {
    ...(f.session === "any" ? {} : { sessionId: f.session }),
    ...(f.kind === "any" ? {} : { kind: f.kind }),
    includeTerminal: f.includeTerminal
  }

/** A deterministic stream of numbers (a linear congruential generator). */
const lcg = (seed: number) => {
  let state = seed >>> 0
  return (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state % n
  }
}

describe("BackgroundTaskHost watch and replay", () => {
  it.effect.prop(
    "any interleaving of calls, replayed from a watch's events over its snapshot, is the registry's final state",
    {
      steps: Schema.Array(Step),
      writers: Schema.Literals([2, 3, 4]),
      maxTerminal: Schema.Literals([0, 1, 2, 3, 4, 5]),
      maxAge: Schema.Literals(["2 minutes", "none"]),
      midAfter: Schema.Literals([0, 1, 2, 3, 5, 8, 13, 21]),
      midFilters: Schema.Array(MidFilter).check(Schema.isMaxLength(2))
    },
    ({ maxAge, maxTerminal, midAfter, midFilters, steps, writers }) =>
      check({
        writers: Array.from({ length: writers }, (_, w) => steps.filter((step) => step.writer % writers === w)),
        maxTerminal,
        maxAge: maxAge === "none" ? Infinity : maxAge,
        midAfter,
        // always one unfiltered watch mid-run: its events must have no gap at all
        midFilters: [undefined, ...midFilters.map(filterOf)]
      }),
    { arbitrary: { runs: 200, size: 100 } }
  )

  // a durable host publishes a batch's events once it is committed, while
  // watch takes its snapshot in the step: the same property must hold
  it.effect.prop(
    "on a durable store (events published once committed), replay from a watch is still the final state",
    {
      steps: Schema.Array(Step),
      writers: Schema.Literals([2, 3, 4]),
      maxTerminal: Schema.Literals([0, 2, 5]),
      midAfter: Schema.Literals([0, 1, 3, 8, 21]),
      midFilters: Schema.Array(MidFilter).check(Schema.isMaxLength(2))
    },
    ({ maxTerminal, midAfter, midFilters, steps, writers }) =>
      check({
        writers: Array.from({ length: writers }, (_, w) => steps.filter((step) => step.writer % writers === w)),
        maxTerminal,
        maxAge: "2 minutes",
        midAfter,
        midFilters: [undefined, ...midFilters.map(filterOf)]
      }, "sqlite"),
    { arbitrary: { runs: 40, size: 80 } }
  )

  it("the generated programs exercised evictions, transfers, cancellations and mid-run watches", () => {
    assert.isAbove(coverage.runs, 0)
    assert.isAbove(coverage.evicted, 0)
    assert.isAbove(coverage.transferred, 0)
    assert.isAbove(coverage.cancelled, 0)
    assert.isAbove(coverage.midWatchEvents, 0)
    assert.isAbove(coverage.midWatchSnapshots, 0)
  })

  // A terminal record is replaced, without an event of its own, when a task of
  // another kind takes its (session, id) by registration or transfer: a watch
  // filtered by kind must still learn that the record is gone.
  it.effect("a kind-filtered watch sees a terminal record replaced by a task of another kind", () =>
    Effect.gen(function*() {
      const { close, host } = yield* makeTestHost()
      const filter: TaskFilter = { kind: "monitor", includeTerminal: true }
      const reg = (sessionId: string, id: string, kind: "monitor" | "other") =>
        host.register({ scope: { sessionId }, id, kind, producer: "replay" })
      yield* reg("s1", "a", "monitor")
      yield* host.complete("a", { state: "completed" })
      yield* reg("s2", "b", "monitor")
      yield* host.complete("b", { state: "failed" })
      yield* reg("s1", "b", "other")
      const watched = yield* openWatch(host, filter)
      assert.deepStrictEqual(watched.snapshot.map(keyOf), ["s1/a", "s2/b"])
      yield* reg("s1", "a", "other") // replaces the terminal monitor s1/a
      yield* host.transfer("b", { sessionId: "s2" }) // replaces the terminal monitor s2/b
      const { lists: [expected] } = yield* listAll(host, [filter])
      const events = yield* watched.stop
      const view = fold(watched, filter, events)
      assertSameRecords(view.records(), expected!, "replay equals list")
      assert.deepStrictEqual(expected, [])
      yield* close
    }))

  for (const store of ["memory", "sqlite"] as const) {
    it.effect(`8 writers x 200 calls while watches open concurrently: replay equals a later list (${store} store)`, () => {
      const ops = Schema.decodeUnknownSync(Schema.Array(Op))
      const random = lcg(20_240_611)
      const ids = Id.literals
      const sessions = Session.literals
      const pick = <A>(xs: ReadonlyArray<A>): A => xs[random(xs.length)]!
      const makeOp = (): unknown => {
        const id = pick(ids)
        const session = pick(sessions)
        switch (random(11)) {
          case 0:
            return { _tag: "register", session, id, kind: pick(Kind.literals) }
          case 1:
            return { _tag: "update", id, state: pick(["running", "waiting", "none"]), progress: random(2) === 0 }
          case 2:
            return { _tag: "complete", id, state: pick(["completed", "failed", "cancelled"]) }
          case 3:
            return { _tag: "transfer", id, session }
          case 4:
            return { _tag: "requestCancel", id }
          case 5:
            return {
              _tag: "spawnManaged",
              session,
              id,
              kind: pick(Kind.literals),
              body: pick(Body.literals),
              policy: pick(["cooperative", "abort_local"])
            }
          case 6:
            return { _tag: "registerExternal", session, id, policy: pick(["cooperative", "external"]), withCancel: true }
          case 7:
            return { _tag: "cancelManaged", session, id }
          case 8:
            return { _tag: "unregisterExternal", session, id }
          case 9:
            return { _tag: "transferManaged", from: session, to: pick(sessions), ids: [id, pick(ids)] }
          default:
            return random(8) === 0 ? { _tag: "tick", minutes: 1 } : { _tag: "register", session, id, kind: "other" }
        }
      }
      const writers = Array.from(
        { length: 8 },
        () => ops(Array.from({ length: 200 }, makeOp)).map((op) => ({ yields: random(3), op }))
      )
      return check({
        writers,
        maxTerminal: 3,
        maxAge: "2 minutes",
        midAfter: 150,
        midFilters: [
          undefined,
          { includeTerminal: true },
          { sessionId: "s1" },
          { sessionId: "s2", includeTerminal: true },
          { kind: "monitor" }
        ]
      }, store)
    })
  }
})
