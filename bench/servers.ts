/**
 * The servers scenario 7 measures against: a `redis-server` with an
 * append-only file, started by the bench on 127.0.0.1 in a temp directory,
 * and a PostgreSQL server (the one the PG* environment names, else a
 * throwaway cluster from `scripts/postgres.sh`). Each finder says why a server
 * is absent instead of failing: the scenario then skips that part. A server
 * that is present but does not start fails the group.
 *
 * Whatever is started is stopped by `stop()`, and also when the process exits
 * (or gets SIGINT / SIGTERM) before that.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, rmSync, statfsSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

// -- cleanup on exit ------------------------------------------------------------

const exitCleanups = new Set<() => void>()
let exitHooked = false

/** Runs `cleanup` (synchronously) if the process exits before the returned function is called. */
export const onExit = (cleanup: () => void): () => void => {
  if (!exitHooked) {
    exitHooked = true
    // last added first, as finalizers: a server goes before its directory
    process.once("exit", () => {
      for (const f of [...exitCleanups].reverse()) f()
    })
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130))
  }
  exitCleanups.add(cleanup)
  return () => exitCleanups.delete(cleanup)
}

const isExecutable = (path: string) => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** `name` on the PATH, else undefined. */
const which = (name: string): string | undefined =>
  (process.env["PATH"] ?? "").split(delimiter).filter((d) => d.length > 0).map((d) => join(d, name)).find(isExecutable)

/** A TCP port on 127.0.0.1 that nothing listens on now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no free port on 127.0.0.1"))))
    })
  })

/**
 * A fresh directory for database files, under the OS temp dir unless that is
 * in memory (where fsync costs nothing); `remove` deletes it (so does an exit
 * before that).
 */
export const durableTempDir = (
  prefix: string
): { readonly dir: string; readonly where: string; readonly remove: () => void } => {
  const tmp = tmpdir()
  // statfs magic numbers of tmpfs and ramfs
  const inMemory = [0x01021994, 0x858458f6].includes(Number(statfsSync(tmp).type))
  const dir = mkdtempSync(join(inMemory ? root : tmp, prefix))
  const removeDir = () => rmSync(dir, { recursive: true, force: true })
  const removeHook = onExit(removeDir)
  return {
    dir,
    where: inMemory ? `the project directory (${tmp} is in memory)` : tmp,
    remove: () => {
      removeDir()
      removeHook()
    }
  }
}

// -- Redis ------------------------------------------------------------------------

export interface RedisServer {
  readonly host: string
  readonly port: number
  readonly version: string
  readonly stop: () => Promise<void>
}

/** Why there is no redis-server to start, or its path. */
export const findRedis = (): { readonly path: string } | { readonly absent: string } => {
  const path = which("redis-server") ?? (isExecutable("/usr/bin/redis-server") ? "/usr/bin/redis-server" : undefined)
  return path === undefined ? { absent: "redis-server is not installed (not on PATH nor /usr/bin/redis-server)" } : { path }
}

const waitForExit = (child: ChildProcess, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/**
 * Starts `redis-server` on 127.0.0.1 on a free port, in a fresh directory,
 * with an append-only file fsynced every second (BullMQ's recommended
 * durable setting) and no RDB snapshots; resolves once it accepts connections.
 */
export const startRedis = async (path: string): Promise<RedisServer> => {
  const { dir, remove } = durableTempDir("effect-task-host-redis-")
  let lastError = ""
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort()
    const child = spawn(path, [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--dir", dir,
      "--appendonly", "yes",
      "--appendfsync", "everysec",
      "--save", "",
      "--daemonize", "no"
    ], { stdio: ["ignore", "pipe", "pipe"] })
    const removeHook = onExit(() => child.kill("SIGKILL"))
    let log = ""
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000)
      const onData = (data: Buffer) => {
        log = (log + data.toString()).slice(-4_000)
        if (log.includes("Ready to accept connections")) {
          clearTimeout(timer)
          resolve(true)
        }
      }
      child.stdout!.on("data", onData)
      child.stderr!.on("data", onData)
      child.once("error", (error) => {
        log += String(error)
        clearTimeout(timer)
        resolve(false)
      })
      child.once("exit", () => {
        clearTimeout(timer)
        resolve(false)
      })
    })
    if (ready) {
      const version = /v=(\S+)/.exec(spawnSync(path, ["--version"], { encoding: "utf8" }).stdout ?? "")?.[1] ?? "unknown"
      return {
        host: "127.0.0.1",
        port,
        version,
        stop: async () => {
          child.kill("SIGTERM")
          if (!(await waitForExit(child, 10_000))) {
            child.kill("SIGKILL")
            await waitForExit(child, 5_000)
          }
          removeHook()
          remove()
        }
      }
    }
    child.kill("SIGKILL")
    await waitForExit(child, 5_000)
    removeHook()
    lastError = log.trim().split("\n").slice(-5).join("\n")
    if (!/Address already in use/i.test(log)) break
  }
  remove()
  throw new Error(`redis-server (${path}) did not start:\n${lastError}`)
}

