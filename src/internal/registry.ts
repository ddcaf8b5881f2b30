/**
 * The registry: task records, their indexes, event numbering (`seq`) and
 * retention of terminal records, as an internal service.
 *
 * Owns: every change to a record and the one event it publishes. Its tables
 * live in the host's state `Ref` (`state.ts`), so a closed host has none.
 * Calls out to nothing but one `EventSink` (in memory: the hub; durable: the
 * journal). A move *returns* what it did; what ending a task means to the
 * rest of the host (timers, slots, the queue) is `supervisor.ts`'s `Ending`.
 *
 * Every method is one synchronous step: it validates, writes and hands its
 * events to the sink before it returns. Every event gets the next `seq`; a
 * record's `revision` is the `seq` of the event that last changed it, so a
 * snapshot taken in the same step as a subscription (`watch`) is exactly the
 * state as of `lastSeq`.
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Result from "effect/Result"
import { type BackgroundTaskEvent, type EvictionReason } from "../TaskEvent.ts"
import { type BackgroundTaskRecord, isTerminal, matchesRecord, type TaskFilter, TaskKind, type TaskState, type TaskStats, type TerminalState } from "../BackgroundTask.ts"
import { InvalidTransition, TaskAlreadyExists, TaskNotFound } from "../PluginError.ts"
import * as Lifecycle from "./lifecycle.ts"
import type { Spec } from "./lifecycle.ts"
import type { Steps } from "./state.ts"
import { noLinks } from "./links.ts"
import { empty, inSession, liveIn, Tables } from "./tables.ts"
import type { TaskTree } from "./service.ts"
import type { Control, Owner, Task } from "./task.ts"

/**
 * Where the registry's events go, in the step that makes them. In memory they
 * are published at once; on a durable store they are journaled and published
 * once committed.
 */
export interface EventSink {
  readonly emit: (event: BackgroundTaskEvent, task: Task | undefined) => void
}

export interface Retention {
  /** Terminal records held at most; the oldest are evicted beyond it. */
  readonly maxTerminal: number
  /** Milliseconds a terminal record is held after it ended (`Infinity`: no limit). */
  readonly maxAgeMillis: number
}

export class RegistryService {
  private readonly steps: Steps
  private readonly sink: EventSink
  private readonly retention: Retention
  /**
   * Called once (then cleared) when a record is next held as terminal: the
   * retention sweeper waits on it while nothing is held, instead of waking
   * every `maxAge`. Called inside the step; whatever it wakes runs after it.
   */
  onRetire: (() => void) | undefined = undefined

  constructor(steps: Steps, sink: EventSink, retention: Retention) {
    this.steps = steps
    this.sink = sink
    this.retention = retention
  }

  /** The tables in the host's state (a closed host has none: reads see an empty set). */
  private get t(): Tables {
    const state = Ref.getUnsafe(this.steps.ref)
    return state._tag === "Closed" ? new Tables() : state.tables
  }

  /** The `seq` of the last event (0 before the first). */
  get lastSeq(): number {
    return this.t.seq
  }

  /**
   * Registers a task in one step: its parent, its idempotency key, its
   * record. `existing` is set when a live task held the key (nothing new
   * is registered then).
   */
  register(
    sessionId: string,
    spec: Spec,
    state: TaskState,
    now: DateTime.Utc,
    owner: Owner,
    control: Control
  ): Result.Result<{ readonly task: Task; readonly existing: boolean }, TaskNotFound | InvalidTransition | TaskAlreadyExists> {
    const key = spec.idempotencyKey ?? Option.getOrUndefined(spec.attempt?.idempotencyKey ?? Option.none())
    const holder = key === undefined ? undefined : this.findByKey(key)
    if (holder !== undefined) return Result.succeed({ task: holder, existing: true })
    let parent: Task | undefined
    if (spec.parentTaskId !== undefined) {
      const found = this.parentOf(spec.id, spec.parentTaskId)
      if (Result.isFailure(found)) return Result.fail(found.failure)
      parent = found.success
    }
    const added = this.add(
      (revision) => Lifecycle.newRecord(sessionId, spec, state, now, revision),
      spec.id,
      sessionId,
      owner,
      control,
      parent
    )
    if (Result.isFailure(added)) return Result.fail(added.failure)
    return Result.succeed({ task: added.success, existing: false })
  }

