/**
 * A web inspector for a background task host: a page that shows the host's
 * tasks by session, live, and a JSON API and event feed behind it, served
 * from the application's own process.
 *
 * `TaskInspector.layer()` needs a `BackgroundTaskHost` and serves, on
 * 127.0.0.1 (port 7777 by default):
 *
 * - `/`: the page: a table of tasks (state, kind, progress, duration,
 *   summary) grouped by session, updated live; filters by session, kind and
 *   state; a task's detail with its events; a tree view of parent and child
 *   tasks; a banner when the feed lagged (and a fresh snapshot after it);
 * - `/api/sessions`, `/api/tasks` (`list`'s filters: `session_id`, `kind`,
 *   `include_terminal`), `/api/tasks/:id` (the task and its events),
 *   `/api/tasks/:id/tree`, `/api/stats`: JSON, records in the host's wire form;
 * - `/api/events`: Server-Sent Events: a snapshot, then the host's events
 *   with their `seq` as the event id (an `EventSource` that reconnects sends
 *   it back as `Last-Event-ID`, and resumes after it where the host can
 *   replay, else gets a fresh snapshot); a `lagged` event where the feed fell
 *   behind, followed by a fresh snapshot;
 * - `POST /api/tasks/:id/cancel`: only with the `cancel` option, and then
 *   only with its token. Read-only otherwise.
 *
 * It uses only the host's public methods. The page is one HTML document, a
 * style sheet and a script, served from memory: no build step, nothing
 * downloaded at run time. Task text (ids, summaries, progress) is shown as
 * text, never as markup.
 *
 * This module is the package's `effect-task-host/inspector` entry point, so
 * that applications that do not serve it do not load an HTTP server.
 *
 * @since 0.4.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpMiddleware from "effect/http/HttpMiddleware"
import * as HttpRouter from "effect/http/HttpRouter"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { randomBytes, randomUUID } from "node:crypto"
import * as Http from "node:http"
import { BackgroundTaskHost } from "./BackgroundTaskHost.ts"
import * as Journal from "./internal/inspector/journal.ts"
import * as Server from "./internal/inspector/server.ts"

/**
 * The inspector could not start: an invalid option, or the address it was
 * given cannot be listened on (in use, not this machine's). `message` says
 * which.
 *
 * @category errors
 * @since 0.4.0
 */
export class TaskInspectorError extends Schema.TaggedError<TaskInspectorError>()("TaskInspectorError", {
  message: Schema.String
}) {}

/**
 * Options of `TaskInspector.layer`.
 *
 * @category models
 * @since 0.4.0
 */
export interface TaskInspectorOptions {
  /** The port (default 7777); `0` takes any free port (read it from `TaskInspector`). */
  readonly port?: number | undefined
  /**
   * The address to listen on (default `127.0.0.1`: this machine only). Another
   * address exposes the tasks to whoever reaches it; on a loopback address the
   * server answers only to loopback `Host` names and `allowedHosts`.
   */
  readonly hostname?: string | undefined
  /** More `Host` names a loopback server answers to (e.g. a name in `/etc/hosts`). */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
  /**
   * Allows cancelling from the page and the API (`requestCancel`), with a
   * token sent as `Authorization: Bearer <token>`. Without it the inspector is
   * read-only. `token` (16 to 256 characters of `A-Z a-z 0-9 - . _ ~ + / =`) is
   * made at random when absent; `TaskInspector`'s `pageUrl` carries it in its
   * fragment, which the page reads and the browser never sends.
   */
  readonly cancel?: boolean | { readonly token?: string | undefined } | undefined
  /** Events kept per task for its detail: its first and its latest ones (default 200, at least 2). */
  readonly eventsPerTask?: number | undefined
  /**
   * On a durable store, the stored events replayed when the inspector starts,
   * so that the tasks of earlier runs have their events (default 10,000; 0:
   * none). An in-memory host keeps no history: the inspector sees the events
   * from its start.
   */
  readonly history?: number | undefined
  /** How often an idle feed sends a keep-alive comment (default 15 seconds). */
  readonly heartbeat?: Duration.Input | undefined
}

