/**
 * Concurrency limits for managed tasks: running counts per session and per
 * kind, and the FIFO queue of tasks waiting in `pending` for a slot.
 *
 * A queued task starts when both its session and its kind have a free slot;
 * the queue is scanned in order and every task that fits starts, so a task
 * blocked by its kind does not hold back one of another kind behind it.
 * Cancelled tasks leave the queue when the scan meets them.
 *
 * @internal
 */
import type { TaskKind } from "../BackgroundTask.ts"

export interface Limits {
  /** Running managed tasks per session at most (`Infinity`: no limit). */
  readonly perSession: number
  /** Running managed tasks per kind at most. */
  readonly perKind: { readonly [K in TaskKind]?: number | undefined }
}

export interface Slot {
  readonly sessionId: string
  readonly kind: TaskKind
}

export class Slots<T> {
  private readonly limits: Limits
  private readonly bySession = new Map<string, number>()
  private readonly byKind = new Map<TaskKind, number>()
  private queue: Array<{ readonly item: T; readonly slot: () => Slot | undefined }> = []

  constructor(limits: Limits) {
    this.limits = limits
    this.limited = limits.perSession !== Infinity ||
      Object.values(limits.perKind).some((limit) => limit !== undefined && limit !== Infinity)
  }

  /** Whether any limit is set: without one, nothing is counted. */
  readonly limited: boolean

  /** Takes a slot if both limits allow it. */
  tryAcquire(slot: Slot): boolean {
    if (!this.fits(slot)) return false
    this.bySession.set(slot.sessionId, (this.bySession.get(slot.sessionId) ?? 0) + 1)
    this.byKind.set(slot.kind, (this.byKind.get(slot.kind) ?? 0) + 1)
    return true
  }

  /** A running task moved to another session: its slot counts there now, over the limit if need be. */
  moveSession(slot: Slot, sessionId: string): Slot {
    decrement(this.bySession, slot.sessionId)
    this.bySession.set(sessionId, (this.bySession.get(sessionId) ?? 0) + 1)
    return { sessionId, kind: slot.kind }
  }

  release(slot: Slot): void {
    decrement(this.bySession, slot.sessionId)
    decrement(this.byKind, slot.kind)
  }

  /**
   * Queues an item; `slot` says which slot it needs when it would start, or
   * `undefined` when it no longer needs one (it was cancelled).
   */
  enqueue(item: T, slot: () => Slot | undefined): void {
    this.queue.push({ item, slot })
  }

  /** The items that can start now, in queue order, with their slots taken; the rest stay queued. */
  takeStartable(): Array<T> {
    const started: Array<T> = []
    const waiting: typeof this.queue = []
    for (const queued of this.queue) {
      const slot = queued.slot()
      if (slot === undefined) continue
      if (this.tryAcquire(slot)) started.push(queued.item)
      else waiting.push(queued)
    }
    this.queue = waiting
    return started
  }

  private fits(slot: Slot): boolean {
    const kindLimit = this.limits.perKind[slot.kind] ?? Infinity
    return (this.bySession.get(slot.sessionId) ?? 0) < this.limits.perSession &&
      (this.byKind.get(slot.kind) ?? 0) < kindLimit
  }
}

const decrement = <K>(counts: Map<K, number>, key: K): void => {
  const count = (counts.get(key) ?? 0) - 1
  if (count <= 0) counts.delete(key)
  else counts.set(key, count)
}