  /** The live parent a registration names, or why it cannot be one. */
  private parentOf(taskId: string, parentId: string): Result.Result<Task, TaskNotFound | InvalidTransition> {
    const parent = this.findLive(parentId)
    if (parent !== undefined) return Result.succeed(parent)
    const ended = this.resolve(parentId)
    return Result.fail(
      ended === undefined
        ? new TaskNotFound({ taskId: parentId })
        : new InvalidTransition({ taskId: parentId, from: ended.record.state, to: `parent of ${taskId}` })
    )
  }

  /**
   * Adds a record (`make` gets its `revision`, the `seq` of its `Registered`);
   * a terminal record with the same id in the same session is replaced.
   */
  add(
    make: (revision: number) => BackgroundTaskRecord,
    id: string,
    sessionId: string,
    owner: Owner,
    control: Control,
    parent?: Task
  ): Result.Result<Task, TaskAlreadyExists> {
    const t = this.t
    let same = t.ids.get(id)
    const live = liveIn(same)
    if (live !== undefined) {
      return Result.fail(new TaskAlreadyExists({ taskId: id, sessionId: live.record.scope.sessionId }))
    }
    const replaced = inSession(same, sessionId)
    if (replaced !== undefined) {
      this.replace(replaced)
      same = t.ids.get(id)
    }
    const seq = ++t.seq
    const record = make(seq)
    const task: Task = {
      order: seq,
      record,
      owner,
      control,
      parent,
      children: undefined,
      retained: false,
      held: false,
      links: noLinks()
    }
    if (parent !== undefined) (parent.children ??= new Set()).add(task)
    t.index(task, same)
    this.sink.emit({ _tag: "Registered", seq, taskId: id, sessionId, kind: record.kind, record }, task)
    return Result.succeed(task)
  }

  /** Removes a record (`unregisterExternal`), with an `Evicted` event. */
  remove(task: Task): void {
    if (!task.held || this.t.find(task.record.scope.sessionId, task.record.id) !== task) return
    this.t.delete(task)
    this.publishEvictedOne(task, "unregistered")
  }

  /** The live record with this id, else the most recently updated terminal one. */
  resolve(taskId: string): Task | undefined {
    const same = this.t.ids.get(taskId)
    if (same === undefined || !Array.isArray(same)) return same
    let found: Task | undefined
    for (const task of same) {
      if (!isTerminal(task.record.state)) return task
      if (found === undefined || task.record.revision > found.record.revision) found = task
    }
    return found
  }

  find(sessionId: string, taskId: string): Task | undefined {
    return this.t.find(sessionId, taskId)
  }

  /** The live record with this id. */
  findLive(taskId: string): Task | undefined {
    return this.t.findLive(taskId)
  }

  /** The live record holding this idempotency key. */
  findByKey(key: string): Task | undefined {
    return this.t.keys.get(key)
  }

  /**
   * Moves a record to `to`, publishing the move's one event; staying in the
   * same live state changes nothing and publishes nothing, and neither does a
   * move of an incarnation the registry no longer holds. A move to a terminal
   * state may evict the oldest terminal records.
   */
  move(
    task: Task,
    to: TaskState,
    now: DateTime.Utc,
    options?: { readonly summary?: Option.Option<string>; readonly reason?: Option.Option<string> }
  ): Result.Result<BackgroundTaskRecord, InvalidTransition> {
    const from = task.record.state
    const invalid = Lifecycle.checkMove(task.record.id, from, to)
    if (invalid !== undefined) return Result.fail(invalid)
    if (from === to || !task.held) return Result.succeed(task.record)
    return Result.succeed(this.moveHeld(task, to, now, options?.summary, options?.reason ?? Option.none()))
  }

