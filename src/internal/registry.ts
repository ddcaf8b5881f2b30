/**
 * The registry of task records, its indexes, its event numbering and its
 * retention of terminal records.
 *
 * Every method is one synchronous step: it validates, writes and publishes
 * its events before it returns, and nothing else runs in between (JavaScript
 * runs one fiber at a time, and a synchronous block is never preempted). That
 * is what makes each mutation atomic and event order equal to mutation order,
 * without a lock. The host calls these methods only from inside
 * `Effect.suspend`/`Effect.sync` blocks.
 *
 * Every published event gets the next `seq`; a record's `revision` is the
 * `seq` of the event that last changed it. So a snapshot taken in the same
 * step as a subscription (`watch`) is exactly the state as of `lastSeq`.
 *
 * Invariants: at most one record per (session, id); at most one live record
 * per id; every index holds exactly the records it describes; `terminal`
 * holds the terminal records in the order they ended.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import {
  type BackgroundTaskEvent,
  type BackgroundTaskRecord,
  type EvictionReason,
  isTerminal,
  matchesRecord,
  type TaskFilter,
  TaskKind,
  type TaskState,
  type TaskStats
} from "../BackgroundTask.ts"
import { type InvalidTransition, TaskAlreadyExists } from "../PluginError.ts"
import * as Lifecycle from "./lifecycle.ts"

/** One record and what the host needs to act on it (`handle`). */
export interface Entry<H> {
  /** Registration order: oldest first. */
  readonly order: number
  record: BackgroundTaskRecord
  readonly handle: H
  /** The live task this one was registered under, while it is held. */
  parent: Entry<H> | undefined
  /** The tasks registered under this one, while they are held. */
  children: Set<Entry<H>> | undefined
  /** Whether the record is in the queue of held terminal records. */
  retained: boolean
}

/**
 * The held terminal records, oldest end first: a queue with a moving head.
 * Removing one from the middle (a replaced or unregistered record) only clears
 * its flag; the queue skips it when it reaches it. (A `Set` iterated from the
 * front after many deletions there walks its deleted slots each time.)
 */
class TerminalQueue<H> {
  private items: Array<Entry<H> | undefined> = []
  private head = 0
  size = 0

  push(entry: Entry<H>): void {
    entry.retained = true
    this.items.push(entry)
    this.size++
  }

  delete(entry: Entry<H>): void {
    if (!entry.retained) return
    entry.retained = false
    this.size--
  }

  /** The oldest held record, if any. */
  peek(): Entry<H> | undefined {
    while (this.head < this.items.length) {
      const entry = this.items[this.head]!
      if (entry.retained) return entry
      this.items[this.head++] = undefined
    }
    this.compact()
    return undefined
  }

  /** Removes and returns the oldest held record. */
  shift(): Entry<H> | undefined {
    const entry = this.peek()
    if (entry === undefined) return undefined
    this.items[this.head++] = undefined
    entry.retained = false
    this.size--
    if (this.head > 1024 && this.head * 2 > this.items.length) this.compact()
    return entry
  }

  private compact(): void {
    this.items = this.items.slice(this.head)
    this.head = 0
  }
}

export interface RegistryOptions<H> {
  readonly publish: (event: BackgroundTaskEvent) => void
  /** Terminal records held at most; the oldest are evicted beyond it. */
  readonly maxTerminal: number
  /** Milliseconds a terminal record is held after it ended (`Infinity`: no limit). */
  readonly maxAgeMillis: number
  /** Called in the step that made a record terminal, after its event. */
  readonly onTerminal?: ((entry: Entry<H>) => void) | undefined
  /**
   * Sees every event with the record it is about (none for `Evicted`), in the
   * step that publishes it: the durable store's write-ahead hook.
   */
  readonly journal?: ((event: BackgroundTaskEvent, entry: Entry<H> | undefined) => void) | undefined
}

/** A `Map` of sets, whose empty sets are removed. */
class Index<K, H> {
  private readonly map = new Map<K, Set<Entry<H>>>()
  add(key: K, entry: Entry<H>): void {
    let set = this.map.get(key)
    if (set === undefined) this.map.set(key, set = new Set())
    set.add(entry)
  }
  delete(key: K, entry: Entry<H>): void {
    const set = this.map.get(key)
    if (set === undefined || !set.delete(entry)) return
    if (set.size === 0) this.map.delete(key)
  }
  get(key: K): ReadonlySet<Entry<H>> {
    return this.map.get(key) ?? empty
  }
}

