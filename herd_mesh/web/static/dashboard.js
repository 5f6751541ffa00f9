/*
 * herd-mesh dashboard. Plain JavaScript (ES2018), no framework, no build step, nothing from the internet.
 *
 * How it works
 * - The page is served by any peer; its #herd-bootstrap data block holds that peer's /mesh/peers answer, drawn
 *   at once. A missing or malformed block is ignored: the first answer fills the page in.
 * - Live, not polled: an EventSource on /dashboard/api/events receives `peers` (the /mesh/peers answer: peers,
 *   their state documents, queues and job progress), `settings` (the settings detail) and `records` (a request
 *   was recorded somewhere: statistics changed), each as it changes. Statistics and health are fetched again when
 *   an event says they changed (`records`, a peer's status), never on a timer.
 * - Fallback: when the stream cannot be opened (or breaks for more than FALLBACK_MS), four pollers take over, each
 *   never two in flight, until the stream is back:
 *     /mesh/peers                          (1 s)  peers, their state documents, live queues
 *     /dashboard/api/health                (2 s)  status, counts, every check with its advice
 *     /dashboard/api/settings?detail=1     (2 s)  settings with their schema and who changed them
 *     /dashboard/api/stats?recent=30&hours (2 s)  mesh-wide statistics for every kind of request
 *   `?poll=0` in the page's address turns the fallback off and `?events=0` the stream (tests use both).
 * - Each answer is coerced (`normPeers`, `normHealth`, `normSettings`, `normStats`), stored in `view`, and the
 *   matching part of the page is redrawn from scratch with `el()`, which builds DOM nodes and never parses HTML
 *   (text from peers cannot inject markup).
 * - Nothing from a peer is trusted to have the type it should: any peer can put anything in its state document,
 *   and every peer re-serves it in /mesh/peers. Every field is read through the coercion helpers (`str`, `num`,
 *   `count`, `bool`, `list`, `obj`, `entries`, `own`): a value of the wrong type counts as absent, lists keep only
 *   items of the right type, and long strings and lists are cut.
 * - Every panel (header, advice, peers and each peer card, queues, settings, statistics tiles, each chart, each
 *   table) draws inside its own error boundary (`panel()`): a throw shows "this panel could not be drawn: ..." in
 *   that panel and is logged to the console, while the other panels and the updates carry on.
 * - Content-Security-Policy: the page runs under `default-src 'none'; script-src 'self'; style-src 'self'; ...`.
 *   So no inline script or style, no `style` attributes (widths are set through `element.style`, which CSP
 *   allows), no eval, no `javascript:` URLs.
 * - Settings: switches and number fields POST one change to /dashboard/api/settings?detail=1; the peer
 *   pushes it to every other peer and answers with the peers that confirmed.
 * - Statistics: a window selector (1 h, 24 h, 7 d, 30 d) applies to every chart; buckets start on round local
 *   times (the page sends its UTC offset as `tz`). Charts are SVG or CSS bars drawn here: requests over time,
 *   throughput per hour by node and by model (Trends), generation time by node, breakdowns, per-model insights,
 *   per-tag usage, recent failures with each peer's attempt, requests rejected before routing.
 * - Job badges: a job's `kind` (image, llm, embed, stt) picks [IMAGE], [LLM], [EMBED] or [STT]. Jobs are read
 *   from every section of a peer's state that has `queue.running` / `queue.waiting` or an `active` list; a
 *   running image shows step i/n and an ETA, an LLM request its model, tokens so far and elapsed time. A down
 *   peer shows no queue: what it last advertised is not what it is doing.
 * - Routing explained: clicking a job (running, recent or failed) shows why it went where it went, from
 *   /dashboard/api/routing?job=<id> (recorded) or /api/jobs/<id> (running).
 */
"use strict";

const POLLS = { peers: 1000, health: 2000, settings: 2000, stats: 2000 }; // ms between polls (fallback only)
const FALLBACK_MS = 3000; // a stream that has not (re)opened within this long hands over to the pollers
const HEALTH_EVERY_MS = 10000; // with the stream, health is fetched again on a peer event at most this often...
const REFRESH_GAP_MS = 300; // ...or at once (after this short gap) when a peer's status changed or a record came
const WINDOWS = [[1, "1 h"], [24, "24 h"], [168, "7 d"], [720, "30 d"]]; // hours, label
const BADGES = { image: "IMAGE", llm: "LLM", embed: "EMBED", embeddings: "EMBED", stt: "STT", transcription: "STT" };
const KINDS = { image: "Image", llm: "LLM", embeddings: "Embeddings", transcription: "Transcription" };
const KIND_BADGE = { image: "image", llm: "llm", embeddings: "embed", transcription: "stt" };
const LABELS = {
  image_generation: "Image generation", transcription: "Speech-to-text", llm: "LLM chat", embeddings: "Embeddings",
  store_prompts: "Store prompts", image_keep_alive_s: "Image keep-alive (s)", stats_retention_days: "Keep statistics (days)",
};
const PALETTE = ["#6d3fd0", "#2563eb", "#0f8f6f", "#c2600c", "#db2777", "#65a30d", "#0891b2", "#a16207", "#9ca3af"];
const PARAMS = new URLSearchParams(location.search);
const KEY_STORE = "herd-mesh-key"; // where the page keeps the key a person typed (this browser only)
const USE_EVENTS = PARAMS.get("events") !== "0" && typeof EventSource === "function";
const USE_POLLING = PARAMS.get("poll") !== "0";
const MAX_TEXT = 300; // longer strings from peers are cut
const MAX_ITEMS = 500; // longer lists (and objects) from peers are cut
const MAX_COUNT = 1e15; // counts are clamped to 0..MAX_COUNT, so sums and scales stay finite
const MAX_MODELS_SHOWN = 40; // per section of a peer card; the rest are counted