/**
 * A running inspector: where it listens.
 *
 * @category models
 * @since 0.4.0
 */
export interface TaskInspectorService {
  /** The page's address, e.g. `http://127.0.0.1:7777/`. */
  readonly url: string
  /** `url`, with `#token=…` when cancelling is enabled: the link to open. */
  readonly pageUrl: string
  readonly hostname: string
  /** The port listened on (the one taken, when the option was 0). */
  readonly port: number
  /** Whether cancelling is enabled. */
  readonly cancel: boolean
}

/**
 * The inspector of the `BackgroundTaskHost` it is given.
 *
 * **Example** (Adding the inspector to an application)
 *
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { BackgroundTaskHost } from "effect-task-host"
 * import { TaskInspector } from "effect-task-host/inspector"
 *
 * const AppLive = TaskInspector.layer({ port: 7777 }).pipe(Layer.provideMerge(BackgroundTaskHost.layer))
 *
 * const program = Effect.gen(function*() {
 *   const inspector = yield* TaskInspector
 *   yield* Effect.log(`tasks at ${inspector.pageUrl}`)
 *   const host = yield* BackgroundTaskHost
 *   yield* host.spawnManaged("session-1", { id: "crawl", kind: "other", producer: "app" }, Effect.sleep("1 minute"))
 * }).pipe(Effect.provide(AppLive))
 * ```
 *
 * @category services
 * @since 0.4.0
 */
export class TaskInspector extends Context.Service<TaskInspector, TaskInspectorService>()(
  "effect-task-host/TaskInspector"
) {
  /**
   * Serves the inspector while the layer is alive. It fails with
   * `TaskInspectorError` on an invalid option or an address it cannot
   * listen on. Closing it ends every open feed, then closes the server;
   * provide it above the host's layer (`Layer.provideMerge`) so that it
   * closes first.
   *
   * @category layers
   * @since 0.4.0
   */
  static readonly layer = (
    options: TaskInspectorOptions = {}
  ): Layer.Layer<TaskInspector, TaskInspectorError, BackgroundTaskHost> => Layer.effect(TaskInspector, make(options))
}

/**
 * Starts an inspector in the current scope (what `TaskInspector.layer`
 * does): it serves until the scope closes.
 *
 * @category constructors
 * @since 0.4.0
 */
export const make = (
  options: TaskInspectorOptions = {}
): Effect.Effect<TaskInspectorService, TaskInspectorError, BackgroundTaskHost | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* validate(options)
    const host = yield* BackgroundTaskHost
    const journal = yield* Journal.start(host, { eventsPerTask: config.eventsPerTask, history: config.history }).pipe(
      Effect.mapError((error) => new TaskInspectorError({ message: `the inspector cannot watch the host: ${error.message}` }))
    )

    const nodeServer = Http.createServer({ requestTimeout: 0 })
    const server = yield* NodeHttpServer.make(() => nodeServer, {
      port: config.port,
      host: config.hostname,
      gracefulShutdownTimeout: Duration.seconds(2)
    }).pipe(
      Effect.mapError((error) => {
        const cause = error.cause as { readonly code?: unknown; readonly message?: unknown } | undefined
        const code = typeof cause?.code === "string" ? ` (${cause.code})` : ""
        return new TaskInspectorError({
          message: `the inspector cannot listen on ${config.hostname}:${config.port}${code}: ` +
            (typeof cause?.message === "string" ? cause.message : String(error))
        })
      })
    )
    const address = nodeServer.address()
    const port = typeof address === "object" && address !== null ? address.port : config.port

    const closing = yield* Deferred.make<void>()
    const serverConfig: Server.ServerConfig = {
      host,
      journal,
      instance: randomUUID(),
      token: config.token,
      allowedHosts: Server.allowedHostsFor(config.hostname, config.allowedHosts),
      heartbeatMillis: config.heartbeatMillis,
      closing: Deferred.await(closing)
    }
    const router = yield* HttpRouter.make
    yield* Server.addRoutes(router, serverConfig)
    yield* server.serve(Server.app(router, serverConfig)).pipe(
      // the inspector's own requests are no part of the application's traces
      Effect.provideService(HttpMiddleware.TracerDisabledWhen, () => true)
    )
    // runs first when the scope closes: the feeds end, and no connection (an open feed, an idle
    // keep-alive socket) holds the server open after its last request
    yield* Effect.addFinalizer(() =>
      Effect.andThen(
        Deferred.succeed(closing, undefined),
        Effect.sync(() => {
          nodeServer.close()
          nodeServer.closeAllConnections()
        })
      )
    )

    const urlHost = config.hostname.includes(":") ? `[${config.hostname}]` : config.hostname
    const url = `http://${urlHost}:${port}/`
    return TaskInspector.of({
      url,
      pageUrl: config.token === undefined ? url : `${url}#token=${encodeURIComponent(config.token)}`,
      hostname: config.hostname,
      port,
      cancel: config.token !== undefined
    })
  })

