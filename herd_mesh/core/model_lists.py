"""The mesh's model lists, merged from every peer's own: `/api/tags`, `/api/ps` and OpenAI's `/v1/models`. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

PeerLists = list[tuple[str, list[dict[str, Any]]]]  # (node id, that peer's entries)


def union_tags(lists: PeerLists) -> list[dict[str, Any]]:
    """`/api/tags` over the mesh: one entry per model name (the first peer's), with every peer that has it."""
    merged: dict[str, dict[str, Any]] = {}
    for node, entries in lists:
        for entry in entries:
            name = str(entry.get("name") or entry.get("model") or "")
            if not name:
                continue
            if name not in merged:
                merged[name] = {**entry, "nodes": []}
            if node not in merged[name]["nodes"]:
                merged[name]["nodes"].append(node)
    return [merged[name] for name in sorted(merged)]


def union_ps(lists: PeerLists) -> list[dict[str, Any]]:
    """`/api/ps` over the mesh: every loaded model on every peer, each with its `node`."""
    return [{**entry, "node": node} for node, entries in lists for entry in entries]


def openai_models(tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's model list from the `/api/tags` union."""
    out = []
    for entry in tags:
        name = str(entry.get("name") or entry.get("model"))
        out.append({
            "id": name,
            "object": "model",
            "created": _epoch(entry.get("modified_at")),
            "owned_by": name.split("/", 1)[0] if "/" in name else "library",
            "nodes": entry.get("nodes", []),
        })  # fmt: skip
    return out


def _epoch(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    text = value.replace("Z", "+00:00")
    if "." in text:  # Go prints nanoseconds; Python reads at most microseconds
        head, _, rest = text.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0
