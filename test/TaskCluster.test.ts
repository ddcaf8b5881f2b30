import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Stream } from "effect"
import { NodeCrypto } from "@effect/platform-node"
import {
  EntityAddress,
  EntityId,
  MessageStorage,
  RunnerHealth,
  Runners,
  RunnerStorage,
  Sharding,
  ShardingConfig,
  SqlMessageStorage,
  TestRunner
} from "effect/cluster"
import { SqlClient } from "effect/sql"
import { BackgroundTaskHost, TaskContext, TaskView } from "effect-task-host"
import * as NodeSqliteClient from "effect-task-host/sqlite"
import * as TaskCluster from "effect-task-host/cluster"
import * as ClusterStore from "../src/internal/cluster/store.ts"
import { auditWriters } from "./utils/cluster.ts"

/** One in-memory runner (TestRunner) over an in-memory SQLite database. */
const runner = (options: TaskCluster.TaskClusterOptions = {}) =>
  TaskCluster.layer({ pollInterval: "10 millis", sessionLease: { ttl: "5 seconds" }, cancelGracePeriod: "20 millis", ...options }).pipe(
    Layer.provideMerge(TestRunner.layer),
    Layer.provideMerge(NodeSqliteClient.layer({ filename: ":memory:" }))
  )

const handlers = {
  // finishes with its input's text
  echo: (record: { readonly input?: unknown }) => Effect.succeed(`echo ${JSON.stringify(record.input ?? null)}`),
  // runs until cancelled
  forever: () => Effect.never
}

const spec = (id: string, producer = "echo", input: unknown = { n: 1 }) => ({
  id,
  kind: "subagent" as const,
  producer,
  input: input as never
})

