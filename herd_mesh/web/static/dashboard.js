/*
 * herd-mesh dashboard. Plain JavaScript (ES2018), no framework, no build step, nothing from the internet.
 *
 * How it works
 * - The page is served by any peer; its #herd-bootstrap data block holds that peer's /mesh/peers answer, drawn
 *   at once. A missing or malformed block is ignored: the first poll fills the page in.
 * - Four pollers keep it live, each at most every 2 s and never two of the same in flight:
 *     /mesh/peers                    (1 s)  peers, their state documents, live queues
 *     /dashboard/api/health          (2 s)  status, counts, recommendations
 *     /dashboard/api/settings?detail=1 (2 s) settings with their schema and who changed them
 *     /dashboard/api/stats?recent=30 (2 s)  mesh-wide statistics for every kind of request
 *   Each answer is coerced (`normPeers`, `normHealth`, `normSettings`, `normStats`), stored in `view`, and the
 *   matching part of the page is redrawn from scratch with `el()`, which builds DOM nodes and never parses HTML
 *   (text from peers cannot inject markup).
 * - Nothing from a peer is trusted to have the type it should: any peer can put anything in its state document,
 *   and every peer re-serves it in /mesh/peers. Every field is read through the coercion helpers (`str`, `num`,
 *   `count`, `bool`, `list`, `obj`, `entries`, `own`): a value of the wrong type counts as absent, lists keep only
 *   items of the right type, and long strings and lists are cut.
 * - Every panel (header, advice, peers and each peer card, queues, settings, statistics tiles, each chart, recent
 *   table) draws inside its own error boundary (`panel()`): a throw shows "this panel could not be drawn: ..." in
 *   that panel and is logged to the console, while the other panels and the pollers carry on.
 * - Content-Security-Policy: the page runs under `default-src 'none'; script-src 'self'; style-src 'self'; ...`.
 *   So no inline script or style, no `style` attributes (widths are set through `element.style`, which CSP
 *   allows), no eval, no `javascript:` URLs.
 * - Settings: switches and number fields POST one change to /dashboard/api/settings?detail=1; the peer
 *   pushes it to every other peer and answers with the peers that confirmed.
 * - Charts are SVG or CSS bars drawn here (timeline, latency) from the statistics answer.
 * - Job badges: a job's `kind` (image, llm, embed, stt) picks [IMAGE], [LLM], [EMBED] or [STT]. Jobs are read
 *   from every section of a peer's state that has `queue.running` / `queue.waiting` or an `active` list.
 */
"use strict";

const POLLS = { peers: 1000, health: 2000, settings: 2000, stats: 2000 }; // ms between polls
const BADGES = { image: "IMAGE", llm: "LLM", embed: "EMBED", embeddings: "EMBED", stt: "STT", transcription: "STT" };
const KINDS = { image: "Image", llm: "LLM", embeddings: "Embeddings", transcription: "Transcription" };
const KIND_BADGE = { image: "image", llm: "llm", embeddings: "embed", transcription: "stt" };
const LABELS = {
  image_generation: "Image generation", transcription: "Speech-to-text", llm: "LLM chat", embeddings: "Embeddings",
  store_prompts: "Store prompts", image_keep_alive_s: "Image keep-alive (s)", stats_retention_days: "Keep statistics (days)",
};
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
  };
}

function normKindStats(k) {
  const s = obj(k);
  return {
    ...normGroup(s),
    avg_generation_ms: num(s.avg_generation_ms),
    avg_queue_ms: num(s.avg_queue_ms),
    by_node: entries(s.by_node).map(([name, b]) => [name, normGroup(b)]),
    by_model: entries(s.by_model).map(([name, b]) => [name, normGroup(b)]),
    by_tag: entries(s.by_tag).map(([name, b]) => [name, normGroup(b)]),
    timeline: list(s.timeline, (b) => (isObj(b) ? {
      start: num(b.start), ok: count(b.ok), failed: count(b.failed), cancelled: count(b.cancelled), p50_ms: num(b.p50_ms),
    } : null)),
    recent: list(s.recent, (r) => (isObj(r) ? {
      ts: num(r.ts), kind: str(r.kind) || "?", model: str(r.model) || "?", width: num(r.width), height: num(r.height),
      steps: num(r.steps), node: str(r.node), entry_node: str(r.entry_node), generation_ms: num(r.generation_ms),
      queue_ms: num(r.queue_ms), status: str(r.status) || "?", tags: list(r.tags, strItem), error: str(r.error),
      prompt: str(r.prompt),
    } : null)),
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

const view = {
  peers: readBootstrap(), // /mesh/peers, coerced
  peersAt: Date.now(),
  serverOffsetMs: 0, // the serving peer's clock minus the browser's
  health: null,
  settings: null,
  stats: null,
  kind: "image",
  lastOk: Date.now(),
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

async function getJSON(url, options) {
  const response = await fetch(url, { cache: "no-store", ...options });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`${url}: HTTP ${response.status}, not JSON`);
  }
  if (!response.ok) throw new Error(str(obj(body).error) || `${url}: HTTP ${response.status}`);
  return body;
}

function poll(url, everyMs, apply) {
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      apply(await getJSON(url));
      view.lastOk = Date.now();
    } catch (err) {
      console.warn(`herd-mesh dashboard: ${url}: ${errorText(err)}`);
    } finally {
      busy = false;
    }
  };
  tick();
  setInterval(tick, everyMs);
}

