"""What the health checks read: a peer as this peer's table sees it, and its state document summarised.

Pure, like the rest of `core/`: `routes/dashboard.py` builds the snapshots; `core/health.py` turns them into the
dashboard's health answer. A peer's document is never trusted to be well formed, so every read is guarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    clock_skew_s: float | None = None  # its clock minus ours, measured now (None: not measured)


@dataclass(frozen=True)
class Mdns:
    """This peer's multicast view: on at all, whom it has heard, and how long it has been listening."""

    enabled: bool
    heard: frozenset[str] = frozenset()
    running_for_s: float = 0.0


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


def section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """`document[name]` when it is an object, else empty: a peer's state is never trusted to be well formed."""
    value = document.get(name)
    return value if isinstance(value, Mapping) else {}


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def image_models(peer: PeerSnapshot) -> dict[str, Mapping[str, Any]]:
    models = section(section(peer.capabilities, "image"), "models")
    return {str(m): s for m, s in models.items() if isinstance(s, Mapping)}


def node_doc(peer: PeerSnapshot, now: float) -> dict[str, Any]:
    caps = peer.capabilities
    system = section(caps, "system")
    models = image_models(peer)
    counts = queue_counts(caps)
    disk = section(section(caps, "storage"), "data_dir")
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
        "image_models": sorted(m for m, s in models.items() if s.get("installed")),
        "image_models_loaded": sorted(m for m, s in models.items() if s.get("loaded")),
        "weights": {m: s.get("weights") for m, s in sorted(models.items()) if isinstance(s.get("weights"), str)},
        "last_seen": peer.last_seen,
        "unreachable_for_s": round(now - peer.unreachable_since, 1) if peer.unreachable_since else None,
        "last_error": peer.last_error or None,
        "settings_in_sync": peer.settings_differ_since is None,
        "clock_skew_s": None if peer.clock_skew_s is None else round(peer.clock_skew_s, 2),
        "mesh_key": section(caps, "security").get("mesh_key") is True,
        "disk_free_gb": number(disk.get("free_gb")),
        "disk_total_gb": number(disk.get("total_gb")),
    }
