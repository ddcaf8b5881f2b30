/**
 * The inspector's HTTP application: the page, the JSON API, the live feed
 * (Server-Sent Events) and, when allowed, cancelling; all of it on the host's
 * public methods.
 *
 * Every response carries a strict Content-Security-Policy and `nosniff`.
 * Requests whose `Host` is not one the server answers to are refused (a page
 * on another site cannot reach a loopback server through a DNS name it
 * controls). A cancel needs the `cancel` option and then its token, in an
 * `Authorization: Bearer` header: a header that another site's page cannot
 * send without a CORS preflight, which the server never grants.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { timingSafeEqual } from "node:crypto"
import { BackgroundTaskRecord, isTerminal, TaskKind, type TaskFilter } from "../../BackgroundTask.ts"
import { type SubscriptionEvent, SubscriptionEvent as SubscriptionEventSchema } from "../../TaskEvent.ts"
import type { BackgroundTaskHostService, TaskTree, TaskWatch } from "../../BackgroundTaskHost.ts"
import type { Journal } from "./journal.ts"
import * as Page from "./page.ts"

export interface ServerConfig {
  readonly host: BackgroundTaskHostService
  readonly journal: Journal
  /** Identifies this process's feed: a page that sees another one starts over. */
  readonly instance: string
  /** The cancel token; `undefined`: read-only. */
  readonly token: string | undefined
  /** `Host` header names accepted (lower case, without port); `undefined`: any. */
  readonly allowedHosts: ReadonlySet<string> | undefined
  /** Interval of the feed's keep-alive comment. */
  readonly heartbeatMillis: number
  /** Completes when the inspector closes: every feed ends then. */
  readonly closing: Effect.Effect<void>
}

const encodeRecord = Schema.encodeSync(BackgroundTaskRecord)
const encodeEvent = Schema.encodeSync(SubscriptionEventSchema)

const securityHeaders = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-resource-policy": "same-origin"
} as const

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { "cache-control": "no-store", ...headers } })

/** An error answer: `{ error, message }`. */
const failure = (status: number, error: string, message: string, headers: Record<string, string> = {}) =>
  json(status, { error, message }, headers)

/** The host's typed errors, as HTTP answers. */
const hostFailure = (error: { readonly _tag: string; readonly message: string }) => {
  switch (error._tag) {
    case "SnapshotError":
    case "RegistrationError":
      return failure(400, error._tag, error.message)
    case "TaskNotFound":
      return failure(404, error._tag, error.message)
    case "InvalidTransition":
    case "TaskAlreadyExists":
      return failure(409, error._tag, error.message)
    case "SessionError":
      return failure(503, error._tag, error.message)
    default:
      return failure(500, error._tag, error.message)
  }
}

/** Runs a handler; the host's typed errors become their HTTP answers. */
const handle = <E extends { readonly _tag: string; readonly message: string }, R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) => Effect.catch(effect, (error) => Effect.succeed(hostFailure(error)))

/** A request the API cannot read (a query parameter, a header). */
class BadRequest extends Data.TaggedError("BadRequest")<{ readonly message: string }> {}

/** A task as the API shows it: the record in its wire form, and its latest progress message. */
const taskJson = (journal: Journal, record: BackgroundTaskRecord) => ({
  record: encodeRecord(record),
  progress: journal.progressOf(record) ?? null
})

const treeJson = (journal: Journal, tree: TaskTree): unknown => ({
  ...taskJson(journal, tree.record),
  children: tree.children.map((child) => treeJson(journal, child))
})

const urlOf = (request: HttpServerRequest.HttpServerRequest) => new URL(request.url, "http://inspector.invalid")

/**
 * Reads `list`'s filter from the query (`session_id`, `kind`,
 * `include_terminal`), plus the names in `extra`; any other name is refused.
 */
