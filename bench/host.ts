/**
 * The host under test: the ONE place where the benchmark builds it.
 *
 * Every scenario gets its host from `withHost`, so when the host gains options
 * only `hostOptions` below changes. What the bench needs:
 *
 * - `retention: { maxTerminal, maxAge }` (default 10,000 terminal records, 1
 *   hour): the memory scenario measures 1M *retained* terminal records, so
 *   `retainAllTerminal` must then map to
 *   `retention: { maxTerminal: Infinity, maxAge: Infinity }`.
 * - `subscriberBuffer` (default 4,096): the fan-out scenario's subscribers must
 *   each read every one of N events; a publisher running ahead by more than the
 *   buffer would make them lag. `losslessSubscribers` must then map to a buffer
 *   of at least N (or unbounded, if the option allows it). The never-reading
 *   subscriber of scenarios 3 and 6 must keep the DEFAULT buffer: that is the
 *   behaviour those scenarios measure.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { BackgroundTaskHost, type BackgroundTaskHostOptions, type TaskStore } from "../src/index.ts"

export type Host = BackgroundTaskHost["Service"]

export interface BenchHostOptions {
  /** Keep every terminal record (the memory scenario at 1M records). */
  readonly retainAllTerminal?: boolean
  /** Subscribers that never lose an event however far behind they are (fan-out). */
  readonly losslessSubscribers?: boolean
}

/** The host's options for a bench profile. */
export const hostOptions = (options: BenchHostOptions): BackgroundTaskHostOptions => ({
  ...(options.retainAllTerminal === true ? { retention: { maxTerminal: Infinity, maxAge: Infinity } } : {}),
  // a buffer no scenario reaches: these subscribers see every event
  ...(options.losslessSubscribers === true ? { subscriberBuffer: 1_000_000_000 } : {})
})

/** Builds a fresh host, runs `f` with it, then closes the host's layer. */
export const withHost = <A, E, R>(
  options: BenchHostOptions,
  f: (host: Host) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, Scope.Scope>> =>
  Effect.scoped(
    Layer.build(BackgroundTaskHost.layerWith(hostOptions(options))).pipe(
      Effect.orDie,
      Effect.flatMap((context) => f(Context.get(context, BackgroundTaskHost)))
    )
  )

/**
 * Builds a fresh host on a durable store (scenario 7): default options, a
 * 30-second lease; runs `f` with it, then closes the host's layer (which
 * commits its last writes and releases the lease).
 */
export const withStoreHost = <A, E, R>(
  store: Layer.Layer<TaskStore, unknown>,
  f: (host: Host) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, Scope.Scope>> =>
  Effect.scoped(
    Layer.build(
      BackgroundTaskHost.layerStore({ ...hostOptions({}), lease: { ttl: "30 seconds" } }).pipe(Layer.provide(store))
    ).pipe(
      Effect.orDie,
      Effect.flatMap((context) => f(Context.get(context, BackgroundTaskHost)))
    )
  )
