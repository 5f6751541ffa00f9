"""Configuration: one frozen `Config`, resolved once as flag > environment > `<data-dir>/config.toml` > default."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .addresses import (
    DEFAULT_PORT,
    check_ipv4,
    check_origin,
    check_port,
    check_url,
    normalise_ollama_url,
    normalise_peer_url,
    valid_host,
)
from .core import catalogue, signing
from .core.catalogue import ImageModel
from .core.names import valid_node_id
from .errors import ConfigError

DEFAULT_HOST = "0.0.0.0"
DEFAULT_MESH = "default"
DEFAULT_DATA_DIR = "~/.herd-mesh"
DEFAULT_OLLAMA_URL = "http://localhost:11434"
LOG_LEVELS = ("debug", "info", "warning", "error")
EXTRA_KEYS = ("whisper_model",)  # config.toml keys other modules read from `Config.extra`
TABLES = ("image_models",)  # config.toml tables
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOCAL_MODEL_KEYS = ("path", "base", "steps", "guidance", "description")
KEY_FILE = "mesh.key"  # `herd key generate` writes the mesh key here (0600)

logger = logging.getLogger(__name__)


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
    max_memory_gb: float | None = None  # the most memory herd-mesh's engines may use on this Mac (None: no limit)
    allow_hosts: tuple[str, ...] = ()  # extra Host header names this peer answers to (besides its own)
    cors_origins: tuple[str, ...] = ()  # web origins allowed to call the API from a browser
    image_models: Mapping[str, ImageModel] = field(default_factory=dict)  # local models, `[image_models.NAME]`
    mflux_python: str | None = None  # the Python with mflux for the resident engine (None: look for one)
    mesh_key: str | None = None  # peers sign every call with it; None: an open mesh
    api_keys: tuple[str, ...] = ()  # when set, every public API call needs one of them (or the mesh key)
    extra: Mapping[str, Any] = field(default_factory=dict)  # the EXTRA_KEYS given in config.toml

    def __post_init__(self) -> None:
        check_port(self.port, "--port")
        for label, value in (("node id", self.node_id), ("mesh name", self.mesh)):
            if not valid_node_id(value):
                raise ConfigError(
                    f"{label} {value!r} is not allowed: use 1-48 letters, digits, '.', '_' or '-', "
                    "starting with a letter or digit"
                )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        for address in self.advertise:
            check_ipv4(address, "--advertise")
        for url in self.peers:
            check_url(url, "--peer", "http://192.168.1.20:11435")
        check_url(self.ollama_url, "--ollama-url", "http://localhost:11434")
        if self.max_memory_gb is not None and not 0 < self.max_memory_gb <= 4096:
            raise ConfigError(f"--max-memory-gb must be a number of GB above 0, got {self.max_memory_gb!r}")
        for name in self.allow_hosts:
            if not valid_host(name):
                raise ConfigError(f"--allow-host needs a host name such as studio.lan, got {name!r}")
        for origin in self.cors_origins:
            check_origin(origin)
        for what, key in [("a mesh key", self.mesh_key), *(("an API key", k) for k in self.api_keys)]:
            if key is not None and not signing.valid_key(key):
                raise ConfigError(f"{what} must be at least {signing.MIN_KEY_CHARS} printable characters without "
                                  "spaces (`herd key generate` makes a good mesh key)")  # fmt: skip

    @property
    def key_file(self) -> Path:
        return self.data_dir / KEY_FILE

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


def local_addresses() -> list[str]:
    """Every address of this machine's interfaces, IPv4 and IPv6 (loopback included)."""
    import psutil

    return [a.address.split("%", 1)[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)]  # fmt: skip


