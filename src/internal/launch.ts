/**
 * What a managed task's fiber starts with, read from its caller's context.
 *
 * Owns: `Caller` (what the host reads once from a context that launches
 * tasks: whether a tracer would see a span made there, the caller's span,
 * the clock, and the context a task fiber starts from, with the shared scheduler), `SharedDispatcher`, and `TaskSpan`,
 * the `background_task` span of a task no tracer sees, and `TaskScope`. Part of the
 * supervisor's room (`supervisor.ts`); calls nothing but Effect.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import { Hex } from "effect/encoding"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Scheduler from "effect/Scheduler"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { BackgroundTaskRecord } from "../BackgroundTask.ts"

/** What a task launched from a context needs to know about it (read once per context). */
export interface Caller {
  /**
   * Whether no tracer would see a span made in this context: the tracer is
   * Effect's native one (which exports nothing), tracing is on (off, a span
   * would be a no-op one, which the general path makes), the caller's span
   * does not stop propagation, and the context adds no span annotations or
   * links (the native span would carry them).
   */
  readonly untraced: boolean
  /** The caller's span, the parent of the task's. */
  readonly parent: Option.Option<Tracer.AnySpan>
  readonly sampled: boolean
  /** Whether spans record their times (`References.TracerTimingEnabled`). */
  readonly timing: boolean
  readonly clock: Clock.Clock
  /** The caller's context with its scheduler replaced by one whose fibers share one dispatcher: a task fiber's. */
  readonly context: Context.Context<never>
}

/** Reads `Caller`s; one `SharedDispatcher` per caller's scheduler. */
export class Callers {
  private readonly shared = new WeakMap<Scheduler.Scheduler, SharedDispatcher>()

  of(context: Context.Context<never>): Caller {
    const parent = Context.getOrUndefined(context, Tracer.ParentSpan)
    const untraced = Context.get(context, Tracer.Tracer) === Tracer.nativeTracer &&
      Context.get(context, References.TracerEnabled) &&
      // a parent that stops propagation: `Effect.withSpan` looks past it
      (parent === undefined || parent._tag !== "Span" || !Context.get(parent.annotations, Tracer.DisablePropagation)) &&
      Object.keys(Context.get(context, References.TracerSpanAnnotations)).length === 0 &&
      Context.get(context, References.TracerSpanLinks).length === 0
    const scheduler = Context.get(context, Scheduler.Scheduler)
    let shared = this.shared.get(scheduler)
    if (shared === undefined) this.shared.set(scheduler, shared = new SharedDispatcher(scheduler))
    return {
      untraced,
      parent: parent === undefined ? Option.none() : Option.some(parent),
      sampled: parent?.sampled !== false,
      timing: Context.get(context, References.TracerTimingEnabled),
      clock: Context.get(context, Clock.Clock),
      context: Context.add(context, Scheduler.Scheduler, shared)
    }
  }
}

/**
 * A scheduler as the caller's, except that every fiber running on it shares
 * one dispatcher: the managed tasks' fibers. A fiber makes its own dispatcher
 * the first time it yields (with a timer of its own); these queue their
 * resumptions together, run in order in one macrotask, as one fiber's would.
 */
export class SharedDispatcher implements Scheduler.Scheduler {
  readonly executionMode: "sync" | "async"
  private readonly scheduler: Scheduler.Scheduler
  private dispatcher: Scheduler.SchedulerDispatcher | undefined

  constructor(scheduler: Scheduler.Scheduler) {
    this.scheduler = scheduler
    this.executionMode = scheduler.executionMode
  }

  shouldYield(fiber: Fiber.Fiber<unknown, unknown>): boolean {
    return this.scheduler.shouldYield(fiber)
  }

  makeDispatcher(): Scheduler.SchedulerDispatcher {
    return this.dispatcher ??= this.scheduler.makeDispatcher()
  }
}

const noAnnotations = Context.empty()

/** The links of a span that has none (an array of its own is made when links are added). */
const noLinks: ReadonlyArray<Tracer.SpanLink> = Object.freeze([])

type SpanEvent = [name: string, startTime: bigint, attributes: Record<string, unknown>]

/**
 * The `background_task` span of a task no tracer sees: the span Effect's
 * native tracer would make (kept in memory, exported nowhere;
 * `Effect.currentSpan` in the task reads it, a child of the caller's span),
 * as a `Tracer.Span` of its own rather than a `NativeSpan` subclass, so that
 * what nobody reads is never made: its attributes, its links array, its ids
 * and its `status` object are made when first read. Its start and end times
 * are the caller's clock's readings when the task started and ended, as a
 * native span's; ending it stores the time and the exit, nothing else.
 */
