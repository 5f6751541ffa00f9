"""The mesh's health and what a person should do about it. Pure: peers come in as snapshots, time as `now`.

`routes/dashboard.py` builds the snapshots from the peer table and serves the result at
`GET /dashboard/api/health`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalogue import INSTALL_COMMAND

CPU_BUSY_PERCENT = 90.0  # a peer this busy with no job of ours is worth a word: other work competes with ours
SETTINGS_DIFFER_ADVICE_S = 5.0  # settings still differing after this long means a peer cannot take ours
SERVICES = {  # setting -> what it serves, for advice when it is off
    "image_generation": "image generation",
    "llm": "LLM chat and completions",
    "embeddings": "embeddings",
    "transcription": "speech-to-text",
}
BADGE_KINDS = {"image": "image", "llm": "llm", "embed": "embed", "embeddings": "embed", "stt": "stt",
               "transcription": "stt"}  # fmt: skip  # a job's `kind` -> its badge on the dashboard


@dataclass(frozen=True)
class PeerSnapshot:
    node_id: str | None  # None: a static URL never reached, so its id is unknown
    url: str
    status: str  # up | suspect | down
    is_self: bool = False
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    last_seen: float | None = None
    unreachable_since: float | None = None  # first failed contact of the current outage
    last_error: str | None = None
    settings_differ_since: float | None = None  # its settings digest has differed from ours since then


def jobs(capabilities: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every queued or running job a peer advertises, in any section: `queue.running/waiting` or `active`."""
    out: list[dict[str, Any]] = []
    for section, value in capabilities.items():
        if not isinstance(value, Mapping):
            continue
        queue = value.get("queue")
        lists: list[tuple[str, Any]] = []
        if isinstance(queue, Mapping):
            lists += [("running", queue.get("running")), ("waiting", queue.get("waiting"))]
        lists.append(("running", value.get("active")))
        for state, items in lists:
            for job in items if isinstance(items, list) else []:
                if isinstance(job, Mapping):
                    kind = BADGE_KINDS.get(str(job.get("kind") or section), str(job.get("kind") or section))
                    out.append({**job, "kind": kind, "state": job.get("state") or state})
    return out