describe("TaskCluster on one runner", () => {
  it.live("routes a spawn by producer to the session's owner, which builds the body with the handler", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const record = yield* host.spawnManaged("s-1", spec("t-1"), TaskCluster.byProducer)
      expect(record.scope.sessionId).toBe("s-1")
      expect(record.producer).toBe("echo")
      const done = yield* host.await("t-1")
      expect(done.state).toBe("completed")
      expect(Option.getOrUndefined(Option.flatMap(done.result, (r) => r.summary))).toBe(`echo {"n":1}`)
      // reads come from the store, in any process
      const got = yield* host.get("t-1")
      expect(Option.getOrThrow(got).state).toBe("completed")
      const listed = yield* host.list({ sessionId: "s-1", includeTerminal: true })
      expect(listed.map((r) => r.id)).toEqual(["t-1"])
    }).pipe(Effect.provide(runner({ handlers }))))

  it.live("a session's watch: snapshot at its seq, then its events with no gap (TaskView folds them)", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      yield* host.spawnManaged("s-w", spec("w-0", "forever"), TaskCluster.byProducer)
      const watched = yield* host.watch({ sessionId: "s-w", includeTerminal: true })
      expect(watched.snapshot.map((r) => r.id)).toEqual(["w-0"])
      const view = TaskView.fromWatch(watched)
      const seen = yield* Effect.forkChild(
        watched.events.pipe(
          Stream.takeUntil((e) => e._tag === "Cancelled" && e.taskId === "w-0"),
          Stream.runCollect
        )
      )
      for (let i = 1; i <= 3; i++) yield* host.spawnManaged("s-w", spec(`w-${i}`), TaskCluster.byProducer)
      for (let i = 1; i <= 3; i++) yield* host.await(`w-${i}`)
      yield* host.requestCancel("w-0", "enough")
      const events = Array.from(yield* Fiber.join(seen))
      const seqs = events.flatMap((e) => e._tag === "Lagged" ? [] : [e.seq])
      // gap-free, starting right after the snapshot
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => watched.seq + 1 + i))
      for (const e of events) view.apply(e)
      expect(view.get("s-w", "w-0")?.state).toBe("cancelled")
      expect(view.get("s-w", "w-3")?.state).toBe("completed")
    }).pipe(Effect.scoped, Effect.provide(runner({ handlers }))))

  it.live("a watch across sessions: each event keeps its session's seq; TaskView folds it per session", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      yield* host.spawnManaged("s-x1", spec("x-1", "forever"), TaskCluster.byProducer)
      yield* host.spawnManaged("s-x2", spec("x-2", "forever"), TaskCluster.byProducer)
      const watched = yield* host.watch({ includeTerminal: true })
      expect(watched.seqPerSession).toBe(true)
      const view = TaskView.fromWatch(watched)
      const seen = yield* Effect.forkChild(
        watched.events.pipe(
          Stream.filter((e) => e._tag !== "Lagged" && (e.sessionId === "s-x1" || e.sessionId === "s-x2")),
          Stream.takeUntil((e) => e._tag === "Cancelled" && e.taskId === "x-2"),
          Stream.runCollect
        )
      )
      yield* host.spawnManaged("s-x1", spec("x-3"), TaskCluster.byProducer)
      yield* host.await("x-3")
      yield* host.requestCancel("x-1", "enough")
      yield* host.await("x-1")
      yield* host.requestCancel("x-2", "enough")
      const events = Array.from(yield* Fiber.join(seen))
      // each session's seq gap-free, below the feed's position the watch started at
      for (const s of ["s-x1", "s-x2"]) {
        const seqs = events.flatMap((e) => e._tag !== "Lagged" && e.sessionId === s ? [e.seq] : [])
        expect(seqs.length).toBeGreaterThan(0)
        expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i))
      }
      for (const e of events) view.apply(e)
      expect(view.get("s-x1", "x-1")?.state).toBe("cancelled")
      expect(view.get("s-x1", "x-3")?.state).toBe("completed")
      expect(view.get("s-x2", "x-2")?.state).toBe("cancelled")
      const listed = yield* host.list({ includeTerminal: true })
      expect(view.records().map((r) => `${r.id}:${r.state}:${r.revision}`).sort())
        .toEqual(listed.map((r) => `${r.id}:${r.state}:${r.revision}`).sort())
    }).pipe(Effect.scoped, Effect.provide(runner({ handlers }))))

  it.live("a task body runs where the session is owned; a client-only process is refused with a typed error", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const ran = yield* Deferred.make<string>()
      const record = yield* host.spawnManaged("s-local", { id: "b-1", kind: "monitor", producer: "inline" },
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          yield* Deferred.succeed(ran, `${ctx.taskId} token ${yield* ctx.fencingToken}`)
        }))
      expect(record.state).toBe("running")
      expect(yield* Deferred.await(ran)).toBe("b-1 token 1")
      const client = yield* Layer.build(TaskCluster.layerClient({ pollInterval: "10 millis" })).pipe(
        Effect.map((ctx) => ctx.mapUnsafe.get(BackgroundTaskHost.key) as BackgroundTaskHost["Service"])
      )
      const refused = yield* Effect.flip(client.spawnManaged("s-local", { id: "b-2", kind: "monitor", producer: "inline" }, Effect.void))
      expect(refused._tag).toBe("RegistrationError")
      expect(refused.message).toContain("cannot cross processes")
      // a spawn by producer from the client is routed
      const routed = yield* client.spawnManaged("s-local", spec("b-3"), TaskCluster.byProducer)
      expect((yield* client.await(routed.id)).state).toBe("completed")
    }).pipe(Effect.scoped, Effect.provide(runner({ handlers }))))

  it.live("a bad timing option is a typed error naming it", () =>
    Effect.gen(function*() {
      for (const [option, options] of [
        ["transactionIdleTimeout", { transactionIdleTimeout: 0 }],
        ["pollInterval", { pollInterval: "-1 seconds" }]
      ] as const) {
        const error = yield* Effect.flip(Layer.build(TaskCluster.layerClient(options)))
        expect(error._tag).toBe("InvalidOptions")
        expect(error.message).toContain(option)
      }
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(TestRunner.layer, NodeSqliteClient.layer({ filename: ":memory:" })))))

  it.live("handlers are idempotent: a spawn or completion delivered again changes nothing", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const makeClient = yield* TaskCluster.TaskSession.client
      const session = makeClient("s-idem")
      const routed = { id: "i-1", kind: "subagent" as const, producer: "forever", input: { a: 1 } }
      // two deliveries with different request ids (the cluster's own dedup does not apply)
      const first = yield* session.Spawn({ requestId: "r-1", spec: routed })
      const again = yield* session.Spawn({ requestId: "r-2", spec: routed })
      expect(again.createdAt).toEqual(first.createdAt)
      const completed = yield* session.Complete({ requestId: "r-3", taskId: "i-1", state: "completed", summary: "done" })
      const twice = yield* session.Complete({ requestId: "r-4", taskId: "i-1", state: "completed", summary: "done" })
      expect(twice.revision).toBe(completed.revision)
      // the same id with another registration is a conflict, not a redelivery
      const other = yield* Effect.flip(session.Spawn({ requestId: "r-5", spec: { ...routed, id: "i-2", producer: "nope" } }))
      expect(other._tag).toBe("RegistrationError")
      const watched = yield* host.watch({ sessionId: "s-idem", fromSeq: 0, includeTerminal: true })
      const events = yield* watched.events.pipe(Stream.take(watched.seq), Stream.runCollect)
      const tags = Array.from(events).map((e) => e._tag)
      expect(tags.filter((t) => t === "Registered")).toHaveLength(1)
      expect(tags.filter((t) => t === "Completed")).toHaveLength(1)
    }).pipe(Effect.scoped, Effect.provide(runner({ handlers }))))

  it.live("ids name one live task in the cluster; calls naming only a task id find its session", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      yield* host.spawnManaged("s-a", spec("shared", "forever"), TaskCluster.byProducer)
      const clash = yield* Effect.flip(host.spawnManaged("s-b", spec("shared", "forever"), TaskCluster.byProducer))
      expect(clash._tag).toBe("TaskAlreadyExists")
      const cancelled = yield* host.requestCancel("shared", "by id")
      expect(cancelled.scope.sessionId).toBe("s-a")
      expect((yield* host.await("shared")).state).toBe("cancelled")
      const missing = yield* Effect.flip(host.requestCancel("nobody"))
      expect(missing._tag).toBe("TaskNotFound")
    }).pipe(Effect.provide(runner({ handlers }))))

  it.live("closing a session handle applies the close policies on the owner", () =>
    Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* host.openSession("s-close")
        yield* session.spawn({ ...spec("c-1", "forever"), closePolicy: "cancel" }, TaskCluster.byProducer)
        yield* session.spawn({ ...spec("c-2", "forever"), closePolicy: "keep" }, TaskCluster.byProducer)
      }))
      expect((yield* host.await("c-1")).state).toBe("cancelled")
      expect(Option.getOrThrow(yield* host.get("c-2")).state).toBe("running")
    }).pipe(Effect.provide(runner({ handlers }))))
})

