/**
 * The host's state and its atomic step.
 *
 * Owns: the state union in its `Ref` (`Open` and `Closing` carry the
 * registry's tables, `Closed` carries none), the step helpers every room
 * runs its mutations in, the time of a step, and "after the step". Calls
 * nothing but `tables.ts`.
 *
 * Atomic without a lock: JavaScript runs one fiber at a time and a
 * synchronous block is never preempted, so a mutation written as one
 * synchronous step (check, write, number, publish) is atomic, and events go
 * out in exactly the order the mutations took effect. A step is the body of
 * one `Effect.withFiber` / `Effect.suspend`; whatever it returns (an effect
 * on fibers, a wait) runs after it.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Result from "effect/Result"
import { SessionError } from "../PluginError.ts"
import { Tables } from "./tables.ts"

export type HostState =
  | { readonly _tag: "Open"; readonly tables: Tables }
  | { readonly _tag: "Closing"; readonly tables: Tables; readonly reason: SessionError }
  | { readonly _tag: "Closed"; readonly reason: SessionError }

export const shutDown = new SessionError({ message: "the background task host has shut down" })

/**
 * Runs `f` once the current synchronous step (and the fiber running it) has
 * given way: resuming a fiber runs it at once, inside the caller's stack, so
 * a reader or a waiter woken from a step must be woken after it.
 */
export const afterStep = (f: () => void): void => queueMicrotask(f)

/** A closed host's registry reads an empty table set, and what it writes there goes nowhere. */
const noTables = (): Tables => new Tables()

export class Steps {
  readonly ref: Ref.Ref<HostState>

  constructor(ref: Ref.Ref<HostState>) {
    this.ref = ref
  }

  static make: Effect.Effect<Steps> = Effect.suspend(() =>
    Effect.map(Ref.make<HostState>({ _tag: "Open", tables: new Tables() }), (ref) => new Steps(ref))
  )

  get state(): HostState {
    return Ref.getUnsafe(this.ref)
  }

  /** The registry's tables: the open or closing host's; none once closed. */
  get tables(): Tables {
    const state = this.state
    return state._tag === "Closed" ? noTables() : state.tables
  }

  isOpen(): boolean {
    return this.state._tag === "Open"
  }

  isClosed(): boolean {
    return this.state._tag === "Closed"
  }

  /** What a public call on a host that is not open fails with. */
  get closedReason(): SessionError {
    const state = this.state
    return state._tag === "Open" ? shutDown : state.reason
  }

  /** Open → Closing: public calls fail with `reason`; tasks may still report their exit. */
  closing(reason: SessionError = shutDown): Effect.Effect<boolean> {
    return Ref.modify(this.ref, (state): readonly [boolean, HostState] =>
      state._tag === "Open" ? [true, { _tag: "Closing", tables: state.tables, reason }] : [false, state])
  }

  /** → Closed: the tables are gone, no step runs any more. */
  get closed(): Effect.Effect<void> {
    return Ref.update(this.ref, (state): HostState =>
      state._tag === "Closed" ? state : { _tag: "Closed", reason: state._tag === "Open" ? shutDown : state.reason })
  }

  // The time of a step, as a `DateTime.Utc`: steps in the same millisecond share one (it is immutable).
  private lastMillis = Number.NaN
  private lastNow: DateTime.Utc | undefined

  nowOf(fiber: Fiber.Fiber<unknown, unknown>): DateTime.Utc {
    return this.nowBy(fiber.getRef(Clock.Clock))
  }

  /** The time of a step, by `clock`. */
  nowBy(clock: Clock.Clock): DateTime.Utc {
    const millis = clock.currentTimeMillisUnsafe()
    if (millis !== this.lastMillis || this.lastNow === undefined) {
      this.lastMillis = millis
      this.lastNow = DateTime.makeUnsafe(millis)
    }
    return this.lastNow
  }