// -- jobs, from any section of a peer's state ------------------------------------------------------------------
function jobsOf(peer) {
  const out = [];
  for (const [section, value] of entries(peer.capabilities)) {
    if (!isObj(value)) continue;
    const queue = obj(value.queue);
    for (const [state, items] of [["running", queue.running], ["waiting", queue.waiting], ["running", value.active]]) {
      for (const job of list(items, (j) => (isObj(j) ? j : null))) {
        const said = str(job.state);
        out.push({
          kind: str(job.kind) || section, state: said === "running" || said === "waiting" ? said : state, model: str(job.model) || "?",
          width: num(job.width), height: num(job.height), steps: num(job.steps), detail: str(job.detail),
          started_at: num(job.started_at), enqueued_at: num(job.enqueued_at), estimate_s: num(job.estimate_s),
          entry_node: str(job.entry_node), peer: peer.node_id || peer.url,
        });
      }
    }
  }
  return out;
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
  const stale = Date.now() - view.lastOk > 5000;
  live.className = stale ? "live stale" : "live";
  live.textContent = stale ? `no answer for ${Math.round((Date.now() - view.lastOk) / 1000)} s, retrying` : "live";
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
  document.getElementById("advice-section").hidden = advice.length === 0;
  fill("advice", advice.map((text) => el("li", {}, withCode(text))));
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
    el("div", { class: "foot" }, `Queue: ${running} running · ${waiting} waiting · ${seen}`),
    peer.status !== "up" && peer.last_error ? el("div", { class: "error" }, peer.last_error) : null);
}

