/**
 * The registry's tables: the records and the indexes kept beside them.
 *
 * Owns: the maps and sets, and keeping every index equal to the records it
 * describes as records are added, moved between sessions, ended and deleted.
 * Calls nothing. The tables live inside the host's state (`state.ts`): an
 * open or closing host carries them, a closed one has none.
 *
 * Native `Map`s mutated in place, not an immutable value swapped per write:
 * every write happens inside one synchronous step (see `state.ts`), and no
 * reference to a table escapes the registry.
 *
 * Invariants: at most one record per (session, id); at most one live record
 * per id; `terminal` holds the held terminal records in the order they ended.
 *
 * @internal
 */
import * as Option from "effect/Option"
import { isTerminal, type TaskKind } from "../BackgroundTask.ts"
import type { Task } from "./task.ts"

/**
 * The held terminal records, oldest end first: a queue with a moving head.
 * Removing one from the middle (a replaced or unregistered record) only clears
 * its flag; the queue skips it when it reaches it.
 */
export class TerminalQueue {
  private items: Array<Task | undefined> = []
  private head = 0
  size = 0

  push(task: Task): void {
    task.retained = true
    this.items.push(task)
    this.size++
  }

  delete(task: Task): void {
    if (!task.retained) return
    task.retained = false
    this.size--
  }

  /** The oldest held record, if any. */
  peek(): Task | undefined {
    while (this.head < this.items.length) {
      const task = this.items[this.head]!
      if (task.retained) return task
      this.items[this.head++] = undefined
    }
    this.compact()
    return undefined
  }

  /** Removes and returns the oldest held record. */
  shift(): Task | undefined {
    const task = this.peek()
    if (task === undefined) return undefined
    this.items[this.head++] = undefined
    task.retained = false
    this.size--
    if (this.head > 1024 && this.head * 2 > this.items.length) this.compact()
    return task
  }

  private compact(): void {
    this.items = this.items.slice(this.head)
    this.head = 0
  }
}

/** A `Map` of sets, whose empty sets are removed. */
export class Index<K> {
  private readonly map = new Map<K, Set<Task>>()
  add(key: K, task: Task): void {
    let set = this.map.get(key)
    if (set === undefined) this.map.set(key, set = new Set())
    set.add(task)
  }
  delete(key: K, task: Task): void {
    const set = this.map.get(key)
    if (set === undefined || !set.delete(task)) return
    if (set.size === 0) this.map.delete(key)
  }
  get(key: K): ReadonlySet<Task> {
    return this.map.get(key) ?? empty
  }
}

export const empty: ReadonlySet<never> = new Set()

/** The counters behind `stats`, moved by the steps that end and evict records. */
export interface Counts {
  completed: number
  failed: number
  cancelled: number
  evicted: number
}

export class Tables {
  /** The `seq` of the last event (0 before the first). */
  seq = 0
  /** The live record of each id. */
  readonly live = new Map<string, Task>()
  /** Session → id → record (live and terminal). */
  readonly sessions = new Map<string, Map<string, Task>>()
  readonly liveBySession = new Index<string>()
  readonly byKind = new Index<TaskKind>()
  readonly liveByKind = new Index<TaskKind>()
  /** Id → every record with that id (one live at most): one task, or an array in the rare case of several. */
  readonly ids = new Map<string, Task | Array<Task>>()
  /** Idempotency key → the live record holding it. */
  readonly keys = new Map<string, Task>()
  /** Terminal records, oldest end first: the eviction order. */
  readonly terminal = new TerminalQueue()
  readonly counts: Counts = { completed: 0, failed: 0, cancelled: 0, evicted: 0 }

  find(sessionId: string, taskId: string): Task | undefined {
    return this.sessions.get(sessionId)?.get(taskId)
  }

  index(task: Task): void {
    const { attempt, id, kind, state } = task.record
    task.held = true
    this.byKind.add(kind, task)
    if (!isTerminal(state)) {
      this.live.set(id, task)
      this.liveByKind.add(kind, task)
      if (Option.isSome(attempt.idempotencyKey)) this.keys.set(attempt.idempotencyKey.value, task)
    }
    const same = this.ids.get(id)
    if (same === undefined) this.ids.set(id, task)
    else if (Array.isArray(same)) same.push(task)
    else this.ids.set(id, [same, task])
    this.indexSession(task)
  }

  /** Removes a record that has become terminal from the live indexes. */
  unindexLive(task: Task): void {
    const { attempt, id, kind, scope } = task.record
    if (this.live.get(id) === task) this.live.delete(id)
    if (Option.isSome(attempt.idempotencyKey) && this.keys.get(attempt.idempotencyKey.value) === task) {
      this.keys.delete(attempt.idempotencyKey.value)
    }
    this.liveByKind.delete(kind, task)
    this.liveBySession.delete(scope.sessionId, task)
  }

  indexSession(task: Task): void {
    const { id, scope, state } = task.record
    let session = this.sessions.get(scope.sessionId)
    if (session === undefined) this.sessions.set(scope.sessionId, session = new Map())
    session.set(id, task)
    if (!isTerminal(state)) this.liveBySession.add(scope.sessionId, task)
  }

  unindexSession(task: Task): void {
    const { id, scope } = task.record
    this.liveBySession.delete(scope.sessionId, task)
    const session = this.sessions.get(scope.sessionId)
    if (session?.get(id) !== task) return
    session.delete(id)
    if (session.size === 0) this.sessions.delete(scope.sessionId)
  }

  /** Takes a record out of every table: this incarnation is no longer held. */
  delete(task: Task): void {
    const { id, kind } = task.record
    task.held = false
    task.parent?.children?.delete(task)
    task.parent = undefined
    if (task.children !== undefined) {
      for (const child of task.children) child.parent = undefined
      task.children = undefined
    }
    this.terminal.delete(task)
    this.byKind.delete(kind, task)
    this.unindexLive(task)
    const same = this.ids.get(id)
    if (same === task) this.ids.delete(id)
    else if (Array.isArray(same)) {
      const rest = same.filter((other) => other !== task)
      this.ids.set(id, rest.length === 1 ? rest[0]! : rest)
    }
    this.unindexSession(task)
  }
}