  /**
   * A managed task's end as its fiber exits: a live record's move to a
   * terminal state (always a legal move), with its event, as `move` makes it
   * without the check and the result. Returns whether it moved (an
   * incarnation the registry no longer holds does not).
   */
  end(task: Task, to: TerminalState, now: DateTime.Utc, summary: Option.Option<string>): boolean {
    if (!task.held || isTerminal(task.record.state)) return false
    this.moveHeld(task, to, now, summary, Option.none())
    return true
  }

  /** A real move of a held record (the caller checked it): the new record and its event; a terminal one leaves the live indexes and is retained. */
  private moveHeld(
    task: Task,
    to: TaskState,
    now: DateTime.Utc,
    summary: Option.Option<string> | undefined,
    reason: Option.Option<string>
  ): BackgroundTaskRecord {
    const t = this.t
    const record = Lifecycle.moveRecord(task.record, to, now, ++t.seq, summary)
    task.record = record
    if (isTerminal(to)) t.unindexLive(task)
    this.sink.emit(Lifecycle.moveEvent(record, reason), task)
    if (isTerminal(to)) {
      t.counts[to]++
      this.retire(task)
    }
    return record
  }

  /**
   * Sets a held record's latest progress message and publishes `Progress`
   * with the record after the change (its `revision` is the event's `seq`).
   */
  progress(task: Task, message: string): void {
    if (!task.held) return
    const record = Lifecycle.progressRecord(task.record, message, ++this.t.seq)
    task.record = record
    this.sink.emit({
      _tag: "Progress",
      seq: record.revision,
      taskId: record.id,
      sessionId: record.scope.sessionId,
      kind: record.kind,
      message,
      record
    }, task)
  }

  /**
   * Changes a live record's attempt and/or state in one step, publishing
   * `StateChanged` with the new record even when the state stays the same (the
   * record changed). Used for retries and recovery.
   */
  update(
    task: Task,
    change: (record: BackgroundTaskRecord) => BackgroundTaskRecord,
    now: DateTime.Utc
  ): BackgroundTaskRecord {
    if (!task.held) return task.record
    const record = { ...change(task.record), updatedAt: now, revision: ++this.t.seq }
    task.record = record
    this.sink.emit({
      _tag: "StateChanged",
      seq: record.revision,
      taskId: record.id,
      sessionId: record.scope.sessionId,
      kind: record.kind,
      state: record.state,
      record
    }, task)
    return record
  }

  /**
   * Moves records to session `to`, all or none: fails when `to` holds a live
   * record with one of their ids; a terminal one there is replaced.
   */
  transfer(
    tasks: ReadonlyArray<Task>,
    to: string,
    now: DateTime.Utc
  ): Result.Result<ReadonlyArray<BackgroundTaskRecord>, TaskAlreadyExists> {
    const t = this.t
    for (const task of tasks) {
      const there = t.find(to, task.record.id)
      if (there !== undefined && there !== task && !isTerminal(there.record.state)) {
        return Result.fail(new TaskAlreadyExists({ taskId: task.record.id, sessionId: to }))
      }
    }
    const moved: Array<BackgroundTaskRecord> = []
    for (const task of tasks) {
      const from = task.record.scope.sessionId
      if (from === to || !task.held) {
        moved.push(task.record)
        continue
      }
      const there = t.find(to, task.record.id)
      if (there !== undefined) this.replace(there)
      t.unindexSession(task)
      const scope = { sessionId: to }
      const seq = ++t.seq
      const record: BackgroundTaskRecord = { ...task.record, scope, updatedAt: now, revision: seq }
      task.record = record
      t.indexSession(task)
      moved.push(record)
      this.sink.emit({
        _tag: "Transferred",
        seq,
        taskId: record.id,
        sessionId: to,
        kind: record.kind,
        scope,
        fromSessionId: from,
        record
      }, task)
    }
    return Result.succeed(moved)
  }

  /**
   * Evicts the terminal records that ended `maxAge` or longer before `now`.
   * Returns when the next one is due (epoch millis), if any.
   */
  evictExpired(nowMillis: number): number | undefined {
    const terminal = this.t.terminal
    const expired: Array<Task> = []
    let due: number | undefined
    for (let task = terminal.peek(); task !== undefined; task = terminal.peek()) {
      const endedAt = endOf(task.record)
      if (nowMillis - endedAt < this.retention.maxAgeMillis) {
        due = endedAt + this.retention.maxAgeMillis
        break
      }
      expired.push(terminal.shift()!)
    }
    this.evict(expired, "max_age")
    return due
  }

