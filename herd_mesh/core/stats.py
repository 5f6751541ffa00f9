"""Mesh-wide statistics from the rows the peers keep. Pure: no I/O, time is an argument.

Every request is recorded by the peer the client called (its entry peer) and copied to the others, so the same
request may arrive from several peers: `union` keeps one row per (entry node, job id, time). Rows from other
peers are checked before use: a peer running another version must not be able to break this peer's statistics.

Requests refused before routing (an unknown model, bad input) have status `rejected`: they are counted apart,
never as a failure of the mesh and never under a node.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .work import KINDS

__all__ = [
    "KINDS", "STATUSES", "bucket_width", "clean_row", "copy_row", "explain_route", "failure_reason", "failures",
    "failures_by_peer", "report", "summarize", "timeline", "trends", "union",
]  # fmt: skip

STATUSES = ("ok", "failed", "cancelled", "rejected")
WORK_STATUSES = ("ok", "failed", "cancelled")  # what the mesh did; `rejected` never reached it
BUCKET_WIDTHS_S = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 7 * 86400)
MAX_BUCKETS = 36  # bars in a chart at most: the narrowest width from BUCKET_WIDTHS_S that keeps under this
MAX_SERIES = 8  # lines per trends chart; the rest are summed as "other"
MAX_TEXT = 2000  # an error or reason from another peer is cut here
MAX_ATTEMPTS = 16  # peers' attempts kept per row
MAX_FAILURES = 20  # recent failures listed
EVENT_FIELDS = ("ts", "kind", "model", "node", "entry_node", "width", "height", "steps", "queue_ms", "generation_ms",
                "status", "error", "tags", "job_id")  # fmt: skip


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def clean_attempts(value: Any) -> list[dict[str, str]]:
    """Each peer's failed try as another peer sent it: {"node", "reason", "status"?}, strings only."""
    out: list[dict[str, str]] = []
    for item in value[:MAX_ATTEMPTS] if isinstance(value, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("node"), str):
            entry = {"node": item["node"][:100], "reason": _text(item.get("reason")) or ""}
            if isinstance(item.get("status"), str | int) and not isinstance(item.get("status"), bool):
                entry["status"] = str(item["status"])[:10]
            out.append(entry)
    return out


def clean_row(row: Any) -> dict[str, Any] | None:
    """A row as another peer sent it -> a row `summarize` can use, or None when it is not one."""
    if not isinstance(row, Mapping):
        return None
    ts, kind, status, model = row.get("ts"), row.get("kind"), row.get("status"), row.get("model")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return None
    if kind not in KINDS or status not in STATUSES or not isinstance(model, str):
        return None
    out: dict[str, Any] = {"ts": float(ts), "kind": kind, "status": status, "model": model[:200]}
    for key in ("node", "entry_node", "job_id"):
        value = row.get(key)
        out[key] = value[:100] if isinstance(value, str) else None
    for key in ("error", "prompt", "reason"):
        out[key] = _text(row.get(key))
    for key in ("width", "height", "steps", "queue_ms", "generation_ms"):
        value = row.get(key)
        out[key] = value if isinstance(value, int) and not isinstance(value, bool) else None
    tags = row.get("tags")
    out["tags"] = [t[:100] for t in tags[:50] if isinstance(t, str)] if isinstance(tags, list) else []
    out["attempts"] = clean_attempts(row.get("attempts"))
    return out


def copy_row(raw: Any, *, oldest: float, newest: float) -> dict[str, Any] | None:
    """A copy another peer sent, as this peer stores it, or None: it must name its entry peer and job id (what
    makes copies the same request) and be inside the retention window. A prompt in it is dropped: prompts stay on
    the Mac they were sent to."""
    row = clean_row(raw)
    if row is None or not row["job_id"] or not row["entry_node"] or not oldest <= row["ts"] <= newest:
        return None
    row["prompt"] = None
    return row


def identity(row: Mapping[str, Any], sender: str) -> tuple[Any, ...]:
    """What makes two rows the same request: its entry peer, job id and time (a client may reuse an id)."""
    if row.get("job_id"):
        return (row.get("entry_node") or sender, row["job_id"], row["ts"])
    return (row.get("entry_node") or sender, None, row["kind"], row["ts"], row["model"])


def union(answers: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every peer's rows as one list, oldest first; a request that several peers sent is kept once (with its
    prompt, if any copy has one)."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for node_id in sorted(answers):
        for raw in answers[node_id]:
            row = clean_row(raw)
            if row is None:
                continue
            key = identity(row, node_id)
            kept = seen.get(key)
            if kept is None:
                seen[key] = row
            elif not kept["prompt"] and row["prompt"]:
                kept["prompt"] = row["prompt"]
    return sorted(seen.values(), key=lambda r: r["ts"])


