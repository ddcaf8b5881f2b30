/**
 * The inspector's page: one HTML document, its style sheet and its script,
 * served as they are (no build step, nothing downloaded at run time).
 *
 * The script keeps a copy of the host's records fed by the `/api/events`
 * feed (a snapshot, then every event; a new snapshot after a `lagged` or a
 * `resync`), and draws it. Every piece of task data reaches the page through
 * `textContent` or an attribute value, never as markup: ids, summaries and
 * progress messages are user data. The server's Content-Security-Policy
 * forbids inline script as a second line of defence.
 *
 * @internal
 */

export const html = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Tasks · effect-task-host inspector</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="inspector.css">
<script src="inspector.js" defer></script>
</head>
<body>
<header class="top">
  <div class="brand"><span class="logo" aria-hidden="true"></span><b>effect-task-host</b><span class="muted">inspector</span></div>
  <div id="counts" class="counts" aria-live="polite"></div>
  <div class="right">
    <span id="mode" class="pill"></span>
    <span id="status" class="pill status" data-status="connecting">connecting…</span>
  </div>
</header>
<div id="banner" class="banner" role="status" hidden>
  <span id="banner-text"></span>
  <button id="banner-close" class="link" type="button" aria-label="Dismiss">dismiss</button>
</div>
<nav class="filters" aria-label="Filters">
  <label>Session <select id="f-session"><option value="">all sessions</option></select></label>
  <label>Kind <select id="f-kind">
    <option value="">any kind</option>
    <option value="monitor">monitor</option>
    <option value="subagent">subagent</option>
    <option value="observer">observer</option>
    <option value="other">other</option>
  </select></label>
  <label>State <select id="f-state">
    <option value="">any state</option>
    <option value="live">live (not finished)</option>
    <option value="finished">finished</option>
    <option value="pending">pending</option>
    <option value="running">running</option>
    <option value="waiting">waiting</option>
    <option value="cancel_requested">cancel_requested</option>
    <option value="completed">completed</option>
    <option value="failed">failed</option>
    <option value="cancelled">cancelled</option>
  </select></label>
  <label class="grow"><input id="f-text" type="search" placeholder="id, producer, progress or summary contains…" autocomplete="off"></label>
  <div class="seg" role="group" aria-label="View">
    <button id="v-list" type="button" aria-pressed="true">List</button>
    <button id="v-tree" type="button" aria-pressed="false">Tree</button>
  </div>
</nav>
<main class="layout">
  <section class="tablewrap">
    <table id="tasks">
      <thead><tr>
        <th class="c-state">State</th><th class="c-task">Task</th><th class="c-kind">Kind</th>
        <th class="c-progress">Progress</th><th class="c-duration num">Duration</th><th class="c-summary">Summary</th>
        <th class="c-actions"><span class="sr">Actions</span></th>
      </tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p id="empty" class="empty" hidden></p>
  </section>
  <aside id="detail" class="detail" aria-label="Task detail" hidden></aside>
</main>
<footer id="footer" class="footer"></footer>
</body>
</html>
`

export const css = String.raw`
:root {
  --bg: #f6f7f9; --panel: #ffffff; --text: #1d2330; --muted: #6b7385; --line: #e3e6ec; --hover: #f0f4ff;
  --accent: #3b5bdb; --sel: #e4ebff;
  --pending: #8a8f98; --running: #1c7ed6; --waiting: #e8a317; --cancel_requested: #e8590c;
  --completed: #2f9e44; --failed: #e03131; --cancelled: #6c757d;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14161b; --panel: #1b1e25; --text: #e6e8ee; --muted: #9aa1b2; --line: #2b303b; --hover: #222838;
    --sel: #26304a; --accent: #748ffc; }
}
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
  background: var(--bg); color: var(--text); display: flex; flex-direction: column; }
button { font: inherit; }
.muted { color: var(--muted); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
.top { display: flex; align-items: center; gap: 20px; padding: 10px 18px; background: var(--panel);
  border-bottom: 1px solid var(--line); }
.brand { display: flex; align-items: center; gap: 8px; font-size: 15px; white-space: nowrap; }
.logo { width: 14px; height: 14px; border-radius: 3px; background: linear-gradient(135deg, var(--accent), #9c36b5);
  transform: rotate(45deg); display: inline-block; }
.counts { display: flex; gap: 14px; flex-wrap: wrap; color: var(--muted); }
.counts b { color: var(--text); font-variant-numeric: tabular-nums; }
.counts .dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 5px; vertical-align: 0; }
.right { margin-left: auto; display: flex; gap: 8px; }
.pill { border: 1px solid var(--line); border-radius: 999px; padding: 2px 10px; color: var(--muted); white-space: nowrap; }
.pill.status::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%;
  background: var(--pending); margin-right: 6px; vertical-align: 1px; }