  /** When the oldest held terminal record reaches `maxAge` (epoch millis), if any is held. */
  nextDue(): number | undefined {
    const oldest = this.t.terminal.peek()
    return oldest === undefined ? undefined : endOf(oldest.record) + this.retention.maxAgeMillis
  }

  /** Records matching the filter, oldest first; the work is in proportion to the index read. */
  list(filter: TaskFilter | undefined): Array<BackgroundTaskRecord> {
    const t = this.t
    const all = filter?.includeTerminal === true
    const sessionId = filter?.sessionId
    const kind = filter?.kind
    // `live` and the kind indexes are filled at registration, so they iterate
    // in registration order; the session indexes also change on transfers and
    // need sorting
    let candidates: Iterable<Task>
    let ordered = true
    if (sessionId !== undefined) {
      const session = t.ofSession(sessionId, all)
      candidates = session ?? empty
      ordered = false
      if (kind !== undefined) {
        const ofKind = t.ofKind(kind, all)
        if (ofKind.size < (session?.size ?? 0)) {
          candidates = ofKind
          ordered = true
        }
      }
    } else if (kind !== undefined) {
      candidates = t.ofKind(kind, all)
    } else if (!all) {
      candidates = t.live
    } else {
      // every record: the kind indexes are sorted runs, which sort merges in linear time
      candidates = TaskKind.literals.flatMap((kind) => t.ofKind(kind, true).toArray())
      ordered = false
    }
    const out: Array<Task> = []
    for (const task of candidates) {
      if (matchesRecord(filter, task.record)) out.push(task)
    }
    return (ordered ? out : sortByOrder(out)).map((task) => task.record)
  }

  /** A task (as held) with its held descendants, oldest first. */
  tree(task: Task): TaskTree {
    return {
      record: task.record,
      children: task.children === undefined
        ? []
        : sortByOrder(Array.from(task.children)).map((child) => this.tree(child))
    }
  }

  /** Every record of a session, terminal ones included, oldest first. */
  session(sessionId: string): Array<Task> {
    const session = this.t.ofSession(sessionId, true)
    return session === undefined ? [] : sortByOrder(session.toArray())
  }

  /** The live records of a session, oldest first. */
  liveInSession(sessionId: string): Array<Task> {
    const live = this.t.ofSession(sessionId, false)
    return live === undefined ? [] : sortByOrder(live.toArray())
  }

  /** Every live record, oldest first. */
  liveTasks(): Array<Task> {
    return this.t.live.toArray()
  }

  /** The registry's part of `stats`; the rest comes from the rooms that know it. */
  stats(rest: Pick<TaskStats, "subscribers" | "fibers" | "queued" | "commits">): TaskStats {
    const t = this.t
    return {
      seq: t.seq,
      live: t.live.size,
      retained: t.terminal.size,
      completed: t.counts.completed,
      failed: t.counts.failed,
      cancelled: t.counts.cancelled,
      evicted: t.counts.evicted,
      ...rest
    }
  }

  /**
   * Puts back the records a durable store held, before anything runs: no
   * event is published (they are already in the store's history). `records`
   * come oldest registration first; `lastSeq` is the store's last event.
   */
  restore(
    records: ReadonlyArray<
      { readonly order: number; readonly record: BackgroundTaskRecord; readonly owner: Owner; readonly control: Control }
    >,
    lastSeq: number
  ): Array<Task> {
    const t = this.t
    t.seq = Math.max(t.seq, lastSeq)
    const restored: Array<Task> = []
    for (const { control, order, owner, record } of records) {
      if (t.findLive(record.id) !== undefined && !isTerminal(record.state)) continue
      if (t.find(record.scope.sessionId, record.id) !== undefined) continue
      const task: Task = {
        order,
        record,
        owner,
        control,
        parent: undefined,
        children: undefined,
        retained: false,
        held: false,
        links: noLinks()
      }
      t.seq = Math.max(t.seq, record.revision, order)
      t.index(task)
      restored.push(task)
    }
    for (const task of restored) {
      const parentId = Option.getOrUndefined(task.record.parentTaskId)
      const parent = parentId === undefined || isTerminal(task.record.state) ? undefined : t.findLive(parentId)
      if (parent !== undefined && parent !== task) {
        task.parent = parent
        ;(parent.children ??= new Set()).add(task)
      }
    }
    const ended = restored.filter((task) => isTerminal(task.record.state))
    ended.sort((a, b) => endOf(a.record) - endOf(b.record) || a.order - b.order)
    // the outcome counters count what ends in this process
    for (const task of ended) this.retire(task)
    return restored
  }