// -- coercion: every value from a peer or the API passes through these before use ------------------------------
function isObj(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function obj(v) {
  // an object (not a list), else {}
  return isObj(v) ? v : {};
}

function str(v, fallback = "") {
  // a string (finite numbers are written out), cut to MAX_TEXT; anything else is `fallback`
  let s;
  if (typeof v === "string") s = v;
  else if (typeof v === "number" && isFinite(v)) s = String(v);
  else return fallback;
  return s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT - 1)}…` : s;
}

function num(v, fallback = null) {
  // a finite number, else `fallback` (absent)
  return typeof v === "number" && isFinite(v) ? v : fallback;
}

function count(v) {
  // a count: a finite number clamped to 0..MAX_COUNT, else 0
  return Math.min(MAX_COUNT, Math.max(0, num(v, 0)));
}

function bool(v, fallback = false) {
  return typeof v === "boolean" ? v : fallback;
}

function list(v, itemFn) {
  // a list of what `itemFn` makes of each item; items it answers null or undefined for are dropped
  if (!Array.isArray(v)) return [];
  const out = [];
  for (const item of v.slice(0, MAX_ITEMS)) {
    const value = itemFn ? itemFn(item) : item;
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function strItem(v) {
  return str(v, null); // for list(): strings kept, anything else dropped
}

function entries(v) {
  // [key, value] pairs of an object (a list or anything else has none)
  return Object.entries(obj(v)).slice(0, MAX_ITEMS);
}

function own(map, key) {
  // map[key] only when it is the map's own: a peer's "constructor" or "__proto__" finds nothing
  return isObj(map) && Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

function token(v) {
  // a safe CSS class name from untrusted text
  return str(v).toLowerCase().replace(/[^a-z0-9_-]/g, "").slice(0, 40);
}

function errorText(err) {
  return str(err && err.message) || str(err) || "unknown error";
}

// -- the answers, coerced ---------------------------------------------------------------------------------------
function normPeers(doc) {
  // /mesh/peers; capabilities stay as sent (an object) and are read through the helpers when drawn
  if (!isObj(doc)) return null;
  return {
    self: str(doc.self),
    mesh: str(doc.mesh),
    peers: list(doc.peers, (p) => (isObj(p) ? {
      node_id: str(p.node_id), url: str(p.url), status: str(p.status) || "unknown", last_seen: num(p.last_seen),
      self: p.self === true, static: p.static === true, last_error: str(p.last_error), capabilities: obj(p.capabilities),
    } : null)),
  };
}

function normHealth(h) {
  if (!isObj(h)) return null;
  const peers = obj(h.peers);
  return {
    status: str(h.status) || "unknown",
    peers: { up: count(peers.up), suspect: count(peers.suspect), down: count(peers.down) },
    recommendations: list(h.recommendations, strItem),
    checks: list(h.checks, (c) => (isObj(c) && str(c.id) ? {
      id: str(c.id), title: str(c.title) || str(c.id), ok: c.ok === true, advice: list(c.advice, strItem),
    } : null)),
  };
}

function normSettings(d) {
  if (!isObj(d)) return null;
  const values = obj(d.settings);
  const fields = [];
  for (const [key, raw] of entries(d.schema)) {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(key) || !isObj(raw)) continue;
    const type = str(raw.type);
    const value = own(values, key);
    const changed = obj(own(obj(d.changed), key));
    fields.push({
      key, type, help: str(raw.help), minimum: num(raw.minimum), maximum: num(raw.maximum),
      value: type === "boolean" ? bool(value) : type === "integer" || type === "number" ? num(value) : str(value),
      changed: str(changed.by) ? { by: str(changed.by), at: num(changed.at) } : null,
    });
  }
  return {
    fields,
    peers: list(d.peers, (p) => (isObj(p) ? { node_id: str(p.node_id) || "?", status: str(p.status), in_sync: bool(p.in_sync, null) } : null)),
    applied_on: list(d.applied_on, strItem),
    pending: entries(d.pending).map(([node, why]) => [node, str(why) || "?"]),
  };
}

function normGroup(b) {
  const g = obj(b);
  return {
    total: count(g.total), succeeded: count(g.succeeded), failed: count(g.failed), cancelled: count(g.cancelled),
    p50_generation_ms: num(g.p50_generation_ms), p95_generation_ms: num(g.p95_generation_ms),
    generation_s_total: num(g.generation_s_total),
  };
}

function counts(v) {
  // {name: count} -> [[name, count]], biggest first
  return entries(v).map(([name, n]) => [str(name), count(n)]).sort((a, b) => b[1] - a[1]);
}

function normAttempts(v) {
  return list(v, (a) => (isObj(a) ? { node: str(a.node) || "?", reason: str(a.reason), status: str(a.status) } : null));
}

function normEvent(r) {
  return isObj(r) ? {
    ts: num(r.ts), kind: str(r.kind) || "?", model: str(r.model) || "?", width: num(r.width), height: num(r.height),
    steps: num(r.steps), node: str(r.node), entry_node: str(r.entry_node), generation_ms: num(r.generation_ms),
    queue_ms: num(r.queue_ms), status: str(r.status) || "?", tags: list(r.tags, strItem), error: str(r.error),
    prompt: str(r.prompt), job_id: str(r.job_id), attempts: normAttempts(r.attempts),
  } : null;
}

function normSeries(v) {
  return entries(v).map(([name, values]) => [str(name), list(values, (n) => count(n))]);
}

function normKindStats(k) {
  const s = obj(k);
  const rejected = obj(s.rejected);
  const trends = obj(s.trends);
  return {
    ...normGroup(s),
    avg_generation_ms: num(s.avg_generation_ms),
    avg_queue_ms: num(s.avg_queue_ms),
    by_node: entries(s.by_node).map(([name, b]) => [name, normGroup(b)]),
    by_model: entries(s.by_model).map(([name, b]) => [name, {
      ...normGroup(b), ran_on: counts(obj(b).ran_on), failure_reasons: counts(obj(b).failure_reasons),
    }]),
    by_tag: entries(s.by_tag).map(([name, b]) => [name, { ...normGroup(b), models: counts(obj(b).models) }]),
    timeline: list(s.timeline, (b) => (isObj(b) ? {
      start: num(b.start), ok: count(b.ok), failed: count(b.failed), cancelled: count(b.cancelled), rejected: count(b.rejected),
      p50_ms: num(b.p50_ms),
    } : null)),
    trends: {
      bucket_s: num(trends.bucket_s, 3600) > 0 ? num(trends.bucket_s, 3600) : 3600,
      starts: list(trends.starts, (n) => num(n)),
      by_node: normSeries(trends.by_node),
      by_model: normSeries(trends.by_model),
    },
    rejected: { total: count(rejected.total), by_model: counts(rejected.by_model), by_reason: counts(rejected.by_reason) },
    failures: list(s.failures, normEvent),
    recent: list(s.recent, normEvent),
  };
}

function normStats(s) {
  if (!isObj(s)) return null;
  const kinds = {};
  for (const kind of Object.keys(KINDS)) kinds[kind] = normKindStats(own(obj(s.kinds), kind));
  const windowS = num(s.window_s, 0);
  return {
    window_s: windowS > 0 ? windowS : 86400,
    kinds,
    nodes_answered: list(s.nodes_answered, strItem),
    nodes_missing: list(s.nodes_missing, (m) => (isObj(m) ? { node_id: str(m.node_id) || "?", reason: str(m.reason) || "?" } : null)),
    nodes_truncated: list(s.nodes_truncated, strItem),
  };
}

function normRoute(r) {
  if (!isObj(r)) return null;
  return {
    job_id: str(r.job_id) || str(r.id), node: str(r.node), entry_node: str(r.entry_node), status: str(r.status) || str(r.state),
    model: str(r.model), reason: str(r.reason), attempts: normAttempts(r.attempts),
    explanation: list(r.explanation, strItem),
    options: list(r.options, (o) => (isObj(o) ? { node: str(o.node) || "?", chosen: o.chosen === true, estimate: str(o.estimate), cannot: str(o.cannot) } : null)),
  };
}

const view = {
  peers: readBootstrap(), // /mesh/peers, coerced
  peersAt: Date.now(),
  serverOffsetMs: 0, // the serving peer's clock minus the browser's
  health: null,
  healthAt: 0,
  settings: null,
  stats: null,
  kind: "image",
  hours: 24,
  lastOk: Date.now(),
  mode: USE_EVENTS ? "connecting" : "polling", // "events" while the stream is open, else "polling" (or "connecting")
  statusKey: "", // peers' statuses: a change fetches health again at once
  route: null, // the routing explanation shown, coerced
};

// -- small helpers ---------------------------------------------------------------------------------------------
function readBootstrap() {
  try {
    const block = document.getElementById("herd-bootstrap");
    return block ? normPeers(JSON.parse(block.textContent)) : null;
  } catch (err) {
    console.warn(`herd-mesh dashboard: the bootstrap data is unreadable (${errorText(err)}); waiting for the first poll`);
    return null; // the first poll fills it in
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value; // CSSOM, which CSP allows (a style attribute it would not)
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (typeof value === "number" && !isFinite(value)) continue; // never write NaN or Infinity into a drawing
    node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return target;
}

// -- error boundaries ------------------------------------------------------------------------------------------
function brokenNote(err, tag) {
  return el(tag || "p", { class: "panel-error", role: "alert" }, `this panel could not be drawn: ${errorText(err)}`);
}

function panel(name, id, draw) {
  // draw one panel; a throw shows a note in the element `id` and is logged, and the other panels carry on
  try {
    draw();
    return true;
  } catch (err) {
    console.error(`herd-mesh dashboard: the ${name} panel could not be drawn:`, err);
    try {
      const target = document.getElementById(id);
      if (target) {
        const tag = target.tagName;
        target.replaceChildren(tag === "TABLE" ? el("tr", {}, el("td", {}, brokenNote(err, "span")))
          : tag === "UL" ? brokenNote(err, "li") : tag === "SPAN" ? brokenNote(err, "span") : brokenNote(err));
        if (target.closest("[hidden]")) target.closest("[hidden]").hidden = false;
      }
    } catch (inner) {
      console.error("herd-mesh dashboard: could not show the note either:", inner);
    }
    return false;
  }
}

function fmt(n, digits) {
  return n === null || n === undefined ? "–" : n.toFixed(digits);
}

function ms(value) {
  if (typeof value !== "number" || !isFinite(value)) return "–";
  return value >= 10000 ? `${(value / 1000).toFixed(1)} s` : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

function ago(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "never";
  if (seconds < 1.5) return "just now";
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function serverNow() {
  return (Date.now() + view.serverOffsetMs) / 1000;
}

function since(ts) {
  return ts === null ? null : serverNow() - ts;
}

function clock(ts, withSeconds = true) {
  if (ts === null) return "–";
  const date = new Date(ts * 1000 - view.serverOffsetMs);
  if (isNaN(date.getTime())) return "–";
  return date.toLocaleTimeString([], withSeconds ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" });
}

function badge(kind) {
  const label = own(BADGES, kind);
  const cls = label ? own(KIND_BADGE, kind) || kind : token(kind);
  return el("span", { class: `badge ${cls}` }, `[${label || kind.slice(0, 20).toUpperCase()}]`);
}

function withCode(text) {
  // `command` in advice becomes <code>command</code>, so it reads as something to run
  return text.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

function pill(text, cls) {
  return el("span", { class: `pill ${token(cls || text)}` }, text);
}

function storedKey() {
  try {
    return localStorage.getItem(KEY_STORE) || "";
  } catch (err) {
    return "";
  }
}

async function getJSON(url, options) {
  // a key the person gave (a mesh with API keys, or a change that needs the mesh key) goes with every call
  const key = storedKey();
  const headers = { ...obj(options && options.headers), ...(key ? { Authorization: `Bearer ${key}` } : {}) };
  const response = await fetch(url, { cache: "no-store", ...options, headers });
  if (response.status === 401) document.getElementById("key-form").hidden = false;
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`${url}: HTTP ${response.status}, not JSON`);
  }
  if (!response.ok) throw new Error(str(obj(body).error) || `${url}: HTTP ${response.status}`);
  return body;
}

function seconds(value) {
  // a duration for people: "12 s", "3 min 4 s", "1 h 2 min"
  if (typeof value !== "number" || !isFinite(value) || value < 0) return "–";
  if (value < 60) return `${Math.round(value)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  return `${Math.floor(value / 3600)} h ${Math.round((value % 3600) / 60)} min`;
}