describe("TaskCluster fencing", () => {
  const sqlite = NodeSqliteClient.layer({ filename: ":memory:" })

  it.effect("a stale owner's commit writes nothing once another runner took the session", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const store = yield* ClusterStore.make()
      const a = store.forSession("s-f")
      const b = store.forSession("s-f")
      expect(yield* a.acquireLease("runner-a", 0, 1_000)).toBe(1)
      // held: b waits for it
      const held = yield* Effect.flip(b.acquireLease("runner-b", 500, 1_500))
      expect(held._tag).toBe("LeaseHeld")
      // a paused past its lease: b takes the session, its token grows
      expect(yield* b.acquireLease("runner-b", 2_000, 3_000)).toBe(2)
      const refused = yield* Effect.flip(a.write({ events: [], puts: [], deletes: [{ sessionId: "s-f", taskId: "x" }] }, {
        owner: "runner-a",
        expiresAt: 4_000
      }))
      expect(refused._tag).toBe("LeaseHeld")
      expect(yield* a.renewLease("runner-a", 4_000)).toBe(false)
      const [row] = yield* sql<{ owner: string; token: number }>`SELECT owner, token FROM task_cluster_sessions`
      expect(row).toEqual({ owner: "runner-b", token: 2 })
    }).pipe(Effect.provide(sqlite)))

  it.effect("a session's task rows that no longer decode are quarantined with their row, and the others load", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const store = yield* ClusterStore.make()
      const host = yield* Effect.promise(() => import("../src/internal/host.ts"))
      const live = yield* host.makeWith({ lease: { ttl: "1 hour", owner: "a" } }, store.forSession("s-q"))
      yield* live.register({ scope: { sessionId: "s-q" }, id: "good", kind: "other", producer: "p" })
      yield* sql`INSERT INTO task_cluster_tasks (session_id, task_id, ord, owner, state, record, released)
        VALUES ('s-q', 'bad', 99, 'caller', 'running', 'not json', 0)`
      const loaded = yield* store.forSession("s-q").load
      expect(loaded.tasks.map((t) => t.record.id)).toEqual(["good"])
      expect(loaded.quarantined.map((q) => [q.table, q.key, q.message])).toEqual([
        ["task_cluster_tasks", JSON.stringify(["s-q", "bad"]), "the record does not decode"]
      ])
      const [row] = yield* sql<{ source: string; data: string }>`SELECT source, data FROM task_cluster_quarantine`
      expect(row!.source).toBe("tasks")
      expect(JSON.parse(row!.data)).toMatchObject({ session_id: "s-q", task_id: "bad", record: "not json" })
      const left = yield* sql<{ task_id: string }>`SELECT task_id FROM task_cluster_tasks WHERE session_id = 's-q'`
      expect(left.map((r) => r.task_id)).toEqual(["good"])
    }).pipe(Effect.scoped, Effect.provide(sqlite)))

  it.live("the new owner recovers the session's live tasks; the old host stops and writes nothing more", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { makeWith } = yield* Effect.promise(() => import("../src/internal/host.ts"))
      const store = yield* ClusterStore.make()
      const options = (owner: string) => ({
        lease: { ttl: "1 hour" as const, onHeld: "wait" as const, owner },
        recovery: { forever: () => Effect.never }
      })
      const hostA = yield* makeWith(options("a"), store.forSession("s-r"))
      yield* hostA.spawnManaged("s-r", spec("r-1", "forever"), Effect.never)
      // a is paused past its lease: expire it as the clock would
      yield* sql`UPDATE task_cluster_sessions SET expires_at = 1 WHERE session_id = 's-r'`
      const hostB = yield* makeWith(options("b"), store.forSession("s-r"))
      const report = yield* hostB.recovery
      expect(report.respawned).toEqual(["r-1"])
      const before = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM task_cluster_events`
      // a wakes up and writes: refused, and it stops
      const late = yield* Effect.exit(hostA.spawnManaged("s-r", spec("r-2", "forever"), Effect.never))
      expect(Exit.isFailure(late)).toBe(true)
      const after = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM task_cluster_events`
      expect(after[0]!.n).toBe(before[0]!.n)
      const tasks = yield* sql<{ task_id: string }>`SELECT task_id FROM task_cluster_tasks ORDER BY task_id`
      expect(tasks.map((t) => t.task_id)).toEqual(["r-1"])
      expect(Exit.isFailure(yield* Effect.exit(hostA.list()))).toBe(true)
      // every row names its writer: two owners in turn, none writing after a newer one
      const audit = yield* auditWriters(sql)
      expect(audit).toMatchObject({ staleEvents: 0, staleRecords: 0, stamped: audit.rows, tokens: { "s-r": [1, 2] } })
      expect(audit.rows).toBeGreaterThan(0)
      // what a write from a as it woke up would have left without the fence: counted
      const [bumped] = yield* sql<{ writes: number }>`UPDATE task_cluster_sessions SET writes = writes + 1
        WHERE session_id = 's-r' RETURNING writes`
      const writes = bumped!.writes
      yield* sql`INSERT INTO task_cluster_events (session_id, seq, gseq, task_id, tag, event, token, write_no)
        VALUES ('s-r', 1000000, 1000000, 'r-2', 'Registered', '{}', 1, ${writes})`
      yield* sql`UPDATE task_cluster_tasks SET token = 1, write_no = ${writes} WHERE task_id = 'r-1'`
      expect(yield* auditWriters(sql)).toMatchObject({ staleEvents: 1, staleRecords: 1 })
    }).pipe(Effect.scoped, Effect.provide(sqlite)))
})