  // internal

  private publishEvictedOne({ record }: Task, reason: EvictionReason): void {
    this.sink.emit({
      _tag: "Evicted",
      seq: ++this.t.seq,
      sessionId: record.scope.sessionId,
      kind: record.kind,
      taskIds: [record.id],
      reason
    }, undefined)
  }

  private publishEvicted(tasks: ReadonlyArray<Task>, reason: EvictionReason): void {
    const t = this.t
    if (tasks.length === 1) return this.publishEvictedOne(tasks[0]!, reason)
    // one event per (session, kind), in the order of each group's first record
    const groups = new Map<string, { sessionId: string; kind: TaskKind; taskIds: Array<string> }>()
    for (const { record } of tasks) {
      const key = `${record.kind}\u0000${record.scope.sessionId}`
      const group = groups.get(key)
      if (group === undefined) {
        groups.set(key, { sessionId: record.scope.sessionId, kind: record.kind, taskIds: [record.id] })
      } else {
        group.taskIds.push(record.id)
      }
    }
    for (const { kind, sessionId, taskIds } of groups.values()) {
      this.sink.emit({
        _tag: "Evicted",
        seq: ++t.seq,
        sessionId,
        kind,
        taskIds: taskIds as [string, ...Array<string>],
        reason
      }, undefined)
    }
  }

  /** A record has become terminal: hold it, within the limits. */
  private retire(task: Task): void {
    const terminal = this.t.terminal
    terminal.push(task)
    const onRetire = this.onRetire
    if (onRetire !== undefined) {
      this.onRetire = undefined
      onRetire()
    }
    if (terminal.size <= this.retention.maxTerminal) return
    if (terminal.size === this.retention.maxTerminal + 1) {
      // the common case once the limit is reached: one in, one out
      const oldest = terminal.shift()!
      this.t.delete(oldest)
      this.t.counts.evicted++
      this.publishEvictedOne(oldest, "max_terminal")
      return
    }
    const excess: Array<Task> = []
    while (terminal.size > this.retention.maxTerminal) excess.push(terminal.shift()!)
    this.evict(excess, "max_terminal")
  }

  /** A terminal record gives way to a new one with its id in its session. */
  private replace(task: Task): void {
    this.t.delete(task)
    this.publishEvictedOne(task, "replaced")
  }

  private evict(tasks: ReadonlyArray<Task>, reason: EvictionReason): void {
    if (tasks.length === 0) return
    const t = this.t
    for (const task of tasks) t.delete(task)
    t.counts.evicted += tasks.length
    this.publishEvicted(tasks, reason)
  }
}

/** The registry as a service: the rooms that read or change records get it from their context. */
export class Registry extends Context.Service<Registry, RegistryService>()("effect-task-host/internal/Registry") {}

const endOf = (record: BackgroundTaskRecord): number =>
  Option.match(record.completedAt, { onNone: () => record.updatedAt, onSome: (end) => end }).epochMilliseconds

/** Oldest first; a list in registration order already (no transfer reordered it) is returned as it is. */
const sortByOrder = (tasks: Array<Task>): Array<Task> => {
  for (let i = 1; i < tasks.length; i++) {
    if (tasks[i - 1]!.order > tasks[i]!.order) return tasks.sort((a, b) => a.order - b.order)
  }
  return tasks
}
