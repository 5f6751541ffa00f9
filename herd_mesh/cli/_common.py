"""What the commands for people share: finding the mesh, exit codes, errors in plain words, plain tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..client import Client, NoPeerFound, RequestFailed
from ..errors import HerdError, PeerUnreachable

EXIT_OK = 0
EXIT_FAILED = 1  # the mesh refused or failed the request; its message is printed
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_NO_PEER = 3  # no peer answered


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help="a peer to talk to, e.g. http://studio.local:11435 [HERD_URL; default: this machine's peer, else one "
        "found over mDNS]",
    )
    p.add_argument("--mesh", help="the mesh to look for over mDNS [HERD_MESH; default 'default']")
    p.add_argument(
        "--api-key",
        help="a key for peers that need one [HERD_API_KEY; on a member Mac its own peer gets the data dir's mesh "
        "key]",
    )


def client(args: argparse.Namespace, *, timeout: float | None = 30.0) -> Client:
    return Client(args.url, mesh=args.mesh, timeout=timeout, api_key=getattr(args, "api_key", None))


def error(message: str) -> None:
    print(f"herd: {message}", file=sys.stderr)


def explain(exc: HerdError) -> int:
    """Print what went wrong for a person; return the exit code for it."""
    if isinstance(exc, NoPeerFound):
        error(str(exc))
        return EXIT_NO_PEER
    if isinstance(exc, RequestFailed):
        error(exc.message)
        named = exc.message
        for attempt in exc.attempts:
            if attempt.node not in named:
                error(f"  {attempt.node}: {attempt.reason}")
        if exc.retry_after:
            error(f"  the mesh asks to retry in {exc.retry_after} s")
        return EXIT_FAILED
    if isinstance(exc, PeerUnreachable):
        error(str(exc))
        return EXIT_FAILED
    error(str(exc))
    return EXIT_FAILED


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: readable, and easy to grep or cut."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]  # fmt: skip
    return "\n".join(lines)


def gb(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"