const readQuery = (
  url: URL,
  extra: ReadonlyArray<string>,
  options: { readonly includeTerminal: boolean }
): Effect.Effect<{ readonly filter: TaskFilter; readonly extra: ReadonlyMap<string, string> }, BadRequest> =>
  Effect.suspend(() => {
    const allowed = new Set(["session_id", "kind", ...(options.includeTerminal ? ["include_terminal"] : []), ...extra])
    const values = new Map<string, string>()
    for (const [name, value] of url.searchParams) {
      if (!allowed.has(name)) {
        return Effect.fail(new BadRequest({ message: `unknown query parameter ${JSON.stringify(name)}; known: ${[...allowed].join(", ")}` }))
      }
      if (values.has(name)) return Effect.fail(new BadRequest({ message: `query parameter ${name} is given twice` }))
      values.set(name, value)
    }
    const filter: { sessionId?: string; kind?: TaskKind; includeTerminal?: boolean } = {}
    const sessionId = values.get("session_id")
    if (sessionId !== undefined) {
      if (sessionId === "") return Effect.fail(new BadRequest({ message: "session_id must not be empty" }))
      filter.sessionId = sessionId
    }
    const kind = values.get("kind")
    if (kind !== undefined) {
      if (!(TaskKind.literals as ReadonlyArray<string>).includes(kind)) {
        return Effect.fail(new BadRequest({ message: `kind must be one of ${TaskKind.literals.join(", ")}, got ${JSON.stringify(kind)}` }))
      }
      filter.kind = kind as TaskKind
    }
    const includeTerminal = values.get("include_terminal")
    if (includeTerminal !== undefined) {
      if (includeTerminal !== "true" && includeTerminal !== "false") {
        return Effect.fail(new BadRequest({ message: `include_terminal must be true or false, got ${JSON.stringify(includeTerminal)}` }))
      }
      filter.includeTerminal = includeTerminal === "true"
    }
    for (const name of ["session_id", "kind", "include_terminal"]) values.delete(name)
    return Effect.succeed({ filter, extra: values })
  })

const badRequest = (error: BadRequest) => Effect.succeed(failure(400, "BadRequest", error.message))

/** The task a path names: with `session_id`, that session's record; otherwise the host's `get`. */
const findTask = (host: BackgroundTaskHostService, taskId: string, sessionId: string | undefined) =>
  sessionId === undefined ? host.get(taskId) : host.getManaged(sessionId, taskId)

const taskIdParam = Effect.map(HttpRouter.params, (params) => params.id ?? "")

// -----------------------------------------------------------------------------
// the feed
// -----------------------------------------------------------------------------

const frame = (data: unknown, id?: number) => (id === undefined ? "" : `id: ${id}\n`) + `data: ${JSON.stringify(data)}\n\n`

const eventFrame = (event: SubscriptionEvent) =>
  event._tag === "Lagged" ? frame(encodeEvent(event)) : frame(encodeEvent(event), event.seq)

/** A resume point: `Last-Event-ID` (what `EventSource` sends when it reconnects), else `last_event_id`. */
const lastEventId = (request: HttpServerRequest.HttpServerRequest, query: ReadonlyMap<string, string>) => {
  const value = request.headers["last-event-id"] ?? query.get("last_event_id")
  if (value === undefined || value === "") return Effect.succeed(undefined)
  return /^\d{1,15}$/.test(value)
    ? Effect.succeed(Number(value))
    : Effect.fail(new BadRequest({ message: `Last-Event-ID must be an event's seq (an integer >= 0), got ${JSON.stringify(value)}` }))
}

/**
 * The feed of one client: `hello`, then a `snapshot` of the matching records
 * (all of them, terminal ones too) and every matching event after it, each
 * with its `seq` as the SSE id. From a `Last-Event-ID`, the events after it
 * (no snapshot) when the host can replay them, else `resync` and a snapshot.
 * After a `lagged` (the client read too slowly and the host dropped events
 * for it), a new snapshot follows and the events after it. `end` closes it
 * when the host shuts down.
 */
