/**
 * The scenario groups: each runs in its own Node process (`bench/child.ts`).
 */
import type { GroupResult, Settings } from "./harness.ts"

export interface Group {
  readonly name: string
  readonly scenarios: ReadonlyArray<number>
  readonly load: () => Promise<{ readonly run: (settings: Settings) => Promise<GroupResult> }>
  /**
   * Set for a group that a `--quick` run leaves out unless it is named
   * (`--only`): why. A full run without `--only` runs every group.
   */
  readonly notInQuick?: string
}

export const groups: ReadonlyArray<Group> = [
  { name: "lifecycle", scenarios: [1], load: () => import("./groups/lifecycle.ts") },
  { name: "registry", scenarios: [2], load: () => import("./groups/registry.ts") },
  { name: "fanout", scenarios: [3], load: () => import("./groups/fanout.ts") },
  { name: "lookups", scenarios: [4], load: () => import("./groups/lookups.ts") },
  { name: "cancel", scenarios: [5], load: () => import("./groups/cancel.ts") },
  { name: "memory", scenarios: [6], load: () => import("./groups/memory.ts") },
  { name: "durable", scenarios: [7], load: () => import("./groups/durable.ts") },
  {
    name: "cluster",
    scenarios: [8],
    load: () => import("./groups/cluster.ts"),
    // a full run: about 2 minutes, against about 4 for the rest
    notInQuick: "it starts runner processes and takes half a minute or more even at quick sizes: " +
      "the quick smoke run (which npm test makes) stays in one process"
  }
]

export const groupNames: ReadonlyArray<string> = groups.map((g) => g.name)

/** The groups a run without `--only` runs: every group, but a quick run leaves out the `notInQuick` ones. */
export const defaultGroupNames = (quick: boolean): ReadonlyArray<string> =>
  groups.filter((g) => !quick || g.notInQuick === undefined).map((g) => g.name)
