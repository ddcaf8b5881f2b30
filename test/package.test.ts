/**
 * The package as a dependency sees it: `npm run build` emits JavaScript and
 * declarations that Node can import through the `exports` map.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

const run = (file: string, args: ReadonlyArray<string>, cwd: string) =>
  new Promise<{ readonly code: number; readonly output: string }>((resolve) => {
    execFile(file, args, { cwd, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, output: stdout + stderr })
    })
  })

describe("package", () => {
  it("builds, and the build is importable by name with its declarations", async () => {
    const dir = mkdtempSync(join(tmpdir(), "effect-task-host-package-"))
    try {
      // the build, placed as npm would install the package: package.json beside dist/
      const pkg = join(dir, "node_modules", "effect-task-host")
      const build = await run(
        join(root, "node_modules", ".bin", "tsc"),
        ["-p", "tsconfig.build.json", "--outDir", join(pkg, "dist")],
        root
      )
      assert.strictEqual(build.code, 0, build.output)
      cpSync(join(root, "package.json"), join(pkg, "package.json"))
      const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"))
      assert.strictEqual(manifest.exports["."].types, "./dist/index.d.ts")
      assert.isTrue(readFileSync(join(pkg, "dist", "index.d.ts"), "utf8").includes("BackgroundTaskHost"))
      // the inspector's entry point, apart from the root (which loads no HTTP server)
      assert.strictEqual(manifest.exports["./inspector"].types, "./dist/TaskInspector.d.ts")
      assert.isTrue(readFileSync(join(pkg, "dist", "TaskInspector.d.ts"), "utf8").includes("TaskInspectorOptions"))
      assert.notInclude(readFileSync(join(pkg, "dist", "index.js"), "utf8"), "TaskInspector")
      // a consumer importing by package name
      symlinkSync(join(root, "node_modules", "effect"), join(dir, "node_modules", "effect"), "dir")
      writeFileSync(
        join(dir, "consumer.mjs"),
        `import { Effect } from "effect"
import { BackgroundTaskHost, isTerminal } from "effect-task-host"
import * as NodeSqliteClient from "effect-task-host/sqlite"
const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const record = yield* host.register({ scope: { sessionId: "s" }, id: "t", kind: "other", producer: "consumer" })
  const sqlite = yield* NodeSqliteClient.NodeSqliteClient
  console.log(record.state, isTerminal("completed"), sqlite.config.filename)
}).pipe(Effect.provide(BackgroundTaskHost.layer), Effect.provide(NodeSqliteClient.layer({ filename: ":memory:" })))
Effect.runPromise(program)
`
      )
      // ...and its types, checked against the emitted declarations
      writeFileSync(
        join(dir, "consumer.ts"),
        `import { Effect } from "effect"
import { BackgroundTaskHost, type BackgroundTaskRecord, TaskContext } from "effect-task-host"
export const program: Effect.Effect<BackgroundTaskRecord, unknown> = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  return yield* host.spawnManaged("s", { id: "t", kind: "monitor", producer: "consumer" },
    Effect.gen(function*() { yield* (yield* TaskContext).progress("hi") }))
}).pipe(Effect.provide(BackgroundTaskHost.layer))
`
      )
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            module: "NodeNext",
            moduleResolution: "NodeNext",
            target: "ES2022",
            noEmit: true,
            types: []
          },
          files: ["consumer.ts"]
        })
      )
      const typecheck = await run(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], dir)
      assert.strictEqual(typecheck.code, 0, typecheck.output)
      const consumer = await run(process.execPath, ["consumer.mjs"], dir)
      assert.strictEqual(consumer.code, 0, consumer.output)
      assert.strictEqual(consumer.output.trim(), "pending true :memory:")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)
})
