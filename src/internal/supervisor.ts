/**
 * The supervisor: the fibers of managed tasks.
 *
 * Owns: launching a task's fiber (with the caller's context, its own
 * `TaskContext` and scope), its attempts (timeouts, retries after the
 * schedule's backoff), its exit (one terminal move, whoever moves first
 * wins), concurrency slots and the queue of tasks waiting for one, and the
 * running managed tasks (a list through the tasks, `links.ts`). What ending
 * a task means beyond its record is `ending.ts`'s `Ending`; what a task
 * fiber starts with (its span, the shared dispatcher, the facts read from
 * the caller's context) is `launch.ts`'s. Calls the registry, `Ending`, `launch.ts`, `slots.ts` and
 * `state.ts`; a failed parent's children are cancelled through the
 * `CancelChildren` it is given; on a durable store a task's first run and
 * each next attempt pass the lease's gate it is given (`durable.ts`).
 *
 * A task is launched in the step that registers it (or frees a slot for
 * it) and starts after that step: its fiber is made then, only if its
 * record is still live and the host still open, so a task ended before it
 * started never runs.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import { type BackgroundTaskRecord, isTerminal, type TaskKind } from "../BackgroundTask.ts"
import { type TaskAlreadyExists, TaskTimeout } from "../PluginError.ts"
import { TaskContext } from "../TaskContext.ts"
import type { LeaseGate } from "./durable.ts"
import type { Ending } from "./ending.ts"
import { type Caller, Callers, TaskScope, TaskSpan } from "./launch.ts"
import * as Lifecycle from "./lifecycle.ts"
import { causeMessage } from "./messages.ts"
import type { RegistryService } from "./registry.ts"
import type { Slot } from "./slots.ts"
import type { Steps } from "./state.ts"
import { RUNNING, TaskList } from "./links.ts"
import { cancelSignal, isQueued, type Managed, type Task } from "./task.ts"

/**
 * How a failed or cancelled parent's children are cancelled before it ends
 * (`cancellation.ts`'s, handed to the supervisor when the host is wired).
 */
export type CancelChildren = (task: Task, mode: "policy", reason: string) => Effect.Effect<void>

/** What a managed task runs with: its body, its limits, the caller's context. */
export interface Launch {
  /** The body; its `TaskContext` and scope are given when it runs (`Supervisor.launchTask`). */
  readonly run: Effect.Effect<unknown, unknown, TaskContext | Scope.Scope>
  readonly timeout: Duration.Duration | undefined
  readonly schedule: Schedule.Schedule<unknown, unknown>
  readonly context: Context.Context<never>
}

export class Supervisor {
  private readonly steps: Steps
  private readonly registry: RegistryService
  private readonly ending: Ending
  private readonly cancelChildren: CancelChildren
  /**
   * The managed tasks whose fiber runs now (from its first operation to its
   * exit, even once the registry has let go of the record), linked through
   * the tasks themselves.
   */
  private readonly running = new TaskList(RUNNING)

  /** The managed fibers running now. */
  fibers(): Array<Fiber.Fiber<unknown, unknown>> {
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    for (const { owner } of this.running.toArray()) {
      if (owner._tag === "Managed" && owner.fiber !== undefined) fibers.push(owner.fiber)
    }
    return fibers
  }

  /** How many managed fibers run now. */
  get fiberCount(): number {
    return this.running.size
  }

  /** The store lease's fencing token (0 in memory), for `TaskContext.fencingToken`; set by the host once it holds the lease. */
  fencingToken = 0

  /**
   * On a durable store, the lease's gate (`durable.ts`): a task's first run
   * and each next attempt pass it, so a host whose clock jumped past its
   * lease confirms the lease before it starts work. In memory, none.
   */
  lease: LeaseGate | undefined

  constructor(steps: Steps, registry: RegistryService, ending: Ending, cancelChildren: CancelChildren) {
    this.steps = steps
    this.registry = registry
    this.ending = ending
    this.cancelChildren = cancelChildren
  }

  /**
   * The slot a new task would run in, taken now if a limit allows (or no
   * limit is set); `undefined` when the task must queue.
   */
  tryAcquire(sessionId: string, kind: TaskKind): Slot | undefined {
    const slots = this.ending.slots
    // no limit: every task runs, and none holds a slot of its own
    if (!slots.limited) return unlimited
    const slot = { sessionId, kind }
    return slots.tryAcquire(slot) ? slot : undefined
  }

