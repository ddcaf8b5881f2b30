/**
 * The package as a user gets it. `npm pack` (its `prepack` runs `npm run
 * build`) makes the tarball a registry would serve; it is installed, offline,
 * into a fresh app beside `effect` and `@effect/platform-node` (pinned to the
 * versions of this repository's lockfile, so npm takes them from its cache),
 * and the app is used as a newcomer would use it: every program in README.md
 * and docs/ that the docs say the output of (a ```ts block marked
 * `<!-- run -->`, see scripts/doc-blocks.ts) is pasted into the app as a file,
 * run with `node`, and must print exactly what the docs show.
 *
 * One build and one install serve every test below (they run concurrently).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { blockName, docBlocks } from "../scripts/doc-blocks.ts"
import { describeEnd, root, start, toLines } from "./utils/child.ts"

interface Done {
  readonly code: number
  readonly output: string
}

/** `file args` in `cwd`, without the npm_* variables of the `npm test` that runs us (they name this repository). */
const run = (file: string, args: ReadonlyArray<string>, cwd: string) =>
  new Promise<Done & { readonly stdout: string }>((resolve) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)))
    execFile(file, args, { cwd, env, timeout: 180_000, maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resolve({ code, output: `${stdout}\n${stderr}`, stdout })
    })
  })

const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
const lockfile = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as {
  readonly packages: Record<string, Record<string, unknown>>
}
interface Manifest {
  readonly version: string
  readonly license: string
  readonly dependencies?: Record<string, string>
  readonly peerDependencies: Record<string, string>
  readonly peerDependenciesMeta?: Record<string, { readonly optional?: boolean }>
  readonly devDependencies: Record<string, string>
  readonly engines: Record<string, string>
  readonly repository?: { readonly url?: string }
  readonly exports: Record<string, unknown>
}
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Manifest

/**
 * The entries of this repository's lockfile that installing `names` needs
 * (their dependencies and required peers, transitively), so that a fresh
 * app's lockfile pins exactly the tarballs `npm ci` already put in npm's cache.
 */
const lockClosure = (names: ReadonlyArray<string>) => {
  const entries: Record<string, Record<string, unknown>> = {}
  const resolve = (from: string, name: string) => {
    for (let base = from;;) {
      const key = `${base === "" ? "" : `${base}/`}node_modules/${name}`
      if (lockfile.packages[key] !== undefined) return add(key)
      assert.notStrictEqual(base, "", `the lockfile has no ${name} (needed from ${from || "the root"})`)
      const up = base.lastIndexOf("/node_modules/")
      base = up === -1 ? "" : base.slice(0, up)
    }
  }
  const add = (key: string) => {
    if (entries[key] !== undefined) return
    // flags relative to this repository's root (dev, peer, …) are npm's to recompute
    const { dev: _dev, devOptional: _devOptional, optional: _optional, peer: _peer, ...entry } = lockfile.packages[key]!
    entries[key] = entry
    const optionalPeers = (entry.peerDependenciesMeta ?? {}) as Record<string, { readonly optional?: boolean }>
    for (const name of Object.keys((entry.dependencies ?? {}) as object)) resolve(key, name)
    for (const name of Object.keys((entry.peerDependencies ?? {}) as object)) {
      if (optionalPeers[name]?.optional !== true) resolve(key, name)
    }
  }
  for (const name of names) resolve("", name)
  return entries
}

/** The version of `name` this repository is tested with. */
const testedVersion = (name: string) => lockfile.packages[`node_modules/${name}`]!.version as string

/** The ```ts blocks the docs show the output of: each is a program, run in the app. */
const programs = docBlocks(root).filter((block) => block.run !== undefined)

