"""`herd doctor`: check this machine for what a peer needs, and say in plain words what to do about each gap.

Every check gives one line, `ok|warn|fail: what — what to do`. Exit code 1 when a check fails (with `--strict`,
also when one warns), else 0. Warnings are things this Mac can live without (no mflux on a Mac that only routes,
no Whisper); failures stop a peer from working (its port taken by another program, multicast broken with no
`--peer` to fall back on).
"""

from __future__ import annotations

import argparse
import email.utils
import errno
import logging
import os
import platform
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from .. import config as config_mod
from ..client._common import PROBE_PATH, identity
from ..client._discovery import browse
from ..config import Config
from ..core import catalogue
from ..core.extras import install_hint
from ..errors import ConfigError
from . import serve

Level = Literal["ok", "warn", "fail"]
PROBE_TIMEOUT_S = 1.5
MULTICAST_WAIT_S = 3.0
SKEW_WARN_S = 5.0  # the Date header has 1 s resolution: below this, skew is noise
DOCTOR_SERVICE_TYPE = "_herd-doctor._tcp.local."  # not the peers' type: their logs stay quiet


@dataclass(frozen=True)
class Check:
    level: Level
    what: str
    todo: str = ""

    def line(self) -> str:
        return f"{self.level}: {self.what}" + (f" — {self.todo}" if self.todo else "")


def local_url(cfg: Config) -> str:
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "", "::") else cfg.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.port}"


# -- the checks ----------------------------------------------------------------------------------------------------
def check_python(version: Sequence[int] = sys.version_info[:3], executable: str = sys.executable) -> Check:
    text = ".".join(str(v) for v in version[:3])
    if tuple(version[:2]) >= (3, 11):
        return Check("ok", f"Python {text} ({executable})")
    return Check(
        "fail",
        f"Python {text} is too old: herd-mesh needs 3.11 or newer",
        "install with `uv tool install herd-mesh` (uv brings its own Python)",
    )


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def check_mflux(
    find: Callable[[str], str | None] | None = None, apple: bool | None = None
) -> tuple[Check, list[str]]:
    """Which image models have their mflux command here; returns the check and those models."""
    from ..engines.mflux_cli import find_command

    find = find or find_command
    apple = apple_silicon() if apple is None else apple
    found = [name for name, model in catalogue.MODELS.items() if find(model.command)]
    if found:
        return Check("ok", f"mflux commands found for {len(found)} image models: {', '.join(found)}"), found
    if not apple:
        return Check(
            "warn",
            "no mflux commands: this machine makes no images",
            "mflux runs on Apple Silicon Macs only; this peer still sends images to the Macs that have it",
        ), []
    return Check(
        "warn",
        "no mflux commands found (looked on PATH, ~/.local/bin, /opt/homebrew/bin)",
        "install them with `uv tool install mflux`; the peer notices within 30 s",
    ), []


def check_image_engine(mflux_python: str | None, found: Sequence[str]) -> Check | None:
    """Which engine makes the images: mflux kept loaded (a Python with mflux), or a process per image."""
    from ..engines.mflux_resident import find_mflux_python

    python = mflux_python or find_mflux_python()
    if python:
        return Check("ok", f"images run in a resident mflux worker ({python}): the model stays loaded between images")
    if found:
        return Check(
            "ok",
            "images run one mflux command each (the model loads for every image)",
            "to keep it loaded between images, give the peer a Python with mflux: `uv tool install mflux` does, "
            "or set mflux_python in config.toml",
        )
    return None


def check_mesh_key(cfg: Config) -> Check:
    """Is the mesh closed to Macs without its key?"""
    from ..core.signing import fingerprint

    if cfg.mesh_key:
        source = "in " + str(cfg.key_file) if cfg.key_file.is_file() else "from --mesh-key or HERD_MESH_KEY"
        return Check("ok", f"mesh key set ({source}; fingerprint {fingerprint(cfg.mesh_key)}): only Macs with it "
                           "are members")  # fmt: skip
    return Check(
        "warn",
        "the mesh is open: anyone on this network can join it, send it work and change its settings",
        "run `herd key generate` on one Mac, `herd key set <key>` on the others (`herd key show` prints it), "
        "then restart the peers",
    )


