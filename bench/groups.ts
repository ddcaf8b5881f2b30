/**
 * The scenario groups: each runs in its own Node process (`bench/child.ts`).
 */
import type { GroupResult, Settings } from "./harness.ts"

export interface Group {
  readonly name: string
  readonly scenarios: ReadonlyArray<number>
  readonly load: () => Promise<{ readonly run: (settings: Settings) => Promise<GroupResult> }>
}

export const groups: ReadonlyArray<Group> = [
  { name: "lifecycle", scenarios: [1], load: () => import("./groups/lifecycle.ts") },
  { name: "registry", scenarios: [2], load: () => import("./groups/registry.ts") },
  { name: "fanout", scenarios: [3], load: () => import("./groups/fanout.ts") },
  { name: "lookups", scenarios: [4], load: () => import("./groups/lookups.ts") },
  { name: "cancel", scenarios: [5], load: () => import("./groups/cancel.ts") },
  { name: "memory", scenarios: [6], load: () => import("./groups/memory.ts") },
  { name: "durable", scenarios: [7], load: () => import("./groups/durable.ts") }
]

export const groupNames: ReadonlyArray<string> = groups.map((g) => g.name)