def host_names(config: Config) -> set[str]:
    """The names a browser may use for this peer (`Host`): any other name is a DNS rebinding attempt."""
    names = {"localhost", "127.0.0.1", "::1", *config.allow_hosts, *config.advertised_addresses()}
    if config.host not in ("0.0.0.0", "::", ""):
        names.add(config.host)
    for name in {socket.gethostname(), socket.getfqdn()}:
        short = name.split(".", 1)[0]
        names |= {name, short, f"{short}.local"}
    return {n.lower() for n in names if n}


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


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {value!r}")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    """A comma-separated string or a list of strings."""
    if isinstance(value, str):
        return _split(value)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a string or a list of strings, got {value!r}")
    return tuple(v.strip() for v in value if v.strip())


def _port_value(value: Any, what: str) -> int:
    """An integer, or (from the environment) its ASCII digits."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    return check_port(value, what)


def _gb(value: Any, what: str) -> float:
    """A number of GB: a TOML number, or (from a flag or the environment) its text."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of GB such as 16, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a number of GB such as 16, got {value!r}") from exc
    if not 0 < number <= 4096:
        raise ConfigError(f"{what} must be a number of GB above 0, got {value!r}")
    return number


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def local_image_models(value: Any, path: Path) -> dict[str, ImageModel]:
    """`[image_models.NAME]` tables: models saved on this Mac (`mflux-save`, fine-tunes), each a variant of a
    catalogue model (`base`) loaded from `path`, with optional default `steps` and `guidance`."""
    if not isinstance(value, dict):
        raise ConfigError(f"'image_models' in {path} must be a table of [image_models.NAME] tables")
    models: dict[str, ImageModel] = {}
    bases = ", ".join(sorted(catalogue.MODELS))
    for name, table in value.items():
        where = f"[image_models.{name}] in {path}"
        if not _MODEL_NAME_RE.match(name):
            raise ConfigError(f"{where}: a model name is 1-64 letters, digits, '.', '_' or '-'")
        if name in catalogue.MODELS:
            raise ConfigError(f"{where}: {name} is a catalogue model; give the local one another name")
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table with path and base")
        unknown = sorted(set(table) - set(LOCAL_MODEL_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}; allowed: {', '.join(LOCAL_MODEL_KEYS)}")
        model_path, base = table.get("path"), table.get("base")
        if not isinstance(model_path, str) or not model_path.strip():
            raise ConfigError(f'{where} needs path = "/path/to/the/saved/model"')
        if base not in catalogue.MODELS:
            raise ConfigError(f"{where}: base must be one of {bases}, got {base!r}")
        steps, guidance = table.get("steps"), table.get("guidance")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 100):
            raise ConfigError(f"{where}: steps must be a whole number from 1 to 100, got {steps!r}")
        if guidance is not None and (
            isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance <= 30
        ):
            raise ConfigError(f"{where}: guidance must be a number from 0 to 30, got {guidance!r}")
        description = table.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where}: description must be a string")
        folder = Path(model_path).expanduser()
        if not folder.is_dir():
            logger.warning("%s: %s is not a folder (yet); %s is offered once it is", where, folder, name)
        models[name] = catalogue.local_model(
            name, path=str(folder), base=str(base), steps=steps,
            guidance=None if guidance is None else float(guidance), description=description,
        )  # fmt: skip
    return models


def read_key_file(data_dir: Path) -> str:
    """The mesh key `herd key generate` left in the data dir ("" when there is none)."""
    path = data_dir / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read the mesh key in {path}: {exc}") from exc


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
    "max_memory_gb": ("HERD_MAX_MEMORY_GB", "max_memory_gb"),
    "allow_hosts": ("HERD_ALLOW_HOSTS", "allow_hosts"),
    "cors_origins": ("HERD_CORS_ORIGINS", "cors_origins"),
    "mflux_python": ("HERD_MFLUX_PYTHON", "mflux_python"),
    "mesh_key": ("HERD_MESH_KEY", "mesh_key"),
    "api_keys": ("HERD_API_KEYS", "api_keys"),
}
STRING_SOURCES = ("host", "node_id", "mesh", "ollama_url", "log_level", "mflux_python", "mesh_key")


def _origin(name: str, source: str, path: Path) -> str:
    """How an error names where a value came from: the flag, the environment variable, or the file's key."""
    env_name, key = SOURCES[name]
    if source == "flag":
        flags = {
            "peers": "--peer",
            "mdns": "--no-mdns",
            "allow_hosts": "--allow-host",
            "cors_origins": "--cors-origin",
            "api_keys": "--api-key",
        }
        return flags.get(name, "--" + name.replace("_", "-"))
    return env_name if source == "env" else f"'{key}' in {path}"


