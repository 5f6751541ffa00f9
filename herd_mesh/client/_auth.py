"""Which key a client sends: an API key to any peer, this Mac's mesh key only to this Mac's own peer.

Apart from finding and sending because the rule about where the mesh key may go is a security decision, and
belongs in one place.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from pathlib import Path

import httpx

from ..core.signing import fingerprint

KEY_FILE = "mesh.key"  # where `herd key generate` keeps the mesh key, in the peer's data dir


def loopback(host: str) -> bool:
    """This Mac itself (127.0.0.0/8, ::1, localhost): the only place the data dir's mesh key is sent."""
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


class KeyAuth(httpx.Auth):
    """Sends a key as `Authorization: Bearer`: an API key (`api_key=`, `HERD_API_KEY`) to any peer; the mesh key
    found in this Mac's data dir only to this Mac's own peer, since plain HTTP would show it to the network."""

    def __init__(self, api_key: str | None, local_key: str | None) -> None:
        self._api_key = api_key
        self._local_key = local_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self._api_key or (self._local_key if loopback(request.url.host) else None)
        if key and "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {key}"
        yield request


def local_mesh_key(env: Mapping[str, str] | None = None) -> str | None:
    """This Mac's mesh key, when it is a member of a keyed mesh: `HERD_MESH_KEY`, else the data dir's file."""
    env = os.environ if env is None else env
    if env.get("HERD_MESH_KEY"):
        return env["HERD_MESH_KEY"].strip() or None
    data_dir = Path(env.get("HERD_DATA_DIR") or "~/.herd-mesh").expanduser()
    try:
        return (data_dir / KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def local_key_fingerprint(env: Mapping[str, str] | None = None) -> str | None:
    """The fingerprint of this Mac's mesh key: a member's client uses only peers of the same keyed mesh."""
    key = local_mesh_key(env)
    return fingerprint(key) if key else None


def key_auth(api_key: str | None, env: Mapping[str, str] | None = None) -> KeyAuth:
    """The auth a client sends with: `api_key=`, else `HERD_API_KEY`, and this Mac's mesh key for its own peer."""
    env = os.environ if env is None else env
    return KeyAuth(api_key or env.get("HERD_API_KEY") or None, local_mesh_key(env))
