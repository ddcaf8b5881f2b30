/**
 * Lists threaded through the tasks themselves: each task carries its links
 * (`Task.links`), a pair per list it can be in, so adding appends, removing
 * unlinks, neither hashes nor allocates, and a list iterates in the order its
 * tasks were added. The registry's indexes (`tables.ts`) and the
 * supervisor's running tasks are such lists. A data structure: calls nothing.
 *
 * @internal
 */
import type { Task } from "./task.ts"

/**
 * The lists a task is linked into, each with its own pair of links in the
 * task's `links` (`prev` at `2 × list`, `next` at `2 × list + 1`).
 */
export const LIVE = 0
export const KIND = 1
export const LIVE_KIND = 2
export const SESSION = 3
export const LIVE_SESSION = 4
/** The supervisor's list of the managed tasks whose fiber runs (not one of the registry's). */
export const RUNNING = 5

/** A new task's links: two per list, none set. */
export const noLinks = (): Array<Task | undefined> => [
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined
]

/**
 * An index as a list threaded through the tasks themselves (their `links`):
 * adding appends, removing unlinks, neither hashes nor allocates, and it
 * iterates in the order tasks were added.
 */
export class TaskList implements Iterable<Task> {
  private readonly prev: number
  private readonly next: number
  head: Task | undefined = undefined
  tail: Task | undefined = undefined
  size = 0

  constructor(list: number) {
    this.prev = 2 * list
    this.next = 2 * list + 1
  }

  has(task: Task): boolean {
    return task.links[this.prev] !== undefined || this.head === task
  }

  push(task: Task): void {
    const tail = this.tail
    task.links[this.prev] = tail
    task.links[this.next] = undefined
    if (tail === undefined) this.head = task
    else tail.links[this.next] = task
    this.tail = task
    this.size++
  }

  /** Unlinks a task; one not in the list is left as it is. */
  remove(task: Task): void {
    if (!this.has(task)) return
    const links = task.links
    const before = links[this.prev]
    const after = links[this.next]
    if (before === undefined) this.head = after
    else before.links[this.next] = after
    if (after === undefined) this.tail = before
    else after.links[this.prev] = before
    links[this.prev] = undefined
    links[this.next] = undefined
    this.size--
  }

  /** The tasks, in list order, as an array (without an iterator's result objects). */
  toArray(): Array<Task> {
    const out: Array<Task> = new Array(this.size)
    let i = 0
    for (let task = this.head; task !== undefined; task = task.links[this.next]) out[i++] = task
    return out
  }

  [Symbol.iterator](): Iterator<Task> {
    let task = this.head
    const next = this.next
    return {
      next: (): IteratorResult<Task> => {
        if (task === undefined) return { done: true, value: undefined }
        const value = task
        task = task.links[next]
        return { done: false, value }
      }
    }
  }
}