  /** Gives back a slot taken for a task that was not registered after all. */
  releaseUnused(slot: Slot | undefined): void {
    if (slot !== undefined && this.ending.slots.limited) this.ending.slots.release(slot)
  }

  /**
   * Launches a managed task now, in the slot it holds (`slot`), or queues
   * it until one frees (`slot` undefined); inside a step.
   */
  startOrQueue(task: Task, owner: Managed, launch: Launch, slot: Slot | undefined): void {
    if (slot !== undefined) {
      if (this.ending.slots.limited) owner.slot = slot
      this.launchTask(task, owner, launch)
    } else {
      owner.launch = () => this.launchTask(task, owner, launch)
      this.ending.slots.enqueue(task, () =>
        task.record.state === "pending" && owner.launch !== undefined && task.held
          ? { sessionId: task.record.scope.sessionId, kind: task.record.kind }
          : undefined)
    }
  }

  /**
   * Moves records to another session (all or none); a running task's
   * concurrency slot goes with it, so its old session may start a queued task.
   */
  transferTasks(
    tasks: ReadonlyArray<Task>,
    to: string,
    now: DateTime.Utc
  ): Result.Result<ReadonlyArray<BackgroundTaskRecord>, TaskAlreadyExists> {
    const moved = this.registry.transfer(tasks, to, now)
    if (Result.isFailure(moved)) return moved
    // a moved slot frees one in the old session; a moved queued task may fit in the new one
    let check = false
    for (const task of tasks) {
      if (isQueued(task)) check = true
      const owner = task.owner
      if (owner._tag !== "Managed" || owner.slot === undefined || owner.slot.sessionId === to) continue
      owner.slot = this.ending.slots.moveSession(owner.slot, to)
      check = true
    }
    if (check && this.steps.isOpen()) this.ending.startQueued(now)
    return moved
  }

  /** `running` ⇄ `waiting` on request (`markLiveState`, `TaskContext.setLiveState`); a queued task stays put. */
  moveLive(task: Task, to: unknown, now: DateTime.Utc): void {
    const from = task.record.state
    if (
      (to === "running" || to === "waiting") && (from === "running" || from === "waiting" || from === "pending") &&
      !isQueued(task)
    ) {
      this.ending.move(task, to, now)
    }
  }

  // internal

  private taskContext(task: Task, owner: Managed): TaskContext["Service"] {
    return new ManagedTaskContext(this, task, owner)
  }

  /** `TaskContext.progress`: a progress message, as one internal step. */
  progressOf(task: Task, message: string): Effect.Effect<void> {
    return this.steps.internal(() =>
      Effect.sync(() => {
        if (!isTerminal(task.record.state)) this.registry.progress(task, message)
      })
    )
  }

  /** `TaskContext.setLiveState`, as one internal step. */
  liveStateOf(task: Task, liveState: unknown): Effect.Effect<void> {
    return this.steps.internal((now) => Effect.sync(() => this.moveLive(task, liveState, now)))
  }

  /** The caller's context last read (a burst of spawns shares one), and what was read from it. */
  private lastContext: Context.Context<never> | undefined
  private lastCaller: Caller | undefined

  /** What a task launched from `context` needs to know about it (read once per context). */
  private callerOf(context: Context.Context<never>): Caller {
    if (context === this.lastContext) return this.lastCaller!
    const caller = this.callers.of(context)
    this.lastContext = context
    this.lastCaller = caller
    return caller
  }
  private readonly callers = new Callers()

  /** The task fiber whose exit is being handled (`exited`), if any. */
  private exiting: Fiber.Fiber<unknown, unknown> | undefined = undefined

  /**
   * Launches a managed task from inside a step: it starts after the step,
   * from the dispatcher of the fiber running the step (one for a burst of
   * starts, as `FiberMap.run`'s forks), with the caller's context. Its fiber
   * is made as it starts, and only if its record is still live and the host
   * still open: a task ended (cancelled, completed by a call, its host
   * closed) before it started never runs, and until then there is no fiber
   * to stop (`Cancellation` ends such a record itself). A cancel request
   * leaves it to start, and to see the request. The fiber is the record's
   * from its first operation, so a cancellation reaches it even while its
   * first run is still on the stack.
   */
  private launchTask(task: Task, owner: Managed, launch: Launch): void {
    owner.launch = undefined
    owner.starting = true
    this.ending.starting++
    const start = () => {
      // the record ended meanwhile (`Ending` counted it out)
      if (!owner.starting) return
      owner.starting = false
      this.ending.starting--
      if (isTerminal(task.record.state) || !task.held || this.steps.isClosed()) return
      const caller = this.callerOf(launch.context)
      // a closing host starts nothing: the task ends cancelled, as its fiber would have
      if (this.steps.isOpen()) this.run(task, owner, launch, caller)
      else this.ending.markCancelled(task, this.steps.nowBy(caller.clock))
    }
    const dispatcher = (this.exiting ?? Fiber.getCurrent())?.currentDispatcher
    if (dispatcher !== undefined) dispatcher.scheduleTask(start, 0)
    else setImmediate(start)
  }