def check_local_models(models: Mapping[str, catalogue.ImageModel]) -> list[Check]:
    """Each `[image_models.NAME]` of config.toml: is its folder there?"""
    checks = []
    for name, model in sorted(models.items()):
        if model.path and Path(model.path).is_dir():
            checks.append(Check("ok", f"local model {name} ({model.base}) at {model.path}"))
        else:
            checks.append(Check("warn", f"local model {name}: {model.path} is not a folder, so it is not offered",
                                "fix `path` in config.toml, or mount the disk it is on"))  # fmt: skip
    return checks


def _cached(model: catalogue.ImageModel, cache_dir: Path) -> bool | None:
    from ..engines.hfcache import weights_cached

    return weights_cached(model, cache_dir)


def check_weights(
    models: Sequence[str], cached: Callable[[catalogue.ImageModel], bool | None] | None = None
) -> list[Check]:
    if not models:
        return []
    if cached is None:
        from ..engines.hfcache import hub_cache_dir

        cache_dir = hub_cache_dir()
        cached = lambda model: _cached(model, cache_dir)  # noqa: E731
    ready: list[str] = []
    missing: list[str] = []
    for name in models:
        (ready if cached(catalogue.MODELS[name]) else missing).append(name)
    checks = []
    if ready:
        checks.append(Check("ok", f"weights downloaded for {', '.join(ready)}"))
    for name in missing:
        model = catalogue.MODELS[name]
        command = " ".join([model.command, *model.extra_args])
        checks.append(
            Check(
                "warn",
                f"weights for {name} are not downloaded: its first image will fetch them "
                f"(~{model.weights_bf16_gb:g} GB) and take minutes",
                f"fetch them now: `{command} --prompt test --steps 1 --output /tmp/herd-warmup.png`",
            )
        )
    return checks


def check_ollama(url: str, get: Callable[[str], httpx.Response] | None = None) -> Check:
    get = get or (lambda u: httpx.get(u, timeout=PROBE_TIMEOUT_S, trust_env=False))
    try:
        response = get(url.rstrip("/") + "/api/version")
        version = response.json().get("version") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        version = None
    if version:
        return Check("ok", f"Ollama {version} answers at {url}")
    return Check(
        "warn",
        f"Ollama does not answer at {url}: this machine serves no LLM chat or embeddings",
        "start it (`ollama serve`, or open the Ollama app) or point at it with --ollama-url / OLLAMA_HOST; "
        "LLM requests go to other peers meanwhile",
    )


def check_whisper(configured: str | None, choose: Callable[[str | None], Any] | None = None) -> Check:
    if choose is None:
        from ..engines.whisper import choose_engine

        choose = choose_engine
    logging.getLogger("herd_mesh.engines.whisper").setLevel(logging.WARNING)
    engine = choose(configured)
    if engine is None:
        return Check(
            "warn",
            "no Whisper engine: this machine transcribes no speech",
            f"{install_hint('stt')}; other peers serve it meanwhile",
        )
    models = ", ".join(engine.models()) or "none"
    if models == "none":
        return Check(
            "warn", f"Whisper engine {engine.name} has no model configured", "set whisper_model in config.toml"
        )
    return Check("ok", f"Whisper engine {engine.name} with {models}")


def multicast_works(host: str, wait_s: float = MULTICAST_WAIT_S) -> bool:
    """Announce a throwaway service on the interface the peer would use; does a browser here see it?"""
    from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    interfaces: InterfaceChoice | list[str] = InterfaceChoice.All if host in ("0.0.0.0", "", "::") else [host]
    address = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    service_name = f"doctor-{uuid.uuid4().hex[:8]}.{DOCTOR_SERVICE_TYPE}"
    seen = threading.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name == service_name and state_change is not ServiceStateChange.Removed:
            seen.set()

    announcer = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    listener = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(listener, DOCTOR_SERVICE_TYPE, handlers=[on_change])
        info = ServiceInfo(
            DOCTOR_SERVICE_TYPE,
            service_name,
            addresses=[socket.inet_aton(address)],
            port=9,
            properties={"doctor": "1"},
        )
        announcer.register_service(info)
        try:
            return seen.wait(wait_s)
        finally:
            browser.cancel()
            announcer.unregister_service(info)
    finally:
        listener.close()
        announcer.close()