// -- PostgreSQL -------------------------------------------------------------------

export interface PostgresConfig {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly password: string | undefined
  readonly database: string
}

export interface PostgresServer {
  readonly config: PostgresConfig
  /** Where it comes from: the PG* environment or a cluster the bench started. */
  readonly source: string
  readonly stop: () => Promise<void>
}

const postgresScript = join(root, "scripts", "postgres.sh")

const debianInitdb = (): string | undefined => {
  const base = "/usr/lib/postgresql"
  if (!existsSync(base)) return undefined
  return readdirSync(base).map((v) => join(base, v, "bin", "initdb")).find(isExecutable)
}

/** The server the PG* environment names (PGHOST set), else how to start one, else why there is none. */
export const findPostgres = ():
  | { readonly env: PostgresConfig }
  | { readonly script: string }
  | { readonly absent: string } =>
{
  const env = process.env
  const host = env["PGHOST"]
  if (host !== undefined && host !== "") {
    const port = Number(env["PGPORT"] ?? "5432")
    if (!Number.isInteger(port) || port <= 0) throw new Error(`PGPORT must be a port number, got ${JSON.stringify(env["PGPORT"])}`)
    const username = env["PGUSER"] ?? "postgres"
    return { env: { host, port, username, password: env["PGPASSWORD"], database: env["PGDATABASE"] ?? username } }
  }
  if (debianInitdb() === undefined) {
    return { absent: "PGHOST is not set and PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)" }
  }
  if (!existsSync(postgresScript)) {
    return { absent: "PGHOST is not set and scripts/postgres.sh (which starts a throwaway cluster) is missing" }
  }
  return { script: postgresScript }
}

const run = (file: string, args: ReadonlyArray<string>): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 120_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stderr}`))
      else resolve(stdout)
    })
  })

/** Starts a throwaway cluster with `scripts/postgres.sh start` (on 127.0.0.1, a free port, a temp dir). */
export const startPostgres = async (script: string): Promise<PostgresServer> => {
  const out = await run("bash", [script, "start"])
  const vars = new Map<string, string>()
  for (const [, name, value] of out.matchAll(/\b(PG[A-Z_]+)=(\S+)/g)) vars.set(name!, value!)
  const dir = vars.get("PG_CLUSTER_DIR")
  const need = (name: string) => {
    const value = vars.get(name)
    if (value === undefined) throw new Error(`scripts/postgres.sh start printed no ${name}:\n${out}`)
    return value
  }
  if (dir === undefined) throw new Error(`scripts/postgres.sh start printed no PG_CLUSTER_DIR:\n${out}`)
  const removeHook = onExit(() => {
    spawnSync("bash", [script, "stop", dir], { stdio: "ignore" })
  })
  return {
    config: {
      host: need("PGHOST"),
      port: Number(need("PGPORT")),
      username: need("PGUSER"),
      password: need("PGPASSWORD"),
      database: need("PGDATABASE")
    },
    source: "a throwaway cluster started by the bench (scripts/postgres.sh)",
    stop: async () => {
      await run("bash", [script, "stop", dir])
      removeHook()
    }
  }
}
