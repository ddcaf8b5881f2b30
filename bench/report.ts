/**
 * The targets (the per-task cost, fan-out and durable targets, and the
 * earlier ones for the registry, lookups and memory), and the two renderings of a
 * result file: the table printed on stdout and `docs/performance.md`.
 */
import { fmt, type Ratio, type ScenarioResult } from "./harness.ts"

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly memoryBytes: number
  readonly platform: string
  readonly loadAverageAtStart: ReadonlyArray<number>
}

export interface BenchResult {
  readonly schema: 1
  readonly mode: "full" | "quick"
  readonly startedAt: string
  readonly durationSeconds: number
  readonly machine: Machine
  readonly node: string
  readonly packages: Readonly<Record<string, string>>
  readonly settings: { readonly warmup: number; readonly reps: number; readonly groups: ReadonlyArray<string> }
  readonly scenarios: ReadonlyArray<ScenarioResult>
  readonly targets: ReadonlyArray<TargetResult>
}

interface Target {
  readonly text: string
  readonly ratio: string
  readonly scenario?: string
  readonly op: "<=" | ">=" | "<"
  readonly threshold: number
  /** A stretch goal on the same ratio and side (e.g. ≤ 3 where the target is ≤ 4): reported, never the status. */
  readonly moonshot?: number
  /** Set when the target does not apply yet: the ratio is reported, not judged. */
  readonly pending?: string
  /** Set when the target cannot be measured yet. */
  readonly skipped?: string
}

export interface TargetResult {
  readonly text: string
  readonly ratio: string
  readonly label: string | null
  readonly value: number | null
  readonly comparison: string
  readonly status: "met" | "missed" | "pending" | "skipped" | "not run"
  /** The stretch goal, and whether the measured ratio reaches it (null when there is no ratio). */
  readonly moonshot: { readonly comparison: string; readonly met: boolean | null } | null
  readonly note: string | null
}

const targets: ReadonlyArray<Target> = [
  { text: "Managed lifecycle ≤ 4× FiberMap.run", ratio: "vs-fibermap", op: "<=", threshold: 4, moonshot: 3 },
  {
    text: "Managed lifecycle faster than p-queue + Map of records + EventEmitter (the same Registered / Completed events)",
    ratio: "vs-pqueue-events",
    op: "<",
    threshold: 1
  },
  { text: "Registry lifecycle ≤ 2× raw Ref<Map>", ratio: "vs-ref-map", op: "<=", threshold: 2 },
  ...[1, 10, 100].map((s): Target => ({
    text: `Fan-out (${s} subscriber${s === 1 ? "" : "s"}) ≥ 0.8× the fair raw PubSub throughput`,
    scenario: `fanout-${s}`,
    ratio: "throughput-vs-fair-pubsub",
    op: ">=",
    threshold: 0.8
  })),
  {
    text: "Publisher with one never-reading subscriber within 10% of no subscriber",
    ratio: "throughput-vs-no-subscriber",
    op: ">=",
    threshold: 0.9
  },
  { text: "list({ sessionId }): largest size within 2× of the smallest", ratio: "list-scaling", op: "<=", threshold: 2 },
  { text: "listManaged: largest size within 2× of the smallest", ratio: "listManaged-scaling", op: "<=", threshold: 2 },
  {
    text: "cancelAllManaged of 10,000 tasks ≤ 2.5× FiberMap.clear",
    ratio: "vs-fibermap-clear",
    op: "<=",
    threshold: 2.5,
    moonshot: 2
  },
  { text: "≤ 1 KB heap per retained terminal record", ratio: "vs-1kb", op: "<=", threshold: 1 },
  {
    text: "Durable lifecycle on SQLite ≥ 2.5× BullMQ + Redis (AOF), the same retention",
    scenario: "durable",
    ratio: "sqlite-vs-bullmq",
    op: ">=",
    threshold: 2.5,
    moonshot: 3
  },
  {
    text: "Durable lifecycle on PostgreSQL ≥ 2× BullMQ + Redis (AOF), the same retention",
    scenario: "durable",
    ratio: "pg-vs-bullmq",
    op: ">=",
    threshold: 2
  }
]

const findRatio = (scenarios: ReadonlyArray<ScenarioResult>, target: Target): Ratio | undefined => {
  for (const scenario of scenarios) {
    if (target.scenario !== undefined && scenario.id !== target.scenario) continue
    const found = scenario.ratios.find((r) => r.id === target.ratio)
    if (found !== undefined) return found
  }
  return undefined
}

const holds = (value: number, op: Target["op"], threshold: number) =>
  op === "<=" ? value <= threshold : op === ">=" ? value >= threshold : value < threshold