  /** Runs a managed task's fiber; its exit's observer makes the terminal move (`exited`). */
  private run(task: Task, owner: Managed, launch: Launch, caller: Caller): void {
    const { maxAttempts } = task.record.attempt
    // one attempt allowed: no retry loop to run
    const single = Option.isNone(maxAttempts) || maxAttempts.value <= 1
    // One attempt, no timeout, and no tracer to see its span: the task's span,
    // `TaskContext` and scope go into the fiber's first context, and the scope
    // closes and the span ends as it exits — what `attempt` does, without an
    // operation of its own for each. (A tracer gets `attempt`'s span, as made
    // by `Effect.withSpan`.)
    let context = caller.context
    let span: TaskSpan | undefined
    let scope: Scope.Closeable | undefined
    if (single && launch.timeout === undefined && caller.untraced) {
      span = new TaskSpan(task.record, caller)
      scope = new TaskScope()
      context = Context.add(
        Context.add(Context.add(context, TaskContext, new ManagedTaskContext(this, task, owner)), Scope.Scope, scope),
        Tracer.ParentSpan,
        span
      )
    }
    const body = Effect.withFiber((fiber): Effect.Effect<unknown, unknown> => {
      owner.fiber = fiber
      this.running.push(task)
      // the exit is observed, as `FiberMap` observes its fibers: no frame under the body
      fiber.addObserver((exit) => this.exited(task, owner, exit, caller, fiber, context, scope, span))
      // the host's clock has passed its lease (a pause, a sleep): the lease is confirmed first (or the host
      // stops); a task ended or a host closed meanwhile does not run
      const confirming = this.lease?.check()
      const run = (): Effect.Effect<unknown, unknown> => {
        if (span !== undefined) return launch.run as Effect.Effect<unknown, unknown>
        return single ? this.attempt(task, owner, launch) : this.attempts(task, owner, launch)
      }
      return confirming === undefined ? run() : Effect.andThen(
        confirming,
        Effect.suspend(() => !this.steps.isOpen() || isTerminal(task.record.state) || !task.held ? Effect.interrupt : run())
      )
    })
    Effect.runForkWith(context)(body)
  }

  /**
   * A managed fiber has exited (its observer, which runs before anyone
   * awaiting the fiber resumes): the task's scope closes, its span ends and
   * its record makes its terminal move, right there when nothing is left to
   * run. When something is (finalizers in the task's scope, children to end
   * first), it runs in a fiber of its own, uninterruptible, which stands as
   * the task's fiber until it is done: whoever stops or awaits the task
   * (`cancellation.ts`'s `stopManaged`, the host's shutdown through
   * `fibers`) waits for it too, so a cancel still returns after the
   * task's finalizers ran.
   */
  private exited(
    task: Task,
    owner: Managed,
    exit: Exit.Exit<unknown, unknown>,
    caller: Caller,
    fiber: Fiber.Fiber<unknown, unknown>,
    context: Context.Context<never>,
    scope: Scope.Closeable | undefined,
    span: TaskSpan | undefined
  ): void {
    let rest: Effect.Effect<void> | undefined
    // queued tasks started from the slot it frees start on its dispatcher, as from inside it
    const outer = this.exiting
    this.exiting = fiber
    if (scope === undefined) {
      rest = this.finish(task, exit, caller)
    } else {
      // the scope closes (its finalizers run), then the span ends, then the record
      const closing = Scope.closeUnsafe(scope, exit)
      if (closing === undefined) {
        span!.endWith(exit, caller)
        rest = this.finish(task, exit, caller)
      } else {
        // a finalizer that fails or dies fails the task, as `Effect.scoped` around the body would
        rest = Effect.flatMap(Effect.exit(closing), (closed) => {
          const ended = Exit.isSuccess(closed)
            ? exit
            : Exit.failCause(Exit.isSuccess(exit) ? closed.cause : Cause.combine(exit.cause, closed.cause))
          span!.endWith(ended, caller)
          return this.finish(task, ended, caller) ?? Effect.void
        })
      }
    }
    this.exiting = outer
    if (rest === undefined) {
      this.running.remove(task)
      owner.fiber = undefined
      return
    }
    this.ending.continuing++
    Effect.runForkWith(context)(
      Effect.withFiber((continuation) => {
        owner.fiber = continuation
        return Effect.ensuring(
          rest!,
          Effect.sync(() => {
            this.ending.continuing--
            this.running.remove(task)
            owner.fiber = undefined
          })
        )
      }),
      uninterruptible
    )
  }

