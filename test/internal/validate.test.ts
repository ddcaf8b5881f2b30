/**
 * The registration fast path never accepts what the Schema rejects.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { RegisterRequest, TaskRegistration } from "../../src/index.ts"
import {
  checkAll,
  isPlainRegisterRequest,
  isPlainRegistration,
  outcomeOf,
  taskIdOf,
  updateArgsOf,
  checkUpdateArgs,
  isRefusal
} from "../../src/internal/validate.ts"

const decodeRegistration = Schema.decodeUnknownResult(Schema.toType(TaskRegistration))
const decodeRegisterRequest = Schema.decodeUnknownResult(Schema.toType(RegisterRequest))

// values of every primitive type, valid and not, for each field
const Loose = Schema.Union([
  Schema.Literals(["", "a", "monitor", "observer", "keep", "cancel", "abort_local", "external", "monitorx", "a\uD800", "\uDC00b"]),
  Schema.Literals([0, 1, 2, 1.5, -1]),
  Schema.Number,
  Schema.Boolean,
  Schema.Null,
  Schema.Undefined
])
const Scope = Schema.Union([Schema.Struct({ sessionId: Loose }), Schema.Struct({}), Loose])
const Input = Schema.Struct({
  scope: Schema.optionalKey(Scope),
  id: Schema.optionalKey(Loose),
  kind: Schema.optionalKey(Loose),
  producer: Schema.optionalKey(Loose),
  parentTaskId: Schema.optionalKey(Loose),
  childSessionId: Schema.optionalKey(Loose),
  cancelPolicy: Schema.optionalKey(Loose),
  closePolicy: Schema.optionalKey(Loose),
  attempt: Schema.optionalKey(Loose),
  maxAttempts: Schema.optionalKey(Loose),
  idempotencyKey: Schema.optionalKey(Loose),
  timeout: Schema.optionalKey(Loose),
  cancelGracePeriod: Schema.optionalKey(Loose),
  retry: Schema.optionalKey(Loose)
})

describe("registration fast path", () => {
  it.prop("accepts only inputs the Schema accepts", { input: Input }, ({ input }) => {
    if (isPlainRegistration(input)) assert.isTrue(Result.isSuccess(decodeRegistration(input)), JSON.stringify(input))
    if (isPlainRegisterRequest(input)) {
      assert.isTrue(Result.isSuccess(decodeRegisterRequest(input)), JSON.stringify(input))
    }
  }, { arbitrary: { runs: 2_000 } })

  it("accepts the ordinary shapes, so the fast path is taken", () => {
    const spec = { id: "t1", kind: "monitor", producer: "p", closePolicy: "transfer" }
    assert.isTrue(isPlainRegistration(spec))
    assert.isTrue(isPlainRegisterRequest({ ...spec, scope: { sessionId: "s1" } }))
  })

  it("leaves anything unusual to the Schema", () => {
    const spec = { id: "t1", kind: "monitor", producer: "p" }
    assert.isFalse(isPlainRegistration({ ...spec, attempt: { attempt: 0 } }))
    assert.isFalse(isPlainRegistration({ ...spec, timeout: "1 second" }))
    assert.isFalse(isPlainRegistration({ ...spec, maxAttempts: 0 }))
    assert.isTrue(isPlainRegistration({ ...spec, maxAttempts: 3, idempotencyKey: "k" }))
    assert.isFalse(isPlainRegistration({ ...spec, parentTaskId: undefined }))
    assert.isFalse(isPlainRegistration({ ...spec, id: "" }))
    // a lone surrogate: not an id (BackgroundTask.Id), on either path
    assert.isFalse(isPlainRegistration({ ...spec, id: "t\uD800" }))
    assert.isTrue(Result.isFailure(decodeRegistration({ ...spec, id: "t\uD800" })))
    assert.isTrue(Result.isSuccess(decodeRegistration({ ...spec, id: "t\uD83D\uDE00" })))
    assert.isFalse(isPlainRegistration([spec]))
    assert.isFalse(isPlainRegisterRequest({ ...spec, scope: { sessionId: "" } }))
    assert.isFalse(isPlainRegisterRequest(spec))
  })
})

describe("update's arguments", () => {
  it("are checked as checking each in turn checks them: the same values, the same first error", () => {
    const throwing = {
      get progress(): string {
        throw new Error("boom")
      }
    }
    const cases: ReadonlyArray<readonly [unknown, unknown]> = [
      ["t", { progress: "p" }],
      ["t", {}],
      ["t", { state: "running", progress: "p" }],
      ["", { progress: "p" }],
      [1, { progress: "p" }],
      [1, 2],
      [undefined, throwing],
      ["t", null],
      ["t", "p"],
      ["t", { progress: 3 }],
      ["t", { state: 3 }],
      ["t", throwing]
    ]
    const shown = (result: Result.Result<unknown, { readonly _tag: string; readonly message: string }>) =>
      Result.isSuccess(result) ? { success: result.success } : { failure: [result.failure._tag, result.failure.message] }
    for (const [taskId, update] of cases) {
      const general = shown(
        Result.map(
          checkAll(taskIdOf(taskId), outcomeOf("update", update, "progress")),
          ([taskId, { state, text }]) => ({ taskId, state, text })
        )
      )
      // the in-memory call's check (no Result, told apart by isRefusal): the same arguments or the same error
      const checked = checkUpdateArgs(taskId, update)
      assert.deepStrictEqual(shown(isRefusal(checked) ? Result.fail(checked) : Result.succeed(checked)), general)
      assert.deepStrictEqual(
        shown(updateArgsOf(taskId, update)),
        shown(
          Result.map(
            checkAll(taskIdOf(taskId), outcomeOf("update", update, "progress")),
            ([taskId, { state, text }]) => ({ taskId, state, text })
          )
        )
      )
    }
  })
})