function windowLabel(windowS) {
  const hours = Math.round(windowS / 3600);
  const known = WINDOWS.find(([h]) => h === hours);
  return known ? known[1] : `${hours} h`;
}

function axisLabel(ts, widthS, first) {
  // a bucket start on the chart's axis: times on the hour (with the day at midnight or first), dates for days
  const date = new Date(ts * 1000 - view.serverOffsetMs);
  if (isNaN(date.getTime())) return "";
  if (widthS >= 6 * 3600) return date.toLocaleDateString([], { month: "short", day: "numeric" });
  const time = date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  const midnight = date.getHours() === 0 && date.getMinutes() === 0;
  return first || midnight ? `${date.toLocaleDateString([], { weekday: "short" })} ${time}` : time;
}

function labelStep(starts, widthS) {
  // label every k-th bucket, k a round step (1, 2, 3, 4, 6, 12 ... buckets) keeping it to 8 labels at most,
  // on round local times: 8 PM, 12 AM, 4 AM ... for hours, every few days for days
  const k = [1, 2, 3, 4, 6, 8, 12, 24, 48].find((step) => starts.length / step <= 8) || Math.ceil(starts.length / 8);
  const offset = -new Date().getTimezoneOffset() * 60;
  return (start) => Math.round((start + offset) / widthS) % k === 0;
}

function statsURL() {
  return `/dashboard/api/stats?recent=30&hours=${view.hours}&tz=${-new Date().getTimezoneOffset()}`;
}

// -- jobs, from any section of a peer's state ------------------------------------------------------------------
function jobsOf(peer) {
  // a down peer's last advertisement is not what it does now: no jobs
  if (peer.status === "down") return [];
  const out = [];
  for (const [section, value] of entries(peer.capabilities)) {
    if (!isObj(value)) continue;
    const queue = obj(value.queue);
    for (const [state, items] of [["running", queue.running], ["waiting", queue.waiting], ["running", value.active]]) {
      list(items, (j) => (isObj(j) ? j : null)).forEach((job, index) => {
        const said = str(job.state);
        const progress = Array.isArray(job.progress) && job.progress.length === 2 ? job.progress.map((n) => num(n)) : [null, null];
        out.push({
          kind: str(job.kind) || section, state: said === "running" || said === "waiting" ? said : state, model: str(job.model) || "?",
          width: num(job.width), height: num(job.height), steps: num(job.steps), detail: str(job.detail),
          started_at: num(job.started_at), enqueued_at: num(job.enqueued_at), estimate_s: num(job.estimate_s),
          entry_node: str(job.entry_node), peer: peer.node_id || peer.url, job_id: str(job.job_id),
          step: progress[0], of: progress[1] !== null ? progress[1] : num(job.steps), tokens: num(job.tokens),
          position: state === "waiting" ? index + 1 : null,
        });
      });
    }
  }
  return out;
}

function jobProgress(job, now) {
  // what the progress cell says: step i/n with a bar and an ETA (images), tokens and elapsed (other requests)
  const elapsed = job.started_at !== null ? Math.max(0, now - job.started_at) : null;
  if (job.state !== "running") {
    const waited = job.enqueued_at !== null ? seconds(Math.max(0, now - job.enqueued_at)) : "";
    return el("span", { class: "muted" }, [job.position ? `#${job.position} in line` : "", waited ? `waiting ${waited}` : ""].filter(Boolean).join(" · "));
  }
  if (job.kind !== "image") {
    const parts = [job.tokens !== null ? `${Math.round(job.tokens)} tokens so far` : "", elapsed !== null ? `${seconds(elapsed)} elapsed` : ""];
    return el("span", { class: "llm-progress" }, parts.filter(Boolean).join(" · ") || "running");
  }
  const steps = job.of !== null && job.of > 0 ? job.of : null;
  const step = job.step !== null && steps !== null ? Math.max(0, Math.min(steps, job.step)) : null;
  let eta = null;
  if (step !== null && step > 0 && elapsed !== null) eta = (elapsed / step) * (steps - step);
  else if (job.estimate_s !== null && job.estimate_s > 0) eta = Math.max(0, job.estimate_s - (elapsed || 0));
  const fraction = step !== null ? step / steps : job.estimate_s > 0 && elapsed !== null ? Math.min(1, elapsed / job.estimate_s) : 0;
  const text = `${step !== null ? `step ${step}/${steps}` : "starting"}${eta !== null ? ` · ETA ${seconds(eta)}` : ""}`;
  return el("div", { class: "bar progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": steps || 100,
    "aria-valuenow": step !== null ? step : Math.round(fraction * 100), title: `elapsed ${seconds(elapsed)}` },
  el("span", { style: `width:${Math.round(fraction * 100)}%` }), el("em", {}, text));
}

