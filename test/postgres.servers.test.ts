/**
 * where the tests get PostgreSQL. The finder of the global setup
 * (`test/utils/postgres.global.ts`) is run here on each of its ways, whatever
 * way this run itself took: a server named by `PGHOST`, the installed
 * PostgreSQL, the npm package's server (`TEST_POSTGRES=npm`); each one started
 * is a real server that answers, and is gone after its `stop`. Then `PgServer`
 * (`test/utils/postgres.ts`), the server a test stops and starts again: a
 * client's queries fail while it is down and work after `start`, on the same
 * port, with the committed data, after a clean stop and after a crash.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Schedule, Scope } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient } from "effect/sql"
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { root, start } from "./utils/child.ts"
import { npmBinaries, systemBinaries } from "./utils/postgres.cluster.ts"
import { findPostgres, type Found, isCI, postgresChoice } from "./utils/postgres.global.ts"
import { type Available, binaries, clientConfig, makePgServer, PgServer, settings } from "./utils/postgres.ts"

/** For tests that start servers: each takes a second or two, more on a loaded machine. */
const timeout = 60_000

const fixture = join(root, "test", "fixtures", "pg-cluster-child.ts")

/** Runs `f` with a client of `server`'s own database, closed afterwards. */
const withClient = <A, E>(server: Available, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const sql = yield* PgClient.make(clientConfig(server, server.database))
    return yield* f(sql)
  }).pipe(Effect.scoped, Effect.provide(Reactivity.layer))

interface Identity {
  readonly version: string
  readonly user: string
  readonly database: string
  readonly superuser: boolean
  readonly mayCreateDatabases: boolean
}

const identity = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const [row] = yield* sql<{ version: string; user: string; database: string; superuser: boolean; createdb: boolean }>`
      select current_setting('server_version') as version, current_user as "user", current_database() as database,
             rolsuper as superuser, rolcreatedb as createdb
      from pg_roles where rolname = current_user`
    return {
      version: row!.version.split(" ")[0]!,
      user: row!.user,
      database: row!.database,
      superuser: row!.superuser,
      mayCreateDatabases: row!.createdb
    } satisfies Identity
  })

/** Whether something accepts TCP connections at host:port. */
const accepts = (host: string, port: number) =>
  Effect.promise(() =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host, port })
      socket.once("connect", () => {
        socket.end()
        resolve(true)
      })
      socket.once("error", () => resolve(false))
    })
  )

/** A port nothing listened on a moment ago (the system chose it, and it was released). */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")))
    })
  })
)

/** `findPostgres(env)`, its server stopped when the scope closes. */
const find = (env: NodeJS.ProcessEnv) =>
  Effect.acquireRelease(Effect.promise(() => findPostgres(env)), (found) => Effect.promise(() => found.stop()))

const available = (found: Found): Available => {
  if (found.settings._tag !== "Available") throw new Error(`expected a server, got: ${found.settings.reason}`)
  return found.settings
}

/** The private cluster's directory, from the finder's description of it. */
const clusterDir = (server: Available) => /a private cluster in (\S+) /.exec(server.source)?.[1]

/** A started cluster answers as the role effect_task_host, may create databases, is no superuser; after stop it is gone. */
const checkStarted = (env: NodeJS.ProcessEnv, kind: "system" | "npm", version: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const found = yield* find(env).pipe(Scope.provide(scope))
    const server = available(found)
    assert.strictEqual(server.kind, kind)
    assert.strictEqual(server.host, "127.0.0.1")
    const dir = clusterDir(server)
    assert.isDefined(dir)
    assert.isTrue(existsSync(dir!))
    assert.deepStrictEqual(
      yield* withClient(server, (sql) =>
        Effect.gen(function*() {
          yield* sql`create database made_by_the_test`
          return yield* identity(sql)
        })),
      { version, user: "effect_task_host", database: "effect_task_host", superuser: false, mayCreateDatabases: true }
    )
    yield* Scope.close(scope, Exit.void)
    assert.isFalse(existsSync(dir!))
    assert.isFalse(yield* accepts(server.host, server.port))
    return server.source
  })