const feed = (config: ServerConfig, filter: TaskFilter, resumeFrom: number | undefined) =>
  Stream.callback<string>((queue) =>
    Effect.gen(function*() {
      const { host, journal } = config
      const send = (text: string) => Queue.offer(queue, text)
      const stats = yield* host.stats
      yield* send(`retry: 2000\n` + frame({
        type: "hello",
        instance: config.instance,
        seq: stats.seq,
        cancel: config.token !== undefined
      }))
      const snapshot = (watched: TaskWatch) =>
        send(frame({
          type: "snapshot",
          seq: watched.seq,
          tasks: watched.snapshot.map((record) => taskJson(journal, record))
        }, watched.seq))
      const watchAll = { ...filter, includeTerminal: true }
      let resume = resumeFrom
      while (true) {
        const lagged = yield* Effect.scoped(Effect.gen(function*() {
          let watched: TaskWatch
          if (resume === undefined) {
            watched = yield* host.watch(watchAll)
            yield* snapshot(watched)
          } else {
            const resumed = yield* Effect.result(host.watch({ ...watchAll, fromSeq: resume }))
            if (resumed._tag === "Success") {
              watched = resumed.success
            } else {
              if (resumed.failure._tag !== "SnapshotError") return yield* resumed.failure
              yield* send(frame({ type: "resync", reason: resumed.failure.message }))
              watched = yield* host.watch(watchAll)
              yield* snapshot(watched)
            }
            resume = undefined
          }
          let lagged = false
          yield* Stream.runForEachWhile(watched.events, (event) =>
            Effect.as(send(eventFrame(event)), (() => {
              if (event._tag === "Lagged") lagged = true
              return !lagged
            })()))
          return lagged
        }))
        // a lagged view is stale: a new snapshot follows
        if (!lagged) break
      }
      // the host's stream ended: it is shutting down
      yield* send(frame({ type: "end" }))
      yield* Queue.end(queue)
    }).pipe(
      // the host closed (or refused) while the feed was starting: say so and end
      Effect.catch(() => Effect.andThen(Queue.offer(queue, frame({ type: "end" })), Queue.end(queue))),
      (body) =>
        Effect.gen(function*() {
          // keep-alive comments, so that idle proxies and browsers keep the connection
          const heartbeat = yield* Effect.forkScoped(
            Effect.repeat(Queue.offer(queue, ": keep-alive\n\n"), Schedule.spaced(config.heartbeatMillis)).pipe(
              Effect.delay(config.heartbeatMillis)
            )
          )
          yield* Effect.raceFirst(body, config.closing.pipe(Effect.andThen(Queue.end(queue))))
          yield* Fiber.interrupt(heartbeat)
        })
    ), { bufferSize: 256, strategy: "suspend" })

// -----------------------------------------------------------------------------
// routes
// -----------------------------------------------------------------------------

const sessionsJson = (records: ReadonlyArray<BackgroundTaskRecord>) => {
  const sessions = new Map<string, { tasks: number; live: number; states: Record<string, number>; kinds: Record<string, number> }>()
  for (const record of records) {
    let entry = sessions.get(record.scope.sessionId)
    if (entry === undefined) {
      entry = { tasks: 0, live: 0, states: {}, kinds: {} }
      sessions.set(record.scope.sessionId, entry)
    }
    entry.tasks++
    if (!isTerminal(record.state)) entry.live++
    entry.states[record.state] = (entry.states[record.state] ?? 0) + 1
    entry.kinds[record.kind] = (entry.kinds[record.kind] ?? 0) + 1
  }
  return { sessions: [...sessions].map(([sessionId, entry]) => ({ session_id: sessionId, ...entry })) }
}

/** The body of a cancel request: `{ reason?, session_id? }`, or nothing. */
const CancelBody = Schema.Struct({
  reason: Schema.optionalKey(Schema.String.check(Schema.isMaxLength(1000))),
  session_id: Schema.optionalKey(Schema.NonEmptyString)
})
const decodeCancelBody = Schema.decodeUnknownResult(CancelBody)

const tokenMatches = (expected: string, header: string | undefined) => {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (match === null) return false
  const given = Buffer.from(match[1]!, "utf8")
  const wanted = Buffer.from(expected, "utf8")
  return given.length === wanted.length && timingSafeEqual(given, wanted)
}