function modelNames(section) {
  // image: {models: {name: {installed, loaded}}}; other sections may list names, objects, or a mapping
  const s = obj(section);
  const out = [];
  if (Array.isArray(s.models)) {
    for (const m of list(s.models)) {
      if (isObj(m)) out.push({ name: str(m.name) || str(m.model) || "?", loaded: m.loaded === true });
      else if (str(m, null) !== null) out.push({ name: str(m), loaded: false });
    }
  } else {
    for (const [name, info] of entries(s.models)) out.push({ name: str(name), loaded: obj(info).loaded === true });
  }
  for (const name of list(s.loaded, strItem)) {
    const found = out.find((m) => m.name === name);
    if (found) found.loaded = true;
    else out.push({ name, loaded: true });
  }
  return out.sort((a, b) => Number(b.loaded) - Number(a.loaded) || a.name.localeCompare(b.name));
}

function modelChips(models, titled) {
  const shown = models.slice(0, MAX_MODELS_SHOWN).map((m) => el("span", {
    class: `model${m.loaded ? " loaded" : ""}`, title: titled ? (m.loaded ? "loaded in memory" : "installed") : null,
  }, m.name));
  if (models.length > MAX_MODELS_SHOWN) shown.push(el("span", { class: "muted" }, `+${models.length - MAX_MODELS_SHOWN} more`));
  return shown;
}

// -- drawing ---------------------------------------------------------------------------------------------------
function drawHeader() {
  panel("header", "peer-counts", drawStatus);
  panel("advice", "advice", drawAdvice);
}

function drawStatus() {
  const doc = view.peers;
  const live = document.getElementById("live");
  const stale = Date.now() - view.lastOk > 5000 && view.mode !== "events";
  live.className = stale ? "live stale" : `live ${token(view.mode)}`;
  live.textContent = stale ? `no answer for ${Math.round((Date.now() - view.lastOk) / 1000)} s, retrying`
    : view.mode === "events" ? "live" : view.mode === "polling" ? "live (polling)" : "connecting";
  live.title = view.mode === "events" ? "changes are pushed by the peer as they happen" : "the page asks the peer every 1-2 s";
  if (doc) {
    document.title = `herd-mesh · ${doc.mesh}`;
    fill("mesh-name", `mesh “${doc.mesh}”`);
    fill("served-by", `served by ${doc.self}`);
  }
  const health = view.health;
  if (health) {
    const h = document.getElementById("health-pill");
    h.className = `pill ${token(health.status)}`;
    h.textContent = health.status;
    fill("peer-counts", `${health.peers.up} up · ${health.peers.suspect} suspect · ${health.peers.down} down`);
  }
}

function drawAdvice() {
  const health = view.health;
  if (!health) return;
  const advice = health.recommendations;
  document.getElementById("advice-section").hidden = advice.length === 0 && health.checks.length === 0;
  fill("advice", advice.map((text) => el("li", {}, withCode(text))));
  const passed = health.checks.filter((c) => c.ok);
  const failing = health.checks.filter((c) => !c.ok);
  fill("checks-summary", health.checks.length ? `${health.checks.length} checks: ${passed.length} passed${failing.length ? `, ${failing.length} with advice above` : ""}` : "");
  fill("checks", health.checks.map((c) => el("li", { class: c.ok ? "ok" : "warn", "data-check": c.id }, c.ok ? "✓ " : "! ", c.title)));
}

function meter(label, fraction, text, cls) {
  const pct = Math.max(0, Math.min(100, Math.round(num(fraction, 0) * 100)));
  return el("div", { class: "meter" }, el("span", { class: "muted" }, label),
    el("div", { class: "bar" }, el("span", { class: token(cls), style: `width:${pct}%` }), el("em", {}, text)));
}

function drawPeers() {
  const doc = view.peers;
  if (!doc) return;
  fill("peers", doc.peers.map((peer) => {
    try {
      return peerCard(peer);
    } catch (err) {
      console.error(`herd-mesh dashboard: the card of peer ${peer.node_id || peer.url} could not be drawn:`, err);
      return el("div", { class: `card ${token(peer.status)}`, "data-node": peer.node_id || peer.url },
        el("h3", {}, peer.node_id || peer.url || "?"), brokenNote(err));
    }
  }));
}

function peerCard(peer) {
  const caps = peer.capabilities;
  const sys = obj(caps.system);
  const image = obj(caps.image);
  const jobs = jobsOf(peer);
  const running = jobs.filter((j) => j.state === "running").length;
  const waiting = jobs.length - running;
  const total = num(sys.memory_total_gb);
  const free = num(sys.memory_available_gb);
  const used = total > 0 && free !== null ? Math.max(0, Math.min(total, total - free)) : null;
  const pressureText = str(sys.memory_pressure);
  const pressure = pressureText !== "normal" && pressureText !== "unknown" ? pressureText : "";
  const memText = total > 0
    ? `${used === null ? "?" : fmt(used, 1)} of ${total} GB used${pressure ? ` · pressure ${pressure}` : ""}` : "–";
  const cpu = num(sys.cpu_percent);
  const cores = num(sys.cores);
  const imageModels = modelNames(image);
  const otherSections = entries(caps).filter(([name, v]) => name !== "image" && name !== "system" && isObj(v) && v.models);
  const seen = peer.self ? "this peer" : peer.status === "up" ? `seen ${ago(since(peer.last_seen))}` : `last seen ${ago(since(peer.last_seen))}`;
  const queue = peer.status === "down" ? "Queue: unknown while it is down" : `Queue: ${running} running · ${waiting} waiting`;
  return el("div", { class: `card ${token(peer.status)}`, "data-node": peer.node_id || peer.url },
    el("h3", {}, peer.node_id || peer.url || "?", peer.self ? el("span", { class: "tag" }, "this peer") : null, el("span", { class: "spacer" }), pill(peer.status)),
    el("div", { class: "sub" }, [str(sys.chip), cores > 0 ? `${cores} cores` : "", str(caps.version) ? `v${str(caps.version)}` : "", peer.url].filter(Boolean).join(" · ")),
    meter("Memory", used === null ? 0 : used / total, memText, pressure),
    meter("CPU", cpu === null ? 0 : cpu / 100, cpu === null ? "–" : `${fmt(cpu, 0)}%`, cpu >= 90 ? "critical" : cpu >= 70 ? "warn" : ""),
    el("div", { class: "models" }, el("span", { class: "muted" }, "Image:"),
      imageModels.length ? modelChips(imageModels, true) : el("span", { class: "muted" }, str(image.engine) ? "no mflux models installed" : "–"),
      image.enabled === false ? pill("off", "down") : null),
    otherSections.map(([name, section]) => {
      const models = modelNames(section);
      return el("div", { class: "models" }, el("span", { class: "muted" }, `${str(name).toUpperCase()}:`),
        models.length ? modelChips(models, false) : el("span", { class: "muted" }, "none"));
    }),
    el("div", { class: "foot" }, `${queue} · ${seen}`),
    peer.status !== "up" && peer.last_error ? el("div", { class: "error" }, peer.last_error) : null);
}

