/**
 * Measurement: warm-up, then measured repetitions of every variant of a
 * scenario, interleaved (rep 1: A B C, rep 2: B C A, ...) so that drift on a
 * shared machine hits host and baselines alike. Results are plain JSON.
 */
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { join } from "node:path"

export type Role = "host" | "baseline" | "info"

export interface VariantResult {
  readonly name: string
  readonly role: Role
  readonly samples: ReadonlyArray<number>
  readonly median: number
  readonly min: number
  readonly max: number
}

export interface Ratio {
  readonly id: string
  /** What the number means, e.g. "host time / FiberMap time". */
  readonly label: string
  readonly value: number
}

export interface ScenarioResult {
  readonly id: string
  readonly scenario: number
  readonly group: string
  readonly title: string
  /** Unit of every variant's samples, e.g. "ms", "µs/call", "bytes/record". */
  readonly unit: string
  readonly params: Readonly<Record<string, number | string>>
  readonly variants: ReadonlyArray<VariantResult>
  readonly ratios: ReadonlyArray<Ratio>
  readonly notes: ReadonlyArray<string>
  /** Why a baseline is a fair comparison, one sentence each (rendered under "Why the baselines are fair" in docs/performance.md). */
  readonly fairness?: ReadonlyArray<Fairness>
  /** Set when the scenario was not run; then `variants` and `ratios` are empty. */
  readonly skipped?: string
  /** Parts of a scenario that were not run (a server is absent): why, and the ratios left out. */
  readonly skippedParts?: ReadonlyArray<SkippedPart>
}

export interface Fairness {
  /** The baseline variant's name. */
  readonly baseline: string
  /** Why it is fair: a sentence, starting lower-case ("it ..."). */
  readonly why: string
}

export interface SkippedPart {
  /** The variant not measured. */
  readonly part: string
  readonly reason: string
  /** Ids of the ratios that need it. */
  readonly ratios: ReadonlyArray<string>
}

export interface GroupResult {
  readonly group: string
  readonly scenarios: ReadonlyArray<ScenarioResult>
}

export interface Settings {
  readonly quick: boolean
  readonly warmup: number
  readonly reps: number
  /** Profiling: run only the host variants (the others get NaN); results are not for reports. */
  readonly hostOnly?: boolean
  /** Profiling: write a CPU profile of the timed part of each host variant's last repetition here. */
  readonly profileDir?: string
}

/**
 * Full runs: one warm-up run and five measured repetitions of each variant.
 * `--quick` (a smoke run: every scenario at tiny sizes, figures meaningless)
 * keeps the warm-up and two repetitions, enough to exercise the
 * interleaving and the median / min / max, and skips the major GC before
 * each run (the memory group still collects around what it weighs).
 */
export const settingsFor = (quick: boolean): Settings => ({ quick, warmup: 1, reps: quick ? 2 : 5 })

/**
 * The settings for a scenario whose runs take tens of milliseconds (fan-out,
 * the publisher, cancellation): 15 measured repetitions instead of 5, for
 * every variant. A median of five such runs moves with one run that a timer,
 * a collection or another process lands in (`FiberMap.clear` ranged
 * 9.9–22.1 ms within one full run), and a ratio of two such medians more so.
 */
export const shortRuns = (settings: Settings): Settings => settings.quick ? settings : { ...settings, reps: 15 }

export interface Variant {
  readonly name: string
  readonly role: Role
  /** One run; resolves to the measured value (time or bytes). */
  readonly run: () => Promise<number>
}

/** A major GC, when the process runs with `--expose-gc`. */
export const collectGarbage = (): void => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    gc()
  }
}

export const hasGc = (): boolean => typeof (globalThis as { gc?: unknown }).gc === "function"

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Sink for values a benchmark computes, so the engine cannot drop the work. */
export let sink: unknown = undefined
export const consume = (value: unknown): void => {
  sink = value
}

const log = (line: string) => process.stderr.write(`  ${line}\n`)

