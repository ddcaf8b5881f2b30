/**
 * the inspector's page in a browser: headless Chromium (Debian's
 * `chromium`, driven by playwright-core; `.ci/run` installs it) opens the page
 * while tasks run and sees what a person would: rows appear and change state
 * live, the filters narrow the table, a task's detail lists its events (and
 * gets new ones live), the tree view nests children under their parent, a
 * `Lagged` feed is shown as such and the table is right again after the
 * re-snapshot, a task is cancelled from the page (with the option and the
 * token), and task text is shown as text. A page on a read-only inspector,
 * or without the token, offers no cancel.
 *
 * The screenshot it takes goes to test/output/inspector.png; with
 * `UPDATE_SCREENSHOT=1`, to docs/inspector.png (the README's).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, References, Scope } from "effect"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import { BackgroundTaskHost, InvokeError, TaskContext } from "../../src/index.ts"
import { TaskInspector } from "../../src/TaskInspector.ts"
import { type Running, startInspector } from "../utils/inspector.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const executablePath = "/usr/bin/chromium"
const token = "browser-test-token-0123456789"
const xssId = `<img src=x onerror="window.__pwned='id'">`
const xssSummary = `<script>window.__pwned='summary'</script><b>bold?</b>`
const xssProgress = `<svg onload="window.__pwned='progress'">(1/2)`

/** The task rows the page shows, in order: `id state`. */
const rows = (page: Page) =>
  page.$$eval("#rows tr.task", (trs: Array<any>) => trs.map((tr) => `${tr.dataset.taskId} ${tr.dataset.state}`))

const rowSelector = (id: string, state?: string) =>
  `#rows tr.task[data-task-id=${JSON.stringify(id)}]` + (state === undefined ? "" : `[data-state="${state}"]`)

