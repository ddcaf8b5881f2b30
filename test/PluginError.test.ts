import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import {
  InvalidTransition,
  InvokeError,
  isPluginError,
  PluginError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskAlreadyExists,
  TaskNotFound
} from "../src/index.ts"

const PluginErrorJson = Schema.fromJsonString(PluginError)
const encodeError = Schema.encodeEffect(PluginErrorJson)
const decodeError = Schema.decodeUnknownEffect(PluginErrorJson)

/** any of the seven error classes, as `assert.instanceOf` takes them */
type ErrorClass = new(...args: Array<any>) => PluginError

interface Case {
  readonly name: string
  readonly error: PluginError
  readonly errorClass: ErrorClass
  /** the fields the error was constructed with */
  readonly fields: Readonly<Record<string, string>>
  /** the exact wire object */
  readonly wire: Readonly<Record<string, string>>
  /** the task id its message must mention, if it has one */
  readonly taskId?: string
}

const cases: ReadonlyArray<Case> = [
  {
    name: "RegistrationError",
    error: new RegistrationError({ message: "id must not be empty" }),
    errorClass: RegistrationError,
    fields: { message: "id must not be empty" },
    wire: { type: "registration_error", message: "id must not be empty" }
  },
  {
    name: "SnapshotError",
    error: new SnapshotError({ message: "bad filter" }),
    errorClass: SnapshotError,
    fields: { message: "bad filter" },
    wire: { type: "snapshot_error", message: "bad filter" }
  },
  {
    name: "InvokeError",
    error: new InvokeError({ message: "could not start" }),
    errorClass: InvokeError,
    fields: { message: "could not start" },
    wire: { type: "invoke_error", message: "could not start" }
  },
  {
    name: "SessionError",
    error: new SessionError({ message: "host closed" }),
    errorClass: SessionError,
    fields: { message: "host closed" },
    wire: { type: "session_error", message: "host closed" }
  },
  {
    name: "TaskNotFound",
    error: new TaskNotFound({ taskId: "t1", sessionId: "s1" }),
    errorClass: TaskNotFound,
    fields: { taskId: "t1", sessionId: "s1" },
    wire: { type: "task_not_found", task_id: "t1", session_id: "s1" },
    taskId: "t1"
  },
  {
    name: "TaskNotFound without a session",
    error: new TaskNotFound({ taskId: "t2" }),
    errorClass: TaskNotFound,
    fields: { taskId: "t2" },
    wire: { type: "task_not_found", task_id: "t2" },
    taskId: "t2"
  },
  {
    name: "TaskAlreadyExists",
    error: new TaskAlreadyExists({ taskId: "t3", sessionId: "s3" }),
    errorClass: TaskAlreadyExists,
    fields: { taskId: "t3", sessionId: "s3" },
    wire: { type: "task_already_exists", task_id: "t3", session_id: "s3" },
    taskId: "t3"
  },
  {
    name: "InvalidTransition",
    error: new InvalidTransition({ taskId: "t4", from: "completed", to: "running" }),
    errorClass: InvalidTransition,
    fields: { taskId: "t4", from: "completed", to: "running" },
    wire: { type: "invalid_transition", task_id: "t4", from: "completed", to: "running" },
    taskId: "t4"
  }
]

const fieldsOf = (error: PluginError, keys: ReadonlyArray<string>): Record<string, unknown> =>
  Object.fromEntries(keys.map((key) => [key, (error as unknown as Record<string, unknown>)[key]]))

describe("PluginError wire form", () => {
  it.effect.each(cases)("$name encodes to its snake_case wire object", ({ error, wire }) =>
    Effect.gen(function*() {
      const json = yield* encodeError(error)
      assert.deepStrictEqual(JSON.parse(json), wire)
    }))

  it.effect.each(cases)("$name decodes back to an instance of its class with equal fields", (c) =>
    Effect.gen(function*() {
      const decoded = yield* decodeError(JSON.stringify(c.wire))
      assert.instanceOf(decoded, c.errorClass)
      assert.strictEqual(decoded._tag, c.error._tag)
      const keys = Object.keys(c.fields)
      assert.deepStrictEqual(fieldsOf(decoded, keys), c.fields)
      assert.strictEqual(decoded.message, c.error.message)
      if (!("sessionId" in c.fields)) {
        assert.isFalse("sessionId" in decoded)
      }
    }))

  it.effect.each(cases)("$name survives an encode/decode round trip", ({ error, errorClass, fields }) =>
    Effect.gen(function*() {
      const decoded = yield* decodeError(yield* encodeError(error))
      assert.instanceOf(decoded, errorClass)
      assert.deepStrictEqual(fieldsOf(decoded, Object.keys(fields)), fieldsOf(error, Object.keys(fields)))
    }))

  it.effect("covers all seven error classes", () =>
    Effect.sync(() => {
      assert.strictEqual(new Set(cases.map((c) => c.errorClass)).size, 7)
    }))

  it.effect("an unknown wire type fails to decode with a SchemaError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeError(JSON.stringify({ type: "exploded", message: "m" })))
      assert.strictEqual(error._tag, "SchemaError")
    }))

  it.effect("the in-memory _tag is not accepted in place of the wire type", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeError(JSON.stringify({ _tag: "TaskNotFound", taskId: "t1" })))
      assert.strictEqual(error._tag, "SchemaError")
    }))

  it.effect("a wire error missing a required field fails to decode with a SchemaError", () =>
    Effect.gen(function*() {
      const noTask = yield* Effect.flip(decodeError(JSON.stringify({ type: "task_already_exists", session_id: "s" })))
      assert.strictEqual(noTask._tag, "SchemaError")
      const noMessage = yield* Effect.flip(decodeError(JSON.stringify({ type: "session_error" })))
      assert.strictEqual(noMessage._tag, "SchemaError")
    }))

  it.effect("an invalid_transition whose from is not a task state fails to decode with a SchemaError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeError(JSON.stringify({
        type: "invalid_transition",
        task_id: "t1",
        from: "exploded",
        to: "running"
      })))
      assert.strictEqual(error._tag, "SchemaError")
    }))

  it.effect("an invalid_transition with an unknown to decodes: to is the requested state as given", () =>
    Effect.gen(function*() {
      const decoded = yield* decodeError(JSON.stringify({
        type: "invalid_transition",
        task_id: "t1",
        from: "running",
        to: "exploded"
      }))
      assert.instanceOf(decoded, InvalidTransition)
      assert.include(decoded.message, "not a task state")
    }))
})

