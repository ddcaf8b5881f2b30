/**
 * telemetry out of the process: the recipe of docs/observability.md
 * (effect's `Otlp.layerJson` over `FetchHttpClient`, beside the host's layer)
 * sends the host's `background_task` spans and its metrics to an OTLP/HTTP
 * collector. The collector here is a small receiver in this process, on
 * 127.0.0.1: it records what it is sent, and the test reads the spans (their
 * parents and attributes) and the metrics (their values, by kind).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import { Otlp } from "effect/observability"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { BackgroundTaskHost, TaskContext, TaskMetrics } from "../src/index.ts"

interface Receiver {
  readonly baseUrl: string
  /** Bodies received, by path, parsed as JSON. */
  readonly received: Map<string, Array<any>>
  readonly close: () => Promise<void>
}

/** An OTLP/HTTP (JSON) receiver: answers every POST with 200 and keeps its body. */
const startReceiver = () =>
  new Promise<Receiver>((resolve) => {
    const received = new Map<string, Array<any>>()
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const path = request.url ?? ""
        const bodies = received.get(path) ?? []
        bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")))
        received.set(path, bodies)
        response.writeHead(200, { "content-type": "application/json" })
        response.end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        baseUrl: `http://127.0.0.1:${port}`,
        received,
        close: () => new Promise((done) => server.close(() => done()))
      })
    })
  })

/** The recipe: effect's OTLP exporter for logs, metrics and traces, over fetch. */
const telemetryLayer = (baseUrl: string) =>
  Otlp.layerJson({ baseUrl, resource: { serviceName: "agent-runtime" } }).pipe(Layer.provide(FetchHttpClient.layer))

const attributes = (list: ReadonlyArray<{ key: string; value: Record<string, unknown> }> | undefined) =>
  Object.fromEntries((list ?? []).map(({ key, value }) => [key, Object.values(value)[0]]))

const spansOf = (bodies: ReadonlyArray<any>) =>
  bodies.flatMap((body) => body.resourceSpans.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans))) as Array<any>

/** The latest value of each data point of a metric, keyed by its `kind` attribute (cumulative export: the last payload wins). */
const metricByKind = (bodies: ReadonlyArray<any>, name: string) => {
  const out = new Map<string, any>()
  for (const body of bodies) {
    for (const resource of body.resourceMetrics) {
      for (const scope of resource.scopeMetrics) {
        for (const metric of scope.metrics) {
          if (metric.name !== name) continue
          const points = metric.sum?.dataPoints ?? metric.gauge?.dataPoints ?? metric.histogram?.dataPoints ?? []
          for (const point of points) out.set(String(attributes(point.attributes).kind), point)
        }
      }
    }
  }
  return out
}

const numberOf = (point: any) => Number(point?.asInt ?? point?.asDouble ?? point?.count)

describe("telemetry out of the process", () => {
  it("the host's background_task spans (parent and child, with their attributes) and its metrics reach an OTLP collector", async () => {
    const receiver = await startReceiver()
    try {
      // the metrics are process-wide (other test files in this worker count too): compare deltas
      const kinds = ["subagent", "observer"] as const
      const before = await Effect.runPromise(Effect.forEach(kinds, (kind) =>
        Effect.all({
          started: Metric.value(Metric.withAttributes(TaskMetrics.started, { kind })),
          completed: Metric.value(Metric.withAttributes(TaskMetrics.completed, { kind })),
          live: Metric.value(Metric.withAttributes(TaskMetrics.live, { kind })),
          duration: Metric.value(Metric.withAttributes(TaskMetrics.duration, { kind }))
        })))
      const program = Effect.gen(function*() {
        const host = yield* BackgroundTaskHost
        const events = yield* host.subscribe()
        const child = Effect.gen(function*() {
          yield* (yield* TaskContext).progress("reading")
          return "read 3 files"
        })
        // a subagent that starts an observer under it: the observer's span is a child of the subagent's
        yield* host.spawnManaged("session-1", { id: "planner", kind: "subagent", producer: "agent" }, Effect.gen(function*() {
          const mine = yield* host.subscribe()
          yield* host.spawnManaged("session-1", { id: "reader", kind: "observer", producer: "planner", parentTaskId: "planner" }, child)
          yield* Stream.runHead(Stream.filter(mine, (e) => e._tag === "Completed" && e.taskId === "reader"))
          return "planned"
        }))
        yield* Stream.runHead(Stream.filter(events, (e) => e._tag === "Completed" && e.taskId === "planner"))
      }).pipe(
        Effect.withSpan("handle-request"),
        Effect.scoped,
        // closing the layers exports what is left (the exporter flushes at shutdown)
        Effect.provide(Layer.mergeAll(BackgroundTaskHost.layer, telemetryLayer(receiver.baseUrl)))
      )
      await Effect.runPromise(program)

      const spans = spansOf(receiver.received.get("/v1/traces") ?? [])
      const request = spans.find((span) => span.name === "handle-request")
      const tasks = spans.filter((span) => span.name === "background_task")
      const planner = tasks.find((span) => attributes(span.attributes).task_id === "planner")
      const reader = tasks.find((span) => attributes(span.attributes).task_id === "reader")
      assert.isDefined(request, "the caller's span arrived")
      assert.isDefined(planner, "the parent task's span arrived")
      assert.isDefined(reader, "the child task's span arrived")
      assert.strictEqual(tasks.length, 2)
      // one trace: request → planner → reader
      assert.strictEqual(planner.parentSpanId, request.spanId)
      assert.strictEqual(reader.parentSpanId, planner.spanId)
      assert.strictEqual(reader.traceId, request.traceId)
      assert.deepStrictEqual(attributes(planner.attributes), {
        task_id: "planner",
        kind: "subagent",
        session_id: "session-1",
        producer: "agent",
        attempt: 0
      })
      assert.deepStrictEqual(attributes(reader.attributes), {
        task_id: "reader",
        kind: "observer",
        session_id: "session-1",
        producer: "planner",
        attempt: 0
      })
      const traces = receiver.received.get("/v1/traces")![0]
      assert.deepStrictEqual(
        attributes(traces.resourceSpans[0].resource.attributes)["service.name"],
        "agent-runtime"
      )

      const metrics = receiver.received.get("/v1/metrics") ?? []
      assert.isAbove(metrics.length, 0, "metrics arrived")
      const started = metricByKind(metrics, "background_tasks_started")
      const completed = metricByKind(metrics, "background_tasks_completed")
      const live = metricByKind(metrics, "background_tasks_live")
      const duration = metricByKind(metrics, "background_task_duration_seconds")
      kinds.forEach((kind, i) => {
        const was = before[i]!
        assert.strictEqual(numberOf(started.get(kind)), was.started.count + 1, `started ${kind}`)
        assert.strictEqual(numberOf(completed.get(kind)), was.completed.count + 1, `completed ${kind}`)
        assert.strictEqual(numberOf(live.get(kind)), was.live.value, `live ${kind}`)
        assert.strictEqual(Number(duration.get(kind)?.count), was.duration.count + 1, `duration ${kind}`)
      })
    } finally {
      await receiver.close()
    }
  })
})
