/**
 * The ```ts blocks of README.md, docs/*.md and the JSDoc in src/, and what the
 * docs claim about them.
 *
 * A block whose fence is preceded by `<!-- run -->` is a whole program, and the
 * next ```text block after it is what the program prints (stdout). Options may
 * follow `run:`, separated by commas:
 *
 *   <!-- run: Ctrl-C after "Registered worker", exit code 130 -->
 *
 * - `Ctrl-C after "<text>"`: send SIGINT once stdout contains <text>;
 * - `exit code <n>`: the code the program exits with (default 0).
 *
 * Read by scripts/doc-examples.ts (every block must type-check; blocks that
 * import @effect/vitest are run by the test suite) and by test/package.test.ts
 * (every `run` block is run against the packed package and its output compared).
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative } from "node:path"

export interface DocBlock {
  /** The file, relative to the repository's root (`README.md`, `docs/guide.md`, `src/TaskView.ts`). */
  readonly file: string
  /** The block's place among the file's ```ts blocks, from 0. */
  readonly index: number
  /** The line of the opening fence, from 1. */
  readonly line: number
  readonly code: string
  /** Present when the docs claim what the block prints. */
  readonly run?: DocRun
}

export interface DocRun {
  /** What the program prints on stdout, as the docs show it. */
  readonly output: string
  /** Send SIGINT (Ctrl-C) once stdout contains this text. */
  readonly interruptAfter?: string
  readonly exitCode: number
}

/** A fence line; group 1 is its language (`ts`, `text`, `` for none). */
const fence = /^```(\S*)(?:\s.*)?$/

/** The ```ts blocks of one text (markdown, or JSDoc when `jsdoc`), with their `run` claims. */
export const parseBlocks = (file: string, text: string, jsdoc: boolean): Array<DocBlock> => {
  const lines = text.split("\n").map((line) => jsdoc ? line.replace(/^\s*\* ?/, "") : line)
  const found: Array<DocBlock> = []
  let i = 0
  const where = (n: number) => `${file}:${n + 1}`
  /** The body of the fenced block opening at line `start`, and the line after its closing fence. */
  const body = (start: number) => {
    const content: Array<string> = []
    for (let j = start + 1; j < lines.length; j++) {
      if (lines[j]!.trim() === "```") return { content: content.join("\n"), next: j + 1 }
      content.push(lines[j]!)
    }
    throw new Error(`${where(start)}: the block never ends`)
  }
  while (i < lines.length) {
    const open = fence.exec(lines[i]!.trim())
    if (open === null) {
      i++
      continue
    }
    const start = i
    const { content, next } = body(start)
    i = next
    if (open[1] !== "ts") continue
    const marker = jsdoc ? undefined : previousLine(lines, start)
    const claim = marker === undefined ? null : /^<!--\s*run(?::(.*?))?\s*-->$/.exec(marker)
    if (claim === null) {
      found.push({ file, index: found.length, line: start + 1, code: content })
      continue
    }
    // the output: the next ```text block, before any other ```ts block
    let output: string | undefined
    for (let j = i; j < lines.length && output === undefined; j++) {
      const other = fence.exec(lines[j]!.trim())
      if (other === null) continue
      if (other[1] === "text") output = body(j).content
      else if (other[1] === "ts") break
      else j = body(j).next - 1
    }
    if (output === undefined) {
      throw new Error(`${where(start)}: a "run" block needs a \`\`\`text block after it with what it prints`)
    }
    const run = runOptions(where(start), claim[1], output)
    found.push({ file, index: found.length, line: start + 1, code: content, run })
  }
  return found
}

const previousLine = (lines: ReadonlyArray<string>, at: number): string | undefined => {
  for (let j = at - 1; j >= 0; j--) if (lines[j]!.trim() !== "") return lines[j]!.trim()
  return undefined
}

const runOptions = (where: string, text: string | undefined, output: string): DocRun => {
  let interruptAfter: string | undefined
  let exitCode = 0
  for (const option of (text ?? "").split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/).map((o) => o.trim())) {
    const ctrlC = /^Ctrl-C after "(.+)"$/.exec(option)
    const exit = /^exit code (\d+)$/.exec(option)
    if (ctrlC !== null) interruptAfter = ctrlC[1]!
    else if (exit !== null) exitCode = Number(exit[1])
    else if (option !== "") {
      const expected = `Ctrl-C after "…" or exit code N`
      throw new Error(`${where}: unknown run option ${JSON.stringify(option)} (expected ${expected})`)
    }
  }
  return interruptAfter === undefined ? { output, exitCode } : { output, interruptAfter, exitCode }
}

const sources = (dir: string): Array<string> =>
  readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : []
  })

/** Every ```ts block of README.md, docs/*.md (in name order) and the JSDoc of src/. */
export const docBlocks = (root: string): Array<DocBlock> => {
  const markdown = [
    "README.md",
    ...readdirSync(join(root, "docs")).filter((name) => name.endsWith(".md")).sort().map((name) => `docs/${name}`)
  ]
  return [
    ...markdown.flatMap((file) => parseBlocks(file, readFileSync(join(root, file), "utf8"), false)),
    ...sources(join(root, "src")).flatMap((path) =>
      parseBlocks(relative(root, path), readFileSync(path, "utf8"), true)
    )
  ]
}

/** A block's file name when extracted: `docs/guide.md` block 7 → `docs_guide_md_7`. */
export const blockName = (block: DocBlock): string => `${block.file.replace(/[\\/.]/g, "_")}_${block.index}`

/** A block that is a test (it imports @effect/vitest): the suite runs it. */
export const isTest = (block: DocBlock): boolean => /from "@effect\/vitest"/.test(block.code)
