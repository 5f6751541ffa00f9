"""The `herd` command (also `herd-node` and `python -m herd_mesh`).

Bare `herd [peer options]` starts a peer, exactly as it always has; `herd COMMAND ...` runs a command for people:
one module per command group (serve, generate, info, doctor, service, menubar, key). Commands that talk to the mesh
use `herd_mesh.client`; only `serve` builds a peer.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

# command -> module (in this package) whose `main(argv) -> int` runs it
COMMANDS = {
    "serve": "serve",
    "generate": "generate",
    "peers": "info",
    "status": "info",
    "models": "models",  # the table (from info), and `models pull|rm`
    "settings": "info",
    "stats": "info",
    "doctor": "doctor",
    "service": "service",
    "menubar": "menubar",
    "mcp": "mcp",
    "key": "key",
}
_SERVE_NAMES = ("EXIT_CONFIG", "EXIT_PORT_IN_USE", "bind_socket", "build_parser", "run")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        command, rest = args[0], args[1:]
        module = importlib.import_module(f".{COMMANDS[command]}", __name__)
        if command == "serve":
            return int(module.main(rest, prog="herd serve"))
        try:
            if COMMANDS[command] == "info":  # one module, several commands: it is told which
                return int(module.main(command, rest))
            return int(module.main(rest))
        except BrokenPipeError:  # `herd stats | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0
    from .serve import main as serve  # bare `herd [peer options]`: the peer, as before

    return serve(args)


def __getattr__(name: str) -> Any:
    """`herd_mesh.cli.run`, `.bind_socket`, `.build_parser`: the peer's, from `serve` (loaded when asked: uvicorn
    is slow to import and `herd generate` does not need it)."""
    if name in _SERVE_NAMES:
        from . import serve

        return getattr(serve, name)
    raise AttributeError(f"module 'herd_mesh.cli' has no attribute {name!r}")