def check_multicast(cfg: Config, works: Callable[[str], bool] | None = None) -> Check:
    if not cfg.mdns:
        if cfg.peers:
            return Check("ok", f"mDNS is off: peers come from --peer ({len(cfg.peers)} given)")
        return Check(
            "warn",
            "mDNS is off and no --peer is given: this peer will find no other",
            "name at least one other peer with --peer http://<mac>:11435",
        )
    try:
        ok = (works or multicast_works)(cfg.host)
    except (OSError, RuntimeError) as exc:
        ok, detail = False, f" ({exc})"
    else:
        detail = ""
    where = "all interfaces" if cfg.host in ("0.0.0.0", "", "::") else cfg.host
    if ok:
        return Check("ok", f"multicast works: this machine saw its own mDNS announcement on {where}")
    level: Level = "warn" if cfg.peers else "fail"
    return Check(
        level,
        f"multicast does not work on {where}{detail}: peers cannot find each other over mDNS",
        "allow mDNS (UDP 5353) in the firewall, or name peers with --peer http://<mac>:11435 "
        "(a network that blocks multicast, a VPN)",
    )


def check_port(cfg: Config, ping: Callable[[str], httpx.Response] | None = None) -> tuple[Check, str | None]:
    """Is the port free? If a herd peer holds it, say so and return its URL."""
    try:
        port_free(cfg.host, cfg.port)
        return Check("ok", f"port {cfg.port} on {cfg.host} is free: `herd` can start a peer here"), None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return Check(
                "fail",
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}",
                "check --host (an address of this machine) and --port",
            ), None
    ping = ping or (lambda u: httpx.get(u + PROBE_PATH, timeout=PROBE_TIMEOUT_S, trust_env=False))
    others: list[str] = []
    wildcard = cfg.host in ("0.0.0.0", "", "::")  # then a peer on any one address of this machine blocks it
    elsewhere = listeners(cfg.port) if wildcard else []
    for url in [local_url(cfg), *(f"http://{a}:{cfg.port}" for a in elsewhere)]:
        try:
            doc = identity(ping(url))
        except httpx.HTTPError:
            continue
        if not isinstance(doc, dict) or not doc.get("node_id"):
            continue
        if doc.get("mesh") == cfg.mesh:
            return Check(
                "ok",
                f"port {cfg.port} is in use by this machine's herd peer {doc['node_id']!r} (mesh {cfg.mesh!r}) "
                f"at {url}: it is running",
            ), url
        others.append(f"{doc['node_id']!r} of mesh {doc.get('mesh')!r}")
    if others:
        return Check(
            "warn",
            f"port {cfg.port} is used by herd peer {', '.join(others)}, not of mesh {cfg.mesh!r}",
            "use the same --mesh on every Mac, or another --port for a second mesh",
        ), None
    return Check(
        "fail",
        f"port {cfg.port} on {cfg.host} is taken by another program",
        "stop that program, or start herd on another port with --port / HERD_PORT",
    ), None


def port_free(host: str, port: int) -> None:
    """Bind and listen as the peer does (`serve.bind_socket`), then let go; OSError when it could not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1)


def listeners(port: int) -> list[str]:
    """Addresses of this machine listening on `port` (empty where the OS does not tell, as macOS without root)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    found = []
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            address = conn.laddr.ip
            if address in ("0.0.0.0", "::"):
                address = "127.0.0.1"
            found.append(f"[{address}]" if ":" in address else address)
    return sorted(set(found))


@dataclass(frozen=True)
class Seen:
    node_id: str
    url: str
    status: str


def peers_seen(cfg: Config, local: str | None, browse_s: float = 2.5) -> tuple[Check, list[Seen]]:
    if local is not None:
        try:
            doc = httpx.get(local + "/mesh/peers", timeout=PROBE_TIMEOUT_S * 2, trust_env=False).json()
            seen = [
                Seen(str(p.get("node_id")), str(p.get("url")), str(p.get("status")))
                for p in doc.get("peers", [])
                if not p.get("self")
            ]
            source = "this machine's peer knows"
        except (httpx.HTTPError, ValueError, AttributeError):
            seen, source = [], ""
    else:
        seen = [Seen(f.node_id, f.url, "up") for f in browse(cfg.mesh, browse_s)]
        source = f"mDNS shows (mesh {cfg.mesh!r})"
    if not seen:
        return Check(
            "warn",
            f"no other peer seen on mesh {cfg.mesh!r}",
            "start `herd` on the other Macs with the same --mesh; where multicast is blocked, name one with --peer",
        ), []
    away = [s for s in seen if s.status != "up"]
    names = ", ".join(f"{s.node_id} ({s.status})" for s in seen)
    if away:
        return Check(
            "warn",
            f"{source} {len(seen)} other peer(s): {names}",
            f"{', '.join(s.node_id for s in away)} cannot be reached: is it asleep, or off the network?",
        ), seen
    return Check("ok", f"{source} {len(seen)} other peer(s): {names}"), seen