function drawQueues() {
  const doc = view.peers;
  if (!doc) return;
  const now = serverNow();
  const jobs = doc.peers.flatMap(jobsOf);
  jobs.sort((a, b) => (a.state === b.state ? (a.enqueued_at || 0) - (b.enqueued_at || 0) : a.state === "running" ? -1 : 1));
  if (!jobs.length) {
    fill("queues", el("p", { class: "empty" }, "No jobs running or waiting anywhere in the mesh."));
    return;
  }
  const rows = jobs.slice(0, MAX_ITEMS).map((job) => {
    const detail = job.width ? `${job.width}×${fmt(job.height, 0)} · ${fmt(job.of, 0)} steps` : job.detail;
    return el("tr", { class: `job ${token(job.kind)}${job.job_id ? " pickable" : ""}`, "data-job": job.job_id || null,
      title: job.job_id ? "why it runs here" : null, onclick: job.job_id ? () => explainLive(job.job_id) : null },
    el("td", {}, badge(job.kind)), el("td", {}, job.model), el("td", {}, detail), el("td", {}, job.peer),
    el("td", { class: "muted" }, job.entry_node && job.entry_node !== job.peer ? `from ${job.entry_node}` : ""),
    el("td", {}, pill(job.state)), el("td", {}, jobProgress(job, now)));
  });
  fill("queues", el("table", {}, el("tr", {}, ["", "model", "job", "on", "from", "state", "progress"].map((h) => el("th", {}, h))), rows));
}

function whoText(changed) {
  return changed ? ` · set by ${changed.by} ${ago(since(changed.at))}` : " · default";
}

function settingRow(field) {
  const { key, type, value } = field;
  const id = `setting-${key}`;
  const send = (v) => saveSetting(key, v);
  let input;
  if (type === "boolean") {
    input = el("input", { type: "checkbox", class: "switch", id, name: key, role: "switch", onchange: (e) => send(e.target.checked) });
    input.checked = value;
  } else if (type === "integer" || type === "number") {
    input = el("input", { type: "number", id, name: key, min: field.minimum, max: field.maximum, step: type === "integer" ? 1 : "any", onchange: (e) => send(Number(e.target.value)) });
    input.value = value === null ? "" : String(value);
  } else {
    input = el("output", { id, name: key }, value); // a kind of setting this page does not know: shown, not editable
  }
  const range = type === "integer" && field.minimum !== null && field.maximum !== null ? ` (${field.minimum}–${field.maximum})` : "";
  return el("div", { class: "setting" }, el("label", { for: id }, own(LABELS, key) || key.replace(/_/g, " ")), input,
    el("span", { class: "help" }, el("code", {}, key), ": ", field.help, range, el("span", { class: "who" }, whoText(field.changed))));
}

let settingsBuiltFor = "";
function drawSettings() {
  const detail = view.settings;
  if (!detail) return;
  const form = document.getElementById("settings");
  const keys = detail.fields.map((f) => `${f.key}:${f.type}`).join(",");
  if (settingsBuiltFor !== keys || !form.querySelector(".setting")) {
    settingsBuiltFor = "";
    form.replaceChildren(...detail.fields.map(settingRow));
    settingsBuiltFor = keys;
  }
  for (const field of detail.fields) {
    const input = document.getElementById(`setting-${field.key}`);
    if (!input || input.dataset.saving || document.activeElement === input) continue;
    if (field.type === "boolean") input.checked = field.value;
    else if (field.type === "integer" || field.type === "number") input.value = field.value === null ? "" : String(field.value);
    else input.textContent = field.value;
    const who = input.parentElement.querySelector(".who");
    if (who) who.textContent = whoText(field.changed);
  }
  const note = document.getElementById("settings-note");
  if (!note.dataset.sticky) {
    const behind = detail.peers.filter((p) => p.in_sync === false).map((p) => p.node_id);
    const down = detail.peers.filter((p) => p.status === "down").map((p) => p.node_id);
    note.className = "note";
    note.textContent = behind.length ? `Catching up: ${behind.join(", ")}`
      : `In force on all ${detail.peers.length + 1 - down.length} reachable peers${down.length ? `; ${down.join(", ")} will catch up when back` : ""}.`;
  }
}

async function saveSetting(key, value) {
  const input = document.getElementById(`setting-${key}`);
  const note = document.getElementById("settings-note");
  if (!input || !note) return;
  input.dataset.saving = "1";
  input.disabled = true;
  try {
    const detail = normSettings(await getJSON("/dashboard/api/settings?detail=1", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ [key]: value }),
    }));
    if (!detail) throw new Error("the answer is not a settings document");
    view.settings = detail;
    note.className = "note";
    note.textContent = `Saved ${key} = ${JSON.stringify(value)}; applied on ${detail.applied_on.join(", ")}` +
      (detail.pending.length ? `; later on ${detail.pending.map(([n, why]) => `${n} (${why})`).join(", ")}` : "") + ".";
  } catch (err) {
    note.className = "note error";
    note.textContent = `Not saved: ${errorText(err)}`;
  } finally {
    note.dataset.sticky = "1";
    setTimeout(() => delete note.dataset.sticky, 4000);
    delete input.dataset.saving;
    input.disabled = false;
    panel("settings", "settings", drawSettings);
    refreshSoon();
  }
}

// -- statistics ------------------------------------------------------------------------------------------------
function tile(label, value, bad) {
  return el("div", { class: `tile${bad ? " bad" : ""}` }, el("b", {}, value), el("span", {}, label));
}

