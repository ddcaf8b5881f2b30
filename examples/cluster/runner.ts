/**
 * One runner of the cluster example: joins the cluster (NodeClusterSocket,
 * its state in PostgreSQL) and runs the sessions placed on it.
 *
 *   RUNNER_NAME=runner-a RUNNER_PORT=34431 PGHOST=… node examples/cluster/runner.ts
 */
import { NodeClusterSocket, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { RunnerAddress } from "effect/cluster"
import * as TaskCluster from "../../src/TaskCluster.ts"
import { listen, pgLayer, shardingConfig, work } from "./shared.ts"

const name = process.env["RUNNER_NAME"] ?? "runner"
const port = Number(process.env["RUNNER_PORT"] ?? 34431)

const Runner = TaskCluster.layer({
  runnerName: name,
  handlers: { work: work(name) },
  // at most the shard lock's expiration: it has run out when the shard moves
  sessionLease: { ttl: "4 seconds" },
  listen,
  orphanScan: "2 seconds",
  shutdown: { flushTimeout: "3 seconds" }
}).pipe(
  Layer.provide(NodeClusterSocket.layer({
    storage: "sql",
    shardingConfig: { ...shardingConfig, runnerAddress: Option.some(RunnerAddress.make("127.0.0.1", port)) }
  }))
)

const main = Layer.launch(Runner.pipe(Layer.provideMerge(pgLayer(`cluster ${name}`)))).pipe(
  Effect.onInterrupt(() => Effect.sync(() => console.log(`${name}: stopped`)))
)
console.log(`${name}: starting on 127.0.0.1:${port}, pid ${process.pid}`)
NodeRuntime.runMain(main as Effect.Effect<never, unknown>)
