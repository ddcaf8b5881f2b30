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
 * A cluster host's watch across sessions (`seqPerSession`: its `seq` is a
 * position in the cluster's feed, each event keeps its own session's `seq`)
 * is folded per session: an event at or before the last `seq` the view has
 * of its session (from the snapshot's records, then from the events) is
 * ignored.
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
  /** Folding per session: the last `seq` seen of each session (undefined: one `seq` for all). */
  readonly #sessions: Map<string, number> | undefined

  constructor(
    snapshot: Iterable<BackgroundTaskRecord>,
    seq: number,
    filter: TaskFilter | undefined,
    options?: { readonly seqPerSession?: boolean | undefined }
  ) {
    this.filter = filter
    this.#seq = seq
    this.#sessions = options?.seqPerSession === true ? new Map() : undefined
    for (const record of snapshot) {
      this.#records.set(keyOf(record.scope.sessionId, record.id), record)
      // a record's revision is the seq of its session's event that last changed it
      const session = record.scope.sessionId
      if (this.#sessions !== undefined) this.#sessions.set(session, Math.max(this.#sessions.get(session) ?? 0, record.revision))
    }
  }

  /** A view starting from what `watch` returned (per session for a cluster's watch across sessions). */
  static fromWatch(watched: {
    readonly snapshot: ReadonlyArray<BackgroundTaskRecord>
    readonly seq: number
    readonly filter: TaskFilter | undefined
    readonly seqPerSession?: true | undefined
  }): TaskView {
    return new TaskView(watched.snapshot, watched.seq, watched.filter, { seqPerSession: watched.seqPerSession === true })
  }

  /**
   * The `seq` of the last event folded in. Folding per session (a cluster's
   * watch across sessions): the watch's `seq`, a position in the cluster's
   * feed, which events do not move; see `seqOf`.
   */
  get seq(): number {
    return this.#seq
  }

  /** The last `seq` of a session the view has folded in (or its snapshot held); `seq` when not folding per session. */
  seqOf(sessionId: string): number {
    return this.#sessions === undefined ? this.#seq : (this.#sessions.get(sessionId) ?? 0)
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
    if (this.#sessions === undefined) {
      if (event.seq <= this.#seq) return false
      this.#seq = event.seq
    } else {
      if (event.seq <= (this.#sessions.get(event.sessionId) ?? 0)) return false
      this.#sessions.set(event.sessionId, event.seq)
    }
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
