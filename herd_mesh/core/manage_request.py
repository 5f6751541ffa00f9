"""Model management requests (pull, delete, copy, create): pure checks of a body, with the seed's guardrails.

Nothing is pulled, deleted, copied or created without a request that names the model; a delete also names the
peer and says `"confirm": true` ("never delete models without user confirmation"); copy and create name the peer.
Only `node` and `confirm` are herd-mesh's; the rest of the body goes to that peer's Ollama as sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import RequestError
from .image_request import parse_json_object

MAX_NAME_CHARS = 200
OPS = ("pull", "delete", "copy", "create")
OURS = ("node", "confirm")  # herd-mesh's own fields, not passed to Ollama


@dataclass(frozen=True)
class ManageRequest:
    op: str  # pull | delete | copy | create
    model: str  # the model it acts on (for copy: the source)
    node: str | None  # the peer it must run on; None: the mesh chooses (pull only)
    stream: bool
    ollama_body: bytes  # what that peer's Ollama gets: the body without `node` and `confirm`


def _name(body: dict[str, Any], key: str, example: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"'{key}' must be a model name such as {json.dumps(example)}, got {json.dumps(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise RequestError(f"'{key}' is {len(value)} characters; at most {MAX_NAME_CHARS} are allowed")
    return value.strip()


def _required(body: dict[str, Any], key: str, example: str, what: str) -> str:
    name = _name(body, key, example)
    if name is None:
        raise RequestError(f"name the model {what} as '{key}', e.g. {{\"{key}\": {json.dumps(example)}}}")
    return name


def parse_manage_request(op: str, raw: bytes) -> ManageRequest:
    """A pull, delete, copy or create body -> ManageRequest; RequestError (400) naming what is missing."""
    body = parse_json_object(raw)
    node = body.get("node")
    if node is not None and (not isinstance(node, str) or not node.strip()):
        raise RequestError(f"'node' must be a peer's node id such as \"mac-b\", got {json.dumps(node)}")
    node = node.strip() if isinstance(node, str) else None
    stream = body.get("stream", True)
    if stream is None:
        stream = True
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {json.dumps(stream)}")
    if op == "copy":
        model = _required(body, "source", "llama3.2", "to copy")
        _required(body, "destination", "my-llama", "of the copy")
    else:
        model = _name(body, "model", "llama3.2") or _required(body, "name", "llama3.2", f"to {op}")
    if op in ("delete", "copy", "create") and node is None:
        raise RequestError(f'name the peer to {op} {model!r} on as \'node\', e.g. "node": "mac-b"')
    if op == "delete" and body.get("confirm") is not True:
        raise RequestError(
            f'deleting {model!r} from {node} needs "confirm": true in the request: models are never deleted '
            "without the user's confirmation"
        )
    ollama_body = json.dumps({k: v for k, v in body.items() if k not in OURS}).encode()
    return ManageRequest(op=op, model=model, node=node, stream=stream, ollama_body=ollama_body)
