/**
 * Test helpers for the inspector: a host and an inspector on it (port 0,
 * 127.0.0.1) that the test closes itself, effects run against them, and a
 * client-side fold of the feed's frames (what the page does).
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type BackgroundTaskRecord,
  TaskStore
} from "../../src/index.ts"
import * as NodeSqliteClient from "../../src/NodeSqliteClient.ts"
import { TaskInspector, type TaskInspectorOptions } from "../../src/TaskInspector.ts"
import type { Frame } from "./sse.ts"

export interface Running {
  readonly host: BackgroundTaskHost["Service"]
  readonly inspector: TaskInspector["Service"]
  /** Runs an effect (a host call) to its end. */
  readonly run: <A, E>(effect: Effect.Effect<A, E>) => Promise<A>
  /** `fetch` of a path of the inspector. */
  readonly fetch: (path: string, init?: RequestInit) => Promise<Response>
  /** Closes the inspector, then the host. */
  readonly close: () => Promise<void>
}

export interface StartOptions {
  readonly inspector?: TaskInspectorOptions
  readonly host?: BackgroundTaskHostOptions
  /** A SQLite file for a durable host (a new temporary file when `"new"`). */
  readonly sqlite?: string
}

/** A fresh SQLite file name in a new temporary directory. */
export const sqliteFile = () => join(mkdtempSync(join(tmpdir(), "inspector-store-")), "tasks.db")

const hostLayer = (options: StartOptions) =>
  options.sqlite === undefined
    ? BackgroundTaskHost.layerWith(options.host ?? {})
    : BackgroundTaskHost.layerStore(options.host ?? {}).pipe(
      Layer.provide(TaskStore.layerSql()),
      Layer.provide(NodeSqliteClient.layer({ filename: options.sqlite }))
    )

/** A host with an inspector on it. */
export const startInspector = async (options: StartOptions = {}): Promise<Running> => {
  const scope = Effect.runSync(Scope.make())
  const layer = TaskInspector.layer({ port: 0, ...options.inspector }).pipe(Layer.provideMerge(hostLayer(options)))
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope).pipe(Effect.orDie))
  const inspector = Context.get(context, TaskInspector)
  return {
    host: Context.get(context, BackgroundTaskHost),
    inspector,
    run: (effect) => Effect.runPromise(effect),
    fetch: (path, init) => fetch(new URL(path, inspector.url), init),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** A durable host alone on a SQLite file: runs `use`, then closes (a previous process). */
export const withStoredHost = <A, E>(
  filename: string,
  use: (host: BackgroundTaskHost["Service"]) => Effect.Effect<A, E>
): Promise<A> =>
  Effect.runPromise(
    Effect.flatMap(BackgroundTaskHost, use).pipe(
      Effect.provide(hostLayer({ sqlite: filename })),
      Effect.orDie
    )
  )

/** The page's copy of the records: a snapshot, with the events after it folded in (wire form). */
export class FeedView {
  readonly tasks = new Map<string, { record: any; progress: string | null }>()
  seq = 0
  snapshots = 0
  lagged: Array<number> = []
  resyncs: Array<string> = []

  static key(sessionId: string, taskId: string) {
    return `${sessionId}\u0000${taskId}`
  }

  apply(frame: Frame): void {
    const data = frame.data
    switch (data.type) {
      case "hello":
      case "end":
        return
      case "snapshot":
        this.tasks.clear()
        for (const task of data.tasks) this.tasks.set(FeedView.key(task.record.scope.session_id, task.record.id), task)
        this.seq = data.seq
        this.snapshots++
        return
      case "lagged":
        this.lagged.push(data.skipped)
        return
      case "resync":
        this.resyncs.push(data.reason)
        return
    }
    if (data.seq <= this.seq) throw new Error(`event ${data.seq} arrived after ${this.seq}`)
    if (frame.id !== String(data.seq)) throw new Error(`event ${data.seq} has SSE id ${frame.id}`)
    this.seq = data.seq
    switch (data.type) {
      case "progress": {
        const task = this.tasks.get(FeedView.key(data.session_id, data.task_id))
        if (task !== undefined) task.progress = data.message
        return
      }
      case "evicted":
        for (const id of data.task_ids) this.tasks.delete(FeedView.key(data.session_id, id))
        return
      case "transferred":
        this.tasks.delete(FeedView.key(data.from_session_id, data.task_id))
        this.tasks.set(FeedView.key(data.session_id, data.task_id), { record: data.record, progress: null })
        return
      default: {
        const key = FeedView.key(data.record.scope.session_id, data.record.id)
        const progress = data.type === "registered" ? null : this.tasks.get(key)?.progress ?? null
        this.tasks.set(key, { record: data.record, progress })
      }
    }
  }

  /** `id session state revision` per task, sorted: compared with the host's records. */
  summary(): ReadonlyArray<string> {
    return [...this.tasks.values()].map((t) => `${t.record.id} ${t.record.scope.session_id} ${t.record.state} ${t.record.revision}`)
      .sort()
  }
}

/** The same summary of the host's records. */
export const recordsSummary = (records: ReadonlyArray<BackgroundTaskRecord>): ReadonlyArray<string> =>
  records.map((r) => `${r.id} ${r.scope.sessionId} ${r.state} ${r.revision}`).sort()
