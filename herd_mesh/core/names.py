"""What a node id, a mesh name and a peer address may look like: checked at the command line, in mDNS records,
in peers' claims and in settings stamps alike."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")  # node ids and mesh names


def valid_node_id(text: str) -> bool:
    return bool(NODE_ID_RE.match(text))


def valid_peer_url(url: str) -> bool:
    """http(s)://host[:port] and nothing else: what peers announce, and all a caller may claim to be."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
        and (port is None or 1 <= port <= 65535)
    )
