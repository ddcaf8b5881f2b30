/**
 * The docs stay true: docs/api.md is what scripts/api-docs.ts generates from
 * the current JSDoc and names every export; the guide and recipes exist and
 * every relative link in the docs and README points at a file that exists.
 * (Their ```ts blocks are type-checked by `npm test`: scripts/doc-examples.ts.)
 */
import { assert, describe, it } from "@effect/vitest"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import * as Package from "../src/index.ts"
import { describeEnd, root, runNode } from "./utils/child.ts"

const read = (path: string) => readFileSync(join(root, path), "utf8")

describe("docs", () => {
  it("docs/api.md is up to date with the JSDoc", async () => {
    const end = await runNode("scripts/api-docs.ts", ["--check"])
    assert.strictEqual(end.code, 0, describeEnd(end))
  }, 30_000)

  it("docs/api.md has a section for every runtime export", () => {
    const api = read("docs/api.md")
    for (const name of Object.keys(Package)) assert.include(api, `\n### ${name}\n`, `${name} is not in docs/api.md`)
  })

  it("the guide and the recipes cover what the issue asks for", () => {
    const guide = read("docs/guide.md")
    for (const heading of ["Concepts", "Lifecycle", "Events", "Cancel policies", "Close policies", "Shutdown"]) {
      assert.match(guide, new RegExp(`^## .*${heading}`, "m"), `guide: no "${heading}" section`)
    }
    const recipes = read("docs/recipes.md").split("\n").filter((line) => line.startsWith("## "))
    assert.deepStrictEqual(recipes, [
      "## 1. Cancel everything when a session ends",
      "## 2. Show progress in a UI",
      "## 3. Resume after compaction",
      "## 4. Limit concurrency",
      "## 5. Test with TestClock"
    ])
  })

  it("relative links in README.md and docs/ point at files that exist", () => {
    const files = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)]
    for (const file of files) {
      for (const [, target] of read(file).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue // http(s), mailto
        const path = join(root, dirname(file), target!)
        if (!path.startsWith(root)) continue // outside the repository (the shared SPEC.md)
        assert.isTrue(existsSync(path), `${file} links to ${target}, which does not exist`)
      }
    }
  })
})
