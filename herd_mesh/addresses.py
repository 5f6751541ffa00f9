"""Addresses a person types (`--peer`, `--ollama-url`, `--advertise`, `--cors-origin`, `--port`): checked, with an
error that shows a good one, and normalised (a bare `host` or `host:port` becomes a URL with herd's port)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError

DEFAULT_PORT = 11435  # herd-mesh's port
OLLAMA_PORT = 11434
_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_port(port: Any, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{what} must be an integer from 1 to 65535, got {port!r}")
    return port


def check_ipv4(address: str, what: str) -> None:
    try:
        ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise ConfigError(f"{what} must be an IPv4 address such as 192.168.1.20, got {address!r}") from exc


def check_origin(origin: str) -> None:
    """A web origin: scheme://host[:port], exactly as a browser sends it in `Origin` (no path, no slash)."""
    message = f"--cors-origin needs an origin such as http://localhost:5173, got {origin!r}"
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{message}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or "@" in origin:
        raise ConfigError(message)


def check_url(url: str, what: str, example: str) -> None:
    """`http(s)://host[:port]`, nothing else: no path (but "/"), query, fragment or user."""
    message = f"{what} needs an http(s) URL such as {example}, got {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{message}: {exc}") from exc
    if (
        parts.scheme not in ("http", "https")
        or not valid_host(parts.hostname or "")
        or parts.path not in ("", "/")
        or "?" in url  # a query, even an empty one
        or "#" in url
        or "@" in parts.netloc
    ):
        raise ConfigError(message)


def valid_host(host: str) -> bool:
    """A host name or IPv4 address, or an IPv6 literal (given in brackets)."""
    if _HOST_RE.match(host):
        return True
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def url_port(parts: SplitResult, text: str, what: str) -> int | None:
    try:
        return parts.port
    except ValueError as exc:  # `host:abc`, `host:99999`
        raise ConfigError(f"{what} {text!r} has a bad port: {exc}") from exc


def normalise_peer_url(text: str, what: str = "--peer") -> str:
    """Accept `host`, `host:port` or a URL `http(s)://host[:port]`; the port defaults to herd-mesh's."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    check_url(text, what, "http://192.168.1.20:11435")
    text = text.rstrip("/")  # after the scheme check: `http://` must not become `http:` and then `http://http:`
    parts = urlsplit(text)
    if url_port(parts, text, what) is None and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        text = f"{parts.scheme}://{host}:{DEFAULT_PORT}"
    return text


def normalise_ollama_url(text: str, what: str = "--ollama-url") -> str:
    """OLLAMA_HOST may be `0.0.0.0:11434` or a bare host; clients dial localhost in that case."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    text = text.rstrip("/")
    parts = urlsplit(text)
    host = parts.hostname or "localhost"
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    url = f"{parts.scheme}://{host}:{url_port(parts, text, what) or OLLAMA_PORT}"
    check_url(url, what, "http://localhost:11434")
    return url
