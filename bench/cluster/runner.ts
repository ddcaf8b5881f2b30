/**
 * A runner of the cluster bench (scenario 8), started by
 * bench/groups/cluster.ts as a child process: the cluster example's runner
 * (examples/cluster/runner.ts: the same sharding timings and session lease)
 * with the bench's producers (./producers.ts).
 *
 *   RUNNER_NAME=bench-runner-1 RUNNER_PORT=… PGHOST=… PGDATABASE=… node bench/cluster/runner.ts
 *
 * Its database connections are named `cluster <RUNNER_NAME>` (the bench
 * finds its shard locks by that name).
 */
import { NodeClusterSocket, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { RunnerAddress } from "effect/cluster"
import { listen, pgLayer, shardingConfig } from "../../examples/cluster/shared.ts"
import * as TaskCluster from "../../src/TaskCluster.ts"
import { handlers } from "./producers.ts"

const name = process.env["RUNNER_NAME"] ?? "bench-runner"
const port = Number(process.env["RUNNER_PORT"])
if (!Number.isInteger(port) || port <= 0) throw new Error(`RUNNER_PORT must be a port, got ${process.env["RUNNER_PORT"]}`)

const Runner = TaskCluster.layer({
  runnerName: name,
  handlers,
  // at most the shard lock's expiration (examples/cluster/shared.ts: 5 s)
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

console.log(`${name}: starting on 127.0.0.1:${port}, pid ${process.pid}`)
NodeRuntime.runMain(Layer.launch(Runner.pipe(Layer.provideMerge(pgLayer(`cluster ${name}`)))) as Effect.Effect<never, unknown>)