/** Warm-up runs (not recorded), then `reps` interleaved measured runs of each variant. */
export const measure = async (
  label: string,
  settings: Settings,
  variants: ReadonlyArray<Variant>,
  warmupVariants: ReadonlyArray<Variant> = variants
): Promise<ReadonlyArray<VariantResult>> => {
  const skip = (variant: Variant) => settings.hostOnly === true && variant.role !== "host"
  for (let w = 0; w < settings.warmup; w++) {
    for (const variant of warmupVariants) {
      if (skip(variant)) continue
      if (!settings.quick) collectGarbage()
      await variant.run()
    }
  }
  const samples = variants.map(() => [] as Array<number>)
  for (let rep = 0; rep < settings.reps; rep++) {
    for (let k = 0; k < variants.length; k++) {
      const index = (rep + k) % variants.length
      const variant = variants[index]!
      if (skip(variant)) {
        samples[index]!.push(Number.NaN)
        continue
      }
      if (!settings.quick) collectGarbage()
      const profiled = settings.profileDir !== undefined && variant.role === "host" && rep === settings.reps - 1
      if (profiled) profiler.armed = true
      const value = await variant.run()
      if (profiled) {
        profiler.armed = false
        const file = join(settings.profileDir!, `${`${label} ${variant.name}`.replace(/[^A-Za-z0-9]+/g, "-")}.cpuprofile`)
        writeFileSync(file, JSON.stringify(profiler.last))
        log(`profile of the timed part: ${file}`)
      }
      if (!Number.isFinite(value)) throw new Error(`${label} / ${variant.name}: measured ${value}`)
      samples[index]!.push(value)
    }
  }
  const results = variants.map((variant, i): VariantResult => {
    const xs = samples[i]!
    return {
      name: variant.name,
      role: variant.role,
      samples: xs,
      median: median(xs),
      min: Math.min(...xs),
      max: Math.max(...xs)
    }
  })
  for (const r of results) log(`${label} | ${r.name}: median ${fmt(r.median)} (${fmt(r.min)}–${fmt(r.max)})`)
  return results
}

export const fmt = (x: number): string =>
  Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3)

/** The median of the named variant. */
export const medianOf = (results: ReadonlyArray<VariantResult>, name: string): number => {
  const found = results.find((r) => r.name === name)
  if (found === undefined) throw new Error(`no variant ${name}`)
  return found.median
}

/**
 * The in-process CPU profiler used with `profileDir`: when armed, `timed`
 * profiles exactly the part it times. (The in-thread inspector session
 * answers synchronously.)
 */
const profiler: { armed: boolean; session: Session | undefined; last: unknown } = {
  armed: false,
  session: undefined,
  last: undefined
}

const post = (method: string, params?: object): unknown => {
  let result: unknown
  let failure: unknown
  profiler.session!.post(method, params ?? {}, (error: Error | null, value: unknown) => {
    failure = error
    result = value
  })
  if (failure !== null && failure !== undefined) throw failure
  return result
}

const startProfile = () => {
  if (!profiler.armed) return
  if (profiler.session === undefined) {
    profiler.session = new Session()
    profiler.session.connect()
    post("Profiler.enable")
    post("Profiler.setSamplingInterval", { interval: 50 }) // µs: enough samples in a 100 ms run
  }
  post("Profiler.start")
}

const stopProfile = () => {
  if (!profiler.armed) return
  profiler.last = (post("Profiler.stop") as { profile: unknown } | undefined)?.profile
}

/** Milliseconds an effect takes, measured with the monotonic clock. */
export const timed = <E, R>(effect: Effect.Effect<unknown, E, R>): Effect.Effect<number, E, R> =>
  Effect.suspend(() => {
    startProfile()
    const start = performance.now()
    return Effect.map(effect, (value) => {
      const ms = performance.now() - start
      stopProfile()
      consume(value)
      return ms
    })
  })

/** Runs an effect that yields a measured number. */
export const runNumber = (effect: Effect.Effect<number, unknown>): Promise<number> => Effect.runPromise(effect)

/** Fails the benchmark (not the measurement) when a run did not do what it claims. */
export const check = (condition: boolean, message: string): void => {
  if (!condition) throw new Error(`benchmark check failed: ${message}`)
}