def clock_offset(url: str, get: Callable[[str], httpx.Response] | None = None) -> float | None:
    """The peer's clock minus ours, in seconds (its ping's `now` when it sends one, else its Date header)."""
    get = get or (lambda u: httpx.get(u + PROBE_PATH, timeout=PROBE_TIMEOUT_S, trust_env=False))
    before = time.time()
    try:
        response = get(url)
    except httpx.HTTPError:
        return None
    after = time.time()
    theirs: float | None = None
    try:
        doc = identity(response) or response.json()
        if isinstance(doc, dict) and isinstance(doc.get("now"), int | float):
            theirs = float(doc["now"])
    except ValueError:
        pass
    if theirs is None:
        date = response.headers.get("Date")
        if not date:
            return None
        theirs = email.utils.parsedate_to_datetime(date).timestamp() + 0.5  # the header drops the fraction
    return theirs - (before + after) / 2


def check_clocks(seen: Sequence[Seen], offset: Callable[[str], float | None] = clock_offset) -> Check | None:
    measured = {s.node_id: offset(s.url) for s in seen if s.status == "up"}
    known = {node: value for node, value in measured.items() if value is not None}
    if not known:
        return None
    off = {node: value for node, value in known.items() if abs(value) > SKEW_WARN_S}
    if off:
        words = ", ".join(f"{node} {value:+.0f} s" for node, value in sorted(off.items()))
        return Check(
            "warn",
            f"clocks differ: {words}",
            "turn on automatic date and time on every Mac (System Settings > General > Date & Time); "
            "settings changes and statistics use timestamps",
        )
    worst = max(abs(v) for v in known.values())
    return Check("ok", f"clocks agree with {len(known)} peer(s) (within {max(worst, 1.0):.0f} s)")


# -- the command ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd doctor",
        description="Check this machine for what a herd-mesh peer needs and explain what to do. Takes the peer's "
        "options, so it checks the peer you would start. Exit code 1 when a check fails (--strict: or warns).",
    )
    serve.add_peer_options(p)
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    return p


def _crashed(what: str, exc: Exception) -> Check:
    """A check that crashes must not hide the others: it becomes a warning naming the error."""
    return Check("warn", f"could not check {what}: {type(exc).__name__}: {exc}")


def run_checks(cfg: Config) -> Iterator[Check]:
    """The checks, in order, each as soon as it is done."""
    yield check_python()
    models: list[str] = []
    try:
        mflux, models = check_mflux()
        yield mflux
        engine = check_image_engine(cfg.mflux_python, models)
        if engine is not None:
            yield engine
        yield from check_weights(models)
        yield from check_local_models(cfg.image_models)
    except Exception as exc:  # noqa: BLE001 - a diagnostic tool reports, it does not stop
        yield _crashed("mflux and its weights", exc)
    yield check_ollama(cfg.ollama_url)
    whisper = cfg.extra.get("whisper_model")
    try:
        yield check_whisper(whisper if isinstance(whisper, str) else None)
    except Exception as exc:  # noqa: BLE001
        yield _crashed("Whisper", exc)
    yield check_mesh_key(cfg)
    yield check_multicast(cfg)
    local: str | None = None
    try:
        port, local = check_port(cfg)
        yield port
    except Exception as exc:  # noqa: BLE001
        yield _crashed("the port", exc)
    seen: list[Seen] = []
    try:
        seen_check, seen = peers_seen(cfg, local)
        yield seen_check
        clocks = check_clocks(seen)
        if clocks is not None:
            yield clocks
    except Exception as exc:  # noqa: BLE001
        yield _crashed("the other peers", exc)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, level=logging.WARNING)
    try:
        cfg = config_mod.resolve(serve.peer_flags(args), os.environ)
    except ConfigError as exc:
        print(Check("fail", f"configuration: {exc}", "fix the flag, environment variable or config.toml").line())
        return 1
    failed = False
    for check in run_checks(cfg):
        print(check.line(), flush=True)
        failed |= check.level == "fail" or (args.strict and check.level == "warn")
    return 1 if failed else 0