function drawQueues() {
  const doc = view.peers;
  if (!doc) return;
  const now = serverNow();
  const jobs = doc.peers.filter((p) => p.status !== "down").flatMap(jobsOf);
  jobs.sort((a, b) => (a.state === b.state ? (a.enqueued_at || 0) - (b.enqueued_at || 0) : a.state === "running" ? -1 : 1));
  if (!jobs.length) {
    fill("queues", el("p", { class: "empty" }, "No jobs running or waiting anywhere in the mesh."));
    return;
  }
  const rows = jobs.slice(0, MAX_ITEMS).map((job) => {
    const elapsed = job.started_at !== null ? Math.max(0, now - job.started_at) : 0;
    const estimate = job.estimate_s > 0 ? job.estimate_s : null;
    const detail = job.width ? `${job.width}×${fmt(job.height, 0)} · ${fmt(job.steps, 0)} steps` : job.detail;
    const progress = job.state === "running" && estimate
      ? el("div", { class: "bar progress", title: `estimate ${estimate.toFixed(1)} s` },
        el("span", { style: `width:${Math.min(100, (100 * elapsed) / estimate).toFixed(0)}%` }), el("em", {}, `${elapsed.toFixed(0)} / ~${estimate.toFixed(0)} s`))
      : el("span", { class: "muted" }, job.enqueued_at !== null ? `waiting ${ago(now - job.enqueued_at).replace(" ago", "")}` : "");
    return el("tr", { class: `job ${token(job.kind)}` },
      el("td", {}, badge(job.kind)), el("td", {}, job.model), el("td", {}, detail), el("td", {}, job.peer),
      el("td", { class: "muted" }, job.entry_node && job.entry_node !== job.peer ? `from ${job.entry_node}` : ""),
      el("td", {}, pill(job.state)), el("td", {}, progress));
  });
  fill("queues", el("table", {}, el("tr", {}, ["", "model", "job", "on", "", "state", "progress"].map((h) => el("th", {}, h))), rows));
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
  const max = Math.max(1, ...buckets.map((b) => b.ok + b.failed + b.cancelled));
  const bw = (W - left) / buckets.length;
  const y = (v) => H - bottom - (v / max) * (H - bottom - top); // v / max first: no overflow with huge counts
  const parts = [svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#d1d5db" }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, max), svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, 0)];
  buckets.forEach((b, i) => {
    let base = 0;
    for (const [status, color] of [["ok", "var(--ok)"], ["failed", "var(--failed)"], ["cancelled", "var(--cancelled)"]]) {
      if (!b[status]) continue;
      parts.push(svg("rect", { x: left + i * bw + 1, y: y(base + b[status]), width: Math.max(1, bw - 2), height: y(base) - y(base + b[status]), fill: color },
        svg("title", {}, `${clock(b.start)}: ${b.ok} ok, ${b.failed} failed, ${b.cancelled} cancelled${b.p50_ms ? `, p50 ${ms(b.p50_ms)}` : ""}`)));
      base += b[status];
    }
    if (i % 6 === 0) parts.push(svg("text", { x: left + i * bw, y: H - 4 }, clock(b.start, false)));
  });
  const legend = el("div", { class: "legend" }, [["ok", "ok"], ["failed", "failed"], ["cancelled", "cancelled"]].map(([k, t]) => el("span", {}, el("i", { class: k }), t)),
    el("span", {}, `each bar ${Math.round(windowS / buckets.length / 60)} min`));
  return [svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests over time" }, parts), legend];
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

function drawStats() {
  const all = view.stats;
  if (!all) return;
  const s = all.kinds[view.kind];
  panel("statistics", "tiles", () => drawTiles(all, s));
  panel("timeline chart", "chart-timeline", () => fill("chart-timeline", timelineChart(s.timeline, all.window_s)));
  panel("latency chart", "chart-latency", () => fill("chart-latency", latencyChart(s.by_node)));
  panel("by-node chart", "chart-node", () => fill("chart-node", breakdown(s.by_node, "(never ran)")));
  panel("by-model chart", "chart-model", () => fill("chart-model", breakdown(s.by_model)));
  panel("by-tag chart", "chart-tag", () => fill("chart-tag", breakdown(s.by_tag)));
  panel("recent requests", "recent", () => drawRecent(s));
}

function drawTiles(all, s) {
  fill("kind-tabs", Object.entries(KINDS).map(([kind, label]) => el("button", {
    type: "button", class: kind === view.kind ? "active" : "", "data-kind": kind,
    onclick: () => { view.kind = kind; drawStats(); },
  }, `${label} (${all.kinds[kind].total})`)));
  fill("stats-window", `last ${Math.round(all.window_s / 3600)} h, whole mesh`);
  const missing = all.nodes_missing.map((m) => `${m.node_id} (${m.reason})`);
  const sources = document.getElementById("stats-sources");
  sources.className = missing.length ? "note error" : "note";
  sources.textContent = `From ${all.nodes_answered.join(", ")}` + (missing.length ? `. Not answering, so not counted: ${missing.join("; ")}` : "") +
    (all.nodes_truncated.length ? `. Only the newest rows of: ${all.nodes_truncated.join(", ")}` : "") + ".";
  fill("tiles", tile("requests", s.total), tile("succeeded", s.succeeded), tile("failed", s.failed, s.failed > 0),
    tile("cancelled", s.cancelled), tile("avg time", ms(s.avg_generation_ms)), tile("p50", ms(s.p50_generation_ms)),
    tile("p95", ms(s.p95_generation_ms)), tile("avg queue", ms(s.avg_queue_ms)));
}

function drawRecent(s) {
  fill("recent-title", view.kind === "image" ? "Recent generations" : `Recent ${KINDS[view.kind]} requests`);
  const now = serverNow();
  if (!s.recent.length) {
    fill("recent", el("tr", {}, el("td", { class: "empty" }, "No requests in this window.")));
    return;
  }
  const head = el("tr", {}, ["when", "", "model", "size", "ran on", "entry", "time", "queue", "status", "tags", ""].map((h) =>
    el("th", { class: ["time", "queue"].includes(h) ? "num" : "" }, h)));
  const rows = s.recent.map((r) => el("tr", {},
    el("td", { title: ago(r.ts === null ? null : now - r.ts) }, clock(r.ts)), el("td", {}, badge(r.kind)), el("td", {}, r.model),
    el("td", {}, r.width ? `${r.width}×${fmt(r.height, 0)} · ${fmt(r.steps, 0)}` : ""), el("td", {}, r.node || "–"), el("td", {}, r.entry_node || "–"),
    el("td", { class: "num" }, ms(r.generation_ms)), el("td", { class: "num" }, ms(r.queue_ms)), el("td", {}, pill(r.status)),
    el("td", {}, r.tags.join(", ")), el("td", { class: "muted", title: r.error || r.prompt }, (r.error || r.prompt).slice(0, 60))));
  fill("recent", head, rows);
}

// -- wiring ----------------------------------------------------------------------------------------------------
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
}

// An answer that is not even an object is refused (the poller logs it) and the page keeps the last good one.
function applyHealth(answer) {
  const health = normHealth(answer);
  if (!health) throw new Error("the answer is not a health document");
  view.health = health;
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

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => getJSON("/mesh/peers").then(applyPeers).catch(() => {}), 300);
}

function start() {
  if (view.peers) drawLive();
  poll("/mesh/peers", POLLS.peers, applyPeers);
  poll("/dashboard/api/health", POLLS.health, applyHealth);
  poll("/dashboard/api/settings?detail=1", POLLS.settings, applySettings);
  poll("/dashboard/api/stats?recent=30", POLLS.stats, applyStats);
  setInterval(drawHeader, 1000);
}

start();
