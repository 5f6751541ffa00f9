/*
 * herd-mesh dashboard. Plain JavaScript (ES2018), no framework, no build step, nothing from the internet.
 *
 * How it works
 * - The page is served by any peer; window.HERD_BOOTSTRAP holds that peer's /mesh/peers answer, drawn at once.
 * - Four pollers keep it live, each at most every 2 s and never two of the same in flight:
 *     /mesh/peers                    (1 s)  peers, their state documents, live queues
 *     /dashboard/api/health          (2 s)  status, counts, recommendations
 *     /dashboard/api/settings?detail=1 (2 s) settings with their schema and who changed them
 *     /dashboard/api/stats?recent=30 (2 s)  mesh-wide statistics for every kind of request
 *   Each answer is stored in `view` and the matching part of the page is redrawn from scratch with `el()`,
 *   which builds DOM nodes and never parses HTML (text from peers cannot inject markup).
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

const view = {
  peers: window.HERD_BOOTSTRAP, // /mesh/peers
  peersAt: Date.now(),
  serverOffsetMs: 0, // the serving peer's clock minus the browser's
  health: null,
  settings: null,
  stats: null,
  kind: "image",
  lastOk: Date.now(),
};

// -- small helpers ---------------------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
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
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
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

function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 10000 ? `${(value / 1000).toFixed(1)} s` : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value} ms`;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "never";
  if (seconds < 1.5) return "just now";
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function serverNow() {
  return (Date.now() + view.serverOffsetMs) / 1000;
}

function clock(ts) {
  return new Date(ts * 1000 - view.serverOffsetMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function badge(kind) {
  const key = BADGES[kind] ? (KIND_BADGE[kind] || kind) : kind;
  return el("span", { class: `badge ${key}` }, `[${BADGES[kind] || String(kind).toUpperCase()}]`);
}

function withCode(text) {
  // `command` in advice becomes <code>command</code>, so it reads as something to run
  return String(text).split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

function pill(text, cls) {
  return el("span", { class: `pill ${cls || text}` }, text);
}

async function getJSON(url, options) {
  const response = await fetch(url, { cache: "no-store", ...options });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`${url}: HTTP ${response.status}, not JSON`);
  }
  if (!response.ok) throw new Error(body && body.error ? body.error : `${url}: HTTP ${response.status}`);
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
      console.warn(`herd-mesh dashboard: ${url}: ${err.message}`);
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
  for (const [section, value] of Object.entries(peer.capabilities || {})) {
    if (!value || typeof value !== "object" || Array.isArray(value)) continue;
    const lists = [];
    if (value.queue && typeof value.queue === "object") lists.push(["running", value.queue.running], ["waiting", value.queue.waiting]);
    lists.push(["running", value.active]);
    for (const [state, items] of lists) {
      if (!Array.isArray(items)) continue;
      for (const job of items) {
        if (job && typeof job === "object") out.push({ ...job, kind: job.kind || section, state: job.state || state, peer: peer.node_id });
      }
    }
  }
  return out;
}

function modelNames(section) {
  // image: {models: {name: {installed, loaded}}}; other sections may list names, objects, or a mapping
  const models = section && section.models;
  const out = [];
  if (Array.isArray(models)) {
    for (const m of models) {
      if (typeof m === "string") out.push({ name: m, loaded: false });
      else if (m && typeof m === "object") out.push({ name: m.name || m.model || "?", loaded: Boolean(m.loaded) });
    }
  } else if (models && typeof models === "object") {
    for (const [name, info] of Object.entries(models)) out.push({ name, loaded: Boolean(info && info.loaded) });
  }
  for (const name of (section && Array.isArray(section.loaded) ? section.loaded : [])) {
    const found = out.find((m) => m.name === name);
    if (found) found.loaded = true;
    else out.push({ name, loaded: true });
  }
  return out.sort((a, b) => Number(b.loaded) - Number(a.loaded) || a.name.localeCompare(b.name));
}

// -- drawing ---------------------------------------------------------------------------------------------------
function drawHeader() {
  const doc = view.peers;
  if (!doc) return;
  document.title = `herd-mesh · ${doc.mesh}`;
  fill("mesh-name", `mesh “${doc.mesh}”`);
  fill("served-by", `served by ${doc.self}`);
  const live = document.getElementById("live");
  const stale = Date.now() - view.lastOk > 5000;
  live.className = stale ? "live stale" : "live";
  live.textContent = stale ? `no answer for ${Math.round((Date.now() - view.lastOk) / 1000)} s, retrying` : "live";
  const health = view.health;
  if (health) {
    const h = document.getElementById("health-pill");
    h.className = `pill ${health.status}`;
    h.textContent = health.status;
    fill("peer-counts", `${health.peers.up} up · ${health.peers.suspect} suspect · ${health.peers.down} down`);
    const advice = health.recommendations || [];
    document.getElementById("advice-section").hidden = advice.length === 0;
    fill("advice", advice.map((text) => el("li", {}, withCode(text))));
  }
}

function meter(label, fraction, text, cls) {
  const pct = Math.max(0, Math.min(100, Math.round((fraction || 0) * 100)));
  return el("div", { class: "meter" }, el("span", { class: "muted" }, label),
    el("div", { class: "bar" }, el("span", { class: cls || "", style: `width:${pct}%` }), el("em", {}, text)));
}

function drawPeers() {
  const doc = view.peers;
  if (!doc) return;
  const cards = doc.peers.map((peer) => {
    const caps = peer.capabilities || {};
    const sys = caps.system || {};
    const image = caps.image || {};
    const jobs = jobsOf(peer);
    const running = jobs.filter((j) => j.state === "running").length;
    const waiting = jobs.length - running;
    const total = sys.memory_total_gb;
    const free = sys.memory_available_gb;
    const pressure = sys.memory_pressure && sys.memory_pressure !== "normal" && sys.memory_pressure !== "unknown" ? sys.memory_pressure : "";
    const memText = total ? `${(total - free).toFixed(1)} of ${total} GB used${pressure ? ` · pressure ${pressure}` : ""}` : "–";
    const cpu = typeof sys.cpu_percent === "number" ? sys.cpu_percent : null;
    const imageModels = modelNames(image);
    const otherSections = Object.entries(caps).filter(([name, v]) => name !== "image" && name !== "system" && v && typeof v === "object" && v.models);
    const seen = peer.self ? "this peer" : peer.status === "up" ? `seen ${ago(serverNow() - peer.last_seen)}` : `last seen ${ago(peer.last_seen ? serverNow() - peer.last_seen : null)}`;
    return el("div", { class: `card ${peer.status}`, "data-node": peer.node_id || peer.url },
      el("h3", {}, peer.node_id || peer.url, peer.self ? el("span", { class: "tag" }, "this peer") : null, el("span", { class: "spacer" }), pill(peer.status)),
      el("div", { class: "sub" }, [sys.chip, sys.cores ? `${sys.cores} cores` : null, caps.version ? `v${caps.version}` : null, peer.url].filter(Boolean).join(" · ")),
      meter("Memory", total ? (total - free) / total : 0, memText, pressure),
      meter("CPU", cpu === null ? 0 : cpu / 100, cpu === null ? "–" : `${cpu.toFixed(0)}%`, cpu >= 90 ? "critical" : cpu >= 70 ? "warn" : ""),
      el("div", { class: "models" }, el("span", { class: "muted" }, "Image:"),
        imageModels.length ? imageModels.map((m) => el("span", { class: `model${m.loaded ? " loaded" : ""}`, title: m.loaded ? "loaded in memory" : "installed" }, m.name))
          : el("span", { class: "muted" }, image.engine ? "no mflux models installed" : "–"),
        image.enabled === false ? pill("off", "down") : null),
      otherSections.map(([name, section]) => {
        const models = modelNames(section);
        return el("div", { class: "models" }, el("span", { class: "muted" }, `${name.toUpperCase()}:`),
          models.length ? models.map((m) => el("span", { class: `model${m.loaded ? " loaded" : ""}` }, m.name)) : el("span", { class: "muted" }, "none"));
      }),
      el("div", { class: "foot" }, `Queue: ${running} running · ${waiting} waiting · ${seen}`),
      peer.status !== "up" && peer.last_error ? el("div", { class: "error" }, peer.last_error) : null);
  });
  fill("peers", cards);
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
  const rows = jobs.map((job) => {
    const started = job.started_at || null;
    const elapsed = started ? Math.max(0, now - started) : null;
    const estimate = job.estimate_s || null;
    const detail = job.width ? `${job.width}×${job.height} · ${job.steps} steps` : job.detail || "";
    const progress = job.state === "running" && estimate
      ? el("div", { class: "bar progress", title: `estimate ${estimate.toFixed(1)} s` }, el("span", { style: `width:${Math.min(100, (100 * elapsed) / estimate).toFixed(0)}%` }), el("em", {}, `${elapsed.toFixed(0)} / ~${estimate.toFixed(0)} s`))
      : el("span", { class: "muted" }, job.enqueued_at ? `waiting ${ago(now - job.enqueued_at).replace(" ago", "")}` : "");
    return el("tr", { class: `job ${job.kind}` },
      el("td", {}, badge(job.kind)), el("td", {}, job.model || "?"), el("td", {}, detail), el("td", {}, job.peer),
      el("td", { class: "muted" }, job.entry_node && job.entry_node !== job.peer ? `from ${job.entry_node}` : ""),
      el("td", {}, pill(job.state)), el("td", {}, progress));
  });
  fill("queues", el("table", {}, el("tr", {}, ["", "model", "job", "on", "", "state", "progress"].map((h) => el("th", {}, h))), rows));
}

function settingRow(key, spec, value, changed) {
  const id = `setting-${key}`;
  const send = (v) => saveSetting(key, v);
  let input;
  if (spec.type === "boolean") {
    input = el("input", { type: "checkbox", class: "switch", id, name: key, role: "switch", onchange: (e) => send(e.target.checked) });
    input.checked = Boolean(value);
  } else {
    input = el("input", { type: "number", id, name: key, min: spec.minimum, max: spec.maximum, step: 1, onchange: (e) => send(Number(e.target.value)) });
    input.value = value;
  }
  const who = changed ? ` · set by ${changed.by} ${ago(serverNow() - changed.at)}` : " · default";
  return el("div", { class: "setting" }, el("label", { for: id }, LABELS[key] || key.replace(/_/g, " ")), input,
    el("span", { class: "help" }, el("code", {}, key), ": ", spec.help, spec.type === "integer" ? ` (${spec.minimum}–${spec.maximum})` : "",
      el("span", { class: "who" }, who)));
}

let settingsBuiltFor = "";
function drawSettings() {
  const detail = view.settings;
  if (!detail) return;
  const form = document.getElementById("settings");
  const keys = Object.keys(detail.schema).join(",");
  if (settingsBuiltFor !== keys) {
    settingsBuiltFor = keys;
    form.replaceChildren(...Object.entries(detail.schema).map(([k, spec]) => settingRow(k, spec, detail.settings[k], detail.changed[k])));
  }
  for (const [key, spec] of Object.entries(detail.schema)) {
    const input = document.getElementById(`setting-${key}`);
    if (!input || input.dataset.saving || document.activeElement === input) continue;
    if (spec.type === "boolean") input.checked = Boolean(detail.settings[key]);
    else input.value = detail.settings[key];
    const changed = detail.changed[key];
    input.parentElement.querySelector(".who").textContent = changed ? ` · set by ${changed.by} ${ago(serverNow() - changed.at)}` : " · default";
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
  input.dataset.saving = "1";
  input.disabled = true;
  try {
    const detail = await getJSON("/dashboard/api/settings?detail=1", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ [key]: value }),
    });
    view.settings = detail;
    const pending = Object.entries(detail.pending || {});
    note.className = "note";
    note.textContent = `Saved ${key} = ${JSON.stringify(value)}; applied on ${detail.applied_on.join(", ")}` +
      (pending.length ? `; later on ${pending.map(([n, why]) => `${n} (${why})`).join(", ")}` : "") + ".";
  } catch (err) {
    note.className = "note error";
    note.textContent = `Not saved: ${err.message}`;
  } finally {
    note.dataset.sticky = "1";
    setTimeout(() => delete note.dataset.sticky, 4000);
    delete input.dataset.saving;
    input.disabled = false;
    drawSettings();
    refreshSoon();
  }
}

// -- statistics ------------------------------------------------------------------------------------------------
function tile(label, value, bad) {
  return el("div", { class: `tile${bad ? " bad" : ""}` }, el("b", {}, value), el("span", {}, label));
}

function timelineChart(buckets, windowS) {
  const W = 480, H = 150, left = 28, bottom = 18, top = 8;
  const max = Math.max(1, ...buckets.map((b) => b.ok + b.failed + b.cancelled));
  const bw = (W - left) / buckets.length;
  const y = (v) => H - bottom - (v * (H - bottom - top)) / max;
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
    if (i % 6 === 0) parts.push(svg("text", { x: left + i * bw, y: H - 4 }, new Date(b.start * 1000 - view.serverOffsetMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  });
  const legend = el("div", { class: "legend" }, [["ok", "ok"], ["failed", "failed"], ["cancelled", "cancelled"]].map(([k, t]) => el("span", {}, el("i", { style: `background:var(--${k})` }), t)),
    el("span", {}, `each bar ${Math.round(windowS / buckets.length / 60)} min`));
  return [svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests over time" }, parts), legend];
}

function latencyChart(byNode) {
  const entries = Object.entries(byNode).filter(([, b]) => b.p50_generation_ms !== null && b.p50_generation_ms !== undefined);
  if (!entries.length) return el("p", { class: "empty" }, "No successful requests yet.");
  const W = 480, row = 24, left = 90, H = entries.length * row + 8;
  const max = Math.max(...entries.map(([, b]) => b.p95_generation_ms || b.p50_generation_ms));
  const x = (v) => left + ((W - left - 110) * v) / max; // room on the right for "p50 / p95" text
  const parts = [];
  entries.forEach(([name, b], i) => {
    const y0 = 4 + i * row;
    parts.push(svg("text", { x: left - 6, y: y0 + 14, "text-anchor": "end" }, name.length > 14 ? `${name.slice(0, 13)}…` : name),
      svg("rect", { x: left, y: y0 + 3, width: Math.max(1, x(b.p95_generation_ms) - left), height: 14, fill: "#c4b5fd", rx: 2 }, svg("title", {}, `p95 ${ms(b.p95_generation_ms)}`)),
      svg("rect", { x: left, y: y0 + 3, width: Math.max(1, x(b.p50_generation_ms) - left), height: 14, fill: "var(--image)", rx: 2 }, svg("title", {}, `p50 ${ms(b.p50_generation_ms)}`)),
      svg("text", { x: x(b.p95_generation_ms) + 4, y: y0 + 14 }, `${ms(b.p50_generation_ms)} / ${ms(b.p95_generation_ms)}`));
  });
  return [svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "generation time by node" }, parts),
    el("div", { class: "legend" }, el("span", {}, el("i", { style: "background:var(--image)" }), "p50"), el("span", {}, el("i", { style: "background:#c4b5fd" }), "p95"))];
}

function breakdown(groups, unknownLabel) {
  const entries = Object.entries(groups || {}).sort((a, b) => b[1].total - a[1].total)
    .map(([name, b]) => [name === "unknown" && unknownLabel ? unknownLabel : name, b]);
  if (!entries.length) return el("p", { class: "empty" }, "Nothing in this window.");
  const max = Math.max(...entries.map(([, b]) => b.total));
  return entries.slice(0, 12).map(([name, b]) => {
    const pct = (n) => `${(100 * n) / max}%`;
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
  fill("kind-tabs", Object.entries(KINDS).map(([kind, label]) => el("button", {
    type: "button", class: kind === view.kind ? "active" : "", "data-kind": kind,
    onclick: () => { view.kind = kind; drawStats(); },
  }, `${label} (${all.kinds[kind].total})`)));
  const s = all.kinds[view.kind];
  fill("stats-window", `last ${Math.round(all.window_s / 3600)} h, whole mesh`);
  const missing = all.nodes_missing.map((m) => `${m.node_id} (${m.reason})`);
  const sources = document.getElementById("stats-sources");
  sources.className = missing.length ? "note error" : "note";
  sources.textContent = `From ${all.nodes_answered.join(", ")}` + (missing.length ? `. Not answering, so not counted: ${missing.join("; ")}` : "") +
    (all.nodes_truncated.length ? `. Only the newest rows of: ${all.nodes_truncated.join(", ")}` : "") + ".";
  fill("tiles", tile("requests", s.total), tile("succeeded", s.succeeded), tile("failed", s.failed, s.failed > 0),
    tile("cancelled", s.cancelled), tile("avg time", ms(s.avg_generation_ms)), tile("p50", ms(s.p50_generation_ms)),
    tile("p95", ms(s.p95_generation_ms)), tile("avg queue", ms(s.avg_queue_ms)));
  fill("chart-timeline", timelineChart(s.timeline, all.window_s));
  fill("chart-latency", latencyChart(s.by_node));
  fill("chart-node", breakdown(s.by_node, "(never ran)"));
  fill("chart-model", breakdown(s.by_model));
  fill("chart-tag", breakdown(s.by_tag));
  drawRecent(s);
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
    el("td", { title: ago(now - r.ts) }, clock(r.ts)), el("td", {}, badge(r.kind)), el("td", {}, r.model),
    el("td", {}, r.width ? `${r.width}×${r.height} · ${r.steps}` : ""), el("td", {}, r.node || "–"), el("td", {}, r.entry_node || "–"),
    el("td", { class: "num" }, ms(r.generation_ms)), el("td", { class: "num" }, ms(r.queue_ms)), el("td", {}, pill(r.status)),
    el("td", {}, (r.tags || []).join(", ")), el("td", { class: "muted", title: r.error || r.prompt || "" }, (r.error || r.prompt || "").slice(0, 60))));
  fill("recent", head, rows);
}

// -- wiring ----------------------------------------------------------------------------------------------------
function drawLive() {
  drawHeader();
  drawPeers();
  drawQueues();
}

function applyPeers(doc) {
  view.peers = doc;
  const me = doc.peers.find((p) => p.self);
  if (me && me.last_seen) view.serverOffsetMs = me.last_seen * 1000 - Date.now();
  drawLive();
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => getJSON("/mesh/peers").then(applyPeers).catch(() => {}), 300);
}

function start() {
  if (view.peers) drawLive();
  poll("/mesh/peers", POLLS.peers, applyPeers);
  poll("/dashboard/api/health", POLLS.health, (h) => { view.health = h; drawHeader(); });
  poll("/dashboard/api/settings?detail=1", POLLS.settings, (d) => { view.settings = d; drawSettings(); });
  poll("/dashboard/api/stats?recent=30", POLLS.stats, (s) => { view.stats = s; drawStats(); });
  setInterval(drawHeader, 1000);
}

start();
