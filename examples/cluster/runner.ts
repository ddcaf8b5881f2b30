/**
 * One runner of the cluster example: joins the cluster (NodeClusterSocket,
 * its state in PostgreSQL) and runs the sessions placed on it.
 *
 *   RUNNER_NAME=runner-a RUNNER_PORT=34431 PGHOST=… node examples/cluster/runner.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { runnerLayer, work } from "./shared.ts"

const name = process.env["RUNNER_NAME"] ?? "runner"
const port = Number(process.env["RUNNER_PORT"] ?? 34431)

const main = Layer.launch(runnerLayer(name, port, { work: work(name) })).pipe(
  Effect.onInterrupt(() => Effect.sync(() => console.log(`${name}: stopped`)))
)
console.log(`${name}: starting on 127.0.0.1:${port}, pid ${process.pid}`)
NodeRuntime.runMain(main as Effect.Effect<never, unknown>)
