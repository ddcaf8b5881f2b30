/**
 * The single-node PostgreSQL host of the cluster bench's fail-over baseline
 * (scenario 8), as a child process of bench/groups/cluster.ts:
 *
 *   node bench/cluster/single.ts primary   takes the store's lease, spawns a `forever` task, prints "ready"
 *   node bench/cluster/single.ts standby   waits for the lease (`onHeld: "wait"`); once it holds it and has
 *                                          recovered the task, prints "ready respawned=<n>"
 *
 * The same lease ttl as a cluster runner's sessions (4 seconds). The store
 * is `TaskStore.layerSql` with the prefix in BENCH_PREFIX, on the database
 * the PG* variables name.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { pgLayer } from "../../examples/cluster/shared.ts"
import { BackgroundTaskHost, TaskStore } from "../../src/index.ts"
import { handlers } from "./producers.ts"

const mode = process.argv[2]
if (mode !== "primary" && mode !== "standby") throw new Error(`usage: node bench/cluster/single.ts primary|standby`)
const tablePrefix = process.env["BENCH_PREFIX"] ?? "bench8_single_"

const Host = BackgroundTaskHost.layerStore({
  lease: { ttl: "4 seconds", onHeld: mode === "standby" ? "wait" : "fail" },
  recovery: handlers
}).pipe(
  Layer.provide(TaskStore.layerSql({ tablePrefix })),
  Layer.provide(pgLayer(`bench single ${mode}`))
)

const main = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  if (mode === "primary") {
    yield* host.spawnManaged("single", { id: "fo-single", kind: "other", producer: "forever" }, handlers.forever())
    console.log("ready")
  } else {
    const report = yield* host.recovery
    console.log(`ready respawned=${report.respawned.length}`)
  }
  return yield* Effect.never
}).pipe(Effect.provide(Host))

if (mode === "standby") console.log("standing by")
NodeRuntime.runMain(main as Effect.Effect<never, unknown>)
