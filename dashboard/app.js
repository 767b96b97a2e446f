// rayd's dashboard: plain JavaScript, no dependencies. It reads the same HTTP API as any
// client (/v1/status, /v1/tasks, /v1/objects, /v1/actors, /v1/functions), a page at
// a time, and polls every 2 s while the tab is visible, so it costs the daemon nothing while
// no one looks. A token, when the server needs one, is asked for and kept in sessionStorage:
// it goes in the Authorization header, never in a URL.
"use strict";

const POLL_MS = 2000;
const PAGE = 50;
const HISTORY = 60; // points kept for the charts (2 minutes)
const main = document.getElementById("main");
const state = { page: "overview", params: {}, cursors: [], history: [], timer: null, gen: 0 };

function token() { return sessionStorage.getItem("rayd_token") || ""; }

function askToken() {
  return new Promise((resolve) => {
    const dlg = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    document.getElementById("token-form").onsubmit = () => {
      sessionStorage.setItem("rayd_token", input.value);
      input.value = "";
      resolve();
    };
    if (!dlg.open) dlg.showModal();
  });
}

// Asks for the token first when the server wants one and this tab has none.
async function ensureToken() {
  if (token()) return;
  const r = await fetch("/dashboard/config.json");
  const cfg = await r.json();
  if (cfg.auth) await askToken();
}

// GET path as JSON (or text); asks for the token again on 401 (a wrong one) and retries.
async function api(path, asText) {
  await ensureToken();
  for (let tries = 0; tries < 3; tries++) {
    const headers = {};
    if (token()) headers["Authorization"] = "Bearer " + token();
    const r = await fetch(path, { headers });
    if (r.status === 401) { await askToken(); continue; }
    if (asText) return { status: r.status, text: await r.text(), type: r.headers.get("Content-Type") || "" };
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error((body && (body.title + ": " + body.detail)) || ("HTTP " + r.status));
    return body;
  }
  throw new Error("no valid token");
}

function esc(v) {
  return String(v === null || v === undefined ? "-" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function table(cols, rows) {
  const head = cols.map((c) => `<th>${esc(c[1])}</th>`).join("");
  const body = rows.map((r) => "<tr>" + cols.map((c) => {
    const v = c[2] ? c[2](r) : esc(r[c[0]]);
    return `<td class="${esc(r[c[0]])}" data-col="${c[0]}">${v}</td>`;
  }).join("") + "</tr>").join("");
  return `<div class="scroll"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

// A line chart of values (numbers) as inline SVG.
function chart(values, label) {
  const w = 300, h = 80, max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, HISTORY - 1)) * w},${h - (v / max) * (h - 10) - 5}`).join(" ");
  const last = values.length ? values[values.length - 1] : 0;
  return `<div class="card"><h3>${esc(label)}</h3><div class="big" data-value="${esc(label)}">${last.toFixed(1)}</div>
    <svg class="chart" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none"><polyline fill="none" stroke="#2563eb" stroke-width="2" points="${pts}"/></svg></div>`;
}

function byState(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `<div><span class="${esc(k)}">${esc(k)}</span> <b data-state="${esc(k)}">${esc(v)}</b></div>`).join("");
}

// ---- pages -------------------------------------------------------------------------------

// One request (/v1/status, which has the request counts too): the first paint waits for
// nothing else, and a poll costs the daemon one status read, not a /metrics render.
async function overview() {
  const s = await api("/v1/status");
  const now = performance.now() / 1000;
  const point = { t: now, requests: s.http.requests, finished: s.tasks.finished + s.tasks.failed };
  const prev = state.history[state.history.length - 1];
  if (prev) { point.rps = (point.requests - prev.requests) / (now - prev.t); point.tps = (point.finished - prev.finished) / (now - prev.t); }
  state.history.push(point);
  if (state.history.length > HISTORY) state.history.shift();
  const rps = state.history.filter((p) => p.rps !== undefined).map((p) => Math.max(0, p.rps));
  const tps = state.history.filter((p) => p.tps !== undefined).map((p) => Math.max(0, p.tps));
  let nodes = "";
  if (s.cluster && s.cluster.nodes) {
    const rows = s.cluster.nodes.map((n) => ({ ...n, state: n.alive ? "ALIVE" : "DEAD", queued: n.load && n.load.queued,
      running: n.load && n.load.running, memory: n.load && bytes(n.load.memory),
      // C modules are per node: which ones this node loaded (null: not read yet)
      modules: Array.isArray(n.modules) ? (n.modules.map((m) => m.name).join(", ") || "none") : "unknown" }));
    nodes = `<h2>Nodes</h2><div id="nodes">` + table([["tag", "Node", (n) => esc(n.tag) + (n.self ? " (this one)" : "")], ["url", "URL"],
      ["state", "State"], ["queued", "Queued"], ["running", "Running"], ["memory", "Memory"], ["modules", "Modules"], ["started_at", "Started"]], rows) + `</div>`;
  }
  return `<h2>Overview</h2>
  <div class="cards">
    <div class="card"><h3>Uptime</h3><div class="big" id="uptime">${esc(Math.round(s.uptime_seconds))} s</div><div class="muted">version ${esc(s.version)}</div></div>
    <div class="card"><h3>Store</h3><div class="big">${bytes(s.object_store.bytes)}</div><div class="muted"><span id="store-objects">${esc(s.object_store.objects)}</span> objects, limit ${bytes(s.object_store.memory_limit)}</div><div class="muted">on disk <span id="store-disk">${bytes(s.object_store.spill_disk_bytes || 0)}</span> (<span id="store-spilled">${esc(s.object_store.spilled || 0)}</span> spilled)</div></div>
    <div class="card"><h3>Tasks</h3><div class="big" id="tasks-submitted">${esc(s.tasks.submitted)}</div><div class="muted">submitted</div>${byState(s.tasks.by_state)}</div>
    <div class="card"><h3>Actors</h3>${byState(s.actors.by_state)}</div>
    <div class="card"><h3>Parked requests</h3><div class="big" id="parked">${esc(s.http.parked)}</div></div>
    ${chart(rps, "requests/s")}
    ${chart(tps, "tasks ended/s")}
  </div>${nodes}`;
}

