/**
 * Extracts every ```ts block of README.md, docs/*.md and the JSDoc in src/ into
 * test/doc-examples/ (ignored by git), so that `npm test`'s typecheck proves each example compiles.
 * Examples import the package by name; tsconfig's `paths` maps it to src/ (and
 * vitest.config.ts's alias does, for the blocks that are tests).
 *
 * A block that imports @effect/vitest is a test: it is written as `<name>.test.ts`, so
 * `vitest run` runs it like any other test file. Blocks marked `<!-- run -->` are run
 * against the packed package by test/package.test.ts (see scripts/doc-blocks.ts).
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"
import { blockName, docBlocks, isTest } from "./doc-blocks.ts"

const root = join(import.meta.dirname, "..")
const out = join(root, "test", "doc-examples")

const blocks = docBlocks(root)
rmSync(out, { recursive: true, force: true })
mkdirSync(out)
for (const block of blocks) {
  // each block is its own module; its top-level declarations are exported so
  // that an example which only defines something is not an unused local
  const exported = block.code.replace(/^(const|class|function) /gm, "export $1 ")
  writeFileSync(join(out, `${blockName(block)}${isTest(block) ? ".test" : ""}.ts`), `${exported}\nexport {}\n`)
}
const tests = blocks.filter(isTest).length
const runs = blocks.filter((block) => block.run !== undefined).length
console.log(`doc examples: ${blocks.length} extracted to ${relative(root, out)}/`)
console.log(`  ${tests} of them are tests (vitest runs them), ${runs} show their output (test/package.test.ts runs them)`)
