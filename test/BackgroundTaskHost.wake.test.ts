/**
 * The lease on wake: a host whose clock has jumped past its lease's expiry
 * (a process paused with SIGSTOP, a machine that slept: the wall clock moved
 * on, no timer fired) confirms its lease in the store before it lets queued
 * work start — a task's first run, its next attempt, a fencing token handed
 * to a task. Another host holding the lease by then: the work never starts
 * and the host stops, saying why. The lease still ours: one renewal, shared
 * by everything that woke, and the work goes on. While the lease surely
 * holds, starting work costs a clock read, no round trip. On a SQLite file
 * and on PostgreSQL.
 *
 * The jump: the test's clock read `ahead` milliseconds later (`jumpingClock`),
 * while `TestClock.adjust` fires the timers that come due.
 */
import { assert } from "@effect/vitest"
import { Clock, Deferred, Effect, Option, Ref, type Scope } from "effect"
import { TestClock } from "effect/testing"
import { type BackgroundTaskHost, type BackgroundTaskHostStoreOptions, SessionError, TaskContext } from "../src/index.ts"
import { describeStores, eventRows, leaseRow, makeStore, sqlStore, startHost, taskRows, wrapStore } from "./utils/store.ts"

/**
 * The test's `TestClock`, read `ahead` ms later: `jump` moves the wall clock
 * on without firing a timer (as after a machine's sleep); `TestClock.adjust`
 * still fires the timers due. Provide it with `Effect.provideService(Clock.Clock, …)`.
 */
const jumpingClock = Effect.gen(function*() {
  const testClock = yield* TestClock.testClockWith(Effect.succeed)
  let ahead = 0
  const millis = () => testClock.currentTimeMillisUnsafe() + ahead
  const nanos = () => testClock.currentTimeNanosUnsafe() + BigInt(ahead) * BigInt(1_000_000)
  const clock: TestClock.TestClock = {
    ...testClock,
    currentTimeMillisUnsafe: millis,
    currentTimeMillis: Effect.sync(millis),
    currentTimeNanosUnsafe: nanos,
    currentTimeNanos: Effect.sync(nanos)
  }
  return { clock, jump: (by: number) => Effect.sync(() => void (ahead += by)) }
})

/** Runs `test` with the clock that jumps. */
const withJumps = <A, E>(
  test: (jump: (by: number) => Effect.Effect<void>) => Effect.Effect<A, E, Scope.Scope>
): Effect.Effect<A, E, Scope.Scope> =>
  Effect.flatMap(jumpingClock, ({ clock, jump }) => Effect.provideService(test(jump), Clock.Clock, clock))

const lease = (owner: string): BackgroundTaskHostStoreOptions => ({
  lease: { ttl: "10 seconds", renewEvery: "3 seconds", owner }
})

const slept = "its clock passed its lease's expiry (was the process paused, or the machine asleep?)"