function timelineChart(buckets, windowS) {
  if (!buckets.length) return el("p", { class: "empty" }, "No timeline in this answer.");
  const W = 480, H = 150, left = 28, bottom = 18, top = 8;
  const max = Math.max(1, ...buckets.map((b) => b.ok + b.failed + b.cancelled + b.rejected));
  const bw = (W - left) / buckets.length;
  const widthS = buckets.length > 1 && buckets[1].start !== null && buckets[0].start !== null ? buckets[1].start - buckets[0].start : windowS / buckets.length;
  const labelled = labelStep(buckets.map((b) => b.start), widthS);
  const y = (v) => H - bottom - (v / max) * (H - bottom - top); // v / max first: no overflow with huge counts
  const parts = [svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#d1d5db" }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, max), svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, 0)];
  let firstLabel = true;
  buckets.forEach((b, i) => {
    let base = 0;
    for (const [status, color] of [["ok", "var(--ok)"], ["failed", "var(--failed)"], ["cancelled", "var(--cancelled)"], ["rejected", "var(--rejected)"]]) {
      if (!b[status]) continue;
      parts.push(svg("rect", { x: left + i * bw + 1, y: y(base + b[status]), width: Math.max(1, bw - 2), height: y(base) - y(base + b[status]), fill: color },
        svg("title", {}, `${axisLabel(b.start, widthS, true)}: ${b.ok} ok, ${b.failed} failed, ${b.cancelled} cancelled, ${b.rejected} rejected${b.p50_ms ? `, p50 ${ms(b.p50_ms)}` : ""}`)));
      base += b[status];
    }
    if (b.start !== null && labelled(b.start)) {
      parts.push(svg("text", { x: left + i * bw, y: H - 4, class: "axis" }, axisLabel(b.start, widthS, firstLabel)));
      firstLabel = false;
    }
  });
  const each = widthS >= 86400 ? `${Math.round(widthS / 86400)} day` : widthS >= 3600 ? `${Math.round(widthS / 3600)} h` : `${Math.round(widthS / 60)} min`;
  const legend = el("div", { class: "legend" }, [["ok", "ok"], ["failed", "failed"], ["cancelled", "cancelled"], ["rejected", "rejected"]].map(([k, t]) => el("span", {}, el("i", { class: k }), t)),
    el("span", {}, `each bar ${each}`));
  return [svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests over time" }, parts), legend];
}

function trendsChart(trend, series, what) {
  // stacked bars: requests done per hour in each bucket, one colour per node (or model)
  const starts = trend.starts;
  const lines = series.filter(([, values]) => values.length === starts.length && values.some((v) => v > 0));
  if (!starts.length || !lines.length) return el("p", { class: "empty" }, "Nothing done in this window.");
  const perHour = 3600 / trend.bucket_s;
  const W = 480, H = 150, left = 34, bottom = 18, top = 8;
  const totals = starts.map((_, i) => lines.reduce((sum, [, values]) => sum + values[i], 0) * perHour);
  const max = Math.max(...totals) || 1;
  const bw = (W - left) / starts.length;
  const y = (v) => H - bottom - (v / max) * (H - bottom - top);
  const labelled = labelStep(starts, trend.bucket_s);
  const parts = [svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#d1d5db" }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, max >= 10 ? Math.round(max) : max.toFixed(1)), svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, 0)];
  let firstLabel = true;
  starts.forEach((start, i) => {
    let base = 0;
    lines.forEach(([name, values], s) => {
      const v = values[i] * perHour;
      if (!v) return;
      parts.push(svg("rect", { x: left + i * bw + 1, y: y(base + v), width: Math.max(1, bw - 2), height: y(base) - y(base + v), fill: PALETTE[s % PALETTE.length] },
        svg("title", {}, `${axisLabel(start, trend.bucket_s, true)}: ${name} ${values[i]} done (${v.toFixed(1)} per hour)`)));
      base += v;
    });
    if (start !== null && labelled(start)) {
      parts.push(svg("text", { x: left + i * bw, y: H - 4, class: "axis" }, axisLabel(start, trend.bucket_s, firstLabel)));
      firstLabel = false;
    }
  });
  const legend = el("div", { class: "legend" }, lines.map(([name], s) => el("span", {}, el("i", { style: `background:${PALETTE[s % PALETTE.length]}` }), name)));
  return [svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `throughput per hour by ${what}` }, parts), legend];
}

function latencyChart(byNode) {
  const rows = byNode.filter(([, b]) => b.p50_generation_ms !== null)
    .map(([name, b]) => [name, b.p50_generation_ms, b.p95_generation_ms === null ? b.p50_generation_ms : b.p95_generation_ms]);
  if (!rows.length) return el("p", { class: "empty" }, "No successful requests yet.");
  const W = 480, row = 24, left = 90, H = rows.length * row + 8;
  const max = Math.max(1, ...rows.map(([, p50, p95]) => Math.max(p50, p95)));
  const x = (v) => left + (W - left - 110) * Math.max(0, v / max); // room on the right for "p50 / p95" text
  const parts = [];
  rows.forEach(([name, p50, p95], i) => {
    const y0 = 4 + i * row;
    parts.push(svg("text", { x: left - 6, y: y0 + 14, "text-anchor": "end" }, name.length > 14 ? `${name.slice(0, 13)}…` : name),
      svg("rect", { x: left, y: y0 + 3, width: Math.max(1, x(p95) - left), height: 14, fill: "#c4b5fd", rx: 2 }, svg("title", {}, `p95 ${ms(p95)}`)),
      svg("rect", { x: left, y: y0 + 3, width: Math.max(1, x(p50) - left), height: 14, fill: "var(--image)", rx: 2 }, svg("title", {}, `p50 ${ms(p50)}`)),
      svg("text", { x: x(p95) + 4, y: y0 + 14 }, `${ms(p50)} / ${ms(p95)}`));
  });
  return [svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "generation time by node" }, parts),
    el("div", { class: "legend" }, el("span", {}, el("i", { class: "p50" }), "p50"), el("span", {}, el("i", { class: "p95" }), "p95"))];
}

function breakdown(groups, unknownLabel) {
  const rows = groups.slice().sort((a, b) => b[1].total - a[1].total)
    .map(([name, b]) => [name === "unknown" && unknownLabel ? unknownLabel : str(name), b]);
  if (!rows.length) return el("p", { class: "empty" }, "Nothing in this window.");
  const max = Math.max(1, ...rows.map(([, b]) => b.total));
  return rows.slice(0, 12).map(([name, b]) => {
    const pct = (n) => `${Math.min(100, (100 * n) / max)}%`;
    return el("div", { class: "hbar" }, el("span", { class: "label", title: name }, name),
      el("div", { class: "track", title: `${b.succeeded} ok, ${b.failed} failed, ${b.cancelled} cancelled` },
        el("span", { class: "ok", style: `width:${pct(b.succeeded)}` }), el("span", { class: "failed", style: `width:${pct(b.failed)}` }),
        el("span", { class: "cancelled", style: `width:${pct(b.cancelled)}` })),
      el("span", { class: "meta" }, `${b.total} requests${b.failed ? ` · ${b.failed} failed` : ""} · p50 ${ms(b.p50_generation_ms)} · p95 ${ms(b.p95_generation_ms)}`));
  });
}

function pairs(items, limit) {
  return items.slice(0, limit || 6).map(([name, n]) => `${name} ${n}`).join(", ");
}

function modelTable(byModel) {
  if (!byModel.length) return el("p", { class: "empty" }, "No requests in this window.");
  const head = el("tr", {}, ["model", "requests", "ok", "failed", "p50", "p95", "ran on", "failures by reason"].map((h) =>
    el("th", { class: ["requests", "ok", "failed", "p50", "p95"].includes(h) ? "num" : "" }, h)));
  const rows = byModel.slice().sort((a, b) => b[1].total - a[1].total).map(([name, b]) => el("tr", { "data-model": name },
    el("td", {}, name), el("td", { class: "num" }, b.total), el("td", { class: "num" }, b.succeeded), el("td", { class: "num" }, b.failed),
    el("td", { class: "num" }, ms(b.p50_generation_ms)), el("td", { class: "num" }, ms(b.p95_generation_ms)),
    el("td", {}, pairs(b.ran_on) || "–"), el("td", { class: "wrap" }, pairs(b.failure_reasons, 4) || "–")));
  return el("table", {}, head, rows);
}

function tagTable(byTag) {
  if (!byTag.length) return el("p", { class: "empty" }, "No tagged requests in this window (tag them with X-Herd-Tags or metadata.tags).");
  const head = el("tr", {}, ["tag", "requests", "ok", "failed", "time used", "models"].map((h) =>
    el("th", { class: ["requests", "ok", "failed", "time used"].includes(h) ? "num" : "" }, h)));
  const rows = byTag.slice().sort((a, b) => b[1].total - a[1].total).map(([name, b]) => el("tr", { "data-tag": name },
    el("td", {}, name), el("td", { class: "num" }, b.total), el("td", { class: "num" }, b.succeeded), el("td", { class: "num" }, b.failed),
    el("td", { class: "num" }, b.generation_s_total === null ? "–" : seconds(b.generation_s_total)), el("td", {}, pairs(b.models) || "–")));
  return el("table", {}, head, rows);
}

