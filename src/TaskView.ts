/**
 * A live view of a host's records: the snapshot of a `watch`, with the
 * watch's events folded in as they come. What a UI or an agent keeps to show
 * "the tasks of this session, now" without asking the host again.
 *
 * Each event that changes a record carries the changed record, so folding is
 * exact: after the events up to `seq`, the view holds the records `list(filter)`
 * returned at that `seq` (in `createdAt` order, which can differ from `list`'s
 * registration order for records created in the same millisecond). A
 * `Lagged` event makes the view `stale` (events were dropped for a slow
 * reader); take a new `watch` then.
 *
 * @since 0.2.0
 */
import { type BackgroundTaskRecord, matchesRecord, type TaskFilter } from "./BackgroundTask.ts"
import { type SubscriptionEvent } from "./TaskEvent.ts"

const keyOf = (sessionId: string, taskId: string) => `${sessionId}\u0000${taskId}`

/**
 * A mutable view of the records matching a filter, fed by events.
 *
 * **Example** (Keeping a live view of a session)
 *
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { BackgroundTaskHost, TaskView } from "effect-task-host"
 *
 * const showSession = (sessionId: string) =>
 *   Effect.gen(function*() {
 *     const host = yield* BackgroundTaskHost
 *     const watched = yield* host.watch({ sessionId })
 *     const view = TaskView.fromWatch(watched)
 *     yield* Stream.runForEach(watched.events, (event) =>
 *       Effect.sync(() => {
 *         view.apply(event)
 *         console.log(view.records().map((r) => `${r.id}: ${r.state}`).join(", "))
 *       }))
 *   })
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export class TaskView {
  /** The filter the view keeps records for (`list`'s meaning). */
  readonly filter: TaskFilter | undefined
  readonly #records = new Map<string, BackgroundTaskRecord>()
  #seq: number
  #stale = false

  constructor(
    snapshot: Iterable<BackgroundTaskRecord>,
    seq: number,
    filter: TaskFilter | undefined
  ) {
    this.filter = filter
    this.#seq = seq
    for (const record of snapshot) this.#records.set(keyOf(record.scope.sessionId, record.id), record)
  }

  /** A view starting from what `watch` returned. */
  static fromWatch(watched: {
    readonly snapshot: ReadonlyArray<BackgroundTaskRecord>
    readonly seq: number
    readonly filter: TaskFilter | undefined
  }): TaskView {
    return new TaskView(watched.snapshot, watched.seq, watched.filter)
  }

  /** The `seq` of the last event folded in. */
  get seq(): number {
    return this.#seq
  }

  /** True after a `Lagged`: events are missing, the view may be wrong. */
  get stale(): boolean {
    return this.#stale
  }

  /**
   * Folds one event in. Returns whether the view changed. An event at or
   * before `seq` was already folded in (or is in the snapshot) and is ignored.
   */
  apply(event: SubscriptionEvent): boolean {
    if (event._tag === "Lagged") {
      this.#stale = true
      return false
    }
    if (event.seq <= this.#seq) return false
    this.#seq = event.seq
    switch (event._tag) {
      case "Evicted": {
        let changed = false
        for (const taskId of event.taskIds) {
          changed = this.#records.delete(keyOf(event.sessionId, taskId)) || changed
        }
        return changed
      }
      case "Transferred": {
        const left = this.#records.delete(keyOf(event.fromSessionId, event.taskId))
        return this.put(event.record) || left
      }
      default:
        return this.put(event.record)
    }
  }

  /** The records held, oldest first by `createdAt` (ties in the order the view first saw them). */
  records(): ReadonlyArray<BackgroundTaskRecord> {
    return Array.from(this.#records.values()).sort((a, b) =>
      a.createdAt.epochMilliseconds - b.createdAt.epochMilliseconds
    )
  }

  /** The record of a task in a session, if the view holds it. */
  get(sessionId: string, taskId: string): BackgroundTaskRecord | undefined {
    return this.#records.get(keyOf(sessionId, taskId))
  }

  get size(): number {
    return this.#records.size
  }

  private put(record: BackgroundTaskRecord): boolean {
    const key = keyOf(record.scope.sessionId, record.id)
    if (matchesRecord(this.filter, record)) {
      this.#records.set(key, record)
      return true
    }
    return this.#records.delete(key)
  }
}