const empty: ReadonlySet<never> = new Set()

export class Registry<H> {
  private seq = 0
  private readonly publishEvent: (event: BackgroundTaskEvent) => void
  private readonly journal: ((event: BackgroundTaskEvent, entry: Entry<H> | undefined) => void) | undefined
  private readonly maxTerminal: number
  private readonly maxAgeMillis: number
  private readonly onTerminal: ((entry: Entry<H>) => void) | undefined

  /** The live record of each id. */
  private readonly live = new Map<string, Entry<H>>()
  /** Session → id → record (live and terminal). */
  private readonly sessions = new Map<string, Map<string, Entry<H>>>()
  private readonly liveBySession = new Index<string, H>()
  private readonly byKind = new Index<TaskKind, H>()
  private readonly liveByKind = new Index<TaskKind, H>()
  /**
   * Id → every record with that id (one live at most, terminal ones in other
   * sessions): one entry, or an array in the rare case of several.
   */
  private readonly ids = new Map<string, Entry<H> | Array<Entry<H>>>()
  /** Idempotency key → the live record holding it. */
  private readonly keys = new Map<string, Entry<H>>()
  /** Terminal records, oldest end first: the eviction order. */
  private readonly terminal = new TerminalQueue<H>()

  private readonly counts = { completed: 0, failed: 0, cancelled: 0, evicted: 0 }

  constructor(options: RegistryOptions<H>) {
    this.publishEvent = options.publish
    this.maxTerminal = options.maxTerminal
    this.maxAgeMillis = options.maxAgeMillis
    this.onTerminal = options.onTerminal
    this.journal = options.journal
  }

  /** The `seq` of the last event published (0 before the first). */
  get lastSeq(): number {
    return this.seq
  }

  /**
   * Adds a record (`make` gets its `revision`, the `seq` of its `Registered`);
   * a terminal record with the same id in the same session is replaced.
   */
  add(
    make: (revision: number) => BackgroundTaskRecord,
    id: string,
    sessionId: string,
    handle: H,
    parent?: Entry<H>
  ): Result.Result<Entry<H>, TaskAlreadyExists> {
    const live = this.live.get(id)
    if (live !== undefined) {
      return Result.fail(new TaskAlreadyExists({ taskId: id, sessionId: live.record.scope.sessionId }))
    }
    const replaced = this.sessions.get(sessionId)?.get(id)
    if (replaced !== undefined) this.replace(replaced)
    const seq = ++this.seq
    const record = make(seq)
    const entry: Entry<H> = { order: seq, record, handle, parent, children: undefined, retained: false }
    if (parent !== undefined) (parent.children ??= new Set()).add(entry)
    this.index(entry)
    this.emit({ _tag: "Registered", seq, taskId: id, sessionId, kind: record.kind, record }, entry)
    return Result.succeed(entry)
  }

  /** Removes a record (`unregisterExternal`), with an `Evicted` event. */
  remove(entry: Entry<H>): void {
    if (this.find(entry.record.scope.sessionId, entry.record.id) !== entry) return
    this.delete(entry)
    this.publishEvicted([entry], "unregistered")
  }

  /** The live record with this id, else the most recently updated terminal one. */
  resolve(taskId: string): Entry<H> | undefined {
    const live = this.live.get(taskId)
    if (live !== undefined) return live
    const same = this.ids.get(taskId)
    if (same === undefined || !Array.isArray(same)) return same
    let found: Entry<H> | undefined
    for (const entry of same) {
      if (found === undefined || entry.record.revision > found.record.revision) found = entry
    }
    return found
  }

  find(sessionId: string, taskId: string): Entry<H> | undefined {
    return this.sessions.get(sessionId)?.get(taskId)
  }

  /** The live record with this id. */
  findLive(taskId: string): Entry<H> | undefined {
    return this.live.get(taskId)
  }

  /** The live record holding this idempotency key. */
  findByKey(key: string): Entry<H> | undefined {
    return this.keys.get(key)
  }

