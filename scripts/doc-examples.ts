/**
 * Extracts every ```ts block of README.md, docs/*.md and the JSDoc in src/ into
 * test/doc-examples/ (ignored by git), so that `npm test`'s typecheck proves each example compiles.
 * Examples import the package by name; tsconfig's `paths` maps it to src/.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"

const root = join(import.meta.dirname, "..")
const out = join(root, "test", "doc-examples")

const sources = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : []
  })

const blocks = (text: string, jsdoc: boolean): Array<string> => {
  const lines = text.split("\n").map((line) => jsdoc ? line.replace(/^\s*\* ?/, "") : line)
  const found: Array<string> = []
  let current: Array<string> | undefined
  for (const line of lines) {
    if (current === undefined && /^```ts\b/.test(line.trim())) current = []
    else if (current !== undefined && line.trim() === "```") {
      found.push(current.join("\n"))
      current = undefined
    } else if (current !== undefined) current.push(line)
  }
  return found
}

rmSync(out, { recursive: true, force: true })
mkdirSync(out)
let count = 0
const emit = (file: string, code: string[]) =>
  code.forEach((block, i) => {
    const name = `${relative(root, file).replace(/[\\/.]/g, "_")}_${i}.ts`
    // each block is its own module; its top-level declarations are exported so
    // that an example which only defines something is not an unused local
    const exported = block.replace(/^(const|class|function) /gm, "export $1 ")
    writeFileSync(join(out, name), `${exported}\nexport {}\n`)
    count++
  })
emit(join(root, "README.md"), blocks(readFileSync(join(root, "README.md"), "utf8"), false))
for (const name of readdirSync(join(root, "docs")).filter((name) => name.endsWith(".md")).sort()) {
  emit(join(root, "docs", name), blocks(readFileSync(join(root, "docs", name), "utf8"), false))
}
for (const file of sources(join(root, "src"))) emit(file, blocks(readFileSync(file, "utf8"), true))
console.log(`doc examples: ${count} extracted to ${relative(root, out)}/`)