describe("TaskInspector page in Chromium", () => {
  let app: Running
  let browser: BrowserContext
  let page: Page
  let profile: string
  const release = Effect.runSync(Deferred.make<void>())
  /** Completed to make the planner report 300 progress events in one synchronous burst. */
  const burst = Effect.runSync(Deferred.make<void>())
  const finishReader = Effect.runSync(Deferred.make<void>())
  const failIndexer = Effect.runSync(Deferred.make<void>())

  beforeAll(async () => {
    assert.isTrue(existsSync(executablePath), "Debian's chromium is installed (.ci/run installs it)")
    // a small subscriber buffer, so that a burst of events makes the page's feed lag
    app = await startInspector({ host: { subscriberBuffer: 16 }, inspector: { cancel: { token } } })
    profile = mkdtempSync(join(tmpdir(), "inspector-chromium-"))
    browser = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      viewport: { width: 1440, height: 820 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
    page = await browser.newPage()
    page.setDefaultTimeout(15_000)
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await app?.close()
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true })
  })

  it("shows rows as tasks start, and their states as they change, live", async () => {
    const errors: Array<string> = []
    page.on("pageerror", (error) => errors.push(error.message))
    await page.goto(app.inspector.pageUrl)
    await page.waitForSelector("#status[data-status=live]")
    assert.strictEqual(await page.textContent("#empty"), "No tasks yet.")
    assert.notInclude(page.url(), token, "the token leaves the address bar")
    const { host } = app
    await app.run(Effect.gen(function*() {
      yield* host.spawnManaged("agent-1", { id: "planner", kind: "subagent", producer: "agent" }, Effect.gen(function*() {
        const ctx = yield* TaskContext
        yield* ctx.progress("planning (1/3)")
        // a task's own progress burst is not paced as the host's calls are: the page's feed (buffer 16) lags
        const burstAll = Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) =>
          ctx.progress(`burst ${i} (${i % 5}/5)`), { discard: true }).pipe(
            Effect.provideService(References.PreventSchedulerYield, true)
          )
        yield* Effect.raceFirst(
          Deferred.await(release),
          Deferred.await(burst).pipe(Effect.andThen(burstAll), Effect.andThen(Deferred.await(release)))
        )
      }))
      yield* host.spawnManaged(
        "agent-1",
        { id: "reader-1", kind: "observer", producer: "planner", parentTaskId: "planner" },
        Effect.gen(function*() {
          yield* (yield* TaskContext).progress("reading sources (2/6)")
          yield* Deferred.await(finishReader)
          return "read 6 sources"
        })
      )
      yield* host.spawnManaged(
        "agent-1",
        { id: "reader-2", kind: "observer", producer: "planner", parentTaskId: "planner" },
        Effect.gen(function*() {
          yield* (yield* TaskContext).progress("waiting for reader-1")
          yield* Deferred.await(release)
        })
      )
      yield* host.registerExternal("agent-1", { id: "ci-monitor", kind: "monitor", producer: "ci-watch", cancelPolicy: "external" }, Effect.void)
      yield* host.update("ci-monitor", { progress: "pipeline 40% green (2/5)" })
      yield* host.spawnManaged("agent-2", { id: "indexer", kind: "other", producer: "indexer" }, Effect.gen(function*() {
        yield* (yield* TaskContext).progress("indexing shard (3/8)")
        yield* Deferred.await(failIndexer)
        return yield* new InvokeError({ message: "disk full after 3 shards" })
      }))
      yield* host.spawnManaged("agent-2", { id: xssId, kind: "other", producer: "<i>producer</i>" }, Effect.gen(function*() {
        yield* (yield* TaskContext).progress(xssProgress)
        return xssSummary
      }))
    }))
    await page.waitForSelector(rowSelector("indexer", "running"))
    await page.waitForSelector(rowSelector(xssId, "completed"))
    await page.waitForSelector(rowSelector("planner", "running"))
    assert.include(await page.textContent(`${rowSelector("ci-monitor")} .c-progress`), "pipeline 40% green (2/5)")

    await app.run(Deferred.succeed(finishReader, undefined))
    await page.waitForSelector(rowSelector("reader-1", "completed"))
    assert.strictEqual(await page.textContent(`${rowSelector("reader-1")} .c-summary`), "read 6 sources")
    await app.run(Deferred.succeed(failIndexer, undefined))
    await page.waitForSelector(rowSelector("indexer", "failed"))
    assert.strictEqual(await page.textContent(`${rowSelector("indexer")} .c-summary`), "disk full after 3 shards")
    // grouped by session, in order
    const sessions = await page.$$eval("#rows tr.session", (trs: Array<any>) => trs.map((tr) => tr.dataset.sessionId))
    assert.deepStrictEqual(sessions, ["agent-1", "agent-2"])
    assert.deepStrictEqual(errors, [])
  })

  it("shows task text as text: an id, a summary and a progress message that look like markup run nothing", async () => {
    const row = rowSelector(xssId)
    assert.strictEqual(await page.textContent(`${row} .c-task .id`), xssId)
    assert.strictEqual(await page.textContent(`${row} .c-summary`), xssSummary)
    assert.strictEqual(await page.textContent(`${row} .c-progress .text`), xssProgress)
    assert.strictEqual(await page.$$eval("#rows img, #rows script, #rows svg, #rows b, #rows i", (found) => found.length), 0)
    assert.isUndefined(await page.evaluate(() => (globalThis as any).__pwned))
    // and in the detail panel
    await page.click(`${row} .c-task`)
    await page.waitForSelector("#detail ol.events li[data-type=completed]")
    assert.strictEqual(await page.textContent("#detail h2 .id"), xssId)
    assert.strictEqual(await page.$$eval("#detail img, #detail script, #detail svg, #detail b, #detail i", (f) => f.length), 0)
    assert.isUndefined(await page.evaluate(() => (globalThis as any).__pwned))
    await page.click("#detail [data-action=close]")
    await page.waitForSelector("#detail", { state: "hidden" })
  })

  it("filters by session, kind and state", async () => {
    await page.selectOption("#f-kind", "observer")
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#rows tr.task").length === 2)
    assert.deepStrictEqual(await rows(page), ["reader-1 completed", "reader-2 running"])
    await page.selectOption("#f-kind", "")
    await page.selectOption("#f-state", "failed")
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#rows tr.task").length === 1)
    assert.deepStrictEqual(await rows(page), ["indexer failed"])
    await page.selectOption("#f-state", "live")
    await page.selectOption("#f-session", "agent-1")
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#rows tr.task").length === 3)
    assert.deepStrictEqual(await rows(page), ["planner running", "reader-2 running", "ci-monitor running"])
    assert.include(page.url(), "session=agent-1")
    await page.selectOption("#f-session", "")
    await page.selectOption("#f-state", "")
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#rows tr.task").length === 6)
  })

  it("nests children under their parent in the tree view, and a task's detail lists its events, live", async () => {
    await page.click("#v-tree")
    await page.waitForFunction(() =>
      Array.from((globalThis as any).document.querySelectorAll("#rows tr.task")).map((tr: any) => tr.dataset.taskId).join(",")
        .startsWith("planner,reader-1,reader-2,")
    )
    assert.strictEqual((await page.textContent(`${rowSelector("reader-1")} .twig`))?.trim(), "├─")
    assert.strictEqual((await page.textContent(`${rowSelector("reader-2")} .twig`))?.trim(), "└─")

    await page.click(`${rowSelector("ci-monitor")} .c-task`)
    await page.waitForSelector("#detail ol.events li[data-type=progress]")
    const types = await page.$$eval("#detail ol.events li", (items: Array<any>) => items.map((li) => li.dataset.type))
    assert.deepStrictEqual(types, ["registered", "progress"])
    await app.run(app.host.update("ci-monitor", { progress: "pipeline 60% green (3/5)" }))
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#detail ol.events li[data-type=progress]").length === 2)
    assert.include(await page.textContent("#detail ol.events li:last-child"), "pipeline 60% green (3/5)")

    // the parent's detail shows its tree; this is the README's screenshot
    await page.click(`${rowSelector("planner")} .c-task`)
    await page.waitForSelector("#detail ul.tree .node.current")
    const tree = await page.$$eval("#detail ul.tree .node .id", (ids) => ids.map((id) => id.textContent))
    assert.deepStrictEqual(tree, ["planner", "reader-1", "reader-2"])
    const target = process.env.UPDATE_SCREENSHOT === "1"
      ? join(root, "docs", "inspector.png")
      : join(root, "test", "output", "inspector.png")
    mkdirSync(dirname(target), { recursive: true })
    await page.screenshot({ path: target })
    assert.isTrue(existsSync(target))
  })

  it("shows a Lagged feed as such, re-snapshots, and is right again", async () => {
    // 300 events in one synchronous burst (the planner's own progress): the page's feed (buffer 16) cannot keep up
    await app.run(Deferred.succeed(burst, undefined))
    await page.waitForSelector("#banner:not([hidden])")
    await page.waitForFunction(() => ((globalThis as any).document.querySelector("#banner-text")?.textContent ?? "").includes("Re-synced"))
    const banner = await page.textContent("#banner-text")
    assert.match(banner!, /^Lagged: the feed fell behind the host and skipped \d+ events\. Re-synced from a fresh snapshot at seq \d+\.$/)
    // after the re-snapshot, the table holds what the host holds, and follows it again
    await page.waitForFunction(() =>
      ((globalThis as any).document.querySelector(`#rows tr.task[data-task-id="planner"] .c-progress .text`)?.textContent ?? "") === "burst 299 (4/5)"
    )
    await app.run(app.host.complete("reader-2", { state: "completed", summary: "after the lag" }))
    await page.waitForSelector(rowSelector("reader-2", "completed"))
    const held = await app.run(app.host.list({ includeTerminal: true }))
    assert.deepStrictEqual(
      [...(await rows(page))].sort(),
      held.map((r) => `${r.id} ${r.state}`).sort()
    )
  })

  it("cancels a task from the page (with the option and its token)", async () => {
    await page.click("#banner-close")
    page.once("dialog", (dialog) => void dialog.accept())
    await page.click(`${rowSelector("ci-monitor")} button[data-action=cancel]`)
    await page.waitForSelector(rowSelector("ci-monitor", "cancelled"))
    const record = await app.run(app.host.get("ci-monitor"))
    assert.strictEqual(record._tag === "Some" ? record.value.state : undefined, "cancelled")
    assert.strictEqual(await page.$$eval(`${rowSelector("ci-monitor")} button`, (b) => b.length), 0, "no cancel for an ended task")
    await app.run(Deferred.succeed(release, undefined))
  })

  it("offers no cancel on a read-only inspector, nor without the token", async () => {
    const scope = Effect.runSync(Scope.make())
    try {
      const readOnly = await Effect.runPromise(
        Effect.map(
          Layer.buildWithScope(TaskInspector.layer({ port: 0 }).pipe(Layer.provide(Layer.succeed(BackgroundTaskHost, app.host))), scope),
          (context) => Context.get(context, TaskInspector)
        )
      )
      await app.run(app.host.registerExternal("agent-3", { id: "still-running", kind: "monitor", producer: "x" }))
      for (const url of [readOnly.url, app.inspector.url]) {
        const other = await browser.newPage()
        await other.evaluate(() => sessionStorage.clear()).catch(() => undefined)
        await other.goto(url)
        await other.waitForSelector(rowSelector("still-running", "running"))
        assert.strictEqual(await other.$$eval("button[data-action=cancel]", (b) => b.length), 0, url)
        assert.strictEqual(
          await other.textContent("#mode"),
          url === readOnly.url ? "read-only" : "cancel needs the token"
        )
        await other.close()
      }
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  })
})