export class TaskSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly name = "background_task"
  readonly kind = "internal"
  readonly annotations = noAnnotations
  readonly parent: Option.Option<Tracer.AnySpan>
  readonly sampled: boolean
  /** The clock's time when the task started (0 when the caller's spans record no times). */
  readonly startTime: bigint
  private readonly record: BackgroundTaskRecord
  /** The clock's time when the span ended; set with `exit`. */
  private endTime = BigInt(0)
  /** The task's exit, once the span has ended. */
  private exit: Exit.Exit<unknown, unknown> | undefined = undefined
  /** The status as last read (made when read, for as long as it stands). */
  private read: Tracer.SpanStatus | undefined = undefined
  private _links: Array<Tracer.SpanLink> | undefined = undefined
  private _attributes: Map<string, unknown> | undefined = undefined
  private _events: Array<SpanEvent> | undefined = undefined
  private _traceId: string | undefined = undefined
  private _spanId: string | undefined = undefined

  constructor(record: BackgroundTaskRecord, caller: Caller) {
    this.parent = caller.parent
    this.sampled = caller.sampled
    this.startTime = caller.timing ? caller.clock.currentTimeNanosUnsafe() : BigInt(0)
    this.record = record
  }

  get status(): Tracer.SpanStatus {
    const read = this.read
    const exit = this.exit
    if (exit === undefined) return read ?? (this.read = { _tag: "Started", startTime: this.startTime })
    if (read !== undefined && read._tag === "Ended") return read
    return this.read = { _tag: "Ended", startTime: this.startTime, endTime: this.endTime, exit }
  }

  get traceId(): string {
    return this._traceId ??= Option.getOrUndefined(this.parent)?.traceId ?? Hex.random(32)
  }

  get spanId(): string {
    return this._spanId ??= Hex.random(16)
  }

  get links(): ReadonlyArray<Tracer.SpanLink> {
    return this._links ?? noLinks
  }

  get events(): ReadonlyArray<SpanEvent> {
    return this._events ??= []
  }

  get attributes(): Map<string, unknown> {
    if (this._attributes === undefined) {
      const { record } = this
      this._attributes = new Map<string, unknown>([
        ["task_id", record.id],
        ["kind", record.kind],
        ["session_id", record.scope.sessionId],
        ["producer", record.producer],
        ["attempt", record.attempt.attempt]
      ])
    }
    return this._attributes
  }

  /** Ends the span (the first end counts, as a native span's). */
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    if (this.exit !== undefined) return
    this.endTime = endTime
    this.exit = exit
  }

  /** Ends the span at the caller's clock's time now. */
  endWith(exit: Exit.Exit<unknown, unknown>, caller: Caller): void {
    if (this.exit !== undefined) return
    this.endTime = caller.timing ? caller.clock.currentTimeNanosUnsafe() : BigInt(0)
    this.exit = exit
  }

  // once ended, a span takes no more attributes, events or links (as a native span)

  attribute(key: string, value: unknown): void {
    if (this.exit === undefined) this.attributes.set(key, value)
  }

  event(name: string, startTime: bigint, attributes?: Record<string, unknown>): void {
    if (this.exit === undefined) (this._events ??= []).push([name, startTime, attributes ?? {}])
  }

  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    if (this.exit === undefined) (this._links ??= []).push(...links)
  }
}

// `Scope`'s type ids (not exported; a change to them fails the type check of `implements` below)
const scopeTypeId = "~effect/Scope"
const closeableTypeId = "~effect/Scope/Closeable"

/** No finalizer yet: shared, as Effect's own scopes share theirs (a scope's state is replaced, never changed). */
const empty: Scope.Scope["state"] = { _tag: "Empty" }

/**
 * A task's own scope (`Scope.Closeable`, sequential, no parent), what
 * `Scope.makeUnsafe()` makes, as a class: Effect builds its scopes as object
 * literals with computed keys, which V8 makes property by property (about
 * 6 % of a managed task's CPU in the lifecycle's profile). The type ids sit on
 * the prototype; the scope functions read only `strategy`, `parent` and
 * `state`, as the `Scope` interface declares them.
 */
export class TaskScope implements Scope.Closeable {
  declare readonly [scopeTypeId]: typeof scopeTypeId
  declare readonly [closeableTypeId]: typeof closeableTypeId
  readonly strategy = "sequential" as const
  readonly parent = undefined
  state: Scope.Scope["state"] = empty
}
Object.defineProperty(TaskScope.prototype, scopeTypeId, { value: scopeTypeId })
Object.defineProperty(TaskScope.prototype, closeableTypeId, { value: closeableTypeId })