  /**
   * Moves a record to `to`, publishing the move's one event; staying in the
   * same live state changes nothing and publishes nothing. A move to a
   * terminal state may evict the oldest terminal records.
   */
  move(
    entry: Entry<H>,
    to: TaskState,
    now: DateTime.Utc,
    options?: { readonly summary?: Option.Option<string>; readonly reason?: Option.Option<string> }
  ): Result.Result<BackgroundTaskRecord, InvalidTransition> {
    const from = entry.record.state
    const invalid = Lifecycle.checkMove(entry.record.id, from, to)
    if (invalid !== undefined) return Result.fail(invalid)
    if (from === to) return Result.succeed(entry.record)
    const record = Lifecycle.moveRecord(entry.record, to, now, ++this.seq, options?.summary)
    entry.record = record
    if (isTerminal(to)) this.unindexLive(entry)
    this.emit(Lifecycle.moveEvent(record, options?.reason ?? Option.none()), entry)
    if (isTerminal(to)) {
      this.counts[to]++
      this.onTerminal?.(entry)
      this.retire(entry)
    }
    return Result.succeed(record)
  }

  /** Publishes a `Progress` event for a record; the record does not change. */
  progress(entry: Entry<H>, message: string): void {
    const { record } = entry
    this.emit({
      _tag: "Progress",
      seq: ++this.seq,
      taskId: record.id,
      sessionId: record.scope.sessionId,
      kind: record.kind,
      message
    }, entry)
  }

  /**
   * Moves records to session `to`, all or none: fails when `to` holds a live
   * record with one of their ids; a terminal one there is replaced.
   */
  transfer(
    entries: ReadonlyArray<Entry<H>>,
    to: string,
    now: DateTime.Utc
  ): Result.Result<ReadonlyArray<BackgroundTaskRecord>, TaskAlreadyExists> {
    const target = this.sessions.get(to)
    for (const entry of entries) {
      const there = target?.get(entry.record.id)
      if (there !== undefined && there !== entry && !isTerminal(there.record.state)) {
        return Result.fail(new TaskAlreadyExists({ taskId: entry.record.id, sessionId: to }))
      }
    }
    const moved: Array<BackgroundTaskRecord> = []
    for (const entry of entries) {
      const from = entry.record.scope.sessionId
      if (from === to) {
        moved.push(entry.record)
        continue
      }
      const there = this.sessions.get(to)?.get(entry.record.id)
      if (there !== undefined) this.replace(there)
      this.unindexSession(entry)
      const scope = { sessionId: to }
      const seq = ++this.seq
      const record: BackgroundTaskRecord = { ...entry.record, scope, updatedAt: now, revision: seq }
      entry.record = record
      this.indexSession(entry)
      moved.push(record)
      this.emit({
        _tag: "Transferred",
        seq,
        taskId: record.id,
        sessionId: to,
        kind: record.kind,
        scope,
        fromSessionId: from,
        record
      }, entry)
    }
    return Result.succeed(moved)
  }

  /**
   * Evicts the terminal records that ended `maxAge` or longer before `now`.
   * Returns when the next one is due (epoch millis), if any.
   */
  evictExpired(nowMillis: number): number | undefined {
    const expired: Array<Entry<H>> = []
    let due: number | undefined
    for (let entry = this.terminal.peek(); entry !== undefined; entry = this.terminal.peek()) {
      const endedAt = endOf(entry.record)
      if (nowMillis - endedAt < this.maxAgeMillis) {
        due = endedAt + this.maxAgeMillis
        break
      }
      expired.push(this.terminal.shift()!)
    }
    this.evict(expired, "max_age")
    return due
  }

  /** Records matching the filter, oldest first; the work is in proportion to the index read. */
  list(filter: TaskFilter | undefined): Array<BackgroundTaskRecord> {
    const all = filter?.includeTerminal === true
    const sessionId = filter?.sessionId
    const kind = filter?.kind
    // `live` and the kind indexes are filled at registration, so they iterate
    // in registration order; the session indexes also change on transfers and
    // need sorting
    let candidates: Iterable<Entry<H>>
    let ordered = true
    if (sessionId !== undefined) {
      const session = all ? this.sessions.get(sessionId) : this.liveBySession.get(sessionId)
      candidates = session?.values() ?? empty
      ordered = false
      if (kind !== undefined) {
        const ofKind = (all ? this.byKind : this.liveByKind).get(kind)
        if (ofKind.size < (session?.size ?? 0)) {
          candidates = ofKind
          ordered = true
        }
      }
    } else if (kind !== undefined) {
      candidates = (all ? this.byKind : this.liveByKind).get(kind)
    } else {
      if (!all) candidates = this.live.values()
      else {
        // every record: the kind indexes are sorted runs, which sort merges in linear time
        candidates = TaskKind.literals.flatMap((kind) => Array.from(this.byKind.get(kind)))
        ordered = false
      }
    }
    const out: Array<Entry<H>> = []
    for (const entry of candidates) {
      if (matchesRecord(filter, entry.record)) out.push(entry)
    }
    return records(ordered ? out : sortByOrder(out))
  }

