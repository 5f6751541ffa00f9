"""The mesh's health and what a person should do about it. Pure: peers come in as snapshots, time as `now`.

`routes/dashboard.py` builds the snapshots from the peer table (plus a clock reading of each peer, this peer's
mDNS view and the last hour's failures) and serves the result at `GET /dashboard/api/health`. Every check is
listed in `checks`, passed or not; each piece of advice says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .health_checks import CHECKS, Context
from .health_snapshot import Mdns, PeerSnapshot, jobs, node_doc, queue_counts

__all__ = ["Mdns", "PeerSnapshot", "assess", "jobs", "queue_counts"]


def assess(
    peers: Sequence[PeerSnapshot],
    *,
    settings: Mapping[str, Any],
    now: float,
    failures: Mapping[str, Mapping[str, Any]] | None = None,
    mdns: Mdns | None = None,
) -> dict[str, Any]:
    """Counts by status, one entry per peer, an overall status, every check with its advice, and the advice as
    one list (`recommendations`). `failures`: per peer, the last hour's `stats.failures_by_peer`."""
    nodes = [node_doc(p, now) for p in peers]
    counts = {s: sum(1 for n in nodes if n["status"] == s) for s in ("up", "suspect", "down")}
    up = [(p, n) for p, n in zip(peers, nodes, strict=True) if p.status == "up"]
    context = Context(peers, nodes, up, settings, now, failures or {}, mdns)
    checks: list[dict[str, Any]] = []
    everything: list[str] = []
    for check_id, title, check in CHECKS:
        advice = list(check(context))
        everything += advice
        checks.append({"id": check_id, "title": title, "ok": not advice, "advice": advice})
    any_mflux = any(n["image_models"] for n in nodes if n["status"] == "up")
    return {
        "status": "healthy" if counts["up"] == len(nodes) and any_mflux else "degraded",
        "peers_total": len(nodes),
        "peers": counts,
        "nodes": nodes,
        "checks": checks,
        "recommendations": everything,
    }