describe("TaskCluster: a call whose remote side ends interrupted", () => {
  /** TestRunner's layers, with the cluster's SQL message storage (on the same SQLite) instead of the in-memory one. */
  const sqlRunner = Sharding.layer.pipe(
    Layer.provideMerge(Runners.layerNoop),
    Layer.provideMerge(SqlMessageStorage.layer.pipe(Layer.provide(NodeCrypto.layerDigest))),
    Layer.provide([RunnerStorage.layerMemory, RunnerHealth.layerNoop]),
    Layer.provide(ShardingConfig.layer())
  )

  /**
   * A stand-in for the session's entity, under the client's routed host: `CancelManaged`
   * answers as `cancel` says for each delivery (its number, from 1); `MarkTerminal` waits
   * until it is interrupted.
   */
  const owner = (cancel: (delivery: number) => Effect.Effect<void>, storage: "memory" | "sql" = "memory") => {
    const seen = { cancels: [] as Array<string>, interrupted: 0, marks: [] as Array<string> }
    const started = Deferred.makeUnsafe<void>()
    const stopped = Deferred.makeUnsafe<void>()
    const unused = () => Effect.die(new Error("not used by this test"))
    const entity = TaskCluster.TaskSession.toLayer(Effect.succeed(TaskCluster.TaskSession.of({
      Spawn: unused,
      RegisterExternal: unused,
      Register: unused,
      Update: unused,
      Complete: unused,
      RequestCancel: unused,
      CancelManaged: ({ payload }) =>
        Effect.suspend(() => {
          seen.cancels.push(payload.requestId)
          return cancel(seen.cancels.length)
        }).pipe(Effect.onInterrupt(() => Effect.sync(() => void seen.interrupted++))),
      MarkTerminal: ({ payload }) =>
        Effect.suspend(() => {
          seen.marks.push(payload.requestId)
          return Effect.andThen(Deferred.succeed(started, undefined), Effect.never)
        }).pipe(Effect.onInterrupt(() => Deferred.succeed(stopped, undefined))),
      MarkLiveState: unused,
      UnregisterExternal: unused,
      CancelAll: unused,
      Close: unused,
      Wake: unused
    })))
    const layer = Layer.mergeAll(TaskCluster.layerClient({ pollInterval: "10 millis" }), entity).pipe(
      Layer.provideMerge(storage === "memory" ? TestRunner.layer : sqlRunner),
      Layer.provideMerge(NodeSqliteClient.layer({ filename: ":memory:" }))
    )
    return { layer, seen, started, stopped }
  }

  it.live("a handler that ended interrupted: the same message is delivered again, and the caller gets its answer", () => {
    const { layer, seen } = owner((delivery) => delivery === 1 ? Effect.interrupt : Effect.void)
    return Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const exit = yield* Effect.exit(host.cancelManaged("s-i", "t-1"))
      expect(exit).toStrictEqual(Exit.void)
      // delivered twice, the same message (its requestId): the stored interruption was reset, not a new request sent
      expect(seen.cancels.length).toBe(2)
      expect(seen.cancels[1]).toBe(seen.cancels[0])
    }).pipe(Effect.provide(layer))
  })

  it.live("a call abandoned while its handler runs (SQL storage): the Interrupt the client sent for it is cleared, the message delivered again", () => {
    const first = Deferred.makeUnsafe<void>()
    // the first delivery waits (until it is interrupted); the next ones answer after a moment of
    // work, so that an `Interrupt` still stored for the message, read with it, finds them running
    const { layer, seen } = owner(
      (delivery) => delivery === 1 ? Effect.andThen(Deferred.succeed(first, undefined), Effect.never) : Effect.sleep("50 millis"),
      "sql"
    )
    return Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const sharding = yield* Sharding.Sharding
      const storage = yield* MessageStorage.MessageStorage
      const caller = yield* Effect.forkChild(host.cancelManaged("s-a", "t-1"))
      yield* Deferred.await(first)
      // the cluster abandons the caller's wait (as it does when its runner stops): the call ends
      // with an interruption that is not the caller's; the client then stores an Interrupt for the
      // message, which interrupts the handler, and would interrupt every later delivery of it
      const entityId = EntityId.make("s-a")
      const address = EntityAddress.make({
        entityType: TaskCluster.TaskSession.type,
        entityId,
        shardId: sharding.getShardId(entityId, TaskCluster.TaskSession.getShardGroup(entityId))
      })
      const id = yield* storage.requestIdForPrimaryKey({ address, tag: "CancelManaged", id: seen.cancels[0]! })
      yield* storage.unregisterReplyHandler(Option.getOrThrow(id), { interrupt: true })
      expect(yield* Fiber.await(caller)).toStrictEqual(Exit.void)
      // the first delivery was interrupted (by the client's Interrupt); the same message was
      // delivered again and answered (every delivery but the last interrupted)
      expect(seen.interrupted).toBeGreaterThanOrEqual(1)
      expect(seen.cancels.length).toBe(seen.interrupted + 1)
      expect(new Set(seen.cancels)).toEqual(new Set([seen.cancels[0]]))
    }).pipe(Effect.provide(layer))
  })

  it.live("the caller's own interruption interrupts the call on the owner, and it is not delivered again", () => {
    const { layer, seen, started, stopped } = owner(() => Effect.void)
    return Effect.gen(function*() {
      const host = yield* BackgroundTaskHost
      const caller = yield* Effect.forkChild(host.markTerminal("s-i", "t-1", "completed"))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(caller)
      expect(Exit.hasInterrupts(yield* Fiber.await(caller))).toBe(true)
      // the interruption reached the handler on the owner
      yield* Deferred.await(stopped)
      expect(seen.marks.length).toBe(1)
    }).pipe(Effect.provide(layer))
  })
})
