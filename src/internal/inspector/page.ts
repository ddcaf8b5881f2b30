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

import { scriptState } from "./scriptState.ts"
import { scriptView } from "./scriptView.ts"

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


export const favicon = String.raw`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#3b5bdb"/><stop offset="1" stop-color="#9c36b5"/></linearGradient></defs>
<rect x="3" y="3" width="10" height="10" rx="2" transform="rotate(45 8 8)" fill="url(#g)"/></svg>
`

export const js = scriptState + scriptView