  /** Every record of a session, terminal ones included, oldest first. */
  session(sessionId: string): Array<Entry<H>> {
    const session = this.sessions.get(sessionId)
    return session === undefined ? [] : sortByOrder(Array.from(session.values()))
  }

  /** The live records of a session, oldest first. */
  liveInSession(sessionId: string): Array<Entry<H>> {
    return sortByOrder(Array.from(this.liveBySession.get(sessionId)))
  }

  /** Every live record, oldest first. */
  liveEntries(): Array<Entry<H>> {
    return Array.from(this.live.values())
  }


  /**
   * Changes a live record's attempt and/or state in one step, publishing
   * `StateChanged` with the new record even when the state stays the same (the
   * record changed). Used for retries.
   */
  update(
    entry: Entry<H>,
    change: (record: BackgroundTaskRecord) => BackgroundTaskRecord,
    now: DateTime.Utc
  ): BackgroundTaskRecord {
    const record = { ...change(entry.record), updatedAt: now, revision: ++this.seq }
    entry.record = record
    this.emit({
      _tag: "StateChanged",
      seq: record.revision,
      taskId: record.id,
      sessionId: record.scope.sessionId,
      kind: record.kind,
      state: record.state,
      record
    }, entry)
    return record
  }

  stats(subscribers: number, fibers: number, queued: number, commits: number): TaskStats {
    return {
      seq: this.seq,
      live: this.live.size,
      retained: this.terminal.size,
      completed: this.counts.completed,
      failed: this.counts.failed,
      cancelled: this.counts.cancelled,
      evicted: this.counts.evicted,
      subscribers,
      fibers,
      queued,
      commits
    }
  }

  /**
   * Puts back the records a durable store held, before anything runs: no
   * event is published (they are already in the store's history). `records`
   * come oldest registration first; `lastSeq` is the store's last event.
   */
  restore(
    records: ReadonlyArray<{ readonly order: number; readonly record: BackgroundTaskRecord; readonly handle: H }>,
    lastSeq: number
  ): Array<Entry<H>> {
    this.seq = Math.max(this.seq, lastSeq)
    const restored: Array<Entry<H>> = []
    for (const { handle, order, record } of records) {
      if (this.live.has(record.id) && !isTerminal(record.state)) continue
      if (this.sessions.get(record.scope.sessionId)?.has(record.id) === true) continue
      const entry: Entry<H> = { order, record, handle, parent: undefined, children: undefined, retained: false }
      this.seq = Math.max(this.seq, record.revision, order)
      this.index(entry)
      restored.push(entry)
    }
    for (const entry of restored) {
      const parentId = Option.getOrUndefined(entry.record.parentTaskId)
      const parent = parentId === undefined || isTerminal(entry.record.state) ? undefined : this.live.get(parentId)
      if (parent !== undefined && parent !== entry) {
        entry.parent = parent
        ;(parent.children ??= new Set()).add(entry)
      }
    }
    const ended = restored.filter((entry) => isTerminal(entry.record.state))
    ended.sort((a, b) => endOf(a.record) - endOf(b.record) || a.order - b.order)
    // the outcome counters count what ends in this process
    for (const entry of ended) this.retire(entry)
    return restored
  }

  // internal

  private emit(event: BackgroundTaskEvent, entry: Entry<H> | undefined): void {
    this.publishEvent(event)
    this.journal?.(event, entry)
  }

  private publishEvicted(entries: ReadonlyArray<Entry<H>>, reason: EvictionReason): void {
    if (entries.length === 1) {
      const { record } = entries[0]!
      this.emit({
        _tag: "Evicted",
        seq: ++this.seq,
        sessionId: record.scope.sessionId,
        kind: record.kind,
        taskIds: [record.id],
        reason
      }, undefined)
      return
    }
    // one event per (session, kind), in the order of each group's first record
    const groups = new Map<string, { sessionId: string; kind: TaskKind; taskIds: Array<string> }>()
    for (const { record } of entries) {
      const key = `${record.kind}\u0000${record.scope.sessionId}`
      const group = groups.get(key)
      if (group === undefined) {
        groups.set(key, { sessionId: record.scope.sessionId, kind: record.kind, taskIds: [record.id] })
      } else {
        group.taskIds.push(record.id)
      }
    }
    for (const { kind, sessionId, taskIds } of groups.values()) {
      this.emit({
        _tag: "Evicted",
        seq: ++this.seq,
        sessionId,
        kind,
        taskIds: taskIds as [string, ...Array<string>],
        reason
      }, undefined)
    }
  }

