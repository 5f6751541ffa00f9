"""Which peer a client talks to: a URL given or in `HERD_URL`, the mesh's name, and whether an answer to a
ping comes from a herd peer of that mesh.

Kept apart from sending so that `Client`, `AsyncClient` and `herd doctor` read a peer's ping the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_PORT = 11435
DEFAULT_MESH = "default"
LOCAL_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
PROBE_PATH = "/mesh/peers"  # the one `/mesh/` call a peer answers without the mesh key


@dataclass(frozen=True)
class Target:
    """The peer a client talks to."""

    url: str
    node_id: str | None
    how: str  # how it was found, for messages: "url=", "HERD_URL", "local peer", "mDNS"


def normalise_url(text: str) -> str:
    """`host`, `host:port` or `http(s)://host[:port]` -> a base URL; the port defaults to herd-mesh's."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = httpx.URL(text)
    if parts.scheme not in ("http", "https") or not parts.host:
        raise ValueError(f"a peer URL looks like http://studio.local:11435, got {text!r}")
    port = parts.port or DEFAULT_PORT
    host = f"[{parts.host}]" if ":" in parts.host else parts.host
    return f"{parts.scheme}://{host}:{port}"


def explicit_target(url: str | None, env: Mapping[str, str] | None = None) -> Target | None:
    """The peer the caller named (`url=`, else `HERD_URL`); None means: go and find one."""
    env = os.environ if env is None else env
    if url:
        return Target(normalise_url(url), None, "url=")
    if env.get("HERD_URL"):
        return Target(normalise_url(env["HERD_URL"]), None, "HERD_URL")
    return None


def mesh_name(mesh: str | None, env: Mapping[str, str] | None = None) -> str:
    """The mesh to look for: `mesh=`, else `HERD_MESH`, else the default one."""
    env = os.environ if env is None else env
    return mesh or env.get("HERD_MESH") or DEFAULT_MESH


def ping_node(response: httpx.Response, mesh: str, key: str | None = None) -> str | None:
    """The node id in a `/mesh/peers` answer, when it is a herd peer of `mesh` (and, with `key`, a member with
    that mesh key's fingerprint)."""
    doc = identity(response)
    if doc is None or doc.get("mesh") != mesh:
        return None
    if key is not None:
        capabilities = doc.get("capabilities")
        security = capabilities.get("security") if isinstance(capabilities, dict) else None
        if not isinstance(security, dict) or security.get("key") != key:
            return None
    return str(doc["node_id"])


def identity_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`/mesh/peers`, already read -> the answering peer's own entry (see `identity`)."""
    peers = doc.get("peers")
    own = next((p for p in peers if isinstance(p, dict) and p.get("self")), {}) if isinstance(peers, list) else {}
    return {**own, "node_id": doc.get("self"), "mesh": doc.get("mesh"), "now": own.get("last_seen")}


def identity(response: httpx.Response) -> dict[str, Any] | None:
    """The answering peer as `/mesh/peers` describes itself: node id, mesh, url, its clock (`now`) and state."""
    if response.status_code != 200:
        return None
    try:
        doc = response.json()
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("self"), str) or not isinstance(doc.get("peers"), list):
        return None
    return identity_of(doc)