function filtersHtml(states, withFunction) {
  const opts = ["", ...states].map((s) => `<option value="${s}" ${state.params.state === s ? "selected" : ""}>${s || "any state"}</option>`).join("");
  const fn = withFunction ? `<input id="f-function" placeholder="function" value="${esc(state.params.function || "")}">` : "";
  return `<div class="filters"><select id="f-state">${opts}</select>${fn}<button id="f-apply">Filter</button></div>`;
}

function pagerHtml(next) {
  const page = state.cursors.length + 1;
  return `<div class="pager"><button id="p-prev" ${state.cursors.length ? "" : "disabled"}>Previous</button>
    <span class="muted">page ${page}</span><button id="p-next" ${next === null || next === undefined ? "disabled" : ""} data-next="${esc(next)}">Next</button></div>`;
}

function listQuery(extra) {
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (state.params.state) q.set("state", state.params.state);
  if (state.params.function && extra) q.set("function", state.params.function);
  if (state.params.cursor) q.set("cursor", state.params.cursor);
  return q.toString();
}

const TASK_STATES = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED", "FAILED", "CANCELLED"];

async function tasks() {
  if (state.params.id) return taskDetail(state.params.id);
  const r = await api("/v1/tasks?" + listQuery(true));
  state.next = r.next_cursor;
  return `<h2>Tasks</h2>${filtersHtml(TASK_STATES, true)}` + table([
    ["task_id", "Task", (t) => `<a class="link" href="#tasks/${esc(t.task_id)}">${esc(t.task_id)}</a>`],
    ["function", "Function"], ["state", "State"], ["attempts", "Attempts"],
    ["submitted_at", "Submitted"], ["finished_at", "Ended"],
    ["error", "Error", (t) => t.error ? esc(t.error.title + ": " + t.error.detail) : ""],
  ], r.tasks) + pagerHtml(r.next_cursor);
}

function causeChain(err) {
  let html = "", e = err, depth = 0;
  while (e && depth < 64) {
    html += `<div class="cause" data-depth="${depth}"><b>${esc(e.title)}</b> ${esc(e.detail)}
      <div class="muted">${esc(Object.entries(e).filter(([k]) => !["type", "title", "status", "detail", "cause"].includes(k)).map(([k, v]) => k + "=" + JSON.stringify(v)).join(" "))}</div></div>`;
    e = e.cause; depth++;
  }
  return html;
}

async function taskDetail(id) {
  const t = await api("/v1/tasks/" + encodeURIComponent(id));
  const rows = Object.entries(t).filter(([k]) => k !== "error").map(([k, v]) => ({ k, v: typeof v === "object" ? JSON.stringify(v) : v }));
  return `<h2>Task ${esc(t.task_id)}</h2><p><a class="link" href="#tasks">back to tasks</a></p>` +
    table([["k", "Field"], ["v", "Value"]], rows) +
    (t.error ? `<h3>Error and its causes</h3><div id="cause-chain">${causeChain(t.error)}</div>` : "");
}

async function objects() {
  if (state.params.id) return objectDetail(state.params.id);
  const r = await api("/v1/objects?" + listQuery(false));
  return `<h2>Objects</h2>${filtersHtml(["pending", "ready", "error"], false)}` + table([
    ["ref", "Ref", (o) => `<a class="link" href="#objects/${esc(o.ref)}">${esc(o.ref)}</a>`],
    ["state", "State"], ["size", "Size", (o) => bytes(o.size)], ["content_type", "Content type"], ["created_at", "Created"],
  ], r.objects) + pagerHtml(r.next_cursor);
}