  /** A record has become terminal: hold it, within the limits. */
  private retire(entry: Entry<H>): void {
    this.terminal.push(entry)
    if (this.terminal.size <= this.maxTerminal) return
    const excess: Array<Entry<H>> = []
    while (this.terminal.size > this.maxTerminal) excess.push(this.terminal.shift()!)
    this.evict(excess, "max_terminal")
  }

  /** A terminal record gives way to a new one with its id in its session. */
  private replace(entry: Entry<H>): void {
    this.delete(entry)
    this.publishEvicted([entry], "replaced")
  }

  private evict(entries: ReadonlyArray<Entry<H>>, reason: EvictionReason): void {
    if (entries.length === 0) return
    for (const entry of entries) this.delete(entry)
    this.counts.evicted += entries.length
    this.publishEvicted(entries, reason)
  }

  private index(entry: Entry<H>): void {
    const { attempt, id, kind, state } = entry.record
    this.byKind.add(kind, entry)
    if (!isTerminal(state)) {
      this.live.set(id, entry)
      this.liveByKind.add(kind, entry)
      if (Option.isSome(attempt.idempotencyKey)) this.keys.set(attempt.idempotencyKey.value, entry)
    }
    const same = this.ids.get(id)
    if (same === undefined) this.ids.set(id, entry)
    else if (Array.isArray(same)) same.push(entry)
    else this.ids.set(id, [same, entry])
    this.indexSession(entry)
  }

  /** Removes a record that has become terminal from the live indexes. */
  private unindexLive(entry: Entry<H>): void {
    const { attempt, id, kind, scope } = entry.record
    if (this.live.get(id) === entry) this.live.delete(id)
    if (Option.isSome(attempt.idempotencyKey) && this.keys.get(attempt.idempotencyKey.value) === entry) {
      this.keys.delete(attempt.idempotencyKey.value)
    }
    this.liveByKind.delete(kind, entry)
    this.liveBySession.delete(scope.sessionId, entry)
  }

  private indexSession(entry: Entry<H>): void {
    const { id, scope, state } = entry.record
    let session = this.sessions.get(scope.sessionId)
    if (session === undefined) this.sessions.set(scope.sessionId, session = new Map())
    session.set(id, entry)
    if (!isTerminal(state)) this.liveBySession.add(scope.sessionId, entry)
  }

  private unindexSession(entry: Entry<H>): void {
    const { id, scope } = entry.record
    this.liveBySession.delete(scope.sessionId, entry)
    const session = this.sessions.get(scope.sessionId)
    if (session?.get(id) !== entry) return
    session.delete(id)
    if (session.size === 0) this.sessions.delete(scope.sessionId)
  }

  private delete(entry: Entry<H>): void {
    const { id, kind } = entry.record
    entry.parent?.children?.delete(entry)
    entry.parent = undefined
    if (entry.children !== undefined) {
      for (const child of entry.children) child.parent = undefined
      entry.children = undefined
    }
    this.terminal.delete(entry)
    this.byKind.delete(kind, entry)
    this.unindexLive(entry)
    const same = this.ids.get(id)
    if (same === entry) this.ids.delete(id)
    else if (Array.isArray(same)) {
      const rest = same.filter((other) => other !== entry)
      this.ids.set(id, rest.length === 1 ? rest[0]! : rest)
    }
    this.unindexSession(entry)
  }
}

const endOf = (record: BackgroundTaskRecord): number =>
  Option.match(record.completedAt, { onNone: () => record.updatedAt, onSome: (end) => end }).epochMilliseconds

const sortByOrder = <H>(entries: Array<Entry<H>>): Array<Entry<H>> => entries.sort((a, b) => a.order - b.order)

const records = <H>(entries: ReadonlyArray<Entry<H>>): Array<BackgroundTaskRecord> =>
  entries.map((entry) => entry.record)