export const evaluateTargets = (scenarios: ReadonlyArray<ScenarioResult>): ReadonlyArray<TargetResult> =>
  targets.map((target): TargetResult => {
    const comparison = `${target.op} ${target.threshold}`
    const ratio = target.skipped === undefined ? findRatio(scenarios, target) : undefined
    const moonshot = target.moonshot === undefined ? null : {
      comparison: `${target.op} ${target.moonshot}`,
      met: ratio === undefined ? null : holds(ratio.value, target.op, target.moonshot)
    }
    const base = { text: target.text, ratio: target.ratio, comparison, moonshot }
    if (target.skipped !== undefined) {
      return { ...base, label: null, value: null, status: "skipped", note: target.skipped }
    }
    if (ratio === undefined) {
      // a part of the scenario that the ratio needs was skipped (a server is absent)
      const skipped = scenarios.flatMap((s) => s.skippedParts ?? []).find((p) => p.ratios.includes(target.ratio))
      return skipped === undefined
        ? {
          ...base,
          label: null,
          value: null,
          status: "not run",
          note: `no scenario of this run has the ratio ${target.ratio}`
        }
        : { ...base, label: null, value: null, status: "skipped", note: `${skipped.part} not run: ${skipped.reason}` }
    }
    const met = holds(ratio.value, target.op, target.threshold)
    if (target.pending !== undefined) {
      return {
        ...base,
        label: ratio.label,
        value: ratio.value,
        status: "pending",
        note: `${target.pending}; would be ${met ? "met" : "missed"} today`
      }
    }
    return { ...base, label: ratio.label, value: ratio.value, status: met ? "met" : "missed", note: null }
  })

// -- rendering ------------------------------------------------------------------

const pad = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()).join("\n")
}

const ratioText = (value: number | null) => (value === null ? "-" : value.toFixed(2))

/** The stretch goal and whether it is reached: "<= 3: missed". */
const moonshotText = (t: TargetResult): string =>
  t.moonshot === null ? "" : `${t.moonshot.comparison}: ${t.moonshot.met === null ? "-" : t.moonshot.met ? "met" : "missed"}`

/** Each baseline that states why it is fair, once, with the scenarios it serves. */
const fairBaselines = (result: BenchResult) => {
  const byName = new Map<string, { why: string; scenarios: Array<string> }>()
  for (const s of result.scenarios) {
    for (const f of s.fairness ?? []) {
      const entry = byName.get(f.baseline)
      if (entry === undefined) byName.set(f.baseline, { why: f.why, scenarios: [s.id] })
      else entry.scenarios.push(s.id)
    }
  }
  return [...byName].map(([baseline, { scenarios, why }]) => ({ baseline, scenarios, why }))
}

/** The plain-text table printed on stdout. */
export const renderTable = (result: BenchResult): string => {
  const rows: Array<Array<string>> = [["scenario", "variant", "median", "min–max", "unit"]]
  for (const s of result.scenarios) {
    if (s.skipped !== undefined) {
      rows.push([`${s.scenario} ${s.id}`, "SKIPPED (see below)", "-", "-", ""])
      continue
    }
    for (const v of s.variants) {
      rows.push([`${s.scenario} ${s.id}`, v.name, fmt(v.median), `${fmt(v.min)}–${fmt(v.max)}`, s.unit])
    }
    for (const p of s.skippedParts ?? []) rows.push([`${s.scenario} ${s.id}`, `${p.part}: SKIPPED (see below)`, "-", "-", ""])
  }
  const ratioRows: Array<Array<string>> = [["scenario", "ratio", "value"]]
  for (const s of result.scenarios) {
    for (const r of s.ratios) ratioRows.push([s.id, r.label, ratioText(r.value)])
  }
  const targetRows: Array<Array<string>> = [["target", "measured", "needs", "status", "moonshot"]]
  for (const t of result.targets) targetRows.push([t.text, ratioText(t.value), t.comparison, t.status, moonshotText(t)])
  const skipped = result.scenarios.flatMap((s) => [
    ...(s.skipped !== undefined ? [`scenario ${s.scenario} (${s.id}) skipped: ${s.skipped}`] : []),
    ...(s.skippedParts ?? []).map((p) => `scenario ${s.scenario} (${s.id}): ${p.part} skipped: ${p.reason}`)
  ])
  return [pad(rows), ...skipped, "", pad(ratioRows), "", pad(targetRows)].join("\n")
}

/** Text safe in Markdown: `Ref<Map>` must not read as an HTML tag. */
const esc = (text: string): string => text.replaceAll("<", "&lt;").replaceAll(">", "&gt;")