const cancelTask = (config: ServerConfig, request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    if (config.token === undefined) {
      return failure(
        403,
        "CancelDisabled",
        "this inspector is read-only: cancelling needs TaskInspector.layer({ cancel: { token } }) (or --inspect with --inspect-cancel in the demo)"
      )
    }
    if (!tokenMatches(config.token, request.headers["authorization"])) {
      return failure(401, "Unauthorized", "cancelling needs the inspector's token: Authorization: Bearer <token>", {
        "www-authenticate": "Bearer"
      })
    }
    const taskId = yield* taskIdParam
    const text = yield* Effect.orElseSucceed(request.text, () => undefined)
    if (text === undefined) return failure(400, "BadRequest", "the request body could not be read")
    let body: typeof CancelBody.Type = {}
    if (text.trim() !== "") {
      const type = request.headers["content-type"] ?? ""
      if (!/^application\/json\b/i.test(type)) {
        return failure(415, "UnsupportedMediaType", "the body must be JSON (Content-Type: application/json)")
      }
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch {
        return failure(400, "BadRequest", "the body is not valid JSON")
      }
      const decoded = decodeCancelBody(parsed, { onExcessProperty: "error" })
      if (decoded._tag === "Failure") {
        return failure(400, "BadRequest", `the body must be { reason?: string, session_id?: string }: ${decoded.failure.message}`)
      }
      body = decoded.success
    }
    const found = yield* findTask(config.host, taskId, body.session_id)
    if (Option.isNone(found)) {
      return failure(404, "TaskNotFound", `no task ${JSON.stringify(taskId)}` + (body.session_id === undefined ? "" : ` in session ${JSON.stringify(body.session_id)}`))
    }
    if (isTerminal(found.value.state)) {
      return failure(409, "InvalidTransition", `task ${JSON.stringify(taskId)} has already ended (${found.value.state})`)
    }
    const record = yield* config.host.requestCancel(taskId, body.reason ?? "cancelled from the inspector")
    return json(202, { task: taskJson(config.journal, record) })
  })

/** The routes, added to a router. */
export const addRoutes = (router: HttpRouter.HttpRouter, config: ServerConfig) => {
  const { host, journal } = config
  const asset = (body: string, contentType: string) =>
    HttpServerResponse.text(body, { contentType, headers: { "cache-control": "no-cache" } })
  return router.addAll([
    HttpRouter.route<never, never>("GET", "/", Effect.sync(() => asset(Page.html, "text/html; charset=utf-8"))),
    HttpRouter.route<never, never>("GET", "/inspector.js", Effect.sync(() => asset(Page.js, "text/javascript; charset=utf-8"))),
    HttpRouter.route<never, never>("GET", "/inspector.css", Effect.sync(() => asset(Page.css, "text/css; charset=utf-8"))),
    HttpRouter.route<never, never>("GET", "/favicon.svg", Effect.sync(() => asset(Page.favicon, "image/svg+xml"))),

    HttpRouter.route<never, never>("GET", "/api/stats", handle(Effect.map(host.stats, (stats) => json(200, stats)))),

    HttpRouter.route<never, never>("GET", "/api/sessions", (request) =>
      handle(Effect.gen(function*() {
        if ([...urlOf(request).searchParams].length > 0) return failure(400, "BadRequest", "/api/sessions takes no query parameters")
        return json(200, sessionsJson(yield* host.list({ includeTerminal: true })))
      }))),

    HttpRouter.route<never, never>("GET", "/api/tasks", (request) =>
      readQuery(urlOf(request), [], { includeTerminal: true }).pipe(
        Effect.flatMap(({ filter }) =>
          handle(Effect.map(host.list(filter), (records) => json(200, { tasks: records.map((r) => taskJson(journal, r)) })))
        ),
        Effect.catchTag("BadRequest", badRequest)
      )),

    HttpRouter.route<never, HttpRouter.RouteContext>("GET", "/api/tasks/:id", (request) =>
      handle(Effect.gen(function*() {
        const taskId = yield* taskIdParam
        const url = urlOf(request)
        const names = [...url.searchParams.keys()]
        if (names.some((name) => name !== "session_id")) {
          return failure(400, "BadRequest", "/api/tasks/:id takes only session_id")
        }
        const sessionId = url.searchParams.get("session_id") ?? undefined
        const found = yield* findTask(host, taskId, sessionId === "" ? undefined : sessionId)
        if (Option.isNone(found)) return failure(404, "TaskNotFound", `no task ${JSON.stringify(taskId)} is held`)
        const record = found.value
        const log = journal.log(record.scope.sessionId, record.id)
        return json(200, {
          task: taskJson(journal, record),
          events: (log?.events ?? []).map((event) => encodeEvent(event)),
          events_dropped: log?.dropped ?? 0,
          events_complete: log?.complete ?? false
        })
      }))),

    HttpRouter.route<never, HttpRouter.RouteContext>("GET", "/api/tasks/:id/tree", () =>
      handle(Effect.gen(function*() {
        const taskId = yield* taskIdParam
        return json(200, treeJson(journal, yield* host.listTree(taskId)))
      }))),

    HttpRouter.route<never, HttpRouter.RouteContext>("POST", "/api/tasks/:id/cancel", (request) => handle(cancelTask(config, request))),

    HttpRouter.route<never, never>("GET", "/api/events", (request) =>
      Effect.gen(function*() {
        const { extra, filter } = yield* readQuery(urlOf(request), ["last_event_id"], { includeTerminal: false })
        const from = yield* lastEventId(request, extra)
        return HttpServerResponse.stream(Stream.encodeText(feed(config, filter, from)), {
          contentType: "text/event-stream; charset=utf-8",
          headers: { "cache-control": "no-store", "x-accel-buffering": "no" }
        })
      }).pipe(Effect.catchTag("BadRequest", badRequest)))
  ])
}

