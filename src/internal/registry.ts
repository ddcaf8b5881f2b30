/**
 * The registry of task records and its indexes.
 *
 * Every method is one synchronous step: it validates, writes and publishes
 * its events before it returns, and nothing else runs in between (JavaScript
 * runs one fiber at a time, and a synchronous block is never preempted). That
 * is what makes each mutation atomic and event order equal to mutation order,
 * without a lock. The host calls these methods only from inside
 * `Effect.suspend`/`Effect.sync` blocks.
 *
 * Invariants: at most one record per (session, id); at most one live record
 * per id; `entries` iterates in registration order.
 *
 * @internal
 */
import type * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import {
  type BackgroundTaskEvent,
  type BackgroundTaskRecord,
  isTerminal,
  matchesRecord,
  type TaskFilter,
  type TaskState
} from "../BackgroundTask.ts"
import { type InvalidTransition, TaskAlreadyExists } from "../PluginError.ts"
import * as Lifecycle from "./lifecycle.ts"

/** One record and what the host needs to act on it (`handle`). */
export interface Entry<H> {
  /** Registration order: oldest first, ties in registration order. */
  readonly order: number
  record: BackgroundTaskRecord
  /** The mutation number of the last change to `record`. */
  rev: number
  readonly handle: H
}

export class Registry<H> {
  private nextOrder = 0
  private nextRev = 0
  /** Every record, in registration order. */
  private readonly entries = new Map<number, Entry<H>>()
  /** The live record of each id. */
  private readonly live = new Map<string, Entry<H>>()
  /** Session → id → record. */
  private readonly sessions = new Map<string, Map<string, Entry<H>>>()
  /**
   * Id → every record with that id (one live at most, terminal ones in other
   * sessions): one entry, or an array in the rare case of several.
   */
  private readonly ids = new Map<string, Entry<H> | Array<Entry<H>>>()

  private readonly publish: (event: BackgroundTaskEvent) => void

  constructor(publish: (event: BackgroundTaskEvent) => void) {
    this.publish = publish
  }

  /** Adds a record; a terminal record with the same id in the same session is replaced. */
  add(record: BackgroundTaskRecord, handle: H): Result.Result<Entry<H>, TaskAlreadyExists> {
    const live = this.live.get(record.id)
    if (live !== undefined) {
      return Result.fail(new TaskAlreadyExists({ taskId: record.id, sessionId: live.record.scope.sessionId }))
    }
    const replaced = this.sessions.get(record.scope.sessionId)?.get(record.id)
    if (replaced !== undefined) this.delete(replaced)
    const entry: Entry<H> = { order: this.nextOrder++, record, rev: this.nextRev++, handle }
    this.entries.set(entry.order, entry)
    this.index(entry)
    this.publish({ _tag: "Registered", taskId: record.id, sessionId: record.scope.sessionId, kind: record.kind, record })
    return Result.succeed(entry)
  }

  /** Removes a record without an event. */
  remove(entry: Entry<H>): void {
    if (this.entries.get(entry.order) === entry) this.delete(entry)
  }

  /** The live record with this id, else the most recently updated terminal one. */
  resolve(taskId: string): Entry<H> | undefined {
    const live = this.live.get(taskId)
    if (live !== undefined) return live
    const same = this.ids.get(taskId)
    if (same === undefined || !Array.isArray(same)) return same
    let found: Entry<H> | undefined
    for (const entry of same) {
      if (found === undefined || entry.rev > found.rev) found = entry
    }
    return found
  }

  find(sessionId: string, taskId: string): Entry<H> | undefined {
    return this.sessions.get(sessionId)?.get(taskId)
  }

  /**
   * Moves a record to `to`, publishing the move's one event; staying in the
   * same live state changes nothing and publishes nothing.
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
    const record = Lifecycle.moveRecord(entry.record, to, now, options?.summary)
    this.write(entry, record)
    if (isTerminal(to)) this.live.delete(record.id)
    this.publish(Lifecycle.moveEvent(record, options?.reason ?? Option.none()))
    return Result.succeed(record)
  }

  /** Publishes a `Progress` event for a live record. */
  progress(entry: Entry<H>, message: string): void {
    const { record } = entry
    this.publish({
      _tag: "Progress",
      taskId: record.id,
      sessionId: record.scope.sessionId,
      kind: record.kind,
      message
    })
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
      if (there !== undefined) this.delete(there)
      this.unindexSession(entry)
      const scope = { sessionId: to }
      const record: BackgroundTaskRecord = { ...entry.record, scope, updatedAt: now }
      this.write(entry, record)
      this.indexSession(entry)
      moved.push(record)
      this.publish({
        _tag: "Transferred",
        taskId: record.id,
        sessionId: to,
        kind: record.kind,
        scope,
        fromSessionId: from
      })
    }
    return Result.succeed(moved)
  }

  /** Records matching the filter, oldest first. */
  list(filter: TaskFilter | undefined): Array<BackgroundTaskRecord> {
    const out: Array<BackgroundTaskRecord> = []
    if (filter?.sessionId !== undefined) {
      for (const entry of this.session(filter.sessionId)) {
        if (matchesRecord(filter, entry.record)) out.push(entry.record)
      }
      return out
    }
    if (filter?.includeTerminal !== true) {
      for (const entry of this.liveEntries()) {
        if (matchesRecord(filter, entry.record)) out.push(entry.record)
      }
      return out
    }
    for (const entry of this.entries.values()) {
      if (matchesRecord(filter, entry.record)) out.push(entry.record)
    }
    return out
  }

  /** Every record of a session, terminal ones included, oldest first. */
  session(sessionId: string): Array<Entry<H>> {
    const session = this.sessions.get(sessionId)
    return session === undefined ? [] : sortByOrder(Array.from(session.values()))
  }

  /** Every live record, oldest first. */
  liveEntries(): Array<Entry<H>> {
    return sortByOrder(Array.from(this.live.values()))
  }

  // internal

  private write(entry: Entry<H>, record: BackgroundTaskRecord): void {
    entry.record = record
    entry.rev = this.nextRev++
  }

  private index(entry: Entry<H>): void {
    const { id, state } = entry.record
    if (!isTerminal(state)) this.live.set(id, entry)
    const same = this.ids.get(id)
    if (same === undefined) this.ids.set(id, entry)
    else if (Array.isArray(same)) same.push(entry)
    else this.ids.set(id, [same, entry])
    this.indexSession(entry)
  }

  private indexSession(entry: Entry<H>): void {
    const sessionId = entry.record.scope.sessionId
    let session = this.sessions.get(sessionId)
    if (session === undefined) this.sessions.set(sessionId, session = new Map())
    session.set(entry.record.id, entry)
  }

  private unindexSession(entry: Entry<H>): void {
    const sessionId = entry.record.scope.sessionId
    const session = this.sessions.get(sessionId)
    if (session?.get(entry.record.id) !== entry) return
    session.delete(entry.record.id)
    if (session.size === 0) this.sessions.delete(sessionId)
  }

  private delete(entry: Entry<H>): void {
    const { id } = entry.record
    this.entries.delete(entry.order)
    if (this.live.get(id) === entry) this.live.delete(id)
    const same = this.ids.get(id)
    if (same === entry) this.ids.delete(id)
    else if (Array.isArray(same)) {
      const rest = same.filter((other) => other !== entry)
      this.ids.set(id, rest.length === 1 ? rest[0]! : rest)
    }
    this.unindexSession(entry)
  }
}

const sortByOrder = <H>(entries: Array<Entry<H>>): Array<Entry<H>> => entries.sort((a, b) => a.order - b.order)
