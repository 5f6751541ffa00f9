"""Lenient readers for a peer's JSON: a field of the wrong type reads as empty, never as a crash.

A newer or older peer may send fields this client does not expect; the typed results stay usable anyway.
"""

from __future__ import annotations

from typing import Any

import httpx

from ._errors import RequestFailed


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; anything else is the peer's fault, so a RequestFailed with status 502."""
    try:
        doc = response.json()
    except ValueError as exc:
        raise RequestFailed(f"the peer answered something that is not JSON: {response.text[:120]!r}", 502) from exc
    if not isinstance(doc, dict):
        raise RequestFailed("the peer answered JSON that is not an object", 502)
    return doc


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    """`value` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def as_int(value: Any) -> int | None:
    """An integer from a number or a header's digits; None for anything else (a bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def as_float(value: Any) -> float | None:
    """A float from a JSON number; None for anything else (a bool included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