  /**
   * One attempt: the body with its `TaskContext` and its own scope, bounded
   * by the timeout, in a `background_task` span.
   */
  private attempt(task: Task, owner: Managed, launch: Launch): Effect.Effect<unknown, unknown> {
    const { record } = task
    const timeout = launch.timeout
    const run = Effect.scoped(Effect.provideService(launch.run, TaskContext, this.taskContext(task, owner)))
    const body = timeout === undefined
      ? run
      : Effect.flatMap(
        Effect.timeoutOption(run, timeout),
        (result) =>
          Option.isSome(result)
            ? Effect.succeed(result.value)
            : Effect.fail(new TaskTimeout({ taskId: record.id, timeout: Duration.format(timeout) }))
      )
    return Effect.withSpan(body, "background_task", {
      // a stack trace per span costs more than the rest of a short task
      captureStackTrace: false,
      attributes: {
        task_id: record.id,
        kind: record.kind,
        session_id: record.scope.sessionId,
        producer: record.producer,
        attempt: record.attempt.attempt
      }
    })
  }

  /** Whether a failed attempt may be retried now. */
  private retryable(task: Task, exit: Exit.Exit<unknown, unknown>): exit is Exit.Failure<unknown, unknown> {
    if (Exit.isSuccess(exit) || !Cause.hasFails(exit.cause) || !this.steps.isOpen() || !task.held) return false
    const { attempt, state } = task.record
    if (state !== "running" && state !== "waiting") return false
    return Option.isSome(attempt.maxAttempts) && attempt.attempt + 1 < attempt.maxAttempts.value
  }

