/**
 * What the cluster example's processes share: the database, the cluster's
 * timings, and the `TaskCluster` options (the handler that builds a "work"
 * task's body on whichever runner owns its session).
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Option, Redacted, Stream } from "effect"
import { RunnerAddress } from "effect/cluster"
import { TaskContext } from "../../src/index.ts"
import * as TaskCluster from "../../src/TaskCluster.ts"

/** PostgreSQL from the libpq variables the demo sets (`scripts/postgres.sh start` prints them). */
export const pgLayer = (app: string) =>
  PgClient.layer({
    host: process.env["PGHOST"] ?? "127.0.0.1",
    port: Number(process.env["PGPORT"] ?? 5432),
    username: process.env["PGUSER"] ?? "postgres",
    password: process.env["PGPASSWORD"] === undefined ? undefined : Redacted.make(process.env["PGPASSWORD"]),
    database: process.env["PGDATABASE"] ?? "postgres",
    applicationName: app
  })

/** `LISTEN` on a channel as a stream of payloads: wakes the process's readers when a commit notifies. */
export const listen = (channel: string) =>
  Stream.unwrap(
    Effect.gen(function*() {
      const pg = yield* PgClient.PgClient
      const queue = yield* pg.listen(channel)
      return Stream.map(Stream.fromQueue(queue), (n) => n.payload)
    })
  )

/**
 * Tuned for a fast fail-over on one machine (the defaults are 10 s / 35 s /
 * 3 s / 10 s: a dead runner's sessions move after ~36 s).
 */
export const shardingConfig = {
  shardLockRefreshInterval: 1_000,
  shardLockExpiration: 5_000,
  refreshAssignmentsInterval: 1_000,
  entityMessagePollInterval: 500,
  shardsPerGroup: 60
}

/** A task of producer "work": `steps` steps of `stepMs`, each a progress message naming the runner. */
export const work = (runner: string) => (record: { readonly input?: unknown }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    const { stepMs = 250, steps = 10 } = (record.input ?? {}) as { steps?: number; stepMs?: number }
    for (let i = 1; i <= steps; i++) {
      yield* Effect.sleep(stepMs)
      yield* ctx.progress(`step ${i}/${steps} on ${runner} (token ${yield* ctx.fencingToken})`)
    }
    return `done on ${runner}`
  })

/**
 * A runner named `name` on 127.0.0.1:`port` with these `handlers`: it joins
 * the cluster (its state in PostgreSQL, its connections named `cluster
 * <name>`) and runs the sessions placed on it.
 */
export const runnerLayer = (name: string, port: number, handlers: TaskCluster.TaskClusterOptions["handlers"]) =>
  TaskCluster.layer({
    runnerName: name,
    handlers,
    // at most the shard lock's expiration: it has run out when the shard moves
    sessionLease: { ttl: "4 seconds" },
    listen,
    orphanScan: "2 seconds",
    shutdown: { flushTimeout: "3 seconds" }
  }).pipe(
    Layer.provide(NodeClusterSocket.layer({
      storage: "sql",
      shardingConfig: { ...shardingConfig, runnerAddress: Option.some(RunnerAddress.make("127.0.0.1", port)) }
    })),
    Layer.provideMerge(pgLayer(`cluster ${name}`))
  )