const loopbackNames = (name: string) => name === "localhost" || name === "[::1]" || /^127(\.\d{1,3}){3}$/.test(name)

/** The names a server bound to `hostname` answers to, or `undefined` for any (a non-loopback bind). */
export const allowedHostsFor = (hostname: string, extra: ReadonlyArray<string>): ReadonlySet<string> | undefined => {
  const bound = hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname
  if (!loopbackNames(bound.toLowerCase())) return undefined
  return new Set([bound.toLowerCase(), ...extra.map((name) => name.toLowerCase())])
}

/** The host name of a `Host` header, lower case, without the port. */
const hostName = (header: string | undefined) => {
  if (header === undefined) return undefined
  const value = header.trim().toLowerCase()
  const match = /^(\[[0-9a-f:.]+\]|[^:]+)(:\d+)?$/.exec(value)
  return match === null ? undefined : match[1]
}

/**
 * The application: the router's routes behind the `Host` check, with the
 * security headers on every answer; an unknown path is a 404, a failure a 500.
 */
export const app = (router: HttpRouter.HttpRouter, config: ServerConfig) => {
  const routes = router.asHttpEffect()
  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const name = hostName(request.headers["host"])
    if (config.allowedHosts !== undefined && (name === undefined || !(loopbackNames(name) || config.allowedHosts.has(name)))) {
      return failure(
        403,
        "ForbiddenHost",
        `this inspector answers only to loopback names (Host ${JSON.stringify(request.headers["host"] ?? "")} refused)`
      )
    }
    return yield* routes
  }).pipe(
    Effect.catch((error: unknown) =>
      Effect.succeed(
        isRouteNotFound(error)
          ? failure(404, "NotFound", "no such page or API route")
          : failure(500, "InternalError", "the inspector failed to answer")
      )
    ),
    Effect.catchDefect(() => Effect.succeed(failure(500, "InternalError", "the inspector failed to answer"))),
    Effect.map(HttpServerResponse.setHeaders(securityHeaders))
  )
}

const isRouteNotFound = (error: unknown) =>
  typeof error === "object" && error !== null && "reason" in error &&
  typeof error.reason === "object" && error.reason !== null && "_tag" in error.reason &&
  error.reason._tag === "RouteNotFound"