function failureList(failures) {
  if (!failures.length) return el("p", { class: "empty" }, "No failures in this window.");
  const now = serverNow();
  return el("ul", { class: "failures" }, failures.map((f) => el("li", { class: f.job_id ? "pickable" : "", "data-job": f.job_id || null,
    onclick: f.job_id ? () => explainRecorded(f.job_id) : null },
  el("div", {}, badge(f.kind), " ", el("b", {}, f.model), ` · ${clock(f.ts)} (${ago(f.ts === null ? null : now - f.ts)})`,
    f.entry_node ? ` · entered at ${f.entry_node}` : "", f.node ? ` · ran on ${f.node}` : ""),
  el("div", { class: "reason" }, f.error || "no reason given"),
  f.attempts.length ? el("ol", { class: "attempts" }, f.attempts.map((a) => el("li", {}, el("b", {}, a.node), a.status ? ` (${a.status})` : "", `: ${a.reason}`))) : null)));
}

function rejectedNote(rejected) {
  if (!rejected.total) return el("p", { class: "empty" }, "None: every request named a model the mesh has, in a valid form.");
  return el("div", {}, el("p", {}, `${rejected.total} request${rejected.total === 1 ? "" : "s"} refused before routing (not counted as failures of the mesh).`),
    el("p", { class: "muted" }, `By model asked for: ${pairs(rejected.by_model, 8)}`),
    el("ul", { class: "reasons" }, rejected.by_reason.slice(0, 8).map(([why, n]) => el("li", {}, `${n} × ${why}`))));
}

function drawWindowTabs() {
  fill("window-tabs", WINDOWS.map(([hours, label]) => el("button", {
    type: "button", class: hours === view.hours ? "active" : "", "data-hours": hours, "aria-pressed": hours === view.hours ? "true" : "false",
    onclick: () => { view.hours = hours; drawWindowTabs(); refreshStats(true); },
  }, label)));
}

function drawStats() {
  const all = view.stats;
  if (!all) return;
  const s = all.kinds[view.kind];
  panel("statistics", "tiles", () => drawTiles(all, s));
  panel("timeline chart", "chart-timeline", () => fill("chart-timeline", timelineChart(s.timeline, all.window_s)));
  panel("trends by node", "chart-trend-node", () => fill("chart-trend-node", trendsChart(s.trends, s.trends.by_node, "node")));
  panel("trends by model", "chart-trend-model", () => fill("chart-trend-model", trendsChart(s.trends, s.trends.by_model, "model")));
  panel("latency chart", "chart-latency", () => fill("chart-latency", latencyChart(s.by_node)));
  panel("by-node chart", "chart-node", () => fill("chart-node", breakdown(s.by_node, "(never ran)")));
  panel("by-model chart", "chart-model", () => fill("chart-model", breakdown(s.by_model)));
  panel("by-tag chart", "chart-tag", () => fill("chart-tag", breakdown(s.by_tag)));
  panel("model insights", "models-table", () => fill("models-table", modelTable(s.by_model)));
  panel("tag usage", "tags-table", () => fill("tags-table", tagTable(s.by_tag)));
  panel("recent failures", "failures", () => fill("failures", failureList(s.failures)));
  panel("rejected requests", "rejected", () => fill("rejected", rejectedNote(s.rejected)));
  panel("recent requests", "recent", () => drawRecent(s));
}

function drawTiles(all, s) {
  fill("kind-tabs", Object.entries(KINDS).map(([kind, label]) => el("button", {
    type: "button", class: kind === view.kind ? "active" : "", "data-kind": kind,
    onclick: () => { view.kind = kind; drawStats(); },
  }, `${label} (${all.kinds[kind].total})`)));
  fill("stats-window", `last ${windowLabel(all.window_s)}, whole mesh`);
  const missing = all.nodes_missing.map((m) => `${m.node_id} (${m.reason})`);
  const sources = document.getElementById("stats-sources");
  sources.className = missing.length ? "note warn" : "note";
  sources.textContent = `From ${all.nodes_answered.join(", ")}` +
    (missing.length ? `. Not answering: ${missing.join("; ")}; their requests are counted from the copies every peer keeps` : "") +
    (all.nodes_truncated.length ? `. Only the newest rows of: ${all.nodes_truncated.join(", ")}` : "") + ".";
  fill("tiles", tile("requests", s.total), tile("succeeded", s.succeeded), tile("failed", s.failed, s.failed > 0),
    tile("cancelled", s.cancelled), tile("rejected", s.rejected.total), tile("avg time", ms(s.avg_generation_ms)),
    tile("p50", ms(s.p50_generation_ms)), tile("p95", ms(s.p95_generation_ms)), tile("avg queue", ms(s.avg_queue_ms)));
}

function drawRecent(s) {
  fill("recent-title", view.kind === "image" ? "Recent generations" : `Recent ${KINDS[view.kind]} requests`);
  const now = serverNow();
  if (!s.recent.length) {
    fill("recent", el("tr", {}, el("td", { class: "empty" }, "No requests in this window.")));
    return;
  }
  const head = el("tr", {}, ["when", "", "model", "size", "ran on", "entry", "time", "queue", "status", "tags", "error or prompt"].map((h) =>
    el("th", { class: ["time", "queue"].includes(h) ? "num" : "" }, h)));
  const rows = s.recent.map((r) => el("tr", { class: r.job_id ? "pickable" : "", "data-job": r.job_id || null,
    title: r.job_id ? "click: why it went where it went" : null, onclick: r.job_id ? () => explainRecorded(r.job_id) : null },
  el("td", { title: ago(r.ts === null ? null : now - r.ts) }, clock(r.ts)), el("td", {}, badge(r.kind)), el("td", {}, r.model),
  el("td", {}, r.width ? `${r.width}×${fmt(r.height, 0)} · ${fmt(r.steps, 0)}` : ""), el("td", {}, r.node || "–"), el("td", {}, r.entry_node || "–"),
  el("td", { class: "num" }, ms(r.generation_ms)), el("td", { class: "num" }, ms(r.queue_ms)), el("td", {}, pill(r.status)),
  el("td", {}, r.tags.join(", ")), el("td", { class: "muted", title: r.error || r.prompt }, (r.error || r.prompt).slice(0, 60))));
  fill("recent", head, rows);
}

// -- routing explained ---------------------------------------------------------------------------------------------
function drawRoute() {
  const r = view.route;
  if (!r) return;
  if (r.error) {
    fill("routing-result", el("p", { class: "note error" }, r.error));
    return;
  }
  fill("routing-result",
    el("p", {}, el("b", {}, r.job_id || "?"), r.model ? ` · ${r.model}` : "", r.status ? " · " : "", r.status ? pill(r.status) : null),
    el("ul", { class: "explanation" }, r.explanation.map((line) => el("li", {}, line))),
    r.options.length ? el("table", { class: "options" }, el("tr", {}, ["peer", "expected", "or why not"].map((h) => el("th", {}, h))),
      r.options.map((o) => el("tr", { class: o.chosen ? "chosen" : "" }, el("td", {}, o.node, o.chosen ? " ✓" : ""), el("td", {}, o.estimate || "–"), el("td", {}, o.cannot || "")))) : null,
    r.reason ? el("p", { class: "muted" }, `the router's own words: ${r.reason}`) : null);
}

