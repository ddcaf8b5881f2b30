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
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { runnerLayer } from "../../examples/cluster/shared.ts"
import { handlers } from "./producers.ts"

const name = process.env["RUNNER_NAME"] ?? "bench-runner"
const port = Number(process.env["RUNNER_PORT"])
if (!Number.isInteger(port) || port <= 0) throw new Error(`RUNNER_PORT must be a port, got ${process.env["RUNNER_PORT"]}`)

console.log(`${name}: starting on 127.0.0.1:${port}, pid ${process.pid}`)
NodeRuntime.runMain(Layer.launch(runnerLayer(name, port, handlers)) as Effect.Effect<never, unknown>)