describe("PluginError messages", () => {
  it.effect.each(cases)("$name has a readable non-empty message", (c) =>
    Effect.sync(() => {
      assert.isString(c.error.message)
      assert.isAbove(c.error.message.trim().length, 0)
      assert.notInclude(c.error.message, "[object")
      assert.notInclude(c.error.message, "undefined")
      if (c.taskId !== undefined) {
        assert.include(c.error.message, c.taskId)
      } else {
        assert.strictEqual(c.error.message, c.fields["message"])
      }
    }))

  it("TaskNotFound names the session when it has one", () => {
    assert.include(new TaskNotFound({ taskId: "t1", sessionId: "s1" }).message, "s1")
  })

  it("TaskAlreadyExists names the session where the id is live", () => {
    assert.include(new TaskAlreadyExists({ taskId: "t1", sessionId: "s9" }).message, "s9")
  })

  it("InvalidTransition names both states of a refused move", () => {
    const message = new InvalidTransition({ taskId: "t1", from: "completed", to: "running" }).message
    assert.include(message, "completed")
    assert.include(message, "running")
    assert.notInclude(message, "not a task state")
  })

  it("InvalidTransition with an unknown to says it is not a task state", () => {
    const message = new InvalidTransition({ taskId: "t1", from: "running", to: "exploded" }).message
    assert.include(message, "exploded")
    assert.include(message, "not a task state")
    assert.include(message, "t1")
  })
})

describe("PluginError in the error channel", () => {
  const tagOf = (error: PluginError) =>
    Effect.fail(error).pipe(
      Effect.as("not caught"),
      Effect.catchTags({
        RegistrationError: (e) => Effect.succeed(`RegistrationError:${e.message}`),
        SnapshotError: (e) => Effect.succeed(`SnapshotError:${e.message}`),
        InvokeError: (e) => Effect.succeed(`InvokeError:${e.message}`),
        SessionError: (e) => Effect.succeed(`SessionError:${e.message}`),
        TaskNotFound: (e) => Effect.succeed(`TaskNotFound:${e.taskId}`),
        TaskAlreadyExists: (e) => Effect.succeed(`TaskAlreadyExists:${e.taskId}`),
        InvalidTransition: (e) => Effect.succeed(`InvalidTransition:${e.taskId}`)
      })
    )

  it.effect.each(cases)("$name is caught by its tag", (c) =>
    Effect.gen(function*() {
      const caught = yield* tagOf(c.error)
      assert.strictEqual(caught, `${c.error._tag}:${c.taskId ?? c.fields["message"]}`)
    }))

  it.effect("catchTag handles its own tag and lets other errors through", () =>
    Effect.gen(function*() {
      const lookup = (fail: "missing" | "illegal"): Effect.Effect<string, TaskNotFound | InvalidTransition> =>
        fail === "missing"
          ? Effect.fail(new TaskNotFound({ taskId: "t1" }))
          : Effect.fail(new InvalidTransition({ taskId: "t1", from: "failed", to: "running" }))
      const recover = (fail: "missing" | "illegal") =>
        lookup(fail).pipe(Effect.catchTag("TaskNotFound", (e) => Effect.succeed(`recovered ${e.taskId}`)))

      assert.strictEqual(yield* recover("missing"), "recovered t1")
      const passedThrough = yield* Effect.flip(recover("illegal"))
      assert.instanceOf(passedThrough, InvalidTransition)
    }))

  it.effect("an error instance can be yielded to fail an Effect.gen", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        return yield* new TaskAlreadyExists({ taskId: "t1", sessionId: "s1" })
      })
      const error = yield* Effect.flip(program)
      assert.instanceOf(error, TaskAlreadyExists)
      assert.strictEqual(error.sessionId, "s1")
    }))
})

describe("isPluginError", () => {
  it.each(cases)("is true for $name", ({ error }) => {
    assert.isTrue(isPluginError(error))
  })

  it("is false for a plain Error, a look-alike object and non-errors", () => {
    assert.isFalse(isPluginError(new Error("boom")))
    assert.isFalse(isPluginError({ _tag: "TaskNotFound", taskId: "t1", message: "task t1 not found" }))
    assert.isFalse(isPluginError(undefined))
    assert.isFalse(isPluginError("TaskNotFound"))
  })

  it("every PluginError is also an Error", () => {
    for (const { error } of cases) {
      assert.instanceOf(error, Error)
    }
  })
})
