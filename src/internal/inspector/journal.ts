/**
 * The inspector's memory of what happened to each task: the host's events,
 * per task, as one subscription of the inspector's saw them, and each task's
 * latest progress message (records carry no progress; `Progress` events do).
 *
 * The host keeps records, not event history (a durable store keeps the
 * events, but the host's public API only replays them through `watch`). So
 * the journal subscribes when the inspector starts (on a durable store it
 * first replays the last `history` stored events) and keeps, for every record
 * the host still holds, its events: the first one and the latest
 * `eventsPerTask - 1`. A log is `complete` when it starts with the task's
 * `Registered` and no event of it can have been missed since.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { BackgroundTaskEvent, SubscriptionEvent, TaskEvent } from "../../TaskEvent.ts"
import type { BackgroundTaskRecord } from "../../BackgroundTask.ts"
import type { BackgroundTaskHostService } from "../../BackgroundTaskHost.ts"

/** What the journal knows of one task. */
export interface TaskLog {
  /** The first event seen, then the latest ones, in `seq` order. */
  readonly events: ReadonlyArray<TaskEvent>
  /** Events left out between the first one and the latest ones (`eventsPerTask`). */
  readonly dropped: number
  /** True when `events` starts at the task's `Registered` and no event of it was missed since. */
  readonly complete: boolean
  /** The latest `Progress` message, if any was seen. */
  readonly progress: string | undefined
}

interface MutableLog {
  first: TaskEvent | undefined
  recent: Array<TaskEvent>
  dropped: number
  complete: boolean
  progress: string | undefined
}

const keyOf = (sessionId: string, taskId: string) => `${sessionId}\u0000${taskId}`

export interface JournalOptions {
  /** Events kept per task (at least 2: the first and the latest). */
  readonly eventsPerTask: number
  /** Stored events replayed at start from a durable store. */
  readonly history: number
}

export class Journal {
  readonly #logs = new Map<string, MutableLog>()
  readonly #eventsPerTask: number
  /** The `seq` of the last event folded in. */
  seq = 0
  /** Events the journal's own subscription missed (it fell behind the host). */
  missed = 0

  constructor(options: JournalOptions) {
    this.#eventsPerTask = options.eventsPerTask
  }

  /** The log of a task as held in a session. */
  log(sessionId: string, taskId: string): TaskLog | undefined {
    const log = this.#logs.get(keyOf(sessionId, taskId))
    if (log === undefined) return undefined
    return {
      events: log.first === undefined ? log.recent.slice() : [log.first, ...log.recent],
      dropped: log.dropped,
      complete: log.complete,
      progress: log.progress
    }
  }

  /** A record's latest progress message. */
  progressOf(record: BackgroundTaskRecord): string | undefined {
    return this.#logs.get(keyOf(record.scope.sessionId, record.id))?.progress
  }

  /** Folds one event in. */
  apply(event: SubscriptionEvent): void {
    if (event._tag === "Lagged") {
      // events were dropped for the journal: no log can claim to be complete
      this.missed += event.skipped
      for (const log of this.#logs.values()) log.complete = false
      return
    }
    if (event.seq <= this.seq) return
    this.seq = event.seq
    this.fold(event)
  }

  /** Forgets the logs of records the host no longer holds (after missed events, an `Evicted` may be among them). */
  retainOnly(records: ReadonlyArray<BackgroundTaskRecord>): void {
    const held = new Set(records.map((record) => keyOf(record.scope.sessionId, record.id)))
    for (const key of this.#logs.keys()) if (!held.has(key)) this.#logs.delete(key)
  }

  get size(): number {
    return this.#logs.size
  }

  private fold(event: BackgroundTaskEvent): void {
    switch (event._tag) {
      case "Evicted":
        for (const taskId of event.taskIds) this.#logs.delete(keyOf(event.sessionId, taskId))
        return
      case "Registered": {
        // a new task (a reused id replaces the terminal record it had in the session)
        const log: MutableLog = { first: undefined, recent: [], dropped: 0, complete: true, progress: undefined }
        this.#logs.set(keyOf(event.sessionId, event.taskId), log)
        this.append(log, event)
        return
      }
      case "Transferred": {
        const from = keyOf(event.fromSessionId, event.taskId)
        const log = this.#logs.get(from) ?? this.missing()
        this.#logs.delete(from)
        this.#logs.set(keyOf(event.sessionId, event.taskId), log)
        this.append(log, event)
        return
      }
      default: {
        const key = keyOf(event.sessionId, event.taskId)
        let log = this.#logs.get(key)
        if (log === undefined) {
          log = this.missing()
          this.#logs.set(key, log)
        }
        if (event._tag === "Progress") log.progress = event.message
        this.append(log, event)
      }
    }
  }

  /** A log for a task whose registration the journal did not see. */
  private missing(): MutableLog {
    return { first: undefined, recent: [], dropped: 0, complete: false, progress: undefined }
  }

  private append(log: MutableLog, event: TaskEvent): void {
    if (log.first === undefined) {
      log.first = event
      return
    }
    log.recent.push(event)
    if (log.recent.length > this.#eventsPerTask - 1) {
      log.recent.shift()
      log.dropped++
    }
  }
}

/**
 * Starts a journal on the host: subscribed when this returns (on a durable
 * store, after replaying up to `history` stored events), fed by a fiber in
 * the current scope until the host's event stream ends.
 */
export const start = (
  host: BackgroundTaskHostService,
  options: JournalOptions
) =>
  Effect.gen(function*() {
    const journal = new Journal(options)
    const { seq } = yield* host.stats
    const fromSeq = Math.max(0, seq - options.history)
    // a host without a durable store cannot replay: it fails, and the journal starts from now
    const watched = yield* host.watch({ includeTerminal: true, fromSeq }).pipe(
      Effect.catchTag("SnapshotError", () => host.watch({ includeTerminal: true }))
    )
    const replayed = fromSeq < watched.seq
    // without a replay the journal starts with the records as they are, and no events
    if (!replayed) journal.seq = watched.seq
    yield* Stream.runForEach(watched.events, (event) =>
      Effect.gen(function*() {
        journal.apply(event)
        if (event._tag === "Lagged") journal.retainOnly(yield* host.list({ includeTerminal: true }))
      })).pipe(
        // the host closing ends the stream; a failing host call ends the journal, not the inspector
        Effect.ignore,
        Effect.forkScoped
      )
    return journal
  })