/** The environment of a machine without PostgreSQL or PG* settings: `env` without PGHOST, PG_BINDIR, TEST_POSTGRES. */
const bare = (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => {
  const { PGHOST: _host, PG_BINDIR: _bindir, TEST_POSTGRES: _choice, ...rest } = env
  return rest
}

describe("the finder (test/utils/postgres.global.ts)", () => {
  it.live("PGHOST set: uses that server and starts none (here the run's own)", () =>
    Effect.gen(function*() {
      if (settings._tag !== "Available") return yield* Effect.die(new Error(`PostgreSQL is not available: ${settings.reason}`))
      const found = yield* find({
        ...bare(),
        PGHOST: settings.host,
        PGPORT: String(settings.port),
        PGUSER: settings.user,
        ...(settings.password === undefined ? {} : { PGPASSWORD: settings.password }),
        PGDATABASE: settings.database
      })
      const server = available(found)
      assert.strictEqual(server.kind, "pghost")
      assert.deepStrictEqual([server.host, server.port, server.user, server.database], [
        settings.host,
        settings.port,
        settings.user,
        settings.database
      ])
      const seen = yield* withClient(server, identity)
      assert.strictEqual(seen.user, settings.user)
      yield* Effect.promise(() => found.stop())
      // stop leaves a server it did not start alone
      assert.isTrue(yield* accepts(settings.host, settings.port))
    }).pipe(Effect.scoped), timeout)

  it.live("PGHOST set to a port where nothing listens: fails saying so", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const error = yield* Effect.tryPromise(() => findPostgres({ ...bare(), PGHOST: "127.0.0.1", PGPORT: String(port) }))
        .pipe(Effect.flip)
      assert.include(String(error.cause), `PGHOST is set but PostgreSQL at 127.0.0.1:${port} cannot be reached`)
    }), timeout)

  it.live("PostgreSQL installed: starts a private cluster with it, removed by stop", () =>
    Effect.gen(function*() {
      const system = systemBinaries(bare())
      if (system === undefined || postgresChoice() === "npm") {
        // no installed PostgreSQL, or hidden from this run: the npm package's binaries stand in, through PG_BINDIR
        if (isCI() && postgresChoice() !== "npm") {
          return yield* Effect.die(new Error("CI must test the installed PostgreSQL: .ci/run installs it (scripts/postgres.sh install)"))
        }
        const npm = npmBinaries()
        if (!("bindir" in npm)) return yield* Effect.die(new Error(npm.missing))
        return yield* checkStarted({ ...bare(), PG_BINDIR: npm.bindir }, "system", npm.version)
      }
      return yield* checkStarted(bare(), "system", system.version)
    }), timeout)

  it.live("TEST_POSTGRES=npm: the npm package's server, even where PGHOST is set and PostgreSQL is installed", () =>
    Effect.gen(function*() {
      const npm = npmBinaries()
      if (!("bindir" in npm)) return yield* Effect.die(new Error(npm.missing))
      assert.strictEqual(npm.kind, "npm")
      const source = yield* checkStarted({ ...bare(), TEST_POSTGRES: "npm", PGHOST: "127.0.0.1", PGPORT: "1" }, "npm", npm.version)
      assert.include(source, `PostgreSQL ${npm.version} from ${npm.origin}, a private cluster in `)
      assert.include(source, "(PGHOST ignored: TEST_POSTGRES=npm)")
    }), timeout)

  it.effect("bad settings are refused with what was wrong", () =>
    Effect.gen(function*() {
      const message = (env: NodeJS.ProcessEnv) =>
        Effect.tryPromise(() => findPostgres(env)).pipe(Effect.flip, Effect.map((error) => String(error.cause)))
      assert.include(yield* message({ ...bare(), TEST_POSTGRES: "docker" }), "TEST_POSTGRES=docker: expected npm")
      assert.include(yield* message({ ...bare(), PG_BINDIR: "/nonexistent" }), "PG_BINDIR=/nonexistent has no initdb")
      assert.include(
        yield* message({ ...bare(), TEST_POSTGRES: "system", PG_BINDIR: "/nonexistent" }),
        "PG_BINDIR=/nonexistent has no initdb"
      )
      assert.include(yield* message({ ...bare(), PGHOST: "127.0.0.1", PGPORT: "99999" }), "PGPORT=99999 is not a TCP port")
    }), timeout)
})

const rows = (sql: SqlClient.SqlClient) =>
  sql<{ id: number }>`select id from kept order by id`.pipe(Effect.map((rows) => rows.map((row) => row.id)))

