"""`herd`, `herd serve`, `herd-node`, `python -m herd_mesh`: start one peer (moved here from `herd_mesh/cli.py`)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn

from .. import config as config_mod
from .._version import __version__
from ..config import Config
from ..errors import ConfigError

logger = logging.getLogger("herd_mesh")

EXIT_CONFIG = 2
EXIT_PORT_IN_USE = 3


COMMANDS_EPILOG = """commands (`herd COMMAND --help` for each):
  herd serve [options]          start a peer (the same as `herd [options]`)
  herd generate "prompt" -o out.png   make images on the mesh, with progress
  herd peers | status | models  the mesh at a glance
  herd models pull|rm NAME      download or delete an Ollama model on one Mac
  herd mcp                      the mesh's tools for agents (MCP over stdio)
  herd settings get|set         mesh-wide settings
  herd stats [--hours N]        what the mesh did lately
  herd doctor                   check this machine and explain what to fix
  herd key generate|show|set|remove   the mesh key that closes the mesh to other Macs
  herd service install|uninstall|status   keep a peer running (launchd / systemd)
  herd menubar                  a menu-bar (tray) launcher"""


def build_parser(prog: str = "herd") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Start a herd-mesh peer. Run it on every Mac: peers find each other over mDNS (Bonjour) and send "
            "each request to the best machine. Each option can also come from an environment variable or "
            "<data-dir>/config.toml (flag > environment > config.toml > default)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=COMMANDS_EPILOG,
    )
    add_peer_options(p)
    p.add_argument("--version", action="version", version=f"herd-mesh {__version__}")
    return p


def add_peer_options(p: argparse.ArgumentParser) -> None:
    """The peer's options; `herd doctor` and `herd service install` take the same ones."""
    p.add_argument("--host", help="address to listen on [HERD_HOST; default 0.0.0.0]")
    p.add_argument("--port", type=int, help="port to listen on [HERD_PORT; default 11435]")
    p.add_argument(
        "--node-id", help="this peer's name, stable across restarts [HERD_NODE_ID; default: short hostname]"
    )
    p.add_argument("--data-dir", help="where every file this peer writes lives [HERD_DATA_DIR; default ~/.herd-mesh]")
    p.add_argument(
        "--mesh", help="mesh name: peers only join peers with the same name [HERD_MESH; default 'default']"
    )
    p.add_argument(
        "--advertise",
        action="append",
        metavar="ADDR",
        help="address announced to other peers, repeatable [HERD_ADVERTISE, comma-separated; default: --host "
        "when it is a specific address, else this machine's LAN IPv4 addresses]",
    )
    p.add_argument(
        "--peer",
        dest="peers",
        action="append",
        metavar="URL",
        help="a static peer (http://host:port) for networks that block multicast; repeatable "
        "[HERD_PEERS, comma-separated]",
    )
    p.add_argument("--no-mdns", action="store_true", help="do not use mDNS: static peers only [HERD_MDNS=false]")
    p.add_argument("--ollama-url", help="this machine's Ollama [OLLAMA_HOST; default http://localhost:11434]")
    p.add_argument(
        "--allow-host",
        dest="allow_hosts",
        action="append",
        metavar="NAME",
        help="another name this peer may be reached by (a DNS name of your own); requests for any other name "
        "get 421, which stops DNS rebinding; repeatable [HERD_ALLOW_HOSTS, comma-separated]",
    )
    p.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="a web app origin allowed to call the API from a browser (CORS), e.g. http://localhost:5173; "
        "repeatable [HERD_CORS_ORIGINS, comma-separated; default: none]",
    )
    p.add_argument(
        "--max-memory-gb",
        type=float,
        metavar="GB",
        help="the most memory herd-mesh's engines may use on this Mac (protects a laptop used for work); an "
        "image job that needs more goes elsewhere [HERD_MAX_MEMORY_GB; default: no limit beyond the machine's]",
    )
    p.add_argument(
        "--mesh-key",
        metavar="KEY",
        help="the mesh's shared secret: peers sign every call with it and ignore peers without it; settings "
        "changes need it [HERD_MESH_KEY; default: <data-dir>/mesh.key if `herd key generate` made one, else an "
        "open mesh]",
    )
    p.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        metavar="KEY",
        help="a key clients must send (Authorization: Bearer KEY) to use this peer; repeatable "
        "[HERD_API_KEYS, comma-separated; default: no API keys]",
    )
    p.add_argument("--log-level", choices=config_mod.LOG_LEVELS, help="[HERD_LOG_LEVEL; default info]")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """Say goodbye to the mesh the moment SIGTERM/SIGINT arrives, not after in-flight jobs have drained."""

    def __init__(self, config: uvicorn.Config, *, leave: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self.leave = leave

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.leave()))
        super().handle_exit(sig, frame)


def run(cfg: Config) -> int:
    from ..storage.files import PRIVATE_UMASK, make_private
    from ..web.app import build  # imported late: keeps `herd --help` fast
    from ..web.connections import KEEP_ALIVE_S, MAX_CONNECTIONS, guarded_protocol, raise_open_files_limit

    os.umask(PRIVATE_UMASK)  # every file this peer creates is its user's alone
    try:
        make_private(cfg.data_dir)
    except OSError as exc:
        logger.error("cannot create the data directory %s: %s (choose another with --data-dir)", cfg.data_dir, exc)
        return EXIT_CONFIG
    try:
        sock = bind_socket(cfg.host, cfg.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            logger.error(
                "port %d on %s is already in use (another herd peer?). Choose another with --port or HERD_PORT.",
                cfg.port,
                cfg.host,
            )
            return EXIT_PORT_IN_USE
        logger.error("cannot listen on %s:%d: %s (see --host and --port)", cfg.host, cfg.port, exc)
        return EXIT_PORT_IN_USE
    raise_open_files_limit()
    peer = build(cfg)
    server = _Server(
        uvicorn.Config(
            peer.app,
            log_level=cfg.log_level,
            access_log=cfg.log_level == "debug",
            timeout_graceful_shutdown=60,
            http=guarded_protocol(peer.is_peer_address),
            limit_concurrency=MAX_CONNECTIONS,
            timeout_keep_alive=int(KEEP_ALIVE_S),
        ),
        leave=peer.node.leave,
    )
    server.run(sockets=[sock])
    return 0


def peer_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Parsed peer options -> the `flags` mapping `config.resolve` takes (None: not given)."""
    return {
        "host": args.host,
        "port": args.port,
        "node_id": args.node_id,
        "data_dir": args.data_dir,
        "mesh": args.mesh,
        "advertise": tuple(args.advertise or ()),
        "peers": tuple(args.peers or ()),
        "no_mdns": args.no_mdns,
        "ollama_url": args.ollama_url,
        "log_level": args.log_level,
        "max_memory_gb": args.max_memory_gb,
        "allow_hosts": tuple(args.allow_hosts or ()),
        "cors_origins": tuple(args.cors_origins or ()),
        "mesh_key": args.mesh_key,
        "api_keys": tuple(args.api_keys or ()),
    }


def main(argv: Sequence[str] | None = None, prog: str = "herd") -> int:
    args = build_parser(prog).parse_args(argv)
    flags = peer_flags(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = config_mod.resolve(flags, os.environ)  # warns about unknown config.toml keys
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG
    logging.getLogger().setLevel(getattr(logging, cfg.log_level.upper()))
    if cfg.log_level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe drowns everything else
    return run(cfg)