  /** A public step that reads no clock (lookups, subscriptions): fails with `SessionError` unless the host is open. */
  whenOpen<A, E, R>(f: () => Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionError, R> {
    return Effect.suspend((): Effect.Effect<A, E | SessionError, R> => this.isOpen() ? f() : Effect.fail(this.closedReason))
  }

  /** A public step that writes: as `whenOpen`, with the current time for the records it changes. */
  atomic<A, E, R>(f: (now: DateTime.Utc) => Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionError, R> {
    return Effect.withFiber((fiber): Effect.Effect<A, E | SessionError, R> =>
      this.isOpen() ? f(this.nowOf(fiber)) : Effect.fail(this.closedReason)
    )
  }

  /**
   * `atomic`, for input that is decoded first (bad input fails before a
   * closed host does); `f` also gets the caller's context.
   */
  atomicWith<I, E1, A, E, R>(
    input: () => Result.Result<I, E1>,
    f: (input: I, now: DateTime.Utc, context: Context.Context<never>) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E1 | E | SessionError, R> {
    return Effect.withFiber((fiber): Effect.Effect<A, E1 | E | SessionError, R> => {
      const valid = input()
      if (Result.isFailure(valid)) return Effect.fail(valid.failure)
      return this.isOpen() ? f(valid.success, this.nowOf(fiber), fiber.context) : Effect.fail(this.closedReason)
    })
  }

  /**
   * A public write call of two arguments in one primitive, for a host whose
   * calls return when their step is done: decodes the input (`input(a, b)`,
   * the decoded input or the error, told apart by `refused`: bad input fails
   * first), takes one step of `pace`'s budget (past it, waits for the next
   * turn), then runs `f` as a step of the open host. `f` gets the fiber, to
   * read the time (`nowOf`) only if it needs it. Made once: a call allocates
   * nothing beyond its primitive and what `input` and `f` make (`update` is
   * called in bursts).
   */
  paced<X, Y, I, E1, A, E>(
    pace: Pace,
    input: (a: X, b: Y) => I | E1,
    refused: (checked: I | E1) => checked is E1,
    f: (input: I, fiber: Fiber.Fiber<unknown, unknown>) => Effect.Effect<A, E>
  ): (a: X, b: Y) => Effect.Effect<A, E1 | E | SessionError> {
    const step = (a: X, b: Y, fiber: Fiber.Fiber<unknown, unknown>): Effect.Effect<A, E1 | E | SessionError> => {
      const valid = input(a, b)
      if (refused(valid)) return Effect.fail(valid)
      if (pace.take()) return this.isOpen() ? f(valid as I, fiber) : Effect.fail(this.closedReason)
      return this.afterTurn(pace, valid as I, f)
    }
    return (a, b) => Effect.withFiber((fiber) => step(a, b, fiber))
  }

  /** `paced`'s step once the budget is spent: after the next turn (apart, so the common call makes no closure). */
  private afterTurn<I, A, E>(
    pace: Pace,
    valid: I,
    f: (input: I, fiber: Fiber.Fiber<unknown, unknown>) => Effect.Effect<A, E>
  ): Effect.Effect<A, E | SessionError> {
    return Effect.andThen(pace.step, this.open((fiber) => f(valid, fiber)))
  }

  /** A step of the open host: `f` gets the fiber, to read the time (`nowOf`) only if it needs it. */
  open<A, E>(f: (fiber: Fiber.Fiber<unknown, unknown>) => Effect.Effect<A, E>): Effect.Effect<A, E | SessionError> {
    return Effect.withFiber((fiber): Effect.Effect<A, E | SessionError> =>
      this.isOpen() ? f(fiber) : Effect.fail(this.closedReason)
    )
  }

  /** An internal step (a fiber's exit, a cancel effect's end): also runs while closing, never once closed. */
  internal(f: (now: DateTime.Utc) => Effect.Effect<void>): Effect.Effect<void> {
    return Effect.withFiber((fiber) => this.isClosed() ? Effect.void : f(this.nowOf(fiber)))
  }
}

/**
 * The host's pace: a burst of calls must let readers and timers run.
 *
 * Every step is synchronous and a fiber runs until it waits, so a burst of
 * concurrent calls would all run in one scheduler pass, and a subscriber's
 * reader (woken after the step, by a microtask) only after the whole burst:
 * its buffer would overflow (`Lagged`), and no timer would fire meanwhile.
 * So a public call that writes first takes a step from the budget: at most
 * `budget` of them (below the subscriber buffer) run in one turn of the
 * event loop. Past the budget a call waits for the next turn, one
 * `setImmediate` shared by every waiter, set then: what the turn woke or
 * scheduled (readers, timers, the fibers it started) runs first. A caller
 * that gave way by itself before (Effect's scheduler yields a busy fiber by
 * a macrotask too) finds a new budget without waiting: the turn's first step
 * set its end at the next macrotask. Either way the readers drained their
 * buffers (a microtask, before any macrotask) and timers ran before the next
 * `budget` steps. On a durable host events reach subscribers when their batch
 * commits, so a call also waits for the commit while `budget` events or more
 * wait for one (`backlog`, `drain`). A call pays a counter check; the first
 * of a turn also sets the turn's end (one `setImmediate`).
 */
export class Pace {
  /** Steps between two turns, read at each turn (it follows the subscribers' buffers). */
  private readonly budgetNow: () => number
  private budget: number
  private readonly backlog: () => number
  private readonly drain: Effect.Effect<void>
  /** Steps taken in this turn. */
  private taken = 0
  /** The end of this turn is set (a `setImmediate`), once its first step was taken. */
  private ending = false
  /** What the calls past the budget wait for: the next turn. */
  private turn: Deferred.Deferred<void> | undefined

  constructor(budget: () => number, backlog: () => number = () => 0, drain: Effect.Effect<void> = Effect.void) {
    this.budgetNow = budget
    this.budget = Math.max(1, budget())
    this.backlog = backlog
    this.drain = drain
  }

  /**
   * The budget for a host whose smallest subscriber buffer holds `buffer`
   * events (`Infinity` without a subscriber): a quarter of it, so a reader
   * woken at each turn keeps up, and at most `maxSteps`, so timers fire
   * within about a millisecond of a burst.
   */
  static budgetFor(buffer: number): number {
    return Math.max(1, Math.min(Pace.maxSteps, Math.floor(buffer / 4)))
  }

  /**
   * Steps at most between two turns: a quarter of the default subscriber
   * buffer (the budget of a host whose subscribers keep it), about a
   * millisecond of steps. A turn also bounds the work in flight: the tasks
   * a burst of spawns starts run before the next burst, so a burst's
   * records, fibers and events are still in the CPU's caches and young
   * heap when they end (measured: 4,096 steps cost the managed lifecycle
   * about 10 % more CPU than 1,024; fan-out and the publisher were
   * unchanged).
   */
  static readonly maxSteps = 1_024

  /**
   * Waits for the next turn: the next macrotask after this one (shared by
   * every waiter), so what this turn woke or scheduled (readers, timers,
   * the fibers it started) runs first.
   */
  readonly nextTurn: Effect.Effect<void> = Effect.suspend(() => Deferred.await(this.turn ??= this.newTurn()))

  private newTurn(): Deferred.Deferred<void> {
    const turn = Deferred.makeUnsafe<void>()
    setImmediate(() => {
      this.turn = undefined
      this.startTurn()
      Deferred.doneUnsafe(turn, Exit.void)
    })
    return turn
  }

  private startTurn(): void {
    this.taken = 0
    this.budget = Math.max(1, this.budgetNow())
  }

  /** Sets the end of this turn for a caller that gives way by itself: the next macrotask. */
  private endTurnLater(): void {
    if (this.ending) return
    this.ending = true
    setImmediate(this.endTurn)
  }

  /** The turn is over (a macrotask has begun): a new budget, unless a call waits for its own next turn. */
  private readonly endTurn = (): void => {
    this.ending = false
    if (this.turn === undefined) this.startTurn()
  }

  /** One step of this turn's budget, if one is left (the turn's first sets its end). */
  private count(): boolean {
    // a subscriber with a smaller buffer than the turn began with lowers the budget at once
    if (this.taken < this.budget && this.taken < this.budgetNow()) {
      if (this.taken++ === 0) this.endTurnLater()
      return true
    }
    return false
  }

  private readonly counted: Effect.Effect<void> = Effect.suspend(() =>
    this.count() ? Effect.void : Effect.andThen(this.nextTurn, this.counted)
  )

  /** Before a public call's step: one step of the budget. */
  readonly step: Effect.Effect<void> = Effect.suspend(() =>
    this.backlog() >= this.budget ? Effect.andThen(this.drain, this.counted) : this.counted
  )

  /** One step of the budget, if one is left now and nothing waits for a commit (the common case): no effect, no wait. */
  take(): boolean {
    return this.backlog() < this.budget && this.count()
  }

  /** `call`, after one step of the budget: the common case (budget left, no backlog) adds one suspend. */
  gate<A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.suspend(() => this.take() ? call : Effect.andThen(this.step, call))
  }
}