.pill.status[data-status="live"]::before { background: var(--completed); }
.pill.status[data-status="reconnecting"]::before { background: var(--waiting); }
.pill.status[data-status="closed"]::before { background: var(--failed); }
.banner { display: flex; gap: 12px; align-items: center; padding: 8px 18px; background: #fff4db; color: #6b4a00;
  border-bottom: 1px solid #f1d48a; }
@media (prefers-color-scheme: dark) { .banner { background: #3a2f12; color: #f5d78a; border-color: #5c4a1c; } }
.banner[hidden] { display: none; }
.link { background: none; border: 0; color: inherit; text-decoration: underline; cursor: pointer; padding: 0; margin-left: auto; }
.filters { display: flex; gap: 14px; align-items: center; padding: 10px 18px; flex-wrap: wrap; }
.filters label { color: var(--muted); display: flex; gap: 6px; align-items: center; }
.filters select, .filters input { font: inherit; color: var(--text); background: var(--panel); border: 1px solid var(--line);
  border-radius: 6px; padding: 4px 8px; }
.filters .grow { flex: 1; min-width: 220px; }
.filters .grow input { width: 100%; }
.seg { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.seg button { background: var(--panel); color: var(--muted); border: 0; padding: 4px 12px; cursor: pointer; }
.seg button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.layout { flex: 1; display: flex; gap: 14px; padding: 0 18px 12px; min-height: 0; }
.tablewrap { flex: 1; overflow: auto; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; min-width: 0; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th { position: sticky; top: 0; background: var(--panel); text-align: left; font-weight: 600; color: var(--muted);
  font-size: 12px; padding: 8px 10px; border-bottom: 1px solid var(--line); z-index: 1; }
td { padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.c-state { width: 136px; } .c-task { width: 21%; } .c-kind { width: 86px; } .c-progress { width: 24%; }
.c-duration { width: 78px; } .c-actions { width: 88px; text-align: right; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.task { cursor: pointer; }
tr.task:hover td { background: var(--hover); }
tr.task.selected td { background: var(--sel); }
tr.session td { background: var(--bg); font-weight: 600; padding: 7px 10px; border-bottom: 1px solid var(--line); }
tr.session .muted { font-weight: 400; margin-left: 10px; }
.id { font-family: var(--mono); font-size: 12px; }
.twig { color: var(--muted); font-family: var(--mono); margin-right: 4px; }
.badge { display: inline-flex; align-items: center; gap: 6px; padding: 1px 8px 1px 6px; border-radius: 999px;
  font-size: 12px; border: 1px solid var(--line); }
.badge::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: var(--c, var(--pending)); }
.st-pending { --c: var(--pending); } .st-running { --c: var(--running); } .st-waiting { --c: var(--waiting); }
.st-cancel_requested { --c: var(--cancel_requested); } .st-completed { --c: var(--completed); }
.st-failed { --c: var(--failed); } .st-cancelled { --c: var(--cancelled); }
.st-running.badge::before { animation: pulse 1.6s ease-out infinite; }
@keyframes pulse { 0% { box-shadow: 0 0 0 0 rgba(28, 126, 214, .55); } 80%, 100% { box-shadow: 0 0 0 5px rgba(28, 126, 214, 0); } }
.kind { color: var(--muted); }
.progress { display: flex; align-items: center; gap: 8px; min-width: 0; }
.progress .text { overflow: hidden; text-overflow: ellipsis; }
.bar { flex: none; width: 60px; height: 6px; border-radius: 3px; background: var(--line); overflow: hidden; }
.bar .fill { display: block; height: 100%; background: var(--running); }
.summary.failed { color: var(--failed); }
.act { font-size: 12px; border: 1px solid var(--line); background: var(--panel); color: var(--failed); border-radius: 5px;
  padding: 1px 8px; cursor: pointer; }
.act:hover { border-color: var(--failed); }
.act:disabled { color: var(--muted); cursor: default; }
.empty { color: var(--muted); text-align: center; padding: 40px; margin: 0; }
.detail { width: 420px; flex: none; overflow: auto; background: var(--panel); border: 1px solid var(--line);
  border-radius: 8px; padding: 14px 16px; }
.detail[hidden] { display: none; }
.detail h2 { font-size: 15px; margin: 0 0 4px; display: flex; gap: 10px; align-items: center; word-break: break-all; }
.detail h3 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 16px 0 6px; }
.detail .close { margin-left: auto; background: none; border: 0; color: var(--muted); cursor: pointer; font-size: 18px; line-height: 1; }
dl.fields { display: grid; grid-template-columns: 118px 1fr; gap: 3px 10px; margin: 10px 0 0; }
dl.fields dt { color: var(--muted); }
dl.fields dd { margin: 0; word-break: break-word; }
ol.events { list-style: none; margin: 0; padding: 0; border-left: 2px solid var(--line); }
ol.events li { padding: 3px 0 3px 10px; position: relative; word-break: break-word; }
ol.events li::before { content: ""; position: absolute; left: -5px; top: 9px; width: 8px; height: 8px; border-radius: 50%;
  background: var(--c, var(--line)); }
ol.events .seq { font-family: var(--mono); color: var(--muted); font-size: 11px; margin-right: 6px; }
ol.events .type { font-weight: 600; margin-right: 6px; }
ul.tree { list-style: none; margin: 0; padding-left: 14px; }
ul.tree.root { padding-left: 0; }
ul.tree li { padding: 1px 0; }
ul.tree .node { cursor: pointer; }
ul.tree .node.current { font-weight: 700; }
.note { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.footer { padding: 6px 18px 10px; color: var(--muted); font-size: 12px; display: flex; gap: 16px; }
.toast { position: fixed; bottom: 16px; right: 16px; background: var(--text); color: var(--panel); padding: 8px 14px;
  border-radius: 6px; max-width: 420px; }
`

export const js = String.raw`"use strict";
(function () {
  var TERMINAL = { completed: true, failed: true, cancelled: true };
  var STATE_ORDER = ["running", "waiting", "pending", "cancel_requested", "failed", "cancelled", "completed"];

  var state = {
    tasks: new Map(),        // key -> { record, progress, order } (order: registration order, as list gives it)
    nextOrder: 0,
    seq: 0,
    instance: null,
    cancel: false,           // the server allows cancelling (with the token)
    token: null,
    status: "connecting",
    filters: { session: "", kind: "", state: "", text: "" },
    view: "list",
    selected: null,          // key of the task shown in the detail panel
    detail: null,            // { key, loading, error, task, events: Map(seq -> event), dropped, complete }
    banner: null,
    stats: null,
    sessions: []
  };

  // ---------------------------------------------------------------------------
  // small DOM helpers: text only, never markup
  // ---------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function key(sessionId, taskId) { return sessionId + "\u0000" + taskId; }
  function keyOf(record) { return key(record.scope.session_id, record.id); }

  // ---------------------------------------------------------------------------
  // the token (from the URL's fragment, which is never sent to the server) and the filters (query string)
  // ---------------------------------------------------------------------------

  (function readLocation() {
    var match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      state.token = decodeURIComponent(match[1]);
      try { sessionStorage.setItem("effect-task-host-inspector-token", state.token); } catch (e) { /* storage off */ }
    } else {
      try { state.token = sessionStorage.getItem("effect-task-host-inspector-token"); } catch (e) { state.token = null; }
    }
    var params = new URLSearchParams(location.search);
    state.filters.session = params.get("session") || "";
    state.filters.kind = params.get("kind") || "";
    state.filters.state = params.get("state") || "";
    state.filters.text = params.get("q") || "";
    state.view = params.get("view") === "tree" ? "tree" : "list";
    writeLocation();
  })();

  function writeLocation() {
    var params = new URLSearchParams();
    if (state.filters.session) params.set("session", state.filters.session);
    if (state.filters.kind) params.set("kind", state.filters.kind);
    if (state.filters.state) params.set("state", state.filters.state);
    if (state.filters.text) params.set("q", state.filters.text);
    if (state.view === "tree") params.set("view", "tree");
    var search = params.toString();
    // drops the token from the address bar too
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }

  // ---------------------------------------------------------------------------
  // the feed
  // ---------------------------------------------------------------------------

  var source = null;
  function connect() {
    if (source !== null) source.close();
    source = new EventSource("api/events");
    source.onopen = function () { setStatus("live"); };
    source.onerror = function () { setStatus(source.readyState === 2 ? "closed" : "reconnecting"); };
    source.onmessage = function (message) {
      var data;
      try { data = JSON.parse(message.data); } catch (e) { return; }
      handle(data);
    };
  }

  function setStatus(status) {
    state.status = status;
    schedule();
  }

  function put(record, progress, order) {
    state.tasks.set(keyOf(record), {
      record: record,
      progress: progress === undefined ? null : progress,
      order: order === undefined ? state.nextOrder++ : order
    });
  }

  function handle(data) {
    switch (data.type) {
      case "hello":
        if (state.instance !== null && data.instance !== state.instance) {
          // another process answers now: what the page holds is from the old one
          state.instance = null;
          state.tasks.clear();
          state.seq = 0;
          connect();
          return;
        }
        state.instance = data.instance;
        state.cancel = data.cancel === true;
        setStatus("live");
        break;
      case "snapshot":
        state.tasks.clear();
        state.nextOrder = 0;
        data.tasks.forEach(function (task) { put(task.record, task.progress); });
        state.seq = data.seq;
        if (state.banner !== null && state.banner.pending) {
          state.banner.pending = false;
          state.banner.seq = data.seq;
        }
        if (state.detail !== null) loadDetail(state.detail.key);
        break;
      case "lagged":
        state.banner = { kind: "lagged", skipped: data.skipped, pending: true, seq: null };
        break;
      case "resync":
        state.banner = { kind: "resync", reason: data.reason, pending: true, seq: null };
        break;
      case "end":
        setStatus("closed");
        break;
      default:
        apply(data);
        if (data.type !== "progress") refreshStats();
    }
    schedule();
  }

  function apply(event) {
    if (typeof event.seq !== "number" || event.seq <= state.seq) return;
    state.seq = event.seq;
    var current;
    switch (event.type) {
      case "progress":
        current = state.tasks.get(key(event.session_id, event.task_id));
        if (current) {
          current.progress = event.message;
          // a progress event carries the record after the change (its progress, its revision)
          if (event.record) current.record = event.record;
        }
        break;
      case "evicted":
        event.task_ids.forEach(function (id) { state.tasks.delete(key(event.session_id, id)); });
        break;
      case "transferred":
        current = state.tasks.get(key(event.from_session_id, event.task_id));
        state.tasks.delete(key(event.from_session_id, event.task_id));
        put(event.record, current ? current.progress : null, current ? current.order : undefined);
        if (state.selected === key(event.from_session_id, event.task_id)) {
          state.selected = keyOf(event.record);
          if (state.detail !== null) state.detail.key = state.selected;
        }
        break;
      case "registered":
        put(event.record, null);
        break;
      default:
        if (event.record) {
          current = state.tasks.get(keyOf(event.record));
          put(event.record, current ? current.progress : null, current ? current.order : undefined);
        }
    }
    if (state.detail !== null && event.task_id !== undefined &&
        state.detail.key === key(event.session_id, event.task_id)) {
      state.detail.events.set(event.seq, event);
    }
  }

  // ---------------------------------------------------------------------------
  // stats (exact counters, evicted records included)
  // ---------------------------------------------------------------------------

  var statsTimer = null;
  function pollStats() {
    statsTimer = null;
    fetch("api/stats", { headers: { accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (stats) { if (stats) { state.stats = stats; schedule(); } })
      .catch(function () { /* the feed's status says it */ });
  }
  /** Soon after events: the counters follow the table without a request per event. */
  function refreshStats() {
    if (statsTimer === null) statsTimer = setTimeout(pollStats, 250);
  }

  // ---------------------------------------------------------------------------
  // detail
  // ---------------------------------------------------------------------------

  function select(taskKey) {
    state.selected = taskKey;
    if (taskKey === null) {
      state.detail = null;
      schedule();
      return;
    }
    state.detail = { key: taskKey, loading: true, error: null, task: null, events: new Map(), dropped: 0, complete: true };
    loadDetail(taskKey);
    schedule();
  }

  function loadDetail(taskKey) {
    var parts = taskKey.split("\u0000");
    var url = "api/tasks/" + encodeURIComponent(parts[1]) + "?session_id=" + encodeURIComponent(parts[0]);
    fetch(url, { headers: { accept: "application/json" } })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (result) {
        var detail = state.detail;
        if (detail === null || detail.key !== taskKey) return;
        detail.loading = false;
        if (!result.ok) {
          detail.error = result.body && result.body.message ? result.body.message : "not found";
        } else {
          detail.error = null;
          detail.task = result.body.task;
          detail.dropped = result.body.events_dropped;
          detail.complete = result.body.events_complete;
          result.body.events.forEach(function (event) { detail.events.set(event.seq, event); });
        }
        schedule();
      })
      .catch(function (error) {
        if (state.detail !== null && state.detail.key === taskKey) {
          state.detail.loading = false;
          state.detail.error = String(error);
          schedule();
        }
      });
  }

  // ---------------------------------------------------------------------------
  // cancelling (only offered when the server allows it and the page has the token)
  // ---------------------------------------------------------------------------

  function cancelTask(record) {
    if (!window.confirm("Cancel " + record.id + " (" + record.scope.session_id + ")?")) return;
    fetch("api/tasks/" + encodeURIComponent(record.id) + "/cancel", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", authorization: "Bearer " + state.token },
      body: JSON.stringify({ session_id: record.scope.session_id, reason: "cancelled from the inspector" })
    })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (result) {
        toast(result.ok ? "cancel requested: " + record.id : "not cancelled: " + (result.body.message || "error"));
      })
      .catch(function (error) { toast("not cancelled: " + String(error)); });
  }

  var toastTimer = null;
  function toast(text) {
    var node = $("toast");
    if (node === null) {
      node = el("div", "toast");
      node.id = "toast";
      node.setAttribute("role", "status");
      document.body.appendChild(node);
    }
    node.textContent = text;
    node.hidden = false;
    if (toastTimer !== null) clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { node.hidden = true; }, 4000);
  }

  // ---------------------------------------------------------------------------
  // formatting
  // ---------------------------------------------------------------------------

  function summaryOf(record) {
    var outcome = record.state === "failed" ? record.failure : record.result;
    return outcome && outcome.summary !== null && outcome.summary !== undefined ? outcome.summary : "";
  }

  function durationOf(record, now) {
    var start = Date.parse(record.created_at);
    var end = record.completed_at ? Date.parse(record.completed_at) : now;
    return Math.max(0, end - start);
  }

  function formatDuration(ms) {
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + "s";
    var s = Math.floor(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  }

  function pad(n, width) { return String(n).padStart(width || 2, "0"); }
  function formatTime(iso) {
    if (!iso) return null;
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }

  function fraction(progress) {
    var match = progress ? /\((\d+)\s*\/\s*(\d+)\)/.exec(progress) : null;
    if (!match) return null;
    var done = Number(match[1]), total = Number(match[2]);
    return total > 0 ? Math.min(1, done / total) : null;
  }

  function describe(event) {
    switch (event.type) {
      case "registered": return "by " + event.record.producer + " in " + event.session_id + ", " + event.record.state;
      case "state_changed": return "→ " + event.state;
      case "progress": return event.message;
      case "cancel_requested": return event.reason || "";
      case "transferred": return event.from_session_id + " → " + event.session_id;
      case "completed": case "failed": case "cancelled": return summaryOf(event.record);
      default: return "";
    }
  }

  // ---------------------------------------------------------------------------
  // filtering and ordering
  // ---------------------------------------------------------------------------

  function matches(task) {
    var record = task.record, f = state.filters;
    if (f.session && record.scope.session_id !== f.session) return false;
    if (f.kind && record.kind !== f.kind) return false;
    if (f.state === "live" && TERMINAL[record.state]) return false;
    if (f.state === "finished" && !TERMINAL[record.state]) return false;
    if (f.state && f.state !== "live" && f.state !== "finished" && record.state !== f.state) return false;
    if (f.text) {
      var needle = f.text.toLowerCase();
      var haystack = [record.id, record.producer, task.progress || "", summaryOf(record)].join("\n").toLowerCase();
      if (haystack.indexOf(needle) < 0) return false;
    }
    return true;
  }

  function byCreation(a, b) { return a.order - b.order; }

  /** Sessions in order of their oldest held task, with their tasks (all of them, unfiltered). */
  function sessions() {
    var groups = new Map();
    Array.from(state.tasks.values()).sort(byCreation).forEach(function (task) {
      var id = task.record.scope.session_id;
      if (!groups.has(id)) groups.set(id, []);
      groups.get(id).push(task);
    });
    return groups;
  }

  /** The rows to draw for a session: in tree view, each task followed by its children (depth first). */
  function rowsOf(tasks) {
    if (state.view !== "tree") return tasks.map(function (task) { return { task: task, depth: 0, last: false }; });
    var ids = new Map(), children = new Map(), roots = [];
    tasks.forEach(function (task) { ids.set(task.record.id, task); });
    tasks.forEach(function (task) {
      var parent = task.record.parent_task_id;
      if (parent !== null && ids.has(parent) && parent !== task.record.id) {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(task);
      } else {
        roots.push(task);
      }
    });
    var out = [], seen = new Set();
    function visit(task, depth, last) {
      if (seen.has(task.record.id)) return;
      seen.add(task.record.id);
      out.push({ task: task, depth: depth, last: last });
      var kids = children.get(task.record.id) || [];
      kids.forEach(function (kid, i) { visit(kid, depth + 1, i === kids.length - 1); });
    }
    roots.forEach(function (task) { visit(task, 0, false); });
    return out;
  }

  // ---------------------------------------------------------------------------
  // drawing
  // ---------------------------------------------------------------------------

  var scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(function () { scheduled = false; render(); });
  }

  function render() {
    var now = Date.now();
    var groups = sessions();
    renderHeader();
    renderBanner();
    renderFilters(groups);
    renderTable(groups, now);
    renderDetail(now);
  }

  function renderHeader() {
    var counts = $("counts");
    clear(counts);
    var live = 0, held = { completed: 0, failed: 0, cancelled: 0 };
    state.tasks.forEach(function (task) {
      if (TERMINAL[task.record.state]) held[task.record.state]++; else live++;
    });
    function count(label, value, color) {
      var item = el("span", "count");
      var dot = el("span", "dot");
      dot.style.background = "var(--" + color + ")";
      item.appendChild(dot);
      item.appendChild(el("b", null, value));
      item.appendChild(document.createTextNode(" " + label));
      counts.appendChild(item);
    }
    var ended = state.stats || held;
    count("live", live, "running");
    count("completed", ended.completed, "completed");
    count("failed", ended.failed, "failed");
    count("cancelled", ended.cancelled, "cancelled");
    var seq = el("span", "count");
    seq.appendChild(document.createTextNode("seq "));
    seq.appendChild(el("b", null, state.seq));
    counts.appendChild(seq);

    var status = $("status");
    status.dataset.status = state.status;
    status.textContent = state.status === "live" ? "live" : state.status === "reconnecting" ? "reconnecting…" :
      state.status === "closed" ? "disconnected" : "connecting…";
    var mode = $("mode");
    mode.textContent = state.cancel ? (state.token ? "cancel enabled" : "cancel needs the token") : "read-only";
    mode.title = state.cancel ? "Cancelling is allowed with the token printed with the inspector's URL" :
      "The inspector was started without the cancel option";
  }

  function renderBanner() {
    var banner = $("banner");
    if (state.banner === null) { banner.hidden = true; return; }
    banner.hidden = false;
    banner.dataset.kind = state.banner.kind;
    var what = state.banner.kind === "lagged"
      ? "Lagged: the feed fell behind the host and skipped " + state.banner.skipped + " event" + (state.banner.skipped === 1 ? "" : "s") + "."
      : "The feed could not resume (" + state.banner.reason + ").";
    $("banner-text").textContent = what + (state.banner.pending ? " Re-syncing…" : " Re-synced from a fresh snapshot at seq " + state.banner.seq + ".");
  }

  function renderFilters(groups) {
    var select = $("f-session");
    var wanted = [""].concat(Array.from(groups.keys()));
    if (state.filters.session && wanted.indexOf(state.filters.session) < 0) wanted.push(state.filters.session);
    var have = Array.from(select.options).map(function (o) { return o.value; });
    if (have.join("\u0000") !== wanted.join("\u0000")) {
      clear(select);
      wanted.forEach(function (id) {
        var option = el("option", null, id === "" ? "all sessions" : id);
        option.value = id;
        select.appendChild(option);
      });
    }
    select.value = state.filters.session;
    $("f-kind").value = state.filters.kind;
    $("f-state").value = state.filters.state;
    if ($("f-text").value !== state.filters.text) $("f-text").value = state.filters.text;
    $("v-list").setAttribute("aria-pressed", String(state.view === "list"));
    $("v-tree").setAttribute("aria-pressed", String(state.view === "tree"));
  }

  // rows are kept and updated in place (a row that is clicked must still be the same element on mouse-up)
  var rowCache = new Map();

  function renderTable(groups, now) {
    var body = $("rows");
    var wanted = [];
    var used = new Set();
    groups.forEach(function (tasks, sessionId) {
      var visible = tasks.filter(matches);
      if (visible.length === 0) return;
      var live = tasks.filter(function (t) { return !TERMINAL[t.record.state]; }).length;
      var header = cached("session\u0000" + sessionId, sessionRow);
      set(header.cells.id, sessionId);
      set(header.cells.count, tasks.length + " task" + (tasks.length === 1 ? "" : "s") + " · " + live + " live");
      header.tr.dataset.sessionId = sessionId;
      wanted.push(header.tr);
      used.add("session\u0000" + sessionId);
      rowsOf(visible).forEach(function (row) {
        var taskKey = keyOf(row.task.record);
        var entry = cached("task\u0000" + taskKey, taskRow);
        updateTaskRow(entry, row, now);
        wanted.push(entry.tr);
        used.add("task\u0000" + taskKey);
      });
    });
    var cursor = body.firstChild;
    wanted.forEach(function (node) {
      if (node === cursor) cursor = cursor.nextSibling;
      else body.insertBefore(node, cursor);
    });
    while (cursor !== null) {
      var next = cursor.nextSibling;
      body.removeChild(cursor);
      cursor = next;
    }
    rowCache.forEach(function (_, cacheKey) { if (!used.has(cacheKey)) rowCache.delete(cacheKey); });
    var empty = $("empty");
    empty.hidden = wanted.length > 0;
    empty.textContent = state.tasks.size === 0 ? "No tasks yet." : "No task matches the filters.";
  }

  function cached(cacheKey, make) {
    var entry = rowCache.get(cacheKey);
    if (entry === undefined) {
      entry = make();
      rowCache.set(cacheKey, entry);
    }
    return entry;
  }

  function set(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function sessionRow() {
    var tr = el("tr", "session");
    var cell = el("td");
    cell.colSpan = 7;
    var id = el("span", "id");
    var count = el("span", "muted");
    cell.appendChild(id);
    cell.appendChild(count);
    tr.appendChild(cell);
    return { tr: tr, cells: { id: id, count: count } };
  }

  function taskRow() {
    var tr = el("tr", "task");
    var cells = {
      state: el("td", "c-state"), task: el("td", "c-task"), kind: el("td", "c-kind kind"),
      progress: el("td", "c-progress"), duration: el("td", "c-duration num"), summary: el("td", "c-summary summary"),
      actions: el("td", "c-actions")
    };
    var badge = el("span", "badge");
    cells.state.appendChild(badge);
    var twig = el("span", "twig");
    var id = el("span", "id");
    cells.task.appendChild(twig);
    cells.task.appendChild(id);
    var progress = el("div", "progress");
    var bar = el("span", "bar");
    var fill = el("span", "fill");
    bar.appendChild(fill);
    var text = el("span", "text");
    progress.appendChild(bar);
    progress.appendChild(text);
    cells.progress.appendChild(progress);
    Object.keys(cells).forEach(function (name) { tr.appendChild(cells[name]); });
    return { tr: tr, cells: cells, parts: { badge: badge, twig: twig, id: id, bar: bar, fill: fill, text: text }, sig: {} };
  }

  function updateTaskRow(entry, row, now) {
    var record = row.task.record, tr = entry.tr, parts = entry.parts, sig = entry.sig;
    var taskKey = keyOf(record);
    tr.className = "task" + (state.selected === taskKey ? " selected" : "");
    tr.dataset.key = taskKey;
    tr.dataset.taskId = record.id;
    tr.dataset.sessionId = record.scope.session_id;
    tr.dataset.state = record.state;
    tr.dataset.kind = record.kind;

    parts.badge.className = "badge st-" + record.state;
    set(parts.badge, record.state);

    parts.twig.hidden = row.depth === 0;
    set(parts.twig, row.depth === 0 ? "" : row.last ? "└─" : "├─");
    parts.twig.style.marginLeft = row.depth > 1 ? ((row.depth - 1) * 18) + "px" : "0";
    set(parts.id, record.id);
    entry.cells.task.title = record.id + " · " + record.producer;

    set(entry.cells.kind, record.kind);

    var progress = row.task.progress || "";
    var share = fraction(progress);
    parts.bar.hidden = share === null || TERMINAL[record.state] === true;
    if (share !== null) parts.fill.style.width = Math.round(share * 100) + "%";
    set(parts.text, progress);
    entry.cells.progress.title = progress;

    set(entry.cells.duration, formatDuration(durationOf(record, now)));

    var summary = summaryOf(record);
    entry.cells.summary.className = "c-summary summary" + (record.state === "failed" ? " failed" : "");
    set(entry.cells.summary, summary);
    entry.cells.summary.title = summary;

    var action = state.cancel && state.token && !TERMINAL[record.state] ? record.state : "";
    if (sig.action !== action) {
      sig.action = action;
      clear(entry.cells.actions);
      if (action !== "") {
        var button = el("button", "act", "Cancel");
        button.type = "button";
        button.dataset.action = "cancel";
        button.disabled = record.state === "cancel_requested";
        entry.cells.actions.appendChild(button);
      }
    }
  }

  function field(list, name, value) {
    list.appendChild(el("dt", null, name));
    list.appendChild(el("dd", null, value === null || value === undefined || value === "" ? "–" : value));
  }

  var detailSignature = null;
  var detailDuration = null;

  function renderDetail(now) {
    var panel = $("detail");
    var detail = state.detail;
    if (detail === null) { panel.hidden = true; clear(panel); detailSignature = null; return; }
    var held = state.tasks.get(detail.key);
    var record = held ? held.record : detail.task ? detail.task.record : null;
    // rebuilt only when what it shows changed (a button being clicked stays the same element)
    var signature = [detail.key, detail.loading, detail.error, detail.events.size, detail.dropped, detail.complete,
      record ? record.revision : -1, record ? record.state : "", held ? held.progress : "", state.cancel, state.token,
      treeSignature(record)].join("\u0000");
    if (record !== null && detailDuration !== null) set(detailDuration, formatDuration(durationOf(record, now)));
    if (signature === detailSignature) return;
    detailSignature = signature;
    panel.hidden = false;
    clear(panel);
    var title = el("h2");
    var parts = detail.key.split("\u0000");
    title.appendChild(el("span", "id", parts[1]));
    if (record) title.appendChild(el("span", "badge st-" + record.state, record.state));
    var close = el("button", "close", "×");
    close.type = "button";
    close.dataset.action = "close";
    close.setAttribute("aria-label", "Close");
    title.appendChild(close);
    panel.appendChild(title);
    if (record === null) {
      panel.appendChild(el("p", "note", detail.loading ? "loading…" : detail.error || "this task is no longer held"));
      return;
    }
    var fields = el("dl", "fields");
    field(fields, "session", record.scope.session_id);
    field(fields, "kind", record.kind);
    field(fields, "producer", record.producer);
    field(fields, "progress", held ? held.progress : detail.task ? detail.task.progress : null);
    field(fields, "summary", summaryOf(record));
    field(fields, "duration", formatDuration(durationOf(record, now)));
    detailDuration = fields.lastChild;
    field(fields, "attempt", (record.attempt.attempt + 1) + (record.attempt.max_attempts !== null ? " of " + record.attempt.max_attempts : ""));
    field(fields, "cancel policy", record.cancel_policy);
    field(fields, "close policy", record.close_policy);
    field(fields, "parent", record.parent_task_id);
    field(fields, "child session", record.child_session_id);
    field(fields, "created", formatTime(record.created_at));
    field(fields, "updated", formatTime(record.updated_at));
    field(fields, "completed", formatTime(record.completed_at));
    field(fields, "revision", record.revision);
    panel.appendChild(fields);

    if (state.cancel && state.token && !TERMINAL[record.state]) {
      var cancel = el("button", "act", "Cancel task");
      cancel.type = "button";
      cancel.dataset.action = "cancel";
      cancel.disabled = record.state === "cancel_requested";
      cancel.style.marginTop = "10px";
      panel.appendChild(cancel);
    }

    renderTree(panel, record);

    panel.appendChild(el("h3", null, "Events"));
    if (detail.loading) panel.appendChild(el("p", "note", "loading…"));
    if (detail.error) panel.appendChild(el("p", "note", detail.error));
    var events = Array.from(detail.events.values()).sort(function (a, b) { return a.seq - b.seq; });
    var list = el("ol", "events");
    events.forEach(function (event, index) {
      var item = el("li", "st-" + (event.type === "progress" ? "running" : event.type === "registered" ? "pending" :
        event.type === "state_changed" ? event.state : event.type));
      item.dataset.type = event.type;
      item.appendChild(el("span", "seq", "#" + event.seq));
      item.appendChild(el("span", "type", event.type));
      item.appendChild(el("span", "what", describe(event)));
      list.appendChild(item);
      if (index === 0 && detail.dropped > 0) {
        list.appendChild(el("li", "note", "… " + detail.dropped + " older events not kept"));
      }
    });
    panel.appendChild(list);
    if (!detail.loading && !detail.complete) {
      panel.appendChild(el("p", "note", "Earlier events of this task were not seen by the inspector (it started later, or fell behind)."));
    }
  }

  /** The task's ancestors and descendants among the held records (by id: the live record, else the latest). */
  function treeOf(record) {
    var byId = new Map();
    state.tasks.forEach(function (task) {
      var existing = byId.get(task.record.id);
      if (!existing || (!TERMINAL[task.record.state] && TERMINAL[existing.record.state]) ||
          (TERMINAL[task.record.state] === TERMINAL[existing.record.state] && task.record.revision > existing.record.revision)) {
        byId.set(task.record.id, task);
      }
    });
    var root = record, guard = 0;
    while (root.parent_task_id !== null && byId.has(root.parent_task_id) && guard++ < 64) root = byId.get(root.parent_task_id).record;
    var children = new Map();
    byId.forEach(function (task) {
      var parent = task.record.parent_task_id;
      if (parent !== null && parent !== task.record.id) {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(task);
      }
    });
    var nodes = [], seen = new Set();
    function walk(node, depth) {
      if (seen.has(node.id)) return;
      seen.add(node.id);
      nodes.push({ record: node, depth: depth });
      (children.get(node.id) || []).sort(byCreation).forEach(function (child) { walk(child.record, depth + 1); });
    }
    if (root.id !== record.id || children.has(record.id)) walk(root, 0);
    return nodes;
  }

  function treeSignature(record) {
    return record === null ? "" : treeOf(record).map(function (n) { return n.depth + n.record.id + n.record.state; }).join(",");
  }

  function renderTree(panel, record) {
    var nodes = treeOf(record);
    if (nodes.length === 0) return;
    panel.appendChild(el("h3", null, "Tree"));
    var list = el("ul", "tree root");
    nodes.forEach(function (node) {
      var item = el("li");
      item.style.paddingLeft = (node.depth * 16) + "px";
      if (node.depth > 0) item.appendChild(el("span", "twig", "└─"));
      var label = el("span", "node" + (node.record.id === record.id ? " current" : ""));
      label.dataset.key = keyOf(node.record);
      label.appendChild(el("span", "badge st-" + node.record.state, node.record.state));
      label.appendChild(document.createTextNode(" "));
      label.appendChild(el("span", "id", node.record.id));
      item.appendChild(label);
      list.appendChild(item);
    });
    panel.appendChild(list);
  }

  // ---------------------------------------------------------------------------
  // wiring
  // ---------------------------------------------------------------------------

  function onFilter() {
    state.filters.session = $("f-session").value;
    state.filters.kind = $("f-kind").value;
    state.filters.state = $("f-state").value;
    state.filters.text = $("f-text").value;
    writeLocation();
    schedule();
  }

  function start() {
    ["f-session", "f-kind", "f-state"].forEach(function (id) { $(id).addEventListener("change", onFilter); });
    $("f-text").addEventListener("input", onFilter);
    $("v-list").addEventListener("click", function () { state.view = "list"; writeLocation(); schedule(); });
    $("v-tree").addEventListener("click", function () { state.view = "tree"; writeLocation(); schedule(); });
    $("banner-close").addEventListener("click", function () { state.banner = null; schedule(); });
    $("rows").addEventListener("click", function (event) {
      var row = event.target.closest("tr.task");
      if (!row) return;
      var task = state.tasks.get(row.dataset.key);
      if (event.target.closest("[data-action=cancel]")) {
        if (task) cancelTask(task.record);
        return;
      }
      select(state.selected === row.dataset.key ? null : row.dataset.key);
    });
    $("detail").addEventListener("click", function (event) {
      if (event.target.closest("[data-action=close]")) { select(null); return; }
      if (event.target.closest("[data-action=cancel]")) {
        var held = state.tasks.get(state.selected);
        if (held) cancelTask(held.record);
        return;
      }
      var node = event.target.closest(".node");
      if (node && node.dataset.key) select(node.dataset.key);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && state.detail !== null) select(null);
    });
    $("footer").textContent = "Served by the host's process at " + location.host +
      " · the table follows the host's events live · click a task for its events";
    connect();
    pollStats();
    setInterval(pollStats, 3000);
    // durations of live tasks keep moving
    setInterval(function () { if (state.tasks.size > 0) schedule(); }, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
`

export const favicon = String.raw`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#3b5bdb"/><stop offset="1" stop-color="#9c36b5"/></linearGradient></defs>
<rect x="3" y="3" width="10" height="10" rx="2" transform="rotate(45 8 8)" fill="url(#g)"/></svg>
`