# -- time buckets ----------------------------------------------------------------------------------------------------
def bucket_width(window_s: float) -> float:
    """The narrowest round width that draws the window in at most MAX_BUCKETS bars (1 h: 5 min, 24 h: 1 h,
    7 d: 6 h, 30 d: 1 day)."""
    for width in BUCKET_WIDTHS_S:
        if window_s / width <= MAX_BUCKETS:
            return float(width)
    return float(math.ceil(window_s / MAX_BUCKETS / 86400) * 86400)


def _buckets(now: float, window_s: float, tz_offset_s: float) -> tuple[float, float, int]:
    """(first start, width, count): buckets start on round local times (whole hours, local midnight), the
    first holds the window's start and the last holds `now`."""
    width = bucket_width(window_s)

    def floor(t: float) -> float:
        return math.floor((t + tz_offset_s) / width) * width - tz_offset_s

    first = floor(now - window_s)
    return first, width, int(round((floor(now) - first) / width)) + 1


def timeline(
    rows: Iterable[Mapping[str, Any]], *, now: float, window_s: float, tz_offset_s: float = 0.0
) -> list[dict[str, Any]]:
    """Requests per time bucket over the window (ok / failed / cancelled / rejected, and the median time)."""
    first, width, count = _buckets(now, window_s, tz_offset_s)
    buckets: list[dict[str, Any]] = [
        {"start": first + i * width, "ok": 0, "failed": 0, "cancelled": 0, "rejected": 0, "times": []}
        for i in range(count)
    ]
    for row in rows:
        index = int((row["ts"] - first) // width)
        if not 0 <= index < count:
            continue
        bucket = buckets[index]
        bucket[row["status"]] += 1
        if row["status"] == "ok" and row.get("generation_ms") is not None:
            bucket["times"].append(row["generation_ms"])
    for bucket in buckets:
        times = sorted(bucket.pop("times"))
        bucket["p50_ms"] = times[(len(times) - 1) // 2] if times else None
    return buckets


def trends(
    rows: Iterable[Mapping[str, Any]], *, now: float, window_s: float, tz_offset_s: float = 0.0
) -> dict[str, Any]:
    """Throughput: requests done (ok) per bucket, by node and by model, the busiest MAX_SERIES of each."""
    first, width, count = _buckets(now, window_s, tz_offset_s)
    done = [r for r in rows if r["status"] == "ok"]

    def series(key: str) -> dict[str, list[int]]:
        lines: dict[str, list[int]] = {}
        for row in done:
            index = int((row["ts"] - first) // width)
            if 0 <= index < count:
                lines.setdefault(str(row.get(key) or "unknown"), [0] * count)[index] += 1
        ranked = sorted(lines.items(), key=lambda item: (-sum(item[1]), item[0]))
        out = dict(ranked[:MAX_SERIES])
        if len(ranked) > MAX_SERIES:
            out["other"] = [sum(values) for values in zip(*(v for _, v in ranked[MAX_SERIES:]), strict=True)]
        return out

    return {"bucket_s": width, "starts": [first + i * width for i in range(count)], "by_node": series("node"),
            "by_model": series("model")}  # fmt: skip


# -- failures --------------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"\d+(\.\d+)?")


def failure_reason(error: str | None) -> str:
    """An error message as a reason to group by: what comes before the details, numbers as N."""
    if not error:
        return "no reason given"
    head = re.split(r" \(|: \{|; ", error, maxsplit=1)[0].strip()
    return _NUMBER.sub("N", head)[:120] or "no reason given"


def failures(rows: Sequence[Mapping[str, Any]], limit: int = MAX_FAILURES) -> list[dict[str, Any]]:
    """The newest failed requests, with the whole error and each peer's attempt."""
    out = []
    for row in reversed(rows):
        if row["status"] != "failed":
            continue
        out.append({**{k: row.get(k) for k in EVENT_FIELDS}, "attempts": row.get("attempts") or [],
                    "reason": row.get("reason")})  # fmt: skip
        if len(out) >= limit:
            break
    return out


def failures_by_peer(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per peer: jobs it finished or failed (its own failures and its failed attempts at others' jobs), with the
    newest error: what the health check reads to spot a peer that keeps failing."""
    out: dict[str, dict[str, Any]] = {}

    def entry(node: str) -> dict[str, Any]:
        return out.setdefault(node, {"failed": 0, "total": 0, "last_error": None})

    for row in rows:
        tried = {a["node"]: a["reason"] for a in row.get("attempts") or [] if a.get("node")}
        for node, reason in tried.items():
            e = entry(node)
            e["failed"] += 1
            e["total"] += 1
            e["last_error"] = reason
        node = row.get("node")
        if not node or node in tried or row["status"] not in ("ok", "failed"):
            continue
        e = entry(node)
        e["total"] += 1
        if row["status"] == "failed":
            e["failed"] += 1
            e["last_error"] = row.get("error")
    return out


# -- routing ---------------------------------------------------------------------------------------------------------
_SECONDS = re.compile(r"^\d+(\.\d+)?s$")


def explain_route(row: Mapping[str, Any]) -> dict[str, Any]:
    """Why a job went where it went, from the router's own line (`dispatch.images.reason_line`): the chosen
    peer's expected time in parts, the others' times, and why the rest could not run it."""
    node, entry = row.get("node"), row.get("entry_node")
    reason = row.get("reason") or ""
    parts = [p.strip() for p in reason.split("; ") if p.strip()]
    options: list[dict[str, Any]] = []
    first = node or "the first choice"  # a job that failed everywhere ran nowhere: its first choice is not named
    if parts:
        options.append({"node": first, "chosen": True, "estimate": parts[0]})
    for part in parts[1:]:
        name, _, rest = part.partition(" ")
        if _SECONDS.match(rest):
            options.append({"node": name, "chosen": False, "estimate": rest})
        else:
            options.append({"node": name, "chosen": False, "cannot": rest})
    attempts = row.get("attempts") or []
    lines = [f"entered the mesh at {entry or 'an unknown peer'}"]
    for attempt in attempts:
        lines.append(f"tried {attempt['node']}: {attempt['reason']}")
    if row.get("status") == "rejected":
        lines.append(f"refused before routing: {row.get('error') or 'no reason given'}")
    elif parts:
        lines.append(f"{first} was expected to finish first: {parts[0]}")
        others = [f"{o['node']} ({o['estimate']})" for o in options[1:] if "estimate" in o]
        if others:
            lines.append("the next best: " + ", ".join(others))
        unable = [f"{o['node']} ({o['cannot']})" for o in options if "cannot" in o]
        if unable:
            lines.append("could not run it: " + ", ".join(unable))
    else:
        lines.append("no routing reason was recorded for this request (only image jobs record one)")
    if row.get("status") == "failed":
        lines.append(f"it failed: {row.get('error') or 'no reason given'}")
    elif row.get("status") == "ok" and node:
        lines.append(f"it ran on {node}")
    return {**{k: row.get(k) for k in EVENT_FIELDS}, "reason": reason or None, "attempts": attempts,
            "options": options, "explanation": lines}  # fmt: skip


# -- the report ------------------------------------------------------------------------------------------------------
def report(
    answers: Mapping[str, Sequence[Any]],
    missing: Mapping[str, str],
    *,
    kind: str | None,
    now: float,
    window_s: float,
    truncated: Iterable[str] = (),
    recent: int = 20,
    tz_offset_s: float = 0.0,
) -> dict[str, Any]:
    """The statistics reply: summary, breakdowns, timeline, trends, and which peers answered or did not."""
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
        "timeline": timeline(rows, now=now, window_s=window_s, tz_offset_s=tz_offset_s),
        "trends": trends(rows, now=now, window_s=window_s, tz_offset_s=tz_offset_s),
    }


def _block(items: list[dict[str, Any]]) -> dict[str, Any]:
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
        "generation_s_total": round(sum(times) / 1000, 1),  # the GPU (or model) time used: usage, per tag
    }


def _counts(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items(), key=lambda item: (-item[1], item[0])))


def summarize(rows: list[dict[str, Any]], *, recent: int = 20) -> dict[str, Any]:
    """Totals, failures, timing percentiles, breakdowns by node, model and tag, and the requests refused
    before routing, counted apart. Pure."""
    work = [r for r in rows if r.get("status") != "rejected"]
    rejected = [r for r in rows if r.get("status") == "rejected"]

    def grouped(key: str) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in work:
            groups.setdefault(str(row.get(key) or "unknown"), []).append(row)
        return dict(sorted(groups.items()))

    by_model = {}
    for name, items in grouped("model").items():
        by_model[name] = {
            **_block(items),
            "ran_on": _counts(str(r["node"]) for r in items if r.get("node") and r["status"] == "ok"),
            "failure_reasons": _counts(failure_reason(r.get("error")) for r in items if r["status"] == "failed"),
        }
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for row in work:
        for tag in row.get("tags") or ():
            by_tag.setdefault(tag, []).append(row)
    events = []
    for row in rows[-recent:][::-1] if recent > 0 else []:
        events.append({k: row.get(k) for k in EVENT_FIELDS})
    return {
        **_block(work),
        "by_node": {name: _block(items) for name, items in grouped("node").items()},
        "by_model": by_model,
        "by_tag": {
            tag: {**_block(items), "models": _counts(r["model"] for r in items)}
            for tag, items in sorted(by_tag.items())
        },  # fmt: skip
        "rejected": {
            "total": len(rejected),
            "by_model": _counts(str(r.get("model") or "?") for r in rejected),
            "by_reason": _counts(failure_reason(r.get("error")) for r in rejected),
        },
        "failures": failures(work),
        "recent": events,
    }


def _percentile(sorted_values: list[int], pct: float) -> int | None:
    if not sorted_values:
        return None
    # nearest rank: the smallest value with at least pct% of the values at or below it
    index = min(len(sorted_values) - 1, max(0, math.ceil(pct * len(sorted_values) / 100) - 1))
    return int(sorted_values[index])