describe.concurrent("package", () => {
  let dir = ""
  let app = ""
  /** The installed package: what a dependent's node_modules holds. */
  let installed = ""
  let packedFiles: ReadonlyArray<string> = []

  beforeAll(async () => {
    // in memory where there is a tmpfs: the app's node_modules is ~90 MB, written beside tests that fsync
    dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "effect-task-host-package-"))
    // 1. the tarball, built from scratch (a stale file in dist/ would otherwise be packed)
    rmSync(join(root, "dist"), { recursive: true, force: true })
    const pack = await run("npm", ["pack", "--json", "--pack-destination", dir], root)
    assert.strictEqual(pack.code, 0, pack.output)
    const [packed] = JSON.parse(pack.stdout) as ReadonlyArray<
      { filename: string; integrity: string; files: ReadonlyArray<{ path: string }> }
    >
    packedFiles = packed!.files.map((file) => file.path)

    // 2. a fresh app depending on the tarball, effect and @effect/platform-node, with a
    // lockfile: npm cannot resolve a version range offline (it has no package
    // metadata cached), so the lockfile pins every package to the tarball that
    // `npm ci` put in npm's cache for this repository, and pins ours by its integrity
    app = join(dir, "app")
    mkdirSync(app)
    copyFileSync(join(dir, packed!.filename), join(app, packed!.filename))
    const pinned = ["effect", "@effect/platform-node"]
    const dependencies = {
      ...Object.fromEntries(pinned.map((name) => [name, testedVersion(name)])),
      "effect-task-host": `file:${packed!.filename}`
    }
    const pkg = { name: "fresh-app", version: "1.0.0", private: true, type: "module", dependencies }
    const ours = {
      version: manifest.version,
      resolved: `file:${packed!.filename}`,
      integrity: packed!.integrity,
      license: manifest.license,
      peerDependencies: manifest.peerDependencies,
      engines: manifest.engines
    }
    writeFileSync(join(app, "package.json"), JSON.stringify(pkg, null, 2))
    writeFileSync(
      join(app, "package-lock.json"),
      JSON.stringify({
        name: pkg.name,
        version: pkg.version,
        lockfileVersion: 3,
        requires: true,
        packages: {
          "": { name: pkg.name, version: pkg.version, dependencies },
          ...lockClosure(pinned),
          "node_modules/effect-task-host": ours
        }
      }, null, 2)
    )
    // 3. install, offline: everything but the tarball comes from npm's cache
    const install = await run("npm", ["ci", "--offline", "--no-audit", "--no-fund", "--ignore-scripts"], app)
    const hint = /ENOTCACHED/.test(install.output)
      ? "npm's cache lacks a package this repository's `npm ci` installs: run `npm ci` here first\n"
      : ""
    assert.strictEqual(install.code, 0, `${hint}${install.output}`)
    installed = join(app, "node_modules", "effect-task-host")

    // 4. the programs of the docs, pasted as they are, and two consumers of our own
    for (const block of programs) writeFileSync(join(app, `${blockName(block)}.ts`), block.code)
    writeFileSync(
      join(app, "consumer.ts"),
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
      join(app, "consumer.mjs"),
      `import { Effect } from "effect"
import { BackgroundTaskHost, isTerminal } from "effect-task-host"
import * as NodeSqliteClient from "effect-task-host/sqlite"
import { TaskInspector } from "effect-task-host/inspector"
const program = Effect.gen(function*() {
  const host = yield* BackgroundTaskHost
  const record = yield* host.register({ scope: { sessionId: "s" }, id: "t", kind: "other", producer: "consumer" })
  const sqlite = yield* NodeSqliteClient.NodeSqliteClient
  console.log(record.state, isTerminal("completed"), sqlite.config.filename, typeof TaskInspector.layer)
}).pipe(Effect.provide(BackgroundTaskHost.layer), Effect.provide(NodeSqliteClient.layer({ filename: ":memory:" })))
Effect.runPromise(program)
`
    )
    // what a program run with `node file.ts` must be: type-stripping only (verbatimModuleSyntax,
    // erasableSyntaxOnly). skipLibCheck, as apps have it: checking effect's own declarations takes
    // most of the time and says nothing of ours (the build that emitted them type-checked them)
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "NodeNext",
          moduleResolution: "NodeNext",
          target: "ES2022",
          verbatimModuleSyntax: true,
          erasableSyntaxOnly: true,
          noEmit: true,
          skipLibCheck: true,
          types: []
        },
        include: ["*.ts"]
      })
    )
  }, 240_000)

  afterAll(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true })
  })

  it("the tarball holds the build, its sources, the docs, the examples, README.md and LICENSE; nothing else", () => {
    const top = new Set(packedFiles.map((path) => path.split("/")[0]))
    assert.deepStrictEqual([...top].sort(), ["LICENSE", "README.md", "dist", "docs", "examples", "package.json", "src"])
    for (const path of ["dist/index.js", "dist/index.d.ts", "docs/contract.md", "docs/guide.md", "docs/api.md"]) {
      assert.include(packedFiles, path)
    }
    // the build is exactly src/, compiled: every module has its JavaScript and declarations, nothing stale
    const modules = (prefix: string, ext: string) =>
      packedFiles.filter((path) => path.startsWith(prefix) && path.endsWith(ext)).map((path) =>
        path.slice(prefix.length, -ext.length)
      ).sort()
    assert.deepStrictEqual(modules("dist/", ".js"), modules("src/", ".ts"))
    assert.deepStrictEqual(modules("dist/", ".d.ts"), modules("src/", ".ts"))
  })

  it("every relative link in the installed README.md and docs/ resolves inside the package", () => {
    const files = ["README.md", ...readdirSync(join(installed, "docs")).map((name) => `docs/${name}`)]
    let links = 0
    for (const file of files) {
      for (const [, target] of readFileSync(join(installed, file), "utf8").matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue // http(s), mailto
        const path = join(installed, dirname(file), target!)
        assert.isFalse(relative(installed, path).startsWith(".."), `${file} links outside the package: ${target}`)
        assert.isTrue(existsSync(path), `${file} links to ${target}, which the package does not have`)
        links++
      }
    }
    assert.isAbove(links, 20)
  })

  it("its manifest: effect a peer dependency (the version tested), no run-time dependency, MIT, a repository", () => {
    const pkg = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as Manifest
    assert.isUndefined(pkg.dependencies, "the library needs nothing at run time but effect, its peer")
    // @effect/platform-node only for the inspector's entry point (`effect-task-host/inspector`)
    assert.deepStrictEqual(pkg.peerDependencies, { "@effect/platform-node": "^4.1.0", effect: "^4.1.0" })
    assert.deepStrictEqual(pkg.peerDependenciesMeta, { "@effect/platform-node": { optional: true } })
    const [major, minor] = testedVersion("effect").split(".").map(Number)
    assert.isTrue(major === 4 && minor! >= 1, `the peer range covers the tested effect ${testedVersion("effect")}`)
    assert.strictEqual(pkg.devDependencies.effect, pkg.peerDependencies.effect, "tested against the peer range")
    assert.strictEqual(pkg.license, "MIT")
    assert.match(readFileSync(join(installed, "LICENSE"), "utf8"), /^MIT License/)
    assert.match(pkg.repository?.url ?? "", /^git\+https:\/\//)
    assert.strictEqual(pkg.engines.node, ">=22.19")
    assert.deepStrictEqual(pkg.exports["."], { types: "./dist/index.d.ts", default: "./dist/index.js" })
    assert.deepStrictEqual(pkg, manifest, "the installed manifest is this repository's")
  })

  it("npm finds the installed tree sound: the peer dependency met, nothing missing or invalid", async () => {
    const ls = await run("npm", ["ls", "--all", "--offline"], app)
    assert.strictEqual(ls.code, 0, ls.output)
    // our peer, met by the app's own copy
    assert.match(ls.stdout, new RegExp(`effect-task-host@${manifest.version}\\n(?:.*\\n)*?.*[ ─]effect@\\S+ deduped`), ls.output)
    // (ws and redis declare optional peers nobody installs: those are fine)
    const problems = toLines(ls.output).filter((line) =>
      /UNMET (?!OPTIONAL)|invalid|missing|extraneous/i.test(line)
    )
    assert.deepStrictEqual(problems, [], ls.output)
  }, 60_000)

  it("installed beside the app's effect, it uses that copy: there is one effect", () => {
    assert.isFalse(existsSync(join(installed, "node_modules")), "nothing installed under the package")
    // every installed package, nested ones included: `effect` is there once, at the top
    const packages = (modules: string): ReadonlyArray<string> =>
      readdirSync(modules).flatMap((name) =>
        name.startsWith("@")
          ? readdirSync(join(modules, name)).map((scoped) => join(modules, name, scoped))
          : name.startsWith(".")
          ? []
          : [join(modules, name)]
      ).flatMap((path) =>
        existsSync(join(path, "node_modules")) ? [path, ...packages(join(path, "node_modules"))] : [path]
      )
    const effects = packages(join(app, "node_modules")).filter((path) => path.endsWith("/effect"))
    assert.deepStrictEqual(effects.map((path) => relative(app, path)), ["node_modules/effect"])
  })

  it("a TypeScript consumer and every program of the docs type-check against the emitted declarations", async () => {
    const typecheck = await run(process.execPath, [tsc, "-p", "tsconfig.json"], app)
    assert.strictEqual(typecheck.code, 0, typecheck.output)
  }, 120_000)

  it("a JavaScript consumer imports the package by name", async () => {
    const consumer = await run(process.execPath, ["consumer.mjs"], app)
    assert.strictEqual(consumer.code, 0, consumer.output)
    assert.strictEqual(consumer.output.trim(), "pending true :memory: function")
  }, 60_000)

  it("the README's quickstart is one of the programs the docs show the output of", () => {
    const quickstart = programs.filter((block) => block.file === "README.md" && block.code.includes("spawnManaged"))
    assert.strictEqual(quickstart.length, 1, "README.md: the quickstart is marked <!-- run --> with its output")
    assert.include(quickstart[0]!.run!.output, "Cancelled monitor-1")
  })

  for (const block of programs) {
    const spec = block.run!
    const name = `${block.file}:${block.line} prints what the docs show${spec.interruptAfter === undefined ? "" : " (Ctrl-C)"}`
    it(name, async () => {
      const running = start(process.execPath, [join(app, `${blockName(block)}.ts`)], { timeoutMs: 60_000 })
      if (spec.interruptAfter !== undefined) {
        await running.waitFor(JSON.stringify(spec.interruptAfter), (out) => out.includes(spec.interruptAfter!))
        running.kill("SIGINT")
      }
      const end = await running.ended
      const printed = toLines(end.stdout).join("\n").trimEnd()
      assert.strictEqual(printed, toLines(spec.output).join("\n").trimEnd(), describeEnd(end))
      assert.strictEqual(end.code, spec.exitCode, describeEnd(end))
      assert.strictEqual(end.stderr, "", describeEnd(end))
    }, 60_000)
  }
})
