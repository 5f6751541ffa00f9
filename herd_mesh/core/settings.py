"""Runtime settings (`/dashboard/api/settings`): the schema, validation, and the last-writer-wins merge.

Each key carries its own timestamp and author, so settings can be merged last-writer-wins per key: two peers
changing different keys at once both keep their change.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RequestError
from .names import valid_node_id
from .units import DAY_S


@dataclass(frozen=True)
class Setting:
    type: type
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None


SCHEMA: dict[str, Setting] = {
    "image_generation": Setting(bool, True, "serve POST /api/generate-image and /v1/images/generations"),
    "transcription": Setting(bool, True, "serve POST /api/transcribe"),
    "llm": Setting(bool, True, "serve LLM chat and completions"),
    "embeddings": Setting(bool, True, "serve embeddings"),
    "store_prompts": Setting(bool, False, "keep prompts in the request records"),
    "image_keep_alive_s": Setting(int, 300, "seconds an idle image model stays loaded", 0, 86400),
    "stats_retention_days": Setting(int, 30, "days of request records kept", 1, 3650),
}


def validate_changes(body: Any) -> dict[str, Any]:
    """A POSTed settings object -> the changes it asks for, or a RequestError naming the bad key."""
    if not isinstance(body, dict):
        raise RequestError('settings must be a JSON object such as {"image_generation": true}')
    if not body:
        raise RequestError(f"no settings given; known settings: {', '.join(SCHEMA)}")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        setting = SCHEMA.get(key)
        if setting is None:
            raise RequestError(f"unknown setting {key!r}; known settings: {', '.join(SCHEMA)}")
        if setting.type is bool:
            if not isinstance(value, bool):
                raise RequestError(f"setting {key!r} must be true or false, got {json.dumps(value)}")
        elif setting.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise RequestError(f"setting {key!r} must be an integer, got {json.dumps(value)}")
            if (
                setting.minimum is not None
                and setting.maximum is not None
                and not (setting.minimum <= value <= setting.maximum)
            ):
                raise RequestError(
                    f"setting {key!r} must be from {setting.minimum} to {setting.maximum}, got {value}"
                )
        changes[key] = value
    return changes


CLOCK_STEP_S = 0.001  # how far past the entry it replaces a local change is stamped when clocks disagree
Stamp = tuple[float, str]  # (time of the change, node that made it): later wins, node id breaks ties


MAX_FUTURE_S = DAY_S  # a stamp further ahead than a day is a broken clock or forged: it could lock a setting


def _stamp(entry: Mapping[str, Any], now: float | None) -> Stamp | None:
    """The entry's (time, author), or None when it cannot be trusted in a merge."""
    ts, by = entry.get("ts", 0.0), entry.get("by", "")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or ts < 0:
        return None
    if now is not None and ts > now + MAX_FUTURE_S:
        return None
    if not isinstance(by, str) or not (by == "" or valid_node_id(by)):
        return None
    return float(ts), by


def merge(
    mine: Mapping[str, dict[str, Any]], theirs: Mapping[str, Any], *, now: float | None = None
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Per-key last-writer-wins. Returns the merged entries and whether anything of ours changed.

    Entries with a wrong value, a non-finite or far-future stamp (relative to `now`) or a malformed author are
    dropped: one bad peer must not be able to wedge or lock a setting for the whole mesh.
    """
    merged = {k: dict(v) for k, v in mine.items()}
    changed = False
    for key, entry in theirs.items():
        if key not in SCHEMA or not isinstance(entry, dict) or "value" not in entry:
            continue
        try:
            validate_changes({key: entry["value"]})
        except RequestError:
            continue
        stamp = _stamp(entry, now)
        if stamp is None:
            continue
        current = merged.get(key)
        if current is None or stamp > (float(current.get("ts", 0.0)), str(current.get("by", ""))):
            merged[key] = {"value": entry["value"], "ts": stamp[0], "by": stamp[1]}
            changed = True
    return merged, changed


def digest(entries: Mapping[str, dict[str, Any]]) -> str:
    """The same entries give the same digest on every peer (keys sorted, floats as JSON writes them)."""
    if not entries:
        return "0"
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
