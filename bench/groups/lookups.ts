/**
 * Scenario 4, lookups: `list({ sessionId })` and `listManaged(sessionId)` with
 * 10 matching records among 10k / 100k / 1M held — vs a linear scan over the
 * same records. The 10 records of the looked-up session are spread evenly
 * among the others (sessions of 100 records each), so a scan must visit all.
 * One host per size is filled once (not timed) and serves every repetition;
 * each repetition times a batch of calls and reports microseconds per call.
 */
import { Effect } from "effect"
import { type BackgroundTaskRecord, isTerminal } from "../../src/index.ts"
import {
  check,
  consume,
  type GroupResult,
  measure,
  medianOf,
  runNumber,
  type ScenarioResult,
  type Settings,
  timed
} from "../harness.ts"
import { type Host, withHost } from "../host.ts"

const target = "target"
const matching = 10

const fill = (host: Host, held: number) =>
  Effect.gen(function*() {
    const every = Math.floor(held / matching)
    let other = 0
    for (let i = 0; i < held; i++) {
      const inTarget = i % every === every - 1 && i < every * matching
      const sessionId = inTarget ? target : `s-${Math.floor(other++ / 100)}`
      yield* host.register({ scope: { sessionId }, id: `t-${i}`, kind: "other", producer: "bench" })
    }
  })

/** `calls` calls of `lookup`; µs per call. */
const perCall = (calls: number, lookup: Effect.Effect<ReadonlyArray<BackgroundTaskRecord>, unknown>) =>
  timed(Effect.gen(function*() {
    let found = 0
    for (let i = 0; i < calls; i++) found += (yield* lookup).length
    check(found === calls * matching, `each lookup found ${matching} records`)
    return found
  })).pipe(Effect.map((ms) => (ms * 1000) / calls))

const linearScan = (records: ReadonlyArray<BackgroundTaskRecord>) =>
  Effect.sync(() => {
    const out: Array<BackgroundTaskRecord> = []
    for (const record of records) {
      if (record.scope.sessionId === target && !isTerminal(record.state)) out.push(record)
    }
    return out
  })

/** Runs `use` with a host holding `held` records, and those records as an array. */
const withFilledHost = <A>(
  held: number,
  use: (host: Host, records: ReadonlyArray<BackgroundTaskRecord>) => Promise<A>
): Promise<A> =>
  Effect.runPromise(
    withHost({}, (host) =>
      Effect.gen(function*() {
        yield* fill(host, held)
        const records = yield* host.list({ includeTerminal: true })
        check(records.length === held, "every record held")
        return yield* Effect.promise(() => use(host, records))
      })
    )
  )

export const run = async (settings: Settings): Promise<GroupResult> => {
  const sizes = settings.quick ? [100, 300, 1000] : [10_000, 100_000, 1_000_000]
  const hostCalls = settings.quick ? 50 : 200_000
  const scenarios: Array<ScenarioResult> = []
  const perSize: Array<{ readonly held: number; readonly list: number; readonly listManaged: number }> = []
  for (const held of sizes) {
    process.stderr.write(`  4 lookups: filling a host with ${held} records\n`)
    // a scan batch visits about 20M records (at least 3 calls)
    const scanCalls = Math.max(3, Math.round((settings.quick ? 20_000 : 20_000_000) / held))
    const results = await withFilledHost(held, (host, records) =>
      measure(`4 lookups ${held}`, settings, [
        {
          name: "host list({ sessionId })",
          role: "host",
          run: () => runNumber(perCall(hostCalls, host.list({ sessionId: target })))
        },
        {
          name: "host listManaged(sessionId)",
          role: "host",
          run: () => runNumber(perCall(hostCalls, host.listManaged(target)))
        },
        { name: "linear scan", role: "baseline", run: () => runNumber(perCall(scanCalls, linearScan(records))) }
      ]))
    consume(results)
    const list = medianOf(results, "host list({ sessionId })")
    const listManaged = medianOf(results, "host listManaged(sessionId)")
    const scan = medianOf(results, "linear scan")
    perSize.push({ held, list, listManaged })
    scenarios.push({
      id: `lookups-${held}`,
      scenario: 4,
      group: "lookups",
      title: `Lookups: ${matching} matching records among ${held.toLocaleString("en-US")} held`,
      unit: "µs/call",
      params: { held, matching, hostCalls, scanCalls },
      variants: results,
      ratios: [
        { id: "list-vs-scan", label: "list({ sessionId }) time / linear scan time", value: list / scan },
        { id: "listManaged-vs-scan", label: "listManaged time / linear scan time", value: listManaged / scan }
      ],
      notes: []
    })
  }
  // the scaling target: the largest size against the smallest, on the largest size's scenario
  const smallest = perSize[0]!
  const largest = perSize[perSize.length - 1]!
  const last = scenarios.pop()!
  scenarios.push({
    ...last,
    ratios: [
      ...last.ratios,
      {
        id: "list-scaling",
        label: `list({ sessionId }) time at ${largest.held} held / at ${smallest.held} held`,
        value: largest.list / smallest.list
      },
      {
        id: "listManaged-scaling",
        label: `listManaged time at ${largest.held} held / at ${smallest.held} held`,
        value: largest.listManaged / smallest.listManaged
      }
    ]
  })
  return { group: "lookups", scenarios }
}
