/**
 * Vitest global setup: finds a PostgreSQL server for the test run and hands its
 * connection settings to the test files (`inject("postgres")`, read through
 * `test/utils/postgres.ts`). In order:
 *
 * 1. `PGHOST` is set: use `PGHOST`, `PGPORT` (5432), `PGUSER` (the OS user),
 *    `PGPASSWORD`, `PGDATABASE` (= the user), the libpq names. The server must
 *    accept connections now; the user must be allowed to create databases.
 * 2. PostgreSQL's binaries are installed: start a private throwaway cluster with
 *    `scripts/postgres.sh start` and remove it when the run ends.
 * 3. `CI` is set: fail the run. CI never skips the PostgreSQL tests.
 * 4. Otherwise PostgreSQL is unavailable: each PostgreSQL test block is one
 *    failing test saying why and how to get a server (never skipped).
 */
import { execFile, spawnSync } from "node:child_process"
import { connect } from "node:net"
import { userInfo } from "node:os"
import { fileURLToPath } from "node:url"
import type { TestProject } from "vitest/node"

/** Where the PostgreSQL tests connect, or why they cannot. */
export type PostgresSettings =
  | {
    readonly _tag: "Available"
    /** How the server was found, for messages. */
    readonly source: string
    readonly host: string
    readonly port: number
    readonly user: string
    readonly password: string | undefined
    /** A database the user may connect to; each test file creates its own beside it. */
    readonly database: string
  }
  | { readonly _tag: "Unavailable"; readonly reason: string }

declare module "vitest" {
  export interface ProvidedContext {
    readonly postgres: PostgresSettings
  }
}

/** `CI` as CI systems set it (`true`, `1`, a name); `false` and `0` mean not CI. */
export const isCI = (env: NodeJS.ProcessEnv = process.env): boolean => {
  const value = env["CI"]?.trim().toLowerCase()
  return value !== undefined && value !== "" && value !== "false" && value !== "0"
}

const script = fileURLToPath(new URL("../../scripts/postgres.sh", import.meta.url))

export default async function setup(project: TestProject): Promise<() => void> {
  const found = await find()
  project.provide("postgres", found.settings)
  if (found.settings._tag === "Available") {
    console.log(`PostgreSQL for the tests: ${found.settings.host}:${found.settings.port}, ${found.settings.source}`)
  } else {
    console.log(`PostgreSQL for the tests: unavailable, the PostgreSQL tests will fail: ${found.settings.reason}`)
  }
  return found.stop
}

interface Found {
  readonly settings: PostgresSettings
  readonly stop: () => void
}

const find = async (): Promise<Found> => {
  const env = process.env
  if (env["PGHOST"] !== undefined && env["PGHOST"] !== "") return { settings: await fromEnvironment(env), stop: () => {} }
  if (run(["bindir"]).status === 0) return startPrivateCluster()
  if (isCI(env)) {
    throw new Error(
      "CI is set but PostgreSQL is not available: the PostgreSQL tests must run in CI. " +
        "Set PGHOST (and PGPORT, PGUSER, PGPASSWORD, PGDATABASE) to a server, or install PostgreSQL " +
        "(`bash scripts/postgres.sh install`; .ci/run does both)."
    )
  }
  return {
    settings: {
      _tag: "Unavailable",
      reason: "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH) and PGHOST is not set; " +
        "install it (`bash scripts/postgres.sh install`) or point PGHOST etc. at a server"
    },
    stop: () => {}
  }
}

const fromEnvironment = async (env: NodeJS.ProcessEnv): Promise<PostgresSettings> => {
  const host = env["PGHOST"]!
  const portText = env["PGPORT"] || "5432"
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new Error(`PGPORT=${portText} is not a TCP port (1-65535)`)
  }
  const user = env["PGUSER"] || userInfo().username
  const settings: PostgresSettings = {
    _tag: "Available",
    source: `user ${user}, from the PG* environment variables`,
    host,
    port,
    user,
    password: env["PGPASSWORD"] || undefined,
    database: env["PGDATABASE"] || user
  }
  await reachable(host, port)
  return settings
}

/** Fails with a clear message unless something accepts connections at host:port (or the socket in host). */
const reachable = (host: string, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const where = host.startsWith("/") ? `${host}/.s.PGSQL.${port}` : `${host}:${port}`
    const socket = host.startsWith("/")
      ? connect({ path: `${host}/.s.PGSQL.${port}` })
      : connect({ host, port })
    const fail = (why: string) => {
      socket.destroy()
      reject(new Error(`PGHOST is set but PostgreSQL at ${where} ${why}: start the server or unset PGHOST`))
    }
    socket.setTimeout(5_000, () => fail("did not answer within 5 seconds"))
    socket.once("error", (error) => fail(`cannot be reached (${error.message})`))
    socket.once("connect", () => {
      socket.end()
      resolve()
    })
  })

const run = (args: ReadonlyArray<string>) => spawnSync("bash", [script, ...args], { encoding: "utf8" })

const startPrivateCluster = async (): Promise<Found> => {
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
    execFile("bash", [script, "start"], { encoding: "utf8", timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`scripts/postgres.sh start failed (${error.message.split("\n")[0]}):\n${stderr}`))
      else resolve({ stdout })
    })
  })
  const vars = new Map([...stdout.matchAll(/\b(PG[A-Z_]+)=(\S+)/g)].map(([, name, value]) => [name!, value!]))
  const get = (name: string) => {
    const value = vars.get(name)
    if (value === undefined) throw new Error(`scripts/postgres.sh start printed no ${name}:\n${stdout}`)
    return value
  }
  const dir = get("PG_CLUSTER_DIR")
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    process.off("exit", stop)
    const end = run(["stop", dir])
    if (end.status !== 0) console.error(`scripts/postgres.sh stop ${dir} failed:\n${end.stderr}`)
  }
  // the teardown stops it; this is for a run that ends without one (an error, Ctrl-C)
  process.once("exit", stop)
  return {
    settings: {
      _tag: "Available",
      source: `a private cluster in ${dir} (scripts/postgres.sh), stopped after the run`,
      host: get("PGHOST"),
      port: Number(get("PGPORT")),
      user: get("PGUSER"),
      password: get("PGPASSWORD"),
      database: get("PGDATABASE")
    },
    stop
  }
}
