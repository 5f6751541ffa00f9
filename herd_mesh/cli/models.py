"""`herd models`: the mesh's models (the table `info` prints), and the two commands that change one Mac's Ollama:

    herd models pull NAME [--node N]       download a model, with Ollama's progress on stderr
    herd models rm NAME --node N [--yes]   delete it from one Mac, only once the user confirmed

Nothing is pulled or deleted but the model named, on the Mac named (or, for a pull with no `--node`, the one the
mesh picks: most free memory, then disk).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import HerdError
from . import info
from ._common import EXIT_FAILED, EXIT_OK, add_client_options, client, error, explain

USAGE = """
commands that change one Mac's Ollama:
  herd models pull NAME [--node N]       download a model (with no --node, onto the Mac the mesh picks)
  herd models rm NAME --node N [--yes]   delete a model from one Mac (asks first; --yes to skip asking)
"""
GB = 1024**3


def pull_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd models pull",
        description="Download an Ollama model onto one Mac of the mesh: the one --node names, else the one with the "
        "most free memory (then disk). Progress goes to stderr; the Mac it landed on is printed on stdout. Exit "
        "codes: 0 done, 1 the pull failed (Ollama's message is printed), 2 bad arguments, 3 no peer found.",
    )
    p.add_argument("name", help="the model, as Ollama names it, e.g. llama3.2 or qwen3:8b")
    p.add_argument("--node", help="the Mac to pull it onto (its node id, see `herd peers`)")
    add_client_options(p)
    return p


def rm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd models rm",
        description="Delete an Ollama model from one Mac of the mesh. It asks before deleting; without a terminal "
        "to ask on, it deletes nothing unless --yes says the user confirmed. Exit codes: 0 deleted, 1 the mesh "
        "refused (e.g. no such model there), 2 bad arguments or not confirmed, 3 no peer found.",
    )
    p.add_argument("name", help="the model, e.g. llama3.2:3b")
    p.add_argument("--node", required=True, help="the Mac to delete it from (its node id, see `herd peers`)")
    p.add_argument("--yes", action="store_true", help="the user confirmed: delete without asking")
    add_client_options(p)
    return p


class ProgressPrinter:
    """Ollama's progress lines, readably: each new status once, and a download's share every 10 %."""

    def __init__(self) -> None:
        self._last: tuple[str, int] | None = None

    def __call__(self, line: Mapping[str, Any]) -> None:
        status = str(line.get("status") or "")
        total, completed = line.get("total"), line.get("completed") or 0
        if isinstance(total, int) and total > 0 and isinstance(completed, int):
            percent = min(100, completed * 100 // total)
            if self._last != (status, percent // 10):
                self._last = (status, percent // 10)
                print(f"{status}: {percent}% of {total / GB:.1f} GB", file=sys.stderr, flush=True)
        elif self._last is None or self._last[0] != status:
            self._last = (status, -1)
            print(status, file=sys.stderr, flush=True)


def pull(argv: Sequence[str]) -> int:
    args = pull_parser().parse_args(argv)
    try:
        with client(args, timeout=None) as herd:
            done = herd.pull_model(args.name, node=args.node, on_progress=ProgressPrinter())
    except HerdError as exc:
        return explain(exc)
    print(f"{args.name}: {done.get('status') or 'done'} on {done.get('node') or 'the mesh'}")
    return EXIT_OK


def confirmed(name: str, node: str) -> bool:
    """Ask on the terminal; no terminal means no confirmation."""
    if not sys.stdin.isatty():
        return False
    answer = input(f"Delete {name} from {node}? It cannot be undone [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def remove(argv: Sequence[str]) -> int:
    args = rm_parser().parse_args(argv)
    if not (args.yes or confirmed(args.name, args.node)):
        error(f"not deleted: {args.name} stays on {args.node}; models are deleted only once confirmed "
              "(answer y, or pass --yes)")  # fmt: skip
        return EXIT_FAILED
    try:
        with client(args) as herd:
            done = herd.delete_model(args.name, node=args.node, confirm=True)
    except HerdError as exc:
        return explain(exc)
    print(f"{args.name}: deleted from {done.get('node') or args.node}")
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "pull":
        return pull(argv[1:])
    if argv and argv[0] in ("rm", "delete"):
        return remove(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        info.build_parser("models").print_help()
        print(USAGE)
        return EXIT_OK
    return info.main("models", argv)