// -----------------------------------------------------------------------------
// internal
// -----------------------------------------------------------------------------

interface Config {
  readonly port: number
  readonly hostname: string
  readonly allowedHosts: ReadonlyArray<string>
  readonly token: string | undefined
  readonly eventsPerTask: number
  readonly history: number
  readonly heartbeatMillis: number
}

const isCount = (n: unknown, min: number, max: number): n is number =>
  typeof n === "number" && Number.isSafeInteger(n) && n >= min && n <= max

const tokenPattern = /^[A-Za-z0-9\-._~+/=]{16,256}$/

const validate = (options: TaskInspectorOptions): Effect.Effect<Config, TaskInspectorError> =>
  Effect.suspend(() => {
    const fail = (message: string) => Effect.fail(new TaskInspectorError({ message }))
    if (typeof options !== "object" || options === null) return fail("options must be an object")
    const port = options.port ?? 7777
    if (!isCount(port, 0, 65535)) return fail(`port must be an integer from 0 to 65535, got ${String(port)}`)
    const hostname = options.hostname ?? "127.0.0.1"
    if (typeof hostname !== "string" || hostname.trim() === "" || /[\s/]/.test(hostname)) {
      return fail(`hostname must be a host name or an IP address, got ${JSON.stringify(hostname)}`)
    }
    const allowedHosts = options.allowedHosts ?? []
    if (!Array.isArray(allowedHosts) || !allowedHosts.every((name) => typeof name === "string" && /^[^\s:/]+$|^\[[0-9a-fA-F:.]+\]$/.test(name))) {
      return fail("allowedHosts must be host names without a port")
    }
    let token: string | undefined
    const cancel = options.cancel
    if (cancel === true) token = randomToken()
    else if (typeof cancel === "object" && cancel !== null) {
      if (cancel.token === undefined) token = randomToken()
      else if (typeof cancel.token === "string" && tokenPattern.test(cancel.token)) token = cancel.token
      else return fail("cancel.token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~ + / =")
    } else if (cancel !== undefined && cancel !== false) {
      return fail("cancel must be true, false, or { token?: string }")
    }
    const eventsPerTask = options.eventsPerTask ?? 200
    if (!isCount(eventsPerTask, 2, 1_000_000)) return fail(`eventsPerTask must be an integer >= 2, got ${String(eventsPerTask)}`)
    const history = options.history ?? 10_000
    if (!isCount(history, 0, Number.MAX_SAFE_INTEGER)) return fail(`history must be an integer >= 0, got ${String(history)}`)
    let heartbeatMillis = 15_000
    if (options.heartbeat !== undefined) {
      const parsed = safeDuration(options.heartbeat)
      if (parsed === undefined || parsed < 1 || !Number.isFinite(parsed)) {
        return fail(`heartbeat must be a positive, finite duration, got ${String(options.heartbeat)}`)
      }
      heartbeatMillis = parsed
    }
    return Effect.succeed({ port, hostname, allowedHosts, token, eventsPerTask, history, heartbeatMillis })
  })

const randomToken = () => randomBytes(24).toString("base64url")

const safeDuration = (input: Duration.Input): number | undefined => {
  try {
    return Option.getOrUndefined(Option.map(Duration.fromInput(input), Duration.toMillis))
  } catch {
    return undefined
  }
}