describe("PgServer (test/utils/postgres.ts): a server a test stops and starts", () => {
  // one server for these two tests (each server costs an initdb)
  layer(Layer.merge(PgServer.layer, Reactivity.layer), { excludeTestServices: true, timeout })((it) => {
    it.effect("runs the run's binaries; queries fail while it is down and work again after start, same port, data kept", () =>
      Effect.gen(function*() {
        const server = yield* PgServer
        if (binaries._tag === "Found") {
          assert.strictEqual(server.kind, binaries.binaries.kind)
          assert.strictEqual(server.version, binaries.binaries.version)
        }
        const { port } = server.settings
        const sql = yield* PgClient.make(clientConfig(server.settings, server.settings.database))
        yield* sql`create table kept (id int primary key)`
        yield* sql`insert into kept values (1)`

        yield* server.stop()
        assert.isFalse(yield* server.isRunning)
        assert.isFalse(yield* accepts("127.0.0.1", port))
        const down = yield* rows(sql).pipe(Effect.flip)
        assert.strictEqual(down._tag, "SqlError")
        // stopping a stopped server does nothing
        yield* server.stop()

        yield* server.start
        assert.isTrue(yield* server.isRunning)
        assert.isTrue(yield* accepts("127.0.0.1", port))
        assert.deepStrictEqual(yield* rows(sql), [1])
        yield* sql`insert into kept values (2)`

        // a crash: committed rows survive, recovered from the WAL at the next start
        yield* server.stop("immediate")
        assert.isFalse(yield* server.isRunning)
        yield* server.start
        // starting a running server does nothing
        yield* server.start
        assert.deepStrictEqual(yield* rows(sql), [1, 2])
      }).pipe(Effect.scoped), timeout)

    it.effect("concurrent stops and starts run one at a time, in call order", () =>
      Effect.gen(function*() {
        const server = yield* PgServer
        const sql = yield* PgClient.make(clientConfig(server.settings, server.settings.database))
        const seen = yield* Effect.all([
          server.stop(),
          server.isRunning,
          server.start,
          server.isRunning,
          server.stop("immediate"),
          server.stop(),
          server.isRunning,
          server.start,
          server.start,
          server.isRunning
        ], { concurrency: "unbounded" })
        assert.deepStrictEqual([seen[1], seen[3], seen[6], seen[9]], [false, true, false, true])
        assert.deepStrictEqual(yield* sql<{ one: number }>`select 1 as one`, [{ one: 1 }])
      }).pipe(Effect.scoped), timeout)
  })

  it.live("is stopped and deleted when its scope closes; using it afterwards fails", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* makePgServer.pipe(Scope.provide(scope))
      const dir = /, in (\S+)$/.exec(server.settings.source)?.[1]
      assert.isDefined(dir)
      assert.isTrue(existsSync(dir!))
      assert.isTrue(yield* accepts("127.0.0.1", server.settings.port))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(existsSync(dir!))
      assert.isFalse(yield* accepts("127.0.0.1", server.settings.port))
      const exit = yield* Effect.exit(server.start)
      assert.isTrue(Exit.hasDies(exit))
      assert.include(String(exit), "was removed")
    }), timeout)

  it.live("a process that is ended by a signal (as vitest ends its workers) leaves no server and no directory", () =>
    Effect.gen(function*() {
      if (binaries._tag === "Missing") return yield* Effect.die(new Error(binaries.reason))
      const found = binaries.binaries
      const parent = mkdtempSync(join(tmpdir(), "effect-task-host-signal-"))
      chmodSync(parent, 0o755)
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(parent, { recursive: true, force: true })))
      const child = (args: ReadonlyArray<string> = []) =>
        start(process.execPath, [fixture, JSON.stringify(found), parent, ...args])
      const leftovers = Effect.sync(() => ({
        entries: readdirSync(parent),
        processes: execFileSync("ps", ["-eo", "args"], { encoding: "utf8" }).split("\n").filter((line) => line.includes(parent))
      }))
      const nothingLeft = leftovers.pipe(
        Effect.repeat({ until: (left) => left.entries.length === 0 && left.processes.length === 0, schedule: Schedule.spaced("50 millis") }),
        Effect.timeout("10 seconds"),
        Effect.catchTag("TimeoutError", () => leftovers)
      )

      // after the cluster is made
      const made = child()
      yield* Effect.promise(() => made.waitFor("the cluster", (out) => /made \S+ \d+/.test(out), 60_000))
      const port = Number(/made \S+ (\d+)/.exec(made.stdout())![1])
      assert.isTrue(yield* accepts("127.0.0.1", port))
      made.kill("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => made.ended)).signal, "SIGTERM")
      assert.deepStrictEqual(yield* nothingLeft, { entries: [], processes: [] })
      assert.isFalse(yield* accepts("127.0.0.1", port))

      // while it is being made (initdb, most likely)
      const making = child()
      yield* Effect.promise(() => making.waitFor("the start", (out) => out.includes("making"), 60_000))
      making.kill("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => making.ended)).signal, "SIGTERM")
      assert.deepStrictEqual(yield* nothingLeft, { entries: [], processes: [] })
    }).pipe(Effect.scoped), 2 * timeout)
})
