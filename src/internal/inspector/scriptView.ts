/**
 * The inspector page's script, second part: drawing the model that
 * `scriptState` keeps, and wiring the page up; it closes the function scope
 * the first part opened. Served as text, right after the first part.
 *
 * @internal
 */

/** The second part: drawing and wiring; it closes the function scope the first part opened. */
export const scriptView = String.raw`
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
