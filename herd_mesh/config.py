"""Configuration: one frozen `Config`, resolved once as flag > environment > `<data-dir>/config.toml` > default."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 11435
DEFAULT_MESH = "default"
DEFAULT_DATA_DIR = "~/.herd-mesh"
DEFAULT_OLLAMA_URL = "http://localhost:11434"
LOG_LEVELS = ("debug", "info", "warning", "error")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


@dataclass(frozen=True, kw_only=True)
class Config:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    node_id: str
    data_dir: Path
    mesh: str = DEFAULT_MESH
    advertise: tuple[str, ...] = ()  # empty: work it out from host (see `advertised_addresses`)
    peers: tuple[str, ...] = ()  # static peer base URLs
    mdns: bool = True
    ollama_url: str = DEFAULT_OLLAMA_URL
    log_level: str = "info"
    extra: Mapping[str, Any] = field(default_factory=dict)  # config.toml keys later issues read

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be 1-65535, got {self.port}")
        for label, value in (("node id", self.node_id), ("mesh name", self.mesh)):
            if not _NAME_RE.match(value):
                raise ConfigError(
                    f"{label} {value!r} is not allowed: use 1-48 letters, digits, '.', '_' or '-', "
                    "starting with a letter or digit"
                )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        for url in self.peers:
            _check_url(url, "--peer")
        _check_url(self.ollama_url, "--ollama-url")

    def advertised_addresses(self) -> list[str]:
        """What peers should dial: --advertise, else the bound host when specific, else the LAN IPv4s."""
        if self.advertise:
            return list(self.advertise)
        if self.host not in ("0.0.0.0", "::", ""):
            return [self.host]
        return lan_ipv4_addresses() or ["127.0.0.1"]

    @property
    def url(self) -> str:
        return f"http://{self.advertised_addresses()[0]}:{self.port}"


def _check_url(url: str, flag: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{flag} needs an http(s) URL such as http://192.168.1.20:11435, got {url!r}")


def _port(parts: SplitResult, text: str, what: str) -> int | None:
    try:
        return parts.port
    except ValueError as exc:  # `host:abc`, `host:99999`
        raise ConfigError(f"{what} {text!r} has a bad port: {exc}") from exc


def normalise_peer_url(text: str) -> str:
    """Accept `host`, `host:port` or a URL; the port defaults to herd-mesh's."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    text = text.rstrip("/")  # after the scheme check: `http://` must not become `http:` and then `http://http:`
    parts = urlsplit(text)
    if _port(parts, text, "--peer") is None and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        text = f"{parts.scheme}://{host}:{DEFAULT_PORT}"
    return text


def normalise_ollama_url(text: str) -> str:
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
    return f"{parts.scheme}://{host}:{_port(parts, text, '--ollama-url') or 11434}"


def default_node_id() -> str:
    """The short hostname: stable across restarts, readable in the dashboard."""
    name = socket.gethostname().split(".")[0] or "herd"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).strip("-.") or "herd"
    return name[:48]


def lan_ipv4_addresses() -> list[str]:
    """Non-loopback, non-link-local IPv4 addresses of this machine (the ones other Macs can reach)."""
    import psutil  # local import: config stays importable without psutil in pure tests

    found: list[str] = []
    for name, addrs in psutil.net_if_addrs().items():
        if name.startswith(("docker", "br-", "veth", "utun", "awdl", "llw", "bridge")):
            continue
        for addr in addrs:
            if addr.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(addr.address)
            if ip.is_loopback or ip.is_link_local or ip.is_multicast:
                continue
            found.append(addr.address)
    return found


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def read_config_file(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "config.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


# flag name -> (environment variable, config.toml key)
SOURCES = {
    "host": ("HERD_HOST", "host"),
    "port": ("HERD_PORT", "port"),
    "node_id": ("HERD_NODE_ID", "node_id"),
    "mesh": ("HERD_MESH", "mesh"),
    "advertise": ("HERD_ADVERTISE", "advertise"),
    "peers": ("HERD_PEERS", "peers"),
    "mdns": ("HERD_MDNS", "mdns"),
    "ollama_url": ("OLLAMA_HOST", "ollama_url"),
    "log_level": ("HERD_LOG_LEVEL", "log_level"),
}


def resolve(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Merge the sources; `flags` holds only what was given on the command line (None means absent)."""
    env = os.environ if env is None else env
    data_dir = Path(flags.get("data_dir") or env.get("HERD_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    if data_dir.resolve() == (Path.home() / ".fleet-manager").resolve():
        raise ConfigError("~/.fleet-manager belongs to another tool (ollama-herd); choose another --data-dir")
    file_values = read_config_file(data_dir)
    values: dict[str, Any] = {}
    for name, (env_name, key) in SOURCES.items():
        if flags.get(name) not in (None, (), []):
            values[name] = flags[name]
        elif env.get(env_name):
            raw = env[env_name]
            values[name] = _split(raw) if name in ("peers", "advertise") else raw
        elif key in file_values:
            values[name] = file_values[key]
    try:
        port = int(values.get("port", DEFAULT_PORT))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"port must be a number, got {values.get('port')!r}") from exc
    peers = values.get("peers", ())
    advertise = values.get("advertise", ())
    if isinstance(peers, str):
        peers = _split(peers)
    if isinstance(advertise, str):
        advertise = _split(advertise)
    mdns = _bool(values["mdns"], "mdns") if "mdns" in values else True
    if flags.get("no_mdns"):
        mdns = False
    return Config(
        host=str(values.get("host", DEFAULT_HOST)),
        port=port,
        node_id=str(values.get("node_id") or default_node_id()),
        data_dir=data_dir,
        mesh=str(values.get("mesh", DEFAULT_MESH)),
        advertise=tuple(str(a) for a in advertise),
        peers=tuple(normalise_peer_url(str(p)) for p in peers),
        mdns=mdns,
        ollama_url=normalise_ollama_url(str(values.get("ollama_url", DEFAULT_OLLAMA_URL))),
        log_level=str(values.get("log_level", "info")).lower(),
        extra={k: v for k, v in file_values.items() if k not in {key for _, key in SOURCES.values()}},
    )