def _warn_unknown_keys(file_values: Mapping[str, Any], path: Path) -> None:
    known = sorted({key for _, key in SOURCES.values()} | set(EXTRA_KEYS) | set(TABLES))
    for key in sorted(set(file_values) - set(known)):
        logger.warning("%s: unknown key %r is ignored; known keys: %s", path, key, ", ".join(known))


def resolve(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Merge the sources; `flags` holds only what was given on the command line (None means absent)."""
    env = os.environ if env is None else env
    data_dir = Path(flags.get("data_dir") or env.get("HERD_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    if data_dir.resolve() == (Path.home() / ".fleet-manager").resolve():
        raise ConfigError("~/.fleet-manager belongs to another tool (ollama-herd); choose another --data-dir")
    file_values = read_config_file(data_dir)
    _warn_unknown_keys(file_values, data_dir / "config.toml")
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, (env_name, key) in SOURCES.items():
        if flags.get(name) not in (None, (), []):
            values[name], source = flags[name], "flag"
        elif env.get(env_name):
            values[name], source = env[env_name], "env"
        elif key in file_values:
            values[name], source = file_values[key], "file"
        else:
            continue
        origin[name] = _origin(name, source, data_dir / "config.toml")
    text = {name: _string(values[name], origin[name]) for name in STRING_SOURCES if name in values}
    advertise = _strings(values["advertise"], origin["advertise"]) if "advertise" in values else ()
    for address in advertise:
        check_ipv4(address, origin["advertise"])
    peers = _strings(values["peers"], origin["peers"]) if "peers" in values else ()
    allow_hosts = _strings(values["allow_hosts"], origin["allow_hosts"]) if "allow_hosts" in values else ()
    max_memory = _gb(values["max_memory_gb"], origin["max_memory_gb"]) if "max_memory_gb" in values else None
    cors_origins = _strings(values["cors_origins"], origin["cors_origins"]) if "cors_origins" in values else ()
    api_keys = _strings(values["api_keys"], origin["api_keys"]) if "api_keys" in values else ()
    mesh_key = text.get("mesh_key", "").strip() or read_key_file(data_dir)
    ollama_url = normalise_ollama_url(text["ollama_url"], origin["ollama_url"]) if "ollama_url" in text else None
    mdns = _bool(values["mdns"], origin["mdns"]) if "mdns" in values else True
    if flags.get("no_mdns"):
        mdns = False
    return Config(
        host=text.get("host", DEFAULT_HOST),
        port=_port_value(values["port"], origin["port"]) if "port" in values else DEFAULT_PORT,
        node_id=text.get("node_id") or default_node_id(),
        data_dir=data_dir,
        mesh=text.get("mesh", DEFAULT_MESH),
        advertise=advertise,
        peers=tuple(normalise_peer_url(p, origin["peers"]) for p in peers),
        mdns=mdns,
        ollama_url=ollama_url or DEFAULT_OLLAMA_URL,
        log_level=text.get("log_level", "info").lower(),
        max_memory_gb=max_memory,
        allow_hosts=tuple(h.lower() for h in allow_hosts),
        cors_origins=tuple(o.rstrip("/") for o in cors_origins),
        image_models=local_image_models(file_values["image_models"], data_dir / "config.toml")
        if "image_models" in file_values
        else {},
        mflux_python=str(Path(text["mflux_python"]).expanduser()) if text.get("mflux_python") else None,
        mesh_key=mesh_key or None,
        api_keys=api_keys,
        extra={k: v for k, v in file_values.items() if k in EXTRA_KEYS},
    )