def queue_counts(capabilities: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs(capabilities):
        counts[job["kind"]] = counts.get(job["kind"], 0) + 1
    return counts


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """`document[name]` when it is an object, else empty: a peer's state is never trusted to be well formed."""
    value = document.get(name)
    return value if isinstance(value, Mapping) else {}


def _node_doc(peer: PeerSnapshot, now: float) -> dict[str, Any]:
    caps = peer.capabilities
    system = _section(caps, "system")
    image = _section(caps, "image")
    models = _section(image, "models")
    counts = queue_counts(caps)
    return {
        "node_id": peer.node_id,
        "url": peer.url,
        "status": peer.status,
        "self": peer.is_self,
        "version": caps.get("version"),
        "chip": system.get("chip"),
        "memory_total_gb": system.get("memory_total_gb"),
        "memory_available_gb": system.get("memory_available_gb"),
        "memory_pressure": system.get("memory_pressure"),
        "cpu_percent": system.get("cpu_percent"),
        "queue": counts,
        "image_queue": counts.get("image", 0),
        "image_models": sorted(m for m, s in models.items() if isinstance(s, Mapping) and s.get("installed")),
        "image_models_loaded": sorted(m for m, s in models.items() if isinstance(s, Mapping) and s.get("loaded")),
        "last_seen": peer.last_seen,
        "unreachable_for_s": round(now - peer.unreachable_since, 1) if peer.unreachable_since else None,
        "last_error": peer.last_error or None,
        "settings_in_sync": peer.settings_differ_since is None,
    }


def _advice(
    peers: Sequence[PeerSnapshot], nodes: Sequence[dict[str, Any]], settings: Mapping[str, Any], now: float
) -> list[str]:
    advice: list[str] = []
    for peer in peers:
        name = peer.node_id or peer.url
        if peer.status == "down":
            if peer.node_id is None:
                advice.append(f"static peer {peer.url} has never answered ({peer.last_error}): check the URL and "
                              "that `herd` runs there")  # fmt: skip
            else:
                since = f" for {_duration(now - peer.unreachable_since)}" if peer.unreachable_since else ""
                advice.append(f"peer {name} unreachable{since} ({peer.last_error or 'no answer'}): check that the "
                              "Mac is awake and on the network, and that `herd` runs on it")  # fmt: skip
    up = [(p, n) for p, n in zip(peers, nodes, strict=True) if p.status == "up"]
    if not any(n["image_models"] for _, n in up):
        advice.append(f"no peer has mflux: install it on a Mac with `{INSTALL_COMMAND}`")
    for peer, node in up:
        if node["memory_pressure"] in ("warn", "critical"):
            advice.append(f"peer {peer.node_id} is under memory pressure ({node['memory_pressure']}): close other "
                          "apps, or lower image_keep_alive_s so idle models are unloaded sooner")  # fmt: skip
        cpu = node["cpu_percent"]
        if isinstance(cpu, int | float) and cpu >= CPU_BUSY_PERCENT and not node["queue"]:
            advice.append(f"peer {peer.node_id} CPU is at {cpu:.0f}%: something else is busy there; new jobs "
                          "prefer other peers")  # fmt: skip
        models = _section(_section(peer.capabilities, "image"), "models")
        weights = any(isinstance(s, Mapping) and (s.get("cached") or s.get("loaded")) for s in models.values())
        if node["image_models"] and not weights:
            advice.append(f"peer {peer.node_id} has mflux but no model weights downloaded yet: its first image "
                          "downloads several GB; run one small image there ahead of time")  # fmt: skip
        if peer.settings_differ_since is not None and now - peer.settings_differ_since >= SETTINGS_DIFFER_ADVICE_S:
            advice.append(f"peer {peer.node_id}'s settings have differed from {_self_name(peers)}'s for "
                          f"{_duration(now - peer.settings_differ_since)}: run the same herd-mesh version on "
                          "every peer")  # fmt: skip
    llm_sections = [_section(p.capabilities, "llm") for p, _ in up if "llm" in p.capabilities]
    if settings.get("llm") is not False and llm_sections and not any(s.get("models") for s in llm_sections):
        advice.append("no peer has an LLM: install Ollama on a Mac, start it (`ollama serve`) and pull a model "
                      "(`ollama pull llama3.2`)")  # fmt: skip
    versions: dict[str, list[str]] = {}
    for peer, node in up:
        if node["version"]:
            versions.setdefault(str(node["version"]), []).append(str(peer.node_id))
    if len(versions) > 1:
        listing = "; ".join(f"{v} on {', '.join(sorted(n))}" for v, n in sorted(versions.items()))
        advice.append(f"peers run different herd-mesh versions ({listing}): upgrade them to the same one")
    for key, what in SERVICES.items():
        if settings.get(key) is False:
            advice.append(f"{what} is switched off for the whole mesh: turn it on in the dashboard's settings or "
                          f"POST {{\"{key}\": true}} to /dashboard/api/settings")  # fmt: skip
    return advice


def _self_name(peers: Iterable[PeerSnapshot]) -> str:
    return next((str(p.node_id) for p in peers if p.is_self), "this peer")


def assess(peers: Sequence[PeerSnapshot], *, settings: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Counts by status, one entry per peer, an overall status, and advice a person can act on."""
    nodes = [_node_doc(p, now) for p in peers]
    counts = {s: sum(1 for n in nodes if n["status"] == s) for s in ("up", "suspect", "down")}
    any_mflux = any(n["image_models"] for n in nodes if n["status"] == "up")
    return {
        "status": "healthy" if counts["up"] == len(nodes) and any_mflux else "degraded",
        "peers_total": len(nodes),
        "peers": counts,
        "nodes": nodes,
        "recommendations": _advice(peers, nodes, settings, now),
    }