async function objectDetail(ref) {
  const meta = await api("/v1/objects/" + encodeURIComponent(ref) + "/meta");
  let preview = "";
  const ct = meta.content_type || "";
  if (meta.state === "ready" && meta.size <= 65536 && (ct.includes("json") || ct.startsWith("text/"))) {
    const r = await api("/v1/objects/" + encodeURIComponent(ref), true);
    let text = r.text;
    if (ct.includes("json")) { try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as is */ } }
    preview = `<h3>Preview</h3><pre id="preview">${esc(text)}</pre>`;
  } else if (meta.state === "error") {
    const r = await api("/v1/objects/" + encodeURIComponent(ref), true);
    try { preview = `<h3>Error and its causes</h3><div id="cause-chain">${causeChain(JSON.parse(r.text))}</div>`; } catch (e) { preview = ""; }
  }
  return `<h2>Object ${esc(ref)}</h2><p><a class="link" href="#objects">back to objects</a></p>` +
    table([["k", "Field"], ["v", "Value"]], Object.entries(meta).map(([k, v]) => ({ k, v }))) + preview;
}

async function actors() {
  const r = await api("/v1/actors?" + listQuery(false));
  return `<h2>Actors</h2>${filtersHtml(["PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"], false)}` + table([
    ["actor_id", "Actor"], ["class", "Class"], ["name", "Name"], ["state", "State"], ["restarts", "Restarts"],
    ["calls_pending", "Pending calls"], ["calls_done", "Done calls"], ["created_at", "Created"],
  ], r.actors) + pagerHtml(r.next_cursor);
}

async function functions() {
  const f = await api("/v1/functions");
  const c = await api("/v1/actor-classes");
  return `<h2>Functions</h2>` + table([["name", "Name"], ["kind", "Kind"], ["args", "Arguments"], ["description", "Description"], ["url", "URL"]], f.functions) +
    `<h2>Actor classes</h2>` + table([["name", "Name"], ["kind", "Kind"], ["methods", "Methods", (k) => esc((k.methods || []).map((m) => m.name || m).join(", "))], ["description", "Description"], ["url", "URL"]], c.classes || []);
}

const PAGES = { overview, tasks, objects, actors, functions };

// ---- routing and polling -----------------------------------------------------------------

function readHash() {
  const [page, id] = (location.hash.slice(1) || "overview").split("/");
  const pageChanged = page !== state.page || id !== state.params.id;
  state.page = PAGES[page] ? page : "overview";
  if (pageChanged) { state.params = { id: id ? decodeURIComponent(id) : undefined }; state.cursors = []; }
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === state.page);
}

async function render() {
  const gen = ++state.gen;
  const live = document.getElementById("live");
  try {
    const html = await PAGES[state.page]();
    if (!document.body.dataset.firstPaint) document.body.dataset.firstPaint = String(performance.now());
    if (gen !== state.gen) return; // a newer render started meanwhile
    const focus = document.activeElement && document.activeElement.id;
    main.innerHTML = html;
    if (focus && document.getElementById(focus)) document.getElementById(focus).focus();
    wire();
    live.classList.remove("stale");
    live.textContent = "live " + new Date().toLocaleTimeString();
    document.body.dataset.rendered = String(gen);
  } catch (e) {
    live.classList.add("stale");
    live.textContent = "not updated: " + e.message;
  }
}

function wire() {
  const apply = document.getElementById("f-apply");
  if (apply) apply.onclick = () => {
    state.params.state = document.getElementById("f-state").value;
    const fn = document.getElementById("f-function");
    state.params.function = fn ? fn.value : "";
    state.params.cursor = undefined; state.cursors = [];
    render();
  };
  const next = document.getElementById("p-next");
  if (next) next.onclick = () => { state.cursors.push(state.params.cursor); state.params.cursor = next.dataset.next; render(); };
  const prev = document.getElementById("p-prev");
  if (prev) prev.onclick = () => { state.params.cursor = state.cursors.pop(); render(); };
}

function schedule() {
  clearTimeout(state.timer);
  if (document.hidden) return; // nobody looks: no requests
  state.timer = setTimeout(async () => {
    const typing = document.activeElement && document.activeElement.tagName === "INPUT";
    if (!typing) await render(); // a re-render would drop what is being typed
    schedule();
  }, POLL_MS);
}

window.addEventListener("hashchange", () => { readHash(); render().then(schedule); });
document.addEventListener("visibilitychange", () => { if (!document.hidden) render().then(schedule); else clearTimeout(state.timer); });
readHash();
render().then(schedule);
