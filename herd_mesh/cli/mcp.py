"""`herd mcp`: herd-mesh as an MCP server for agents (Claude Desktop, Claude Code, any MCP client), over stdio.

It talks to one peer over HTTP (`--url`, else `HERD_URL`, else this Mac's own peer at http://localhost:11435,
else one found over mDNS) and offers the tools of `mcp_tools`. stdout carries the protocol, so everything else
(logs, errors) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..core.extras import install_hint
from ._common import EXIT_OK, EXIT_USAGE, add_client_options, error

MISSING = f"`herd mcp` needs the MCP SDK: {install_hint('mcp')}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd mcp",
        description="Serve herd-mesh's tools to an agent over MCP on stdin/stdout: generate_image (saves a PNG, "
        "returns path, node, seed and time), list_image_models, mesh_status, transcribe. Add it to Claude Code "
        "with `claude mcp add herd-mesh -- herd mcp`; the README has the Claude Desktop snippet.",
    )
    add_client_options(p)
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                   help="what goes to stderr (default warning)")  # fmt: skip
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="herd mcp: %(levelname)s %(message)s")
    try:
        import anyio

        from ..client import AsyncClient
        from .mcp_tools import build_server
    except ImportError as exc:
        error(f"{MISSING} ({exc})")
        return EXIT_USAGE

    async def serve() -> None:
        async with AsyncClient(args.url, mesh=args.mesh, api_key=args.api_key) as herd:
            await build_server(herd).run_stdio_async()

    anyio.run(serve)
    return EXIT_OK
