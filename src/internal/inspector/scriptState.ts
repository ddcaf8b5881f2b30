/**
 * The inspector page's script, as text served to the browser (no build step,
 * no framework): one function scope, in two parts that are served as one.
 * `scriptState` holds the helpers, the filters, the feed and the page's
 * model of the tasks; `scriptView` draws it and wires the page up.
 *
 * @internal
 */

/** The first part: helpers, filters, the feed, stats, detail, cancelling, formatting, ordering. */
export const scriptState = String.raw`"use strict";
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

`