async function explain(url, jobId) {
  document.getElementById("routing-job").value = jobId;
  try {
    view.route = normRoute(await getJSON(url)) || { error: "the answer is not an explanation" };
  } catch (err) {
    view.route = { error: errorText(err) };
  }
  panel("routing", "routing-result", drawRoute);
}

function explainRecorded(jobId) {
  return explain(`/dashboard/api/routing?job=${encodeURIComponent(jobId)}`, jobId);
}

async function explainLive(jobId) {
  // a running job: the entry peer's live record (its reason), else what the mesh recorded
  try {
    const live = obj(await getJSON(`/api/jobs/${encodeURIComponent(jobId)}`));
    const route = normRoute(live) || {};
    const where = str(live.node) ? `runs on ${str(live.node)}` : "waits for a peer";
    const reason = str(live.reason);
    route.explanation = [`${str(live.state) || "running"}: ${where}`, reason ? `${str(live.node) || "?"} was expected to finish first: ${reason.split("; ")[0]}` : "no routing reason known yet",
      ...reason.split("; ").slice(1).map((part) => `also: ${part}`)];
    route.options = [];
    view.route = route;
    document.getElementById("routing-job").value = jobId;
    panel("routing", "routing-result", drawRoute);
  } catch (err) {
    await explainRecorded(jobId);
  }
}

// -- fetching: the event stream, refreshes it asks for, and the pollers that stand in when it is away ------------
function poller(url, everyMs, apply) {
  // a poller that can be started and stopped; never two of its requests in flight
  let busy = false;
  let timer = null;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      apply(await getJSON(typeof url === "function" ? url() : url));
      view.lastOk = Date.now();
    } catch (err) {
      console.warn(`herd-mesh dashboard: ${typeof url === "function" ? url() : url}: ${errorText(err)}`);
    } finally {
      busy = false;
    }
  };
  return {
    start() {
      if (timer === null) {
        tick();
        timer = setInterval(tick, everyMs);
      }
    },
    stop() {
      clearInterval(timer);
      timer = null;
    },
    get running() {
      return timer !== null;
    },
  };
}

function refresher(url, apply) {
  // fetch now, or right after the one in flight (never two at once, never a request lost)
  let busy = false;
  let again = false;
  let timer = null;
  const run = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      apply(await getJSON(typeof url === "function" ? url() : url));
      view.lastOk = Date.now();
    } catch (err) {
      console.warn(`herd-mesh dashboard: ${errorText(err)}`);
    } finally {
      busy = false;
      if (again) {
        again = false;
        run();
      }
    }
  };
  return (soon) => {
    clearTimeout(timer);
    if (soon) timer = setTimeout(run, REFRESH_GAP_MS);
    else run();
  };
}

function drawLive() {
  drawHeader();
  panel("peers", "peers", drawPeers);
  panel("queues", "queues", drawQueues);
}

function applyPeers(answer) {
  const doc = normPeers(answer);
  if (!doc) throw new Error("the answer is not a peer list");
  view.peers = doc;
  const me = doc.peers.find((p) => p.self);
  if (me && me.last_seen !== null) view.serverOffsetMs = me.last_seen * 1000 - Date.now();
  drawLive();
  if (view.mode === "events") {
    const key = doc.peers.map((p) => `${p.node_id || p.url}:${p.status}`).join(",");
    if (key !== view.statusKey) {
      view.statusKey = key;
      refreshHealth(true);
      refreshStats(false); // which peers answered changed
    } else if (Date.now() - view.healthAt > HEALTH_EVERY_MS) {
      refreshHealth(true);
    }
  }
}

// An answer that is not even an object is refused (the poller logs it) and the page keeps the last good one.
function applyHealth(answer) {
  const health = normHealth(answer);
  if (!health) throw new Error("the answer is not a health document");
  view.health = health;
  view.healthAt = Date.now();
  drawHeader();
}

function applySettings(answer) {
  const detail = normSettings(answer);
  if (!detail) throw new Error("the answer is not a settings document");
  view.settings = detail;
  panel("settings", "settings", drawSettings);
}

function applyStats(answer) {
  const stats = normStats(answer);
  if (!stats) throw new Error("the answer is not a statistics document");
  view.stats = stats;
  drawStats();
}

const pollers = {
  peers: poller("/mesh/peers", POLLS.peers, applyPeers),
  health: poller("/dashboard/api/health", POLLS.health, applyHealth),
  settings: poller("/dashboard/api/settings?detail=1", POLLS.settings, applySettings),
  stats: poller(statsURL, POLLS.stats, applyStats),
};
const refreshHealth = refresher("/dashboard/api/health", applyHealth);
const refreshStatsNow = refresher(statsURL, applyStats);
const refreshPeers = refresher("/mesh/peers", applyPeers);

function refreshStats(now) {
  refreshStatsNow(!now);
}

function refreshSoon() {
  // after a setting was saved: the stream says so by itself; without it, ask once
  if (view.mode !== "events") refreshPeers(true);
}

function setMode(mode) {
  view.mode = mode;
  const polling = mode !== "events" && USE_POLLING;
  for (const p of Object.values(pollers)) {
    if (polling) p.start();
    else p.stop();
  }
  panel("header", "peer-counts", drawStatus);
}

function listen() {
  // the event stream; while it is open the pollers rest, and if it stays away FALLBACK_MS they take over
  // a browser's EventSource cannot send a header: a key the person gave goes in the query (this route only)
  const key = storedKey();
  const source = new EventSource(`/dashboard/api/events${key ? `?key=${encodeURIComponent(key)}` : ""}`);
  let fallback = setTimeout(() => setMode("polling"), FALLBACK_MS);
  const handle = (apply) => (event) => {
    view.lastOk = Date.now();
    try {
      apply(JSON.parse(event.data));
    } catch (err) {
      console.warn(`herd-mesh dashboard: a ${event.type} event was refused: ${errorText(err)}`);
    }
  };
  source.onopen = () => {
    clearTimeout(fallback);
    fallback = null;
    setMode("events");
    refreshHealth();
    refreshStats(true);
  };
  source.onerror = () => {
    if (fallback === null) fallback = setTimeout(() => setMode("polling"), FALLBACK_MS);
    if (source.readyState === EventSource.CLOSED) {
      // the browser gave up (an error status, such as 503 when the peer serves too many streams): retry later
      setMode("polling");
      setTimeout(listen, 10 * FALLBACK_MS);
    }
  };
  source.addEventListener("peers", handle(applyPeers));
  source.addEventListener("settings", handle(applySettings));
  source.addEventListener("records", handle(() => refreshStats(false)));
}

function start() {
  if (view.peers) drawLive();
  drawWindowTabs();
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      localStorage.setItem(KEY_STORE, document.getElementById("mesh-key").value.trim());
    } catch (err) {
      console.warn(`herd-mesh dashboard: the key cannot be kept in this browser: ${errorText(err)}`);
    }
    document.getElementById("key-form").hidden = true;
    refreshHealth();
    refreshStats(true);
    refreshPeers();
  });
  document.getElementById("routing-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("routing-job").value.trim();
    if (id) explainRecorded(id);
  });
  if (USE_EVENTS) listen();
  else setMode("polling");
  setInterval(() => {
    drawHeader();
    if (view.mode === "events") panel("queues", "queues", drawQueues); // elapsed times and ETAs tick
  }, 1000);
}

start();