  /** The attempts of a managed task: each failure retried after the schedule's delay while attempts remain. */
  private attempts(task: Task, owner: Managed, launch: Launch): Effect.Effect<unknown, unknown> {
    const self = this
    return Effect.gen(function*() {
      let step: ((now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>) | undefined
      while (true) {
        const exit = yield* Effect.exit(self.attempt(task, owner, launch))
        if (!self.retryable(task, exit)) return yield* exit
        step ??= yield* Schedule.toStep(launch.schedule)
        const now = yield* Clock.currentTimeMillis
        const next = yield* Effect.exit(step(now, Cause.squash(exit.cause)))
        // the schedule is done: the last failure stands
        if (Exit.isFailure(next)) return yield* exit
        const delay = next.value[1]
        const message = causeMessage(exit.cause)
        // the schedule's step may have waited: a cancel request that came meanwhile ends the task
        yield* self.steps.internal((now) =>
          Effect.sync(() => {
            const { attempt, state } = task.record
            if ((state !== "running" && state !== "waiting") || !task.held) return
            self.registry.update(task, (record) => ({
              ...record,
              state: "waiting",
              attempt: { ...attempt, attempt: attempt.attempt + 1 }
            }), now)
            self.registry.progress(
              task,
              `attempt ${attempt.attempt + 1} of ${Option.getOrElse(attempt.maxAttempts, () => 1)} failed: ${message}; retrying in ${
                Duration.format(delay)
              }`
            )
          })
        )
        if (task.record.state !== "waiting") return yield* Effect.interrupt
        // a cancel request ends the wait at once
        yield* Effect.raceFirst(Effect.sleep(delay), Effect.asVoid(Deferred.await(cancelSignal(owner))))
        // the next attempt is work the host starts: past its lease, the lease is confirmed first
        const confirming = self.lease?.check()
        if (confirming !== undefined) yield* confirming
        const resumed = yield* Effect.withFiber((fiber) =>
          Effect.sync(() => {
            if (task.record.state !== "waiting" || !self.steps.isOpen() || !task.held) return false
            self.ending.move(task, "running", self.steps.nowOf(fiber))
            return true
          })
        )
        // cancelled while waiting for the next attempt
        if (!resumed) return yield* Effect.interrupt
      }
    })
  }

  /**
   * A managed fiber's exit: one terminal move, unless someone else moved
   * first. The move is made right there (the observer is a step); an effect
   * is returned only when the children must end first.
   */
  private finish(task: Task, exit: Exit.Exit<unknown, unknown>, caller: Caller): Effect.Effect<void> | undefined {
    this.ending.stopTimer(task)
    if (isTerminal(task.record.state) || !task.held) return undefined
    const outcome = Exit.isSuccess(exit) ? "success" : Cause.hasInterruptsOnly(exit.cause) ? "interrupt" : "failure"
    // a failed or cancelled parent (a task that returns after a cancel request
    // ends cancelled) ends after its children
    if (Lifecycle.exitState(outcome, task.record.state) !== "completed" && task.children !== undefined) {
      return Effect.andThen(
        this.cancelChildren(task, "policy", outcome === "failure" ? "parent failed" : "parent cancelled"),
        this.steps.internal((now) => Effect.sync(() => this.end(task, exit, outcome, now)))
      )
    }
    // no child to wait for: the end is this very step
    if (!this.steps.isClosed()) this.end(task, exit, outcome, this.steps.nowBy(caller.clock))
    return undefined
  }

  /** The terminal move of a managed task whose fiber has exited, unless someone else moved first. */
  private end(task: Task, exit: Exit.Exit<unknown, unknown>, outcome: Lifecycle.Outcome, now: DateTime.Utc): void {
    if (isTerminal(task.record.state)) return
    const to = Lifecycle.exitState(outcome, task.record.state)
    // the task's own summary (a string result, a failure's message), if it gave one
    const own = Exit.isSuccess(exit)
      ? (typeof exit.value === "string" ? Option.some(exit.value) : Option.none())
      : outcome === "failure"
      ? Option.some(causeMessage(exit.cause))
      : Option.none()
    // a task that ends cancelled without a summary of its own says why the host stopped it
    const summary = to === "cancelled" && Option.isNone(own) ? Option.fromUndefinedOr(task.control.stopReason) : own
    this.ending.end(task, to, now, summary)
  }
}

/** What is left of a task's end runs uninterruptible, as an `Effect.onExit` handler would. */
const uninterruptible: Effect.RunOptions = { uninterruptible: true }

/** The slot of every task of a host without limits (never held: `owner.slot` is set only with limits). */
const unlimited: Slot = { sessionId: "", kind: "other" }

/** A managed task's `TaskContext`: its effects are made when the task asks for them. */
type TaskContextService = TaskContext["Service"]

class ManagedTaskContext implements TaskContextService {
  readonly taskId: string
  private readonly supervisor: Supervisor
  private readonly task: Task
  private readonly owner: Managed

  constructor(supervisor: Supervisor, task: Task, owner: Managed) {
    this.taskId = task.record.id
    this.supervisor = supervisor
    this.task = task
    this.owner = owner
  }

  get sessionId(): Effect.Effect<string> {
    return Effect.sync(() => this.task.record.scope.sessionId)
  }

  // functions a task may take off the context (`const { progress } = yield* TaskContext`)
  get progress(): TaskContext["Service"]["progress"] {
    return (message) => this.supervisor.progressOf(this.task, String(message))
  }

  get setLiveState(): TaskContext["Service"]["setLiveState"] {
    return (liveState) => this.supervisor.liveStateOf(this.task, liveState)
  }

  get cancelRequested(): Effect.Effect<Option.Option<string>> {
    return Effect.suspend(() => Deferred.await(cancelSignal(this.owner)))
  }

  get fencingToken(): Effect.Effect<number> {
    return Effect.suspend(() => {
      // read past the lease's expiry: confirmed first, so a host that lost its lease never hands it out
      const lease = this.supervisor.lease
      const confirming = lease?.check()
      const token = Effect.sync(() => this.supervisor.fencingToken)
      // a lease found lost stops the host, and this task with it
      return confirming === undefined ? token : Effect.andThen(confirming, Effect.suspend(() => lease!.lost() ? Effect.interrupt : token))
    })
  }

  get isCancelRequested(): Effect.Effect<boolean> {
    return Effect.sync(() => this.task.control.requested)
  }
}
