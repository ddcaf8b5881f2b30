/**
 * One task as the host holds it: its record, who owns the work, and what a
 * cancellation needs to know about it.
 *
 * Owns: the `Task` entry type, the `Owner` union and the per-task cancel
 * state. Calls nothing: the registry indexes tasks, the rooms act on them.
 *
 * Who owns a task is a tagged union, each variant carrying exactly its
 * fields (the way `FiberMap` keeps its state): a host-owned fiber
 * (`Managed`), work owned elsewhere with a cancel effect (`External`), or a
 * record the caller drives itself (`Caller`).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as Option from "effect/Option"
import type { BackgroundTaskRecord } from "../BackgroundTask.ts"
import type { Slot } from "./slots.ts"

/** A fiber the host runs for the task (`spawnManaged`, a recovered task). */
export interface Managed {
  readonly _tag: "Managed"
  /** The task's fiber, from its launch until it has exited. */
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  /**
   * Completed with the reason once cancellation is requested (after the step
   * that requested it); made when first awaited (`cancelSignal`).
   */
  signal: Deferred.Deferred<Option.Option<string>> | undefined
  /** The reason of the cancel request, once one was made. */
  requested: Option.Option<string> | undefined
  /** The concurrency slot it holds while it runs (only when limits are set). */
  slot: Slot | undefined
  /** Starts the fiber; set while the task waits in the queue for a slot. */
  launch: (() => void) | undefined
  /** Launched, its fiber not made yet: it starts after the step that launched it (counted in `stats.fibers`). */
  starting: boolean
}

/** Work owned elsewhere: the host runs its cancel effect, at most once. */
export interface External {
  readonly _tag: "External"
  /** The cancel effect, until it is taken. */
  cancel: Effect.Effect<void> | undefined
  /** Completed once the cancel effect has run and the record is cancelled. */
  cancelled: Deferred.Deferred<void> | undefined
}

/** A record its caller drives (`register`): the host has nothing to act on. */
export interface Caller {
  readonly _tag: "Caller"
}

export type Owner = Managed | External | Caller

/** What a cancellation of the task needs, whoever owns it. */
export interface Control {
  /** Set in the step that requests cancellation (`isCancelRequested` reads it). */
  requested: boolean
  /** The cooperative grace-period timer, while it runs. */
  timer: Fiber.Fiber<void> | undefined
  /** The task's grace period: its own, or the host's. */
  readonly grace: Duration.Duration
  /** Why the host stopped the task, for its record's summary. */
  stopReason: string | undefined
  /** Completed when the record becomes terminal (made when someone waits). */
  ended: Deferred.Deferred<void> | undefined
}

/** One record and everything the host can act on for it: one incarnation of a task id. */
export interface Task {
  /** Registration order (the `seq` of its `Registered`): oldest first. */
  readonly order: number
  record: BackgroundTaskRecord
  readonly owner: Owner
  readonly control: Control
  /** The live task this one was registered under, while both are held. */
  parent: Task | undefined
  /** The tasks registered under this one, while they are held. */
  children: Set<Task> | undefined
  /** Whether the record is in the queue of held terminal records. */
  retained: boolean
  /** Its links in the lists threaded through the tasks (`links.ts`): the registry's indexes, the running tasks. */
  readonly links: Array<Task | undefined>
  /**
   * Whether the registry still holds this incarnation. Once it is evicted,
   * replaced or unregistered, every late completion (a cancel effect, a grace
   * timer, a fiber's exit) that still points at it changes nothing.
   */
  held: boolean
}

export const managed = (): Managed => ({
  _tag: "Managed",
  fiber: undefined,
  signal: undefined,
  requested: undefined,
  slot: undefined,
  launch: undefined,
  starting: false
})

/**
 * The managed task's cancel signal, made when first awaited: one made after
 * the request is completed at once.
 */
export const cancelSignal = (owner: Managed): Deferred.Deferred<Option.Option<string>> => {
  if (owner.signal !== undefined) return owner.signal
  const signal = owner.signal = Deferred.makeUnsafe<Option.Option<string>>()
  if (owner.requested !== undefined) Deferred.doneUnsafe(signal, Exit.succeed(owner.requested))
  return signal
}

/** A cancel request for a managed task: its signal completes after the step (when someone waits on it). */
export const requestCancel = (owner: Managed, reason: Option.Option<string>, after: (f: () => void) => void): void => {
  owner.requested = reason
  const signal = owner.signal
  if (signal !== undefined) after(() => Deferred.doneUnsafe(signal, Exit.succeed(reason)))
}

export const external = (cancel: Effect.Effect<void> | undefined): External => ({
  _tag: "External",
  cancel,
  cancelled: undefined
})

export const caller: Caller = { _tag: "Caller" }

export const control = (grace: Duration.Duration): Control => ({
  requested: false,
  timer: undefined,
  grace,
  stopReason: undefined,
  ended: undefined
})

/** How the store names an owner. */
export const ownerName = (owner: Owner): "host" | "external" | "caller" =>
  owner._tag === "Managed" ? "host" : owner._tag === "External" ? "external" : "caller"

/** A managed task waiting in the queue for a concurrency slot: only a free slot starts it. */
export const isQueued = (task: Task): boolean => task.owner._tag === "Managed" && task.owner.launch !== undefined
