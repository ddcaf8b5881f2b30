/**
 * The PostgreSQL plumbing for the tests works: the server the global setup
 * found answers through `@effect/sql-pg`'s `PgClient.layer`; transactions
 * commit and roll back; each fresh database is private and dropped when its
 * layer is released. (test/utils/postgres.ts, test/utils/postgres.global.ts)
 */
import { assert } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { describePg, layerFreshDatabase, layerServerDatabase, PgTestDatabase } from "./utils/postgres.ts"

class Boom extends Error {}

const tableExists = (sql: SqlClient.SqlClient, table: string) =>
  sql<{ found: boolean }>`select to_regclass(${table}) is not null as found`.pipe(Effect.map((rows) => rows[0]?.found))

const databaseExists = (sql: SqlClient.SqlClient, name: string) =>
  sql<{ n: number }>`select count(*)::int as n from pg_database where datname = ${name}`.pipe(
    Effect.map((rows) => rows[0]?.n === 1)
  )

/** Builds a fresh database's layer in the test's scope and returns its client and name. */
const freshDatabase = (label: string) =>
  Layer.build(layerFreshDatabase(label)).pipe(
    Effect.map((context) => ({
      sql: Context.get(context, SqlClient.SqlClient),
      name: Context.get(context, PgTestDatabase).name
    }))
  )

describePg("PostgreSQL for the tests", (it) => {
  it.effect("answers select 1 through the pg dialect", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // (`sql.driver` is undefined with @effect/sql-pg 4.0.5; the dialect is set)
      assert.strictEqual(sql.onDialectOrElse({ pg: () => "pg", orElse: () => "other" }), "pg")
      assert.deepStrictEqual(yield* sql<{ one: number }>`select 1 as one`, [{ one: 1 }])
    }))

  it.effect("connects to the block's own fresh database", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { name } = yield* PgTestDatabase
      assert.match(name, /^eth_postgresql_for_the_tests_[a-z0-9]+_[0-9a-f]{8}$/)
      const [row] = yield* sql<{ db: string }>`select current_database() as db`
      assert.strictEqual(row?.db, name)
    }))

  it.effect("commits a transaction: the table created and the rows written in it remain", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`create table committed (id int primary key, name text not null)`
        yield* sql`insert into committed ${sql.insert([{ id: 1, name: "one" }, { id: 2, name: "two" }])}`
      }))
      assert.isTrue(yield* tableExists(sql, "committed"))
      assert.deepStrictEqual(yield* sql`select id, name from committed order by id`, [
        { id: 1, name: "one" },
        { id: 2, name: "two" }
      ])
    }))

  it.effect("rolls back a transaction that fails: nothing it did remains", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`create table kept (id int primary key)`
      yield* sql`insert into kept values (1)`
      const exit = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`create table dropped (id int)`
        yield* sql`insert into kept values (2)`
        yield* sql`delete from kept where id = 1`
        return yield* Effect.die(new Boom("fails after writing"))
      })).pipe(Effect.exit)
      assert.isTrue(Exit.hasDies(exit))
      assert.isFalse(yield* tableExists(sql, "dropped"))
      assert.deepStrictEqual(yield* sql`select id from kept`, [{ id: 1 }])
    }))

  it.effect("rolls back a transaction whose statement fails, with a typed SqlError", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`create table unique_ids (id int primary key)`
      const error = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`insert into unique_ids values (7)`
        yield* sql`insert into unique_ids values (7)`
      })).pipe(Effect.flip)
      assert.strictEqual(error._tag, "SqlError")
      assert.strictEqual(error.reason._tag, "UniqueViolation")
      assert.deepStrictEqual(yield* sql`select id from unique_ids`, [])
    }))

  it.effect("keeps two fresh databases apart: same table name, each sees only its rows", () =>
    Effect.gen(function*() {
      const a = yield* freshDatabase("isolation a")
      const b = yield* freshDatabase("isolation b")
      assert.notStrictEqual(a.name, b.name)
      yield* a.sql`create table items (label text)`
      yield* b.sql`create table items (label text)`
      yield* a.sql`insert into items values ('from a')`
      yield* b.sql`insert into items values ('from b'), ('also from b')`
      assert.deepStrictEqual(yield* a.sql`select label from items`, [{ label: "from a" }])
      assert.deepStrictEqual(yield* b.sql`select label from items order by label`, [
        { label: "also from b" },
        { label: "from b" }
      ])
      // neither sees the block's tables either
      assert.isFalse(yield* tableExists(a.sql, "committed"))
    }))

  it.effect("drops a fresh database when its layer is released", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const scope = yield* Scope.make()
      const fresh = yield* freshDatabase("dropped").pipe(Scope.provide(scope))
      assert.isTrue(yield* databaseExists(sql, fresh.name))
      yield* fresh.sql`create table t (id int)`
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* databaseExists(sql, fresh.name))
    }))

  it.effect("reaches the server's own database too (layerServerDatabase)", () =>
    Effect.gen(function*() {
      const { name } = yield* PgTestDatabase
      const seen = yield* Effect.gen(function*() {
        const server = yield* SqlClient.SqlClient
        const [row] = yield* server<{ db: string }>`select current_database() as db`
        return { db: row?.db, fresh: yield* databaseExists(server, name) }
      }).pipe(Effect.provide(layerServerDatabase))
      assert.notStrictEqual(seen.db, name)
      assert.isTrue(seen.fresh)
    }))
})
