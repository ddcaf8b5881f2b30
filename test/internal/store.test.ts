/**
 * How the SQL store reads its driver's failures (`storeFailures`): an outage
 * must be told apart from a refused statement, whatever shape it arrives in,
 * or the host stops for good instead of riding it out.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { SqlError } from "effect/sql"
import { LeaseHeld, TaskStoreError } from "../../src/index.ts"
import { storeFailures } from "../../src/internal/store.ts"

/** A PostgreSQL error response as the driver makes it: an `Error` carrying the SQLSTATE. */
const pgError = (code: string, message: string) => Object.assign(new Error(message), { code })

const connectionDropped = new SqlError.SqlError({
  reason: new SqlError.ConnectionError({ cause: new Error("read ECONNRESET"), message: "PgConnection: Socket error" })
})
const shuttingDown = new SqlError.SqlError({
  reason: new SqlError.UnknownError({
    cause: pgError("57P03", "the database system is shutting down"),
    message: "PgConnection: Query failed"
  })
})
const duplicate = new SqlError.SqlError({
  reason: new SqlError.UniqueViolation({
    cause: pgError("23505", "duplicate key value violates unique constraint"),
    message: "PgConnection: Query failed",
    constraint: "task_host_events_pkey"
  })
})

/** The reason's tag of the `TaskStoreError` a cause becomes, or how else it ended. */
const outcome = (cause: Cause.Cause<unknown>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(storeFailures("write")(Effect.failCause(cause)))
    if (Exit.isSuccess(exit)) return "success"
    const error = Cause.findErrorOption(exit.cause)
    if (error._tag === "Some") {
      return error.value instanceof TaskStoreError ? error.value.reason._tag : (error.value as { _tag: string })._tag
    }
    return Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "defect"
  })

describe("storeFailures", () => {
  it.effect("a dropped connection is unreachable, as a failure and as the defect of a failed ROLLBACK", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* outcome(Cause.fail(connectionDropped)), "StoreUnreachable")
      // `withTransaction`: the statement failed, then its ROLLBACK on the dead connection died
      assert.strictEqual(
        yield* outcome(Cause.combine(Cause.fail(connectionDropped), Cause.die(connectionDropped))),
        "StoreUnreachable"
      )
      assert.strictEqual(yield* outcome(Cause.die(connectionDropped)), "StoreUnreachable")
    }))

  it.effect("PostgreSQL shutting down or starting up (57P01-57P03) is unreachable; the message says what the server said", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* outcome(Cause.fail(shuttingDown)), "StoreUnreachable")
      const exit = yield* Effect.exit(storeFailures("write")(Effect.fail(shuttingDown)))
      const error = Cause.findErrorOption(Exit.isFailure(exit) ? exit.cause : Cause.empty)
      assert.isTrue(error._tag === "Some" && error.value instanceof TaskStoreError)
      if (error._tag === "Some") {
        assert.include((error.value as TaskStoreError).message, "the database system is shutting down (57P03)")
      }
      for (const code of ["57P01", "57P02"]) {
        const other = new SqlError.SqlError({ reason: new SqlError.UnknownError({ cause: pgError(code, "terminating"), message: "x" }) })
        assert.strictEqual(yield* outcome(Cause.fail(other)), "StoreUnreachable", code)
      }
    }))

  it.effect("a refused statement is rejected; unreachable wins when a cause holds both", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* outcome(Cause.fail(duplicate)), "StoreRejected")
      assert.strictEqual(yield* outcome(Cause.combine(Cause.fail(duplicate), Cause.die(connectionDropped))), "StoreUnreachable")
    }))

  it.effect("LeaseHeld stays itself; an interruption and a defect that is not the store's stay as they are", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* outcome(Cause.fail(new LeaseHeld({ holder: "other", expiresAt: 1 }))), "LeaseHeld")
      assert.strictEqual(yield* outcome(Cause.interrupt()), "interrupted")
      assert.strictEqual(yield* outcome(Cause.die(new Error("a bug"))), "defect")
      assert.strictEqual(yield* outcome(Cause.combine(Cause.fail(connectionDropped), Cause.die(new Error("a bug")))), "defect")
    }))
})