const mdTable = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const [head, ...body] = rows
  const line = (r: ReadonlyArray<string>) => `| ${r.map((c) => esc(c).replaceAll("|", "\\|")).join(" | ")} |`
  return [line(head!), `|${head!.map(() => "---").join("|")}|`, ...body.map(line)].join("\n")
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`

/** `docs/performance.md`, generated from a result; `analysis` is appended as written by hand. */
export const renderMarkdown = (result: BenchResult, analysis: string | undefined): string => {
  const m = result.machine
  const out: Array<string> = []
  out.push("# Performance")
  out.push("")
  out.push(
    "<!-- Generated by `npm run bench` from bench/results/latest.json; do not edit by hand. " +
      "Hand-written analysis lives in bench/analysis.md and is appended below. -->"
  )
  out.push("")
  out.push(
    "Each scenario runs its host variant and its baselines in the same Node process, " +
      (result.mode === "quick" ? "every group in one process (a quick smoke run: tiny sizes, figures meaningless)" : "one process per scenario group") +
      `: ${result.settings.warmup} warm-up run, then ${result.settings.reps} measured repetitions, interleaved ` +
      "(the order rotates each repetition; the scenarios whose runs take tens of milliseconds, fan-out, the " +
      "publisher and cancellation, make 15, and cancellation three warm-up runs). Reported: median and min–max. Ratios are taken between medians; " +
      "absolute numbers drift on shared machines, ratios hold better."
  )
  out.push("")
  out.push("## Run")
  out.push("")
  out.push(mdTable([
    ["", ""],
    ["date", result.startedAt],
    ["mode", result.mode],
    ["duration", `${result.durationSeconds.toFixed(0)} s`],
    ["CPU", `${m.cpu}, ${m.cores} cores`],
    ["memory", gib(m.memoryBytes)],
    ["platform", m.platform],
    ["load average at start", m.loadAverageAtStart.map((x) => x.toFixed(2)).join(", ")],
    ["Node", result.node],
    ...Object.entries(result.packages).map(([name, version]) => [name, version])
  ]))
  out.push("")
  out.push("## Targets")
  out.push("")
  out.push(mdTable([
    ["target", "measured ratio", "needs", "status", "moonshot", "note"],
    ...result.targets.map((t) => [
      t.text,
      t.value === null ? "-" : `${ratioText(t.value)} (${t.label})`,
      t.comparison,
      t.status === "met" ? "met" : t.status === "missed" ? "**missed**" : t.status,
      moonshotText(t),
      t.note ?? ""
    ])
  ]))
  const baselines = fairBaselines(result)
  if (baselines.length > 0) {
    out.push("")
    out.push("## Why the baselines are fair")
    out.push("")
    for (const b of baselines) {
      out.push(`- **${esc(b.baseline)}** (${b.scenarios.join(", ")}): fair because ${esc(b.why)}.`)
    }
  }
  out.push("")
  out.push("## Scenarios")
  for (const s of result.scenarios) {
    out.push("")
    out.push(`### ${s.scenario}. ${esc(s.title)}`)
    out.push("")
    if (s.skipped !== undefined) {
      out.push(`Skipped: ${s.skipped}.`)
      continue
    }
    const params = Object.entries(s.params).map(([k, v]) => `${k} = ${typeof v === "number" ? v.toLocaleString("en-US") : v}`)
    out.push(`Parameters: ${params.join(", ")}. Unit: ${s.unit}.`)
    out.push("")
    out.push(mdTable([
      ["variant", "role", "median", "min–max"],
      ...s.variants.map((v) => [v.name, v.role, fmt(v.median), `${fmt(v.min)}–${fmt(v.max)}`]),
      ...(s.skippedParts ?? []).map((p) => [p.part, "skipped", "-", "-"])
    ]))
    out.push("")
    for (const r of s.ratios) out.push(`- ${esc(r.label)}: **${ratioText(r.value)}**`)
    for (const n of s.notes) out.push(`- ${esc(n)}`)
    for (const p of s.skippedParts ?? []) out.push(`- Skipped ${esc(p.part)}: ${esc(p.reason)}.`)
  }
  out.push("")
  out.push("## Reproduce")
  out.push("")
  out.push("```sh")
  out.push("npm ci")
  out.push("npm run bench                          # every group; writes bench/results/latest.json and this file")
  out.push("npm run bench -- --quick               # tiny sizes, results in a temp directory")
  out.push("npm run bench -- --only lifecycle,fanout --out /tmp/bench")
  out.push("npm run bench -- --quick --only cluster  # the cluster (a --quick run leaves it out unless named)")
  out.push("```")
  if (analysis !== undefined && analysis.trim().length > 0) {
    out.push("")
    out.push(analysis.trim())
  }
  out.push("")
  return out.join("\n")
}
