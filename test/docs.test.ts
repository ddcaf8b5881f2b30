/**
 * The docs stay true: docs/api.md is what scripts/api-docs.ts generates from
 * the current JSDoc and names every export; the guide and recipes exist; every
 * relative link in the docs and README points at a file in the repository, and
 * nothing in the repository refers to a file outside it; the README's sample
 * of `npm start` is what it prints; output shown in a ```text block belongs to
 * a program that test/package.test.ts runs. (Every ```ts block is
 * type-checked by `npm test`, and the blocks that are tests run with the
 * suite: scripts/doc-examples.ts.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { blockName, docBlocks, isTest } from "../scripts/doc-blocks.ts"
import * as Package from "../src/index.ts"
import { describeEnd, parseTable, root, runNode } from "./utils/child.ts"

const read = (path: string) => readFileSync(join(root, path), "utf8")
const markdown = [
  "README.md",
  ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)
]

/** Every file of the repository but installed, built, generated and git's own. */
const repositoryFiles = (dir = root): ReadonlyArray<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    const rel = relative(root, path)
    if ([".git", "node_modules", "dist", ".probe", "test/doc-examples"].includes(rel)) return []
    return statSync(path).isDirectory() ? repositoryFiles(path) : [rel]
  })

describe.concurrent("docs", () => {
  it("docs/api.md is up to date with the JSDoc", async () => {
    const end = await runNode("scripts/api-docs.ts", ["--check"])
    assert.strictEqual(end.code, 0, describeEnd(end))
  }, 60_000)

  it("docs/api.md has a section for every runtime export", () => {
    const api = read("docs/api.md")
    for (const name of Object.keys(Package)) assert.include(api, `\n### ${name}\n`, `${name} is not in docs/api.md`)
  })

  it("the guide and the recipes cover what a newcomer needs", () => {
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
    assert.include(read("docs/recipes.md"), "### Closing a session that waits out a grace period")
  })

  it.effect("the contract covers the data, the errors, every method and the rules", () =>
    Effect.gen(function*() {
      const contract = read("docs/contract.md")
      for (const heading of ["1. Data", "2. Errors", "3. The service", "4. Rules", "5. The task context"]) {
        assert.include(contract, `\n## ${heading}\n`)
      }
      // every member of the service, with a row in the method table
      const methods = Object.keys(yield* Package.BackgroundTaskHost)
      assert.isAbove(methods.length, 20)
      for (const method of methods) {
        assert.match(contract, new RegExp(`^\\| \`${method}[(\`]`, "m"), `contract.md: no row for ${method}`)
      }
      // every error
      const errors = Object.keys(Package)
        .filter((name) => /Error$|^Task(NotFound|AlreadyExists)$|^InvalidTransition$/.test(name))
      assert.isAtLeast(errors.length, 9)
      for (const error of [...errors, "LeaseHeld", "CorruptRecord"]) {
        assert.include(contract, `\`${error}`, `contract.md: ${error}`)
      }
    }).pipe(Effect.provide(Package.BackgroundTaskHost.layer)))

  it("relative links in README.md and docs/ point at files in the repository", () => {
    for (const file of markdown) {
      for (const [, target] of read(file).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue // http(s), mailto
        const path = join(root, dirname(file), target!)
        assert.isFalse(relative(root, path).startsWith(".."), `${file} links outside the repository: ${target}`)
        assert.isTrue(existsSync(path), `${file} links to ${target}, which does not exist`)
      }
    }
  })

  it("the test files README.md and docs/ name (`test/…`) exist", () => {
    for (const file of markdown) {
      for (const [, path] of read(file).matchAll(/`(test\/[\w./-]+\.ts)`/g)) {
        assert.isTrue(existsSync(join(root, path!)), `${file} names ${path}, which does not exist`)
      }
    }
  })

  it("nothing in the repository refers to a file outside it, or to a tracker's issue numbers", () => {
    const outside = [/(?:\.\.\/)+shared\//, /\/work\//, /\bSPEC\b/, /\b[Ii]ssues? #?\d/]
    // still to be fixed in files this change may not touch; remove each line once it is fixed
    const known = new Set<string>([])
    const found: Array<string> = []
    for (const file of repositoryFiles()) {
      if (file === "test/docs.test.ts") continue // the patterns above
      const lines = read(file).split("\n")
      lines.forEach((line, i) => {
        if (outside.some((pattern) => pattern.test(line)) && !known.has(`${file}:${line}`)) {
          found.push(`${file}:${i + 1}: ${line.trim()}`)
        }
      })
    }
    assert.deepStrictEqual(found, [])
  })

  it("output shown in a ```text block is the output of a program the docs mark to run", () => {
    const textBlocks = markdown.flatMap((file) =>
      read(file).split("\n").flatMap((line, i) => line.trim() === "```text" ? [`${file}:${i + 1}`] : [])
    )
    const programs = docBlocks(root).filter((block) => block.run !== undefined)
    assert.strictEqual(textBlocks.length, programs.length, `text blocks: ${textBlocks.join(", ")}`)
    // the README's quickstart and the guide's Ctrl-C example are among them
    assert.isTrue(programs.some((block) => block.file === "README.md" && block.code.includes("spawnManaged")))
    assert.isTrue(programs.some((block) => block.file === "docs/guide.md" && block.run!.interruptAfter !== undefined))
  })

  it("test/doc-examples/ holds the current examples (npm test extracts them first)", () => {
    for (const block of docBlocks(root)) {
      const path = join(root, "test", "doc-examples", `${blockName(block)}${isTest(block) ? ".test" : ""}.ts`)
      assert.isTrue(existsSync(path), `${path} is missing: run node scripts/doc-examples.ts`)
      const code = readFileSync(path, "utf8").replace(/^export (const|class|function) /gm, "$1 ")
      assert.strictEqual(code, `${block.code}\nexport {}\n`, `${path} is stale: run node scripts/doc-examples.ts`)
    }
  })

  it("the README's sample of npm start is what it prints, but for the times and the monitor's count", async () => {
    const readme = read("README.md")
    const section = readme.slice(readme.indexOf("## `npm start`"))
    const sample = section.slice(section.indexOf("```\n") + 4, section.indexOf("\n```", section.indexOf("```\n") + 4))
      .split("\n")
    const env = { ...process.env, NO_COLOR: "1" }
    const run = await runNode("examples/agent-session.ts", [], { env, timeoutMs: 50_000 })
    assert.strictEqual(run.code, 0, describeEnd(run))
    const event = (line: string) => /^\[\s*\d+\.\d{2}s\] (.*)$/.exec(line)?.[1]
    const printed = new Set(run.lines.flatMap((line) => event(line) ?? []))
    const shown = sample.flatMap((line) => event(line) ?? [])
    assert.isAbove(shown.length, 20)
    for (const line of shown) assert.isTrue(printed.has(line), `the README shows "${line}"\n${describeEnd(run)}`)
    // the summary table: the same rows, but for the durations and how many checks the monitor made
    const columns = ["task", "kind", "session", "state", "duration", "summary"]
    const normal = (rows: ReadonlyArray<Record<string, string>>) =>
      rows.map((row) => {
        assert.match(row.duration!, /^\d+\.\d{2}s$/)
        const summary = row.summary!.replace(/^stopped after \d+ checks$/, "stopped after N checks")
        return { ...row, duration: "", summary }
      })
    const shownTable = normal(parseTable(sample, columns))
    assert.strictEqual(shownTable.length, 9)
    assert.deepStrictEqual(normal(parseTable(run.lines, columns)), shownTable, describeEnd(run))
    assert.include(run.lines, sample.at(-1)!, "the closing count")
  }, 60_000)
})