describeStores("BackgroundTaskHost: the lease on wake", (test, backend) => {
  /** A host on a fresh database whose store counts the lease's renewals. */
  const counted = (options: BackgroundTaskHostStoreOptions) =>
    Effect.gen(function*() {
      const { sql } = yield* backend.fresh
      const renewals = yield* Ref.make(0)
      const counting = wrapStore(sqlStore(sql), (store) => ({
        ...store,
        renewLease: (owner, expiresAt) => Effect.andThen(Ref.update(renewals, (n) => n + 1), store.renewLease(owner, expiresAt))
      }))
      const started = yield* startHost(sql, options, counting)
      return { ...started, sql, renewals }
    })

  /** Spawns `id`: its first attempt fails (completing `failed`), the next ones count in `attempts` and complete. */
  const retrying = (host: BackgroundTaskHost["Service"], id: string, attempts: Ref.Ref<number>) =>
    Effect.gen(function*() {
      const failed = yield* Deferred.make<void>()
      yield* host.spawnManaged(
        "s",
        { id, kind: "other", producer: "p", maxAttempts: 3, backoff: { initialMillis: 1_000 } },
        Effect.gen(function*() {
          if (!(yield* Deferred.isDone(failed))) {
            yield* Deferred.succeed(failed, undefined)
            return yield* Effect.fail(new Error("the first attempt fails"))
          }
          yield* Ref.update(attempts, (n) => n + 1)
          return `${id} done`
        })
      )
      yield* Deferred.await(failed)
    })

  /** Waits until the store holds every task of `ids` in `waiting` (the failed attempt's writes are committed). */
  const waitingInStore = (sql: Parameters<typeof taskRows>[0], ids: ReadonlyArray<string>) =>
    Effect.repeat(taskRows(sql), {
      until: (rows) => ids.every((id) => rows.some((row) => row.task_id === id && row.state === "waiting"))
    })

  test("past its lease, another host holding it now: the next attempts never start, one renewal finds it taken, the host stops saying why", () =>
    withJumps((jump) =>
      Effect.gen(function*() {
        const t0 = yield* Clock.currentTimeMillis
        const { host, renewals, sql } = yield* counted(lease("host-a"))
        const attempts = yield* Ref.make(0)
        const ids = ["j1", "j2", "j3"]
        for (const id of ids) yield* retrying(host, id, attempts)
        yield* waitingInStore(sql, ids)
        // the machine sleeps for a minute; meanwhile another host takes the lease
        yield* jump(60_000)
        const other = yield* makeStore(sql)
        assert.strictEqual(yield* other.acquireLease("host-b", t0 + 60_000, t0 + 70_000), 2)
        // the backoff's timers fire (1 s): each next attempt passes the lease first
        yield* TestClock.adjust("1 second")
        const stopped = yield* Effect.flip(host.await("j1"))
        assert.instanceOf(stopped, SessionError)
        assert.include(stopped.message, `host-a stopped: ${slept} and another host has taken its store's lease`)
        assert.strictEqual(yield* Ref.get(attempts), 0, "no next attempt started")
        assert.strictEqual(yield* Ref.get(renewals), 1, "one renewal for all three")
        // nothing more was written: the tasks are the new holder's to recover
        assert.deepStrictEqual((yield* taskRows(sql)).map((row) => [row.task_id, row.state]), ids.map((id) => [id, "waiting"]))
        assert.strictEqual(Option.getOrThrow(yield* leaseRow(sql)).owner, "host-b")
      })
    ), 30_000)

  test("past its lease, the lease still ours: one renewal confirms it, and the next attempts run", () =>
    withJumps((jump) =>
      Effect.gen(function*() {
        const t0 = yield* Clock.currentTimeMillis
        const { host, renewals, sql } = yield* counted(lease("host-a"))
        const attempts = yield* Ref.make(0)
        const ids = ["j1", "j2", "j3"]
        for (const id of ids) yield* retrying(host, id, attempts)
        yield* waitingInStore(sql, ids)
        yield* jump(60_000)
        yield* TestClock.adjust("1 second")
        for (const id of ids) assert.strictEqual((yield* host.await(id)).state, "completed", id)
        assert.strictEqual(yield* Ref.get(attempts), 3)
        assert.strictEqual(yield* Ref.get(renewals), 1, "one renewal for all three")
        // renewed from the clock as it reads now
        assert.strictEqual(Option.getOrThrow(yield* leaseRow(sql)).expires_at, t0 + 61_000 + 10_000)
        // and the host runs on
        yield* host.register({ scope: { sessionId: "s" }, id: "later", kind: "other", producer: "p" })
      })
    ), 30_000)

  test("past its lease, another host holding it now: a task queued for a slot that frees never starts", () =>
    withJumps((jump) =>
      Effect.gen(function*() {
        const t0 = yield* Clock.currentTimeMillis
        const { host, sql } = yield* counted({ ...lease("host-a"), concurrency: { perSession: 1 } })
        const go = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        yield* host.spawnManaged("s", { id: "first", kind: "other", producer: "p" }, Deferred.await(go))
        const queued = yield* host.spawnManaged("s", { id: "queued", kind: "other", producer: "p" }, Deferred.succeed(started, undefined))
        assert.strictEqual(queued.state, "pending")
        yield* jump(60_000)
        const other = yield* makeStore(sql)
        yield* other.acquireLease("host-b", t0 + 60_000, t0 + 70_000)
        // the first task ends: its slot frees, and the queued one would start
        yield* Deferred.succeed(go, undefined)
        const stopped = yield* Effect.flip(host.await("queued"))
        assert.instanceOf(stopped, SessionError)
        assert.include(stopped.message, "host-a stopped")
        assert.include(stopped.message, "another host has taken its store's lease")
        assert.isFalse(yield* Deferred.isDone(started), "the queued task never ran")
        assert.deepStrictEqual((yield* taskRows(sql)).map((row) => [row.task_id, row.state]), [["first", "running"], ["queued", "pending"]])
      })
    ), 30_000)

  test("past its lease: a task reading its fencing token gets it once the lease is confirmed, and is stopped instead when another host holds it", () =>
    withJumps((jump) =>
      Effect.gen(function*() {
        const t0 = yield* Clock.currentTimeMillis
        const { host, renewals, sql } = yield* counted(lease("host-a"))
        const reader = (id: string) =>
          Effect.gen(function*() {
            const go = yield* Deferred.make<void>()
            const read = yield* Deferred.make<number>()
            yield* host.spawnManaged("s", { id, kind: "other", producer: "p" }, Effect.gen(function*() {
              yield* Deferred.await(go)
              const ctx = yield* TaskContext
              yield* Deferred.succeed(read, yield* ctx.fencingToken)
            }))
            return { go, read }
          })
        // the lease surely holds: the token is handed out with no round trip
        const before = yield* reader("before")
        yield* Deferred.succeed(before.go, undefined)
        assert.strictEqual(yield* Deferred.await(before.read), 1)
        assert.strictEqual(yield* Ref.get(renewals), 0)

        // past the lease, still ours: confirmed by one renewal, then handed out
        const ours = yield* reader("ours")
        yield* jump(60_000)
        yield* Deferred.succeed(ours.go, undefined)
        assert.strictEqual(yield* Deferred.await(ours.read), 1)
        assert.strictEqual(yield* Ref.get(renewals), 1)

        // past it again, taken by another host: the task is stopped before it gets the token
        const taken = yield* reader("taken")
        yield* jump(60_000)
        const other = yield* makeStore(sql)
        assert.strictEqual(yield* other.acquireLease("host-b", t0 + 120_000, t0 + 130_000), 2)
        yield* Deferred.succeed(taken.go, undefined)
        const stopped = yield* Effect.flip(host.await("taken"))
        assert.include(stopped.message, `${slept} and another host has taken its store's lease`)
        assert.isFalse(yield* Deferred.isDone(taken.read), "no token handed out")
      })
    ), 30_000)

  test("past its lease, another host holding it now: the pruner of stored events deletes nothing", () =>
    withJumps((jump) =>
      Effect.gen(function*() {
        const t0 = yield* Clock.currentTimeMillis
        const { host, sql } = yield* counted({ ...lease("host-a"), eventRetention: { maxEvents: 5, pruneEvery: "1 second" } })
        for (let i = 0; i < 9; i++) yield* host.register({ scope: { sessionId: "s" }, id: `r${i}`, kind: "other", producer: "p" })
        yield* host.spawnManaged("s", { id: "worker", kind: "other", producer: "p" }, Effect.never)
        yield* jump(60_000)
        const other = yield* makeStore(sql)
        yield* other.acquireLease("host-b", t0 + 60_000, t0 + 70_000)
        // the pruner's tick: there are events to prune, but the lease is confirmed first
        yield* TestClock.adjust("1 second")
        const stopped = yield* Effect.flip(host.await("worker"))
        assert.instanceOf(stopped, SessionError)
        assert.include(stopped.message, `${slept} and another host has taken its store's lease`)
        assert.strictEqual((yield* eventRows(sql)).length, 10, "no event deleted")
      })
    ), 30_000)

  test("while the lease surely holds, starting work costs no round trip to the store", () =>
    Effect.gen(function*() {
      const { host, renewals } = yield* counted(lease("host-a"))
      const attempts = yield* Ref.make(0)
      yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => `t${i}`), (id) =>
        host.spawnManaged("s", { id, kind: "other", producer: "p" }, Effect.as(Ref.update(attempts, (n) => n + 1), id)))
      for (let i = 0; i < 50; i++) assert.strictEqual((yield* host.await(`t${i}`)).state, "completed")
      // retries within the lease too
      yield* retrying(host, "r", attempts)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* host.await("r")).state, "completed")
      assert.strictEqual(yield* Ref.get(attempts), 51)
      assert.strictEqual(yield* Ref.get(renewals), 0)
    }), 30_000)
})
