import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import { Reactivity } from "effect/reactivity"
import { Migrator, SqlClient, SqlError } from "effect/sql"
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as NodeSqliteClient from "../src/NodeSqliteClient.ts"

const memory = NodeSqliteClient.layer({ filename: ":memory:" })

/** A directory under the OS temp dir, removed when the test's scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "node-sqlite-client-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Builds the layer in a scope of its own, so the test decides when it closes. */
const open = (config: NodeSqliteClient.NodeSqliteClientConfig) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(NodeSqliteClient.layer(config), scope)
    return { sql: Context.get(context, SqlClient.SqlClient), close: Scope.close(scope, Exit.void) }
  })

const reasonOf = <A, R>(effect: Effect.Effect<A, SqlError.SqlError, R>) =>
  Effect.flip(effect).pipe(Effect.map((error) => {
    assert.isTrue(SqlError.isSqlError(error))
    return error.reason
  }))

const createItems = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL DEFAULT 0)`
  return sql
})

const names = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return (yield* sql<{ readonly name: string }>`SELECT name FROM items ORDER BY id`).map((row) => row.name)
})

describe("NodeSqliteClient", () => {
  describe("queries", () => {
    it.effect("binds parameters and returns rows as objects", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        yield* sql`INSERT INTO items ${sql.insert([{ name: "apple", qty: 3 }, { name: "pear", qty: 5 }])}`
        yield* sql`INSERT INTO items (name, qty) VALUES (${"plum"}, ${7})`
        const rows = yield* sql<{ readonly id: number; readonly name: string; readonly qty: number }>`
          SELECT id, name, qty FROM items WHERE qty > ${4} ORDER BY qty`
        assert.deepStrictEqual(rows.map((row) => ({ ...row })), [
          { id: 2, name: "pear", qty: 5 },
          { id: 3, name: "plum", qty: 7 }
        ])
        const inList = yield* sql<{ readonly name: string }>`SELECT name FROM items WHERE ${
          sql.in("name", ["apple", "plum"])
        } ORDER BY name`
        assert.deepStrictEqual(inList.map((row) => row.name), ["apple", "plum"])
        const updated = yield* sql`UPDATE items SET ${sql.update({ qty: 0 })} WHERE name = ${"apple"} RETURNING qty`
        assert.deepStrictEqual(updated.map((row) => row.qty), [0])
      }).pipe(Effect.provide(memory)))

    it.effect("returns values, raw results and unprepared results", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        const raw = yield* sql`INSERT INTO items ${sql.insert([{ name: "a" }, { name: "b" }])}`.raw
        assert.deepStrictEqual(raw, { changes: 2, lastInsertRowid: 2 })
        assert.deepStrictEqual(yield* sql`SELECT id, name FROM items ORDER BY id`.values, [[1, "a"], [2, "b"]])
        // the cached statement returns objects again after `.values`
        assert.deepStrictEqual((yield* sql`SELECT id, name FROM items ORDER BY id`).map((row) => row.name), ["a", "b"])
        const unprepared = yield* sql`SELECT name FROM items WHERE id = ${2}`.unprepared
        assert.deepStrictEqual(unprepared.map((row) => row.name), ["b"])
        const deleted = yield* sql`DELETE FROM items`.raw
        assert.deepStrictEqual(deleted, { changes: 2, lastInsertRowid: 2 })
      }).pipe(Effect.provide(memory)))

    it.effect("binds booleans as 1/0, dates as ISO text and undefined as NULL; refuses other objects", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ readonly yes: number; readonly no: number; readonly at: string; readonly none: null }>`
          SELECT ${true} AS yes, ${false} AS no, ${new Date(0)} AS at, ${undefined} AS none`
        assert.deepStrictEqual({ ...row }, { yes: 1, no: 0, at: "1970-01-01T00:00:00.000Z", none: null })
        const bytes = yield* sql<{ readonly b: Uint8Array }>`SELECT ${new Uint8Array([1, 2, 3])} AS b`
        assert.deepStrictEqual([...bytes[0]!.b], [1, 2, 3])
        const error = yield* Effect.flip(sql`SELECT ${{ not: "a value" }} AS x`)
        assert.isTrue(SqlError.isSqlError(error))
        assert.include(error.message, "cannot bind parameter 1")
        // values bound as they are, then ones that are converted or refused (the array is copied only then)
        const [mixed] = yield* sql<{ readonly s: string; readonly n: number; readonly z: null; readonly yes: number }>`
          SELECT ${"a"} AS s, ${2} AS n, ${null} AS z, ${true} AS yes`
        assert.deepStrictEqual({ ...mixed }, { s: "a", n: 2, z: null, yes: 1 })
        const late = yield* Effect.flip(sql`SELECT ${"a"}, ${2}, ${Symbol("x")} AS x`)
        assert.include(late.message, "cannot bind parameter 3")
      }).pipe(Effect.provide(memory)))

    it.effect("reads integers as bigint under SafeIntegers", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const big = yield* sql<{ readonly n: bigint }>`SELECT 9007199254740993 AS n`.pipe(
          Effect.provideService(SqlClient.SafeIntegers, true)
        )
        assert.strictEqual(big[0]!.n, 9007199254740993n)
        const plain = yield* sql<{ readonly n: number }>`SELECT 42 AS n`
        assert.strictEqual(plain[0]!.n, 42)
      }).pipe(Effect.provide(memory)))

    it.effect("streams rows in order, across several chunks", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* Stream.runCollect(
          sql<{ readonly x: number }>`
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${1000}) SELECT x FROM c`.stream
        )
        assert.strictEqual(rows.length, 1000)
        assert.isTrue(rows.every((row, i) => row.x === i + 1))
        // a stream stopped early gives the connection back
        const first = yield* Stream.runCollect(
          Stream.take(sql<{ readonly x: number }>`
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT x FROM c`.stream, 3)
        )
        assert.deepStrictEqual(first.map((row) => row.x), [1, 2, 3])
        assert.deepStrictEqual((yield* sql<{ readonly one: number }>`SELECT 1 AS one`).map((row) => row.one), [1])
      }).pipe(Effect.provide(memory)))

    it.effect("a stream stopped early finalizes its statement (the table can be dropped)", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        // more rows than one chunk of the stream, so that the statement is left mid-way
        yield* sql`INSERT INTO items (name)
          WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 999) SELECT 'item-' || x FROM c`
        const first = yield* Stream.runCollect(
          Stream.take(sql<{ readonly name: string }>`SELECT name FROM items ORDER BY id`.stream, 2)
        )
        assert.deepStrictEqual(first.map((row) => row.name), ["item-0", "item-1"])
        // SQLite refuses to drop a table that a statement is still reading ("database table is locked")
        yield* sql`DROP TABLE items`
      }).pipe(Effect.provide(memory)))

    it.effect("a failing stream fails with a SqlError", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reason = yield* reasonOf(Stream.runCollect(sql`SELECT * FROM missing_table`.stream))
        assert.include(reason.message, "no such table: missing_table")
      }).pipe(Effect.provide(memory)))

    it.effect("renames columns with transformResultNames and identifiers with transformQueryNames", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE people (first_name TEXT, last_name TEXT)`
        yield* sql`INSERT INTO people ${sql.insert({ firstName: "Ada", lastName: "Lovelace" })}`
        const rows = yield* sql<{ readonly firstName: string; readonly lastName: string }>`
          SELECT ${sql("firstName")}, last_name FROM people`
        assert.deepStrictEqual(rows.map((row) => ({ ...row })), [{ firstName: "Ada", lastName: "Lovelace" }])
        const untransformed = yield* sql.withoutTransforms()`SELECT first_name FROM people`
        assert.deepStrictEqual(untransformed.map((row) => row.first_name), ["Ada"])
      }).pipe(Effect.provide(NodeSqliteClient.layer({
        filename: ":memory:",
        transformQueryNames: (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
        transformResultNames: (name) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      }))))

    it.effect("works with the statement cache off or of size one", () =>
      Effect.gen(function*() {
        for (const prepareCacheSize of [0, 1]) {
          const total = yield* Effect.gen(function*() {
            const sql = yield* createItems
            for (const name of ["a", "b", "c"]) {
              yield* sql`INSERT INTO items (name, qty) VALUES (${name}, ${1})`
              yield* sql`SELECT count(*) AS n FROM items`
            }
            return (yield* sql<{ readonly n: number }>`SELECT sum(qty) AS n FROM items`)[0]!.n
          }).pipe(Effect.provide(NodeSqliteClient.layer({ filename: ":memory:", prepareCacheSize })))
          assert.strictEqual(total, 3)
        }
      }))
  })

  describe("errors", () => {
    it.effect("a UNIQUE violation fails with a UniqueViolation reason naming the constraint", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        yield* sql`INSERT INTO items (name) VALUES (${"apple"})`
        const reason = yield* reasonOf(sql`INSERT INTO items (name) VALUES (${"apple"})`)
        assert.strictEqual(reason._tag, "UniqueViolation")
        assert.strictEqual(reason._tag === "UniqueViolation" ? reason.constraint : "", "items.name")
        assert.include(reason.message, "UNIQUE constraint failed: items.name")
      }).pipe(Effect.provide(memory)))

    it.effect("a duplicate primary key is a UniqueViolation too (as on PostgreSQL)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT)`
        yield* sql`INSERT INTO tasks ${sql.insert({ id: "t-1", state: "pending" })}`
        const reason = yield* reasonOf(sql`INSERT INTO tasks ${sql.insert({ id: "t-1", state: "running" })}`)
        assert.strictEqual(reason._tag, "UniqueViolation")
        assert.strictEqual(reason._tag === "UniqueViolation" ? reason.constraint : "", "tasks.id")
      }).pipe(Effect.provide(memory)))

    it.effect("other constraint failures are ConstraintErrors", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        const reason = yield* reasonOf(sql`INSERT INTO items (name) VALUES (${null})`)
        assert.strictEqual(reason._tag, "ConstraintError")
        assert.include(reason.message, "NOT NULL constraint failed: items.name")
      }).pipe(Effect.provide(memory)))

    it.effect("a syntax error is a SqlError with a SqlSyntaxError reason", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reason = yield* reasonOf(sql`SELEC 1`)
        assert.strictEqual(reason._tag, "SqlSyntaxError")
        assert.include(reason.message, "syntax error")
        const missing = yield* reasonOf(sql`SELECT * FROM nowhere`)
        assert.strictEqual(missing._tag, "UnknownError")
        assert.include(missing.message, "no such table: nowhere")
      }).pipe(Effect.provide(memory)))

    it.effect("bad options fail with a message that names the option", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [NodeSqliteClient.NodeSqliteClientConfig, string]> = [
          [{ filename: "" }, "filename"],
          [{ filename: ":memory:", busyTimeout: -1 }, "busyTimeout"],
          [{ filename: ":memory:", busyTimeout: "soon" as never }, "busyTimeout"],
          [{ filename: ":memory:", prepareCacheSize: 1.5 }, "prepareCacheSize"],
          [{ filename: ":memory:", synchronous: "SOMETIMES" as never }, "synchronous"],
          [{ filename: ":memory:", transactionMode: "LAZY" as never }, "transactionMode"]
        ]
        for (const [config, option] of cases) {
          const reason = yield* reasonOf(Layer.build(NodeSqliteClient.layer(config)))
          assert.include(reason.message, `NodeSqliteClient: ${option} must be`)
        }
      }))

    it.effect("a file that cannot be opened fails with a ConnectionError", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const reason = yield* reasonOf(Layer.build(NodeSqliteClient.layer({ filename: join(dir, "no", "such", "dir.db") })))
        assert.strictEqual(reason._tag, "ConnectionError")
        assert.include(reason.message, "cannot open")
      }))
  })

  describe("transactions", () => {
    it.effect("commits on success", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (name) VALUES (${"a"})`
          yield* sql`INSERT INTO items (name) VALUES (${"b"})`
        }))
        assert.deepStrictEqual(yield* names, ["a", "b"])
      }).pipe(Effect.provide(memory)))

    it.effect("rolls back on failure", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        const error = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (name) VALUES (${"a"})`
          return yield* Effect.fail("boom")
        })))
        assert.strictEqual(error, "boom")
        // and on a failing statement inside
        const reason = yield* reasonOf(sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (name) VALUES (${"b"})`
          yield* sql`INSERT INTO items (name) VALUES (${"b"})`
        })))
        assert.strictEqual(reason._tag, "UniqueViolation")
        assert.deepStrictEqual(yield* names, [])
      }).pipe(Effect.provide(memory)))

    it.effect("rolls back on interruption", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        const inside = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (name) VALUES (${"a"})`
          yield* Deferred.succeed(inside, undefined)
          return yield* Effect.never
        })))
        yield* Deferred.await(inside)
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(yield* names, [])
        // the connection is usable, outside any transaction
        yield* sql.withTransaction(sql`INSERT INTO items (name) VALUES (${"b"})`)
        assert.deepStrictEqual(yield* names, ["b"])
      }).pipe(Effect.provide(memory)))

    it.effect("a nested transaction (savepoint) rolls back alone", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (name) VALUES (${"outer"})`
          const inner = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
            yield* sql`INSERT INTO items (name) VALUES (${"inner"})`
            return yield* Effect.fail("inner failed")
          })))
          assert.strictEqual(inner, "inner failed")
          yield* sql.withTransaction(sql`INSERT INTO items (name) VALUES (${"kept"})`)
          yield* sql`INSERT INTO items (name) VALUES (${"after"})`
        }))
        assert.deepStrictEqual(yield* names, ["outer", "kept", "after"])
      }).pipe(Effect.provide(memory)))

    it.effect("a COMMIT that fails (deferred foreign key) rolls back and leaves the connection usable", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE parents (id INTEGER PRIMARY KEY)`
        yield* sql`CREATE TABLE children (id INTEGER PRIMARY KEY,
          parent INTEGER NOT NULL REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`
        const reason = yield* reasonOf(sql.withTransaction(sql`INSERT INTO children (id, parent) VALUES (1, 42)`))
        assert.strictEqual(reason._tag, "ConstraintError")
        assert.include(reason.message, "FOREIGN KEY constraint failed")
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO parents (id) VALUES (42)`
          yield* sql`INSERT INTO children (id, parent) VALUES (2, 42)`
        }))
        const children = yield* sql<{ readonly id: number }>`SELECT id FROM children`
        assert.deepStrictEqual(children.map((row) => row.id), [2])
      }).pipe(Effect.provide(memory)))

    it.effect("transactions of concurrent fibers are serialized (no lost update)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE counter (n INTEGER NOT NULL)`
        yield* sql`INSERT INTO counter VALUES (0)`
        const increment = sql.withTransaction(Effect.gen(function*() {
          const [row] = yield* sql<{ readonly n: number }>`SELECT n FROM counter`
          yield* Effect.yieldNow // let the other fibers run between the read and the write
          yield* sql`UPDATE counter SET n = ${row!.n + 1}`
        }))
        yield* Effect.all(Array.from({ length: 20 }, () => increment), { concurrency: "unbounded", discard: true })
        assert.deepStrictEqual((yield* sql<{ readonly n: number }>`SELECT n FROM counter`).map((row) => row.n), [20])
      }).pipe(Effect.provide(memory)))

    it.effect("a second fiber's transaction starts after the first one ends", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        const log: Array<string> = []
        const inFirst = yield* Deferred.make<void>()
        const finishFirst = yield* Deferred.make<void>()
        const first = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          log.push("first begins")
          yield* sql`INSERT INTO items (name) VALUES (${"first"})`
          yield* Deferred.succeed(inFirst, undefined)
          yield* Deferred.await(finishFirst)
          log.push("first ends")
        })))
        yield* Deferred.await(inFirst)
        const second = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          log.push("second begins")
          yield* sql`INSERT INTO items (name) VALUES (${"second"})`
        })))
        // a plain query of a third fiber waits for the connection too
        const third = yield* Effect.forkChild(names)
        yield* Deferred.succeed(finishFirst, undefined)
        yield* Fiber.join(first)
        yield* Fiber.join(second)
        assert.deepStrictEqual(log, ["first begins", "first ends", "second begins"])
        assert.includeMembers(yield* Fiber.join(third), ["first"])
        assert.deepStrictEqual(yield* names, ["first", "second"])
      }).pipe(Effect.provide(memory)))

    it.effect("a transaction waiting for the connection can be interrupted", () =>
      Effect.gen(function*() {
        const sql = yield* createItems
        const inFirst = yield* Deferred.make<void>()
        const finishFirst = yield* Deferred.make<void>()
        const first = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (name) VALUES (${"first"})`
          yield* Deferred.succeed(inFirst, undefined)
          yield* Deferred.await(finishFirst)
        })))
        yield* Deferred.await(inFirst)
        const queued = yield* Effect.forkChild(sql.withTransaction(sql`INSERT INTO items (name) VALUES (${"queued"})`))
        yield* Fiber.interrupt(queued)
        yield* Deferred.succeed(finishFirst, undefined)
        yield* Fiber.join(first)
        assert.deepStrictEqual(yield* names, ["first"])
      }).pipe(Effect.provide(memory)))
  })

  describe("migrations", () => {
    it.effect("Migrator applies each migration once", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const migrate = Migrator.make({})({
          loader: Migrator.fromRecord({
            "1_create_items": sql`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`,
            "2_seed_items": sql`INSERT INTO items (name) VALUES ('seed')`
          })
        })
        assert.deepStrictEqual(yield* migrate, [[1, "create_items"], [2, "seed_items"]])
        assert.deepStrictEqual(yield* migrate, [])
        assert.deepStrictEqual(yield* names, ["seed"])
        const applied = yield* sql<{ readonly migration_id: number }>`
          SELECT migration_id FROM effect_sql_migrations ORDER BY migration_id`
        assert.deepStrictEqual(applied.map((row) => row.migration_id), [1, 2])
      }).pipe(Effect.provide(memory)))
  })

  describe("files", () => {
    it.effect("a file database keeps its data after the layer is closed and reopened", () =>
      Effect.gen(function*() {
        const filename = join(yield* tempDir, "store.db")
        const first = yield* open({ filename })
        yield* Effect.provideService(createItems, SqlClient.SqlClient, first.sql)
        yield* first.sql`INSERT INTO items ${first.sql.insert([{ name: "a" }, { name: "b" }])}`
        yield* first.close
        const second = yield* open({ filename })
        assert.deepStrictEqual(yield* Effect.provideService(names, SqlClient.SqlClient, second.sql), ["a", "b"])
        yield* second.close
      }))

    it.effect("a file database uses WAL, FULL sync and a 5 second busy timeout by default", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const pragmas = (config: NodeSqliteClient.NodeSqliteClientConfig) =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const [journal] = yield* sql<{ readonly journal_mode: string }>`PRAGMA journal_mode`
            const [sync] = yield* sql<{ readonly synchronous: number }>`PRAGMA synchronous`
            const [busy] = yield* sql<{ readonly timeout: number }>`PRAGMA busy_timeout`
            return [journal!.journal_mode, sync!.synchronous, busy!.timeout] as const
          }).pipe(Effect.provide(NodeSqliteClient.layer(config)))
        assert.deepStrictEqual(yield* pragmas({ filename: join(dir, "default.db") }), ["wal", 2, 5000])
        assert.deepStrictEqual(
          yield* pragmas({ filename: join(dir, "tuned.db"), wal: false, synchronous: "NORMAL", busyTimeout: "250 millis" }),
          ["delete", 1, 250]
        )
      }))

    it.effect("the database is closed when the scope closes", () =>
      Effect.gen(function*() {
        const filename = join(yield* tempDir, "closed.db")
        const { sql, close } = yield* open({ filename })
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`INSERT INTO t VALUES (1)`
        // an open WAL database has its -wal file; the last connection's close checkpoints and removes it
        assert.isTrue(existsSync(`${filename}-wal`))
        yield* close
        assert.isFalse(existsSync(`${filename}-wal`))
        assert.isTrue(statSync(filename).size > 0)
        const reason = yield* reasonOf(sql`SELECT x FROM t`)
        assert.strictEqual(reason._tag, "ConnectionError")
        assert.include(reason.message, "the database is closed")
        const transaction = yield* reasonOf(sql.withTransaction(sql`SELECT x FROM t`))
        assert.strictEqual(transaction._tag, "ConnectionError")
      }))

    it.effect("a second client on the same file gets a LockTimeoutError while the first one writes", () =>
      Effect.gen(function*() {
        const filename = join(yield* tempDir, "shared.db")
        const first = yield* open({ filename })
        const second = yield* open({ filename, busyTimeout: 0 })
        yield* Effect.provideService(createItems, SqlClient.SqlClient, first.sql)
        const inFirst = yield* Deferred.make<void>()
        const finishFirst = yield* Deferred.make<void>()
        const writer = yield* Effect.forkChild(first.sql.withTransaction(Effect.gen(function*() {
          yield* first.sql`INSERT INTO items (name) VALUES (${"first"})`
          yield* Deferred.succeed(inFirst, undefined)
          yield* Deferred.await(finishFirst)
        })))
        yield* Deferred.await(inFirst)
        // BEGIN IMMEDIATE takes the write lock, which the first client holds
        const reason = yield* reasonOf(second.sql.withTransaction(second.sql`INSERT INTO items (name) VALUES (${"second"})`))
        assert.strictEqual(reason._tag, "LockTimeoutError")
        assert.isTrue(reason.isRetryable)
        // a reader is not blocked by the writer (WAL), and does not see its uncommitted row
        assert.deepStrictEqual(yield* Effect.provideService(names, SqlClient.SqlClient, second.sql), [])
        yield* Deferred.succeed(finishFirst, undefined)
        yield* Fiber.join(writer)
        yield* second.sql.withTransaction(second.sql`INSERT INTO items (name) VALUES (${"second"})`)
        assert.deepStrictEqual(yield* Effect.provideService(names, SqlClient.SqlClient, first.sql), ["first", "second"])
        yield* second.close
        yield* first.close
      }))

    it.effect("a read-only database reads and refuses writes", () =>
      Effect.gen(function*() {
        const filename = join(yield* tempDir, "ro.db")
        const writer = yield* open({ filename })
        yield* Effect.provideService(createItems, SqlClient.SqlClient, writer.sql)
        yield* writer.sql`INSERT INTO items (name) VALUES (${"a"})`
        yield* writer.close
        const reader = yield* open({ filename, readonly: true })
        assert.deepStrictEqual(yield* Effect.provideService(names, SqlClient.SqlClient, reader.sql), ["a"])
        const reason = yield* reasonOf(reader.sql`INSERT INTO items (name) VALUES (${"b"})`)
        assert.include(reason.message, "readonly")
        // transactions begin DEFERRED on a read-only database
        const inTransaction = yield* reader.sql.withTransaction(Effect.provideService(names, SqlClient.SqlClient, reader.sql))
        assert.deepStrictEqual(inTransaction, ["a"])
        yield* reader.close
      }))

    it.effect("make gives a client for a scope you own", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const sql = yield* NodeSqliteClient.make({ filename: ":memory:" }).pipe(Scope.provide(scope))
        assert.strictEqual(sql.driver, "sqlite-node")
        assert.deepStrictEqual((yield* sql<{ readonly n: number }>`SELECT 1 + 1 AS n`).map((row) => row.n), [2])
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* reasonOf(sql`SELECT 1`))._tag, "ConnectionError")
      }).pipe(Effect.provide(Reactivity.layer)))
  })
})
