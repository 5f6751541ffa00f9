"""Model management from the client: the request bodies and the reading of Ollama's progress lines, shared by
`Client` and `AsyncClient`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import PeerUnreachable
from ._errors import RequestFailed

Progress = Callable[[Mapping[str, Any]], None]  # one of Ollama's progress lines: status, digest, total, completed


def pull_body(model: str, node: str | None) -> dict[str, Any]:
    return {"model": model, "stream": True, **({"node": node} if node else {})}


def delete_body(model: str, node: str, confirm: bool) -> dict[str, Any]:
    return {"model": model, "node": node, "confirm": confirm}


def progress_line(line: str, node: str | None) -> dict[str, Any] | None:
    """One NDJSON progress line; None for a blank one. An `{"error"}` line (the pull failed after it started)
    raises `RequestFailed` naming the peer."""
    if not line.strip():
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if "error" in doc:
        where = f" on {node}" if node else ""
        raise RequestFailed(f"the model change failed{where}: {doc['error']}", 500, node=node)
    return doc


def finished(last: Mapping[str, Any] | None, node: str | None) -> dict[str, Any]:
    """The answer of a pull: Ollama's last line (`{"status": "success"}`) and the peer the model is now on."""
    return {**(last or {}), "node": node}


def pull_broke(node: str | None, exc: Exception) -> PeerUnreachable:
    return PeerUnreachable(node or "peer", f"the pull's progress broke off ({type(exc).__name__}); the download may "
                           "still finish there: `herd models` shows where each model is")  # fmt: skip
