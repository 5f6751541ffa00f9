"""Mesh-wide statistics from the rows each peer keeps. Pure: no I/O, time is an argument.

Every request is recorded once, by the peer the client called (its entry peer), so the union of every peer's
rows counts each request once. Rows from other peers are checked before use: a peer running another version
must not be able to break this peer's statistics.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .work import KINDS

__all__ = ["KINDS", "STATUSES", "clean_row", "report", "summarize", "timeline", "union"]

STATUSES = ("ok", "failed", "cancelled")
TIMELINE_BUCKETS = 24  # bars in the requests-over-time chart, whatever the window


def clean_row(row: Any) -> dict[str, Any] | None:
    """A row as another peer sent it -> a row `summarize` can use, or None when it is not one."""
    if not isinstance(row, Mapping):
        return None
    ts, kind, status, model = row.get("ts"), row.get("kind"), row.get("status"), row.get("model")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or kind not in KINDS or status not in STATUSES:
        return None
    if not isinstance(model, str):
        return None
    out: dict[str, Any] = {"ts": float(ts), "kind": kind, "status": status, "model": model}
    for key in ("node", "entry_node", "error", "prompt", "job_id"):
        value = row.get(key)
        out[key] = value if isinstance(value, str) else None
    for key in ("width", "height", "steps", "queue_ms", "generation_ms"):
        value = row.get(key)
        out[key] = value if isinstance(value, int) and not isinstance(value, bool) else None
    tags = row.get("tags")
    out["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    return out


def union(answers: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every peer's rows as one list, oldest first; a row that two peers both sent is kept once."""
    seen: set[tuple[Any, ...]] = set()
    out: list[dict[str, Any]] = []
    for node_id in sorted(answers):
        for raw in answers[node_id]:
            row = clean_row(raw)
            if row is None:
                continue
            key = (row["entry_node"] or node_id, row["job_id"], row["kind"], row["ts"], row["model"])
            if key in seen:
                continue
            seen.add(key)
            out.append(row)
    out.sort(key=lambda r: r["ts"])
    return out


def timeline(rows: Iterable[Mapping[str, Any]], *, now: float, window_s: float) -> list[dict[str, Any]]:
    """Requests per time bucket over the window (ok / failed / cancelled, and the median time), for a chart."""
    width = window_s / TIMELINE_BUCKETS
    start = now - window_s
    buckets: list[dict[str, Any]] = [
        {"start": start + i * width, "ok": 0, "failed": 0, "cancelled": 0, "times": []}
        for i in range(TIMELINE_BUCKETS)
    ]
    for row in rows:
        index = int((row["ts"] - start) // width)
        if not 0 <= index < TIMELINE_BUCKETS:
            continue
        bucket = buckets[index]
        bucket[row["status"]] += 1
        if row["status"] == "ok" and row.get("generation_ms") is not None:
            bucket["times"].append(row["generation_ms"])
    for bucket in buckets:
        times = sorted(bucket.pop("times"))
        bucket["p50_ms"] = times[(len(times) - 1) // 2] if times else None
    return buckets


def report(
    answers: Mapping[str, Sequence[Any]],
    missing: Mapping[str, str],
    *,
    kind: str | None,
    now: float,
    window_s: float,
    truncated: Iterable[str] = (),
    recent: int = 20,
) -> dict[str, Any]:
    """The statistics reply: summary, breakdowns, timeline, and which peers answered or did not."""
    since = now - window_s
    rows = [r for r in union(answers) if r["ts"] >= since and (kind is None or r["kind"] == kind)]
    summary = summarize(rows, recent=recent)
    prompts = {(r["entry_node"], r["job_id"]): r["prompt"] for r in rows if r["prompt"] and r["job_id"]}
    for event in summary["recent"]:
        prompt = prompts.get((event["entry_node"], event["job_id"]))
        if prompt:
            event["prompt"] = prompt  # only when the store_prompts setting was on for that request
    return {
        "kind": kind or "all",
        "window_s": window_s,
        "since": since,
        "generated_at": now,
        "nodes_answered": sorted(answers),
        "nodes_missing": [{"node_id": n, "reason": missing[n]} for n in sorted(missing)],
        "nodes_truncated": sorted(truncated),
        **summary,
        "timeline": timeline(rows, now=now, window_s=window_s),
    }


def summarize(rows: list[dict[str, Any]], *, recent: int = 20) -> dict[str, Any]:
    """Totals, failures, timing percentiles, and breakdowns by node, model and tag. Pure."""

    def block(items: list[dict[str, Any]]) -> dict[str, Any]:
        ok = [r for r in items if r["status"] == "ok"]
        times = sorted(r["generation_ms"] for r in ok if r["generation_ms"] is not None)
        queue = [r["queue_ms"] for r in ok if r["queue_ms"] is not None]
        return {
            "total": len(items),
            "succeeded": len(ok),
            "failed": sum(1 for r in items if r["status"] == "failed"),
            "cancelled": sum(1 for r in items if r["status"] == "cancelled"),
            "avg_generation_ms": round(statistics.fmean(times)) if times else None,
            "p50_generation_ms": _percentile(times, 50),
            "p95_generation_ms": _percentile(times, 95),
            "avg_queue_ms": round(statistics.fmean(queue)) if queue else None,
        }

    def grouped(key: str) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(str(row.get(key) or "unknown"), []).append(row)
        return {name: block(items) for name, items in sorted(groups.items())}

    by_tag: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for tag in row["tags"]:
            by_tag.setdefault(tag, []).append(row)
    events = [
        {
            k: row[k]
            for k in (
                "ts",
                "kind",
                "model",
                "node",
                "entry_node",
                "width",
                "height",
                "steps",
                "queue_ms",
                "generation_ms",
                "status",
                "error",
                "tags",
                "job_id",
            )
        }
        for row in (rows[-recent:][::-1] if recent > 0 else [])
    ]
    return {
        **block(rows),
        "by_node": grouped("node"),
        "by_model": grouped("model"),
        "by_tag": {tag: block(items) for tag, items in sorted(by_tag.items())},
        "recent": events,
    }


def _percentile(sorted_values: list[int], pct: float) -> int | None:
    if not sorted_values:
        return None
    # nearest rank: the smallest value with at least pct% of the values at or below it
    index = min(len(sorted_values) - 1, max(0, math.ceil(pct * len(sorted_values) / 100) - 1))
    return int(sorted_values[index])
