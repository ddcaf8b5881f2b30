/**
 * The registry's tables: the records and the indexes kept beside them.
 *
 * Owns: the indexes, and keeping every index equal to the records it
 * describes as records are added, moved between sessions, ended and deleted.
 * Calls nothing. The tables live inside the host's state (`state.ts`): an
 * open or closing host carries them, a closed one has none.
 *
 * Mutated in place, not an immutable value swapped per write: every write
 * happens inside one synchronous step (see `state.ts`), and no reference to a
 * table escapes the registry. One native `Map` is keyed by task id (`ids`:
 * every record, which also answers "the live one" and "the one in this
 * session", an id having one record almost always); the others (the live
 * records, by kind, by session, each all and live) are lists threaded
 * through the tasks (`TaskList`): adding appends, ending or evicting unlinks,
 * without hashing or allocating, and each iterates in the order its records
 * were added (registration order, except after a transfer).
 *
 * Invariants: at most one record per (session, id); at most one live record
 * per id; `terminal` holds the held terminal records in the order they ended.
 *
 * @internal
 */
import * as Option from "effect/Option"
import { isTerminal, type TaskKind } from "../BackgroundTask.ts"
import { KIND, LIVE, LIVE_KIND, LIVE_SESSION, SESSION, TaskList } from "./links.ts"
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

/** A session's records: all of them (live and terminal), and the live ones. */
export interface SessionIndex {
  readonly all: TaskList
  readonly live: TaskList
}

const emptyList = new TaskList(0)

/** The live one of the records an id names (`Tables.ids`). */
export const liveIn = (same: Task | Array<Task> | undefined): Task | undefined => {
  if (same === undefined) return undefined
  if (!Array.isArray(same)) return isTerminal(same.record.state) ? undefined : same
  for (const task of same) if (!isTerminal(task.record.state)) return task
  return undefined
}

/** The one in `sessionId` of the records an id names (`Tables.ids`). */
export const inSession = (same: Task | Array<Task> | undefined, sessionId: string): Task | undefined => {
  if (same === undefined) return undefined
  if (!Array.isArray(same)) return same.record.scope.sessionId === sessionId ? same : undefined
  for (const task of same) if (task.record.scope.sessionId === sessionId) return task
  return undefined
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
  /** Id → every record with that id (one live at most): one task, or an array in the rare case of several. */
  readonly ids = new Map<string, Task | Array<Task>>()
  /** The live records, in registration order. */
  readonly live = new TaskList(LIVE)
  /** Kind → its records (all, and the live ones), in registration order. */
  private readonly kinds = new Map<TaskKind, { readonly all: TaskList; readonly live: TaskList }>()
  /** Session → its records (all, and the live ones); a session without a record has no entry. */
  private readonly sessions = new Map<string, SessionIndex>()
  /** The session last indexed: a burst of registrations in one session looks it up once. */
  private lastSession: { readonly id: string; readonly index: SessionIndex } | undefined = undefined
  /** Idempotency key → the live record holding it. */
  readonly keys = new Map<string, Task>()
  /** Terminal records, oldest end first: the eviction order. */
  readonly terminal = new TerminalQueue()
  readonly counts: Counts = { completed: 0, failed: 0, cancelled: 0, evicted: 0 }

  /** The live record with this id. */
  findLive(taskId: string): Task | undefined {
    return liveIn(this.ids.get(taskId))
  }

  /** The session's record with this id (one at most). */
  find(sessionId: string, taskId: string): Task | undefined {
    return inSession(this.ids.get(taskId), sessionId)
  }

  /** A kind's records: all of them, or the live ones. */
  ofKind(kind: TaskKind, all: boolean): TaskList {
    const lists = this.kinds.get(kind)
    return lists === undefined ? emptyList : all ? lists.all : lists.live
  }

  /** A session's records: all of them, or the live ones (`undefined`: it has none). */
  ofSession(sessionId: string, all: boolean): TaskList | undefined {
    const index = this.sessions.get(sessionId)
    return index === undefined ? undefined : all ? index.all : index.live
  }

  private kindLists(kind: TaskKind): { readonly all: TaskList; readonly live: TaskList } {
    let lists = this.kinds.get(kind)
    if (lists === undefined) this.kinds.set(kind, lists = { all: new TaskList(KIND), live: new TaskList(LIVE_KIND) })
    return lists
  }

  private sessionIndex(sessionId: string): SessionIndex {
    const last = this.lastSession
    if (last !== undefined && last.id === sessionId) return last.index
    let index = this.sessions.get(sessionId)
    if (index === undefined) {
      index = { all: new TaskList(SESSION), live: new TaskList(LIVE_SESSION) }
      this.sessions.set(sessionId, index)
    }
    this.lastSession = { id: sessionId, index }
    return index
  }

  /**
   * Adds a record to every index; `same` is what `ids` held for its id, when
   * the caller has just read it (and changed nothing since).
   */
  index(task: Task, same: Task | Array<Task> | undefined = this.ids.get(task.record.id)): void {
    const { attempt, id, kind, state } = task.record
    task.held = true
    const kindLists = this.kindLists(kind)
    kindLists.all.push(task)
    if (!isTerminal(state)) {
      this.live.push(task)
      kindLists.live.push(task)
      if (Option.isSome(attempt.idempotencyKey)) this.keys.set(attempt.idempotencyKey.value, task)
    }
    if (same === undefined) this.ids.set(id, task)
    else if (Array.isArray(same)) same.push(task)
    else this.ids.set(id, [same, task])
    this.indexSession(task)
  }

  /** Removes a record that has become terminal from the live indexes. */
  unindexLive(task: Task): void {
    const { attempt, kind, scope } = task.record
    this.live.remove(task)
    if (Option.isSome(attempt.idempotencyKey) && this.keys.get(attempt.idempotencyKey.value) === task) {
      this.keys.delete(attempt.idempotencyKey.value)
    }
    this.kinds.get(kind)?.live.remove(task)
    this.sessions.get(scope.sessionId)?.live.remove(task)
  }

  indexSession(task: Task): void {
    const index = this.sessionIndex(task.record.scope.sessionId)
    index.all.push(task)
    if (!isTerminal(task.record.state)) index.live.push(task)
  }

  unindexSession(task: Task): void {
    const sessionId = task.record.scope.sessionId
    const index = this.sessions.get(sessionId)
    if (index === undefined) return
    index.live.remove(task)
    index.all.remove(task)
    if (index.all.size === 0) {
      this.sessions.delete(sessionId)
      if (this.lastSession?.index === index) this.lastSession = undefined
    }
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
    this.kinds.get(kind)?.all.remove(task)
    // a terminal record left the live indexes when it ended
    if (!isTerminal(task.record.state)) this.unindexLive(task)
    const same = this.ids.get(id)
    if (same === task) this.ids.delete(id)
    else if (Array.isArray(same)) {
      const rest = same.filter((other) => other !== task)
      this.ids.set(id, rest.length === 1 ? rest[0]! : rest)
    }
    this.unindexSession(task)
  }
}
