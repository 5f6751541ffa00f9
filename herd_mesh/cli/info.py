"""`herd peers`, `herd status`, `herd models`, `herd settings get|set`, `herd stats`: the mesh, for people.

Each asks one peer (this machine's, `--url`, or one found over mDNS) and prints plain columns; `--json` prints the
peer's own answer instead, for scripts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..client import Client, PeerInfo
from ..client._common import DEFAULT_MODEL
from ..errors import HerdError
from ._common import EXIT_OK, EXIT_USAGE, add_client_options, client, error, explain, gb, table

KINDS = ("image", "llm", "embeddings", "transcription")


def _parser(command: str, description: str, *, options: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"herd {command}", description=description)
    if options:  # `settings` puts them on `get` and `set` instead: a subparser's defaults would override them
        add_client_options(p)
        p.add_argument("--json", action="store_true", help="print the peer's JSON answer instead of a table")
    return p


def _dump(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _short(names: Sequence[str], keep: int = 3) -> str:
    if len(names) <= keep:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f" +{len(names) - keep}"


def peer_row(peer: PeerInfo) -> list[str]:
    models = []
    if peer.image_models:  # loaded ones first, then the default model, then the rest
        ordered = sorted(peer.image_models, key=lambda m: (m not in peer.image_loaded, m != DEFAULT_MODEL, m))
        models.append(_short(ordered))
    if peer.llm_models:
        models.append(f"{len(peer.llm_models)} LLM")
    if peer.stt_models:
        models.append("speech-to-text")
    memory = f"{gb(peer.memory_available_gb)}/{gb(peer.memory_total_gb)} GB free"
    name = peer.node_id + (" *" if peer.is_self else "")
    return [name, peer.status, "; ".join(models) or "-", memory, str(peer.jobs_running), str(peer.queue)]


# -- commands ----------------------------------------------------------------------------------------------------
def peers(herd: Client, args: argparse.Namespace) -> int:
    found = herd.peers()
    if args.json:
        _dump([dict(p.raw) for p in found])
        return EXIT_OK
    rows = [peer_row(p) for p in sorted(found, key=lambda p: (not p.is_self, p.node_id))]
    print(table(["NODE", "STATUS", "MODELS", "MEMORY", "RUNNING", "QUEUED"], rows))
    up = sum(1 for p in found if p.status == "up")
    print(f"\n{up} of {len(found)} peers up (* answered: {herd.url})")
    return EXIT_OK


def status(herd: Client, args: argparse.Namespace) -> int:
    doc = herd.health()
    if args.json:
        _dump(doc)
        return EXIT_OK
    counts = doc.get("peers") or {}
    print(
        f"mesh {doc.get('mesh')!r}: {doc.get('status', '?')}; {counts.get('up', 0)} peers up, "
        f"{counts.get('suspect', 0)} suspect, {counts.get('down', 0)} down (answered by {doc.get('self')})"
    )
    settings = doc.get("settings") or {}
    switches = [f"{key.replace('_', ' ')} {'on' if settings.get(key) else 'off'}"
                for key in ("image_generation", "llm", "embeddings", "transcription") if key in settings]  # fmt: skip
    if switches:
        print("serving: " + ", ".join(switches))
    last = doc.get("last_24h") or {}
    activity = []
    for kind in KINDS:
        block = last.get(kind) or {}
        if block.get("total"):
            failed = f" ({block['failed']} failed)" if block.get("failed") else ""
            activity.append(f"{block['total']} {kind}{failed}")
    print("last 24 h: " + (", ".join(activity) or "nothing yet"))
    advice = doc.get("recommendations") or []
    if advice:
        print("advice:")
        for line in advice:
            print(f"  - {line}")
    return EXIT_OK


def models(herd: Client, args: argparse.Namespace) -> int:
    found = herd.models()
    if args.json:
        _dump([{"name": m.name, "kind": m.kind, "nodes": m.nodes, "loaded_on": m.loaded_on,
                "available": m.available} for m in found])  # fmt: skip
        return EXIT_OK
    if not found:
        print("no models on any peer yet: `uv tool install mflux` (images) or `ollama pull <model>` (LLMs) on a Mac")
        return EXIT_OK
    rows = [[m.name, m.kind, ", ".join(m.nodes) or "-", ", ".join(m.loaded_on) or "-",
             "yes" if m.available else "no"] for m in found]  # fmt: skip
    print(table(["MODEL", "KIND", "INSTALLED ON", "LOADED ON", "AVAILABLE"], rows))
    return EXIT_OK


def parse_value(text: str, current: Any) -> Any:
    """A setting typed on the command line, read as the type the setting has now."""
    lowered = text.strip().lower()
    if isinstance(current, bool):
        if lowered in ("true", "on", "yes", "1"):
            return True
        if lowered in ("false", "off", "no", "0"):
            return False
        raise ValueError(f"{text!r} is not true or false (on/off, yes/no work too)")
    if isinstance(current, int):
        try:
            return int(lowered)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    return text


def settings(herd: Client, args: argparse.Namespace) -> int:
    current = herd.settings()
    if args.action == "get":
        if args.key is None:
            if args.json:
                _dump(current)
            else:
                for key, value in current.items():
                    print(f"{key} = {json.dumps(value)}")
            return EXIT_OK
        if args.key not in current:
            error(f"no setting {args.key!r}; the settings are: {', '.join(current)}")
            return EXIT_USAGE
        print(json.dumps(current[args.key]))
        return EXIT_OK
    if args.key not in current:
        error(f"no setting {args.key!r}; the settings are: {', '.join(current)}")
        return EXIT_USAGE
    try:
        value = parse_value(args.value, current[args.key])
    except ValueError as exc:
        error(f"{args.key}: {exc}")
        return EXIT_USAGE
    after = herd.set_settings(**{args.key: value})
    if args.json:
        _dump(after)
    else:
        print(f"{args.key} = {json.dumps(after.get(args.key))} (on every peer of the mesh)")
    return EXIT_OK


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value / 1000:.1f} s"


def _block_row(name: str, block: Mapping[str, Any]) -> list[str]:
    return [name, str(block.get("total", 0)), str(block.get("succeeded", 0)), str(block.get("failed", 0)),
            _ms(block.get("avg_generation_ms")), _ms(block.get("p95_generation_ms"))]  # fmt: skip


def stats(herd: Client, args: argparse.Namespace) -> int:
    doc = herd.stats(hours=args.hours, kind=args.kind)
    if args.json:
        _dump(doc)
        return EXIT_OK
    reports = {args.kind: doc} if args.kind else dict(doc.get("kinds") or {})
    headers = ["", "TOTAL", "OK", "FAILED", "AVG", "P95"]
    print(f"last {args.hours} h across the mesh")
    print(table(["KIND", *headers[1:]], [_block_row(kind, reports[kind]) for kind in reports]))
    for kind, report in reports.items():
        if not report.get("total"):
            continue
        for group in ("by_node", "by_model", "by_tag"):
            blocks = report.get(group) or {}
            if blocks:
                title = f"{kind} {group.replace('_', ' ')}".upper()
                print()
                print(table([title, *headers[1:]], [_block_row(name, b) for name, b in blocks.items()]))
    missing = doc.get("nodes_missing") or []
    if missing:
        names = ", ".join(f"{m.get('node_id')} ({m.get('reason')})" for m in missing)
        print(f"\nnot counted (did not answer): {names}")
    return EXIT_OK


# -- entry ---------------------------------------------------------------------------------------------------------
def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "peers":
        return _parser("peers", "Every peer of the mesh: status, models, free memory, jobs running and queued.")
    if command == "status":
        return _parser("status", "The mesh's health in a few lines, with advice when something needs attention.")
    if command == "models":
        return _parser("models", "The image models and LLMs of the mesh, and where they are installed and loaded.")
    if command == "stats":
        p = _parser("stats", "What the mesh did lately: requests, failures and timings by kind, node, model, tag.")
        p.add_argument("--hours", type=int, default=24, help="how far back (default 24)")
        p.add_argument("--kind", choices=KINDS, help="one kind of work only")
        return p
    p = _parser(
        "settings", "Read or change the mesh-wide settings (a change holds on every peer within 2 s).", options=False
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="get|set")
    get = actions.add_parser("get", help="print all settings, or one")
    get.add_argument("key", nargs="?", help="e.g. image_generation")
    put = actions.add_parser("set", help="change one setting on every peer")
    put.add_argument("key", help="e.g. image_generation")
    put.add_argument("value", help="true/false (on/off) or a number")
    for sub in (get, put):
        add_client_options(sub)
        sub.add_argument("--json", action="store_true", help="print JSON")
    return p


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "peers": peers,
    "status": status,
    "models": models,
    "settings": settings,
    "stats": stats,
}


def main(command: str, argv: Sequence[str]) -> int:
    args = build_parser(command).parse_args(argv)
    try:
        with client(args) as herd:
            return COMMANDS[command](herd, args)
    except HerdError as exc:
        return explain(exc)
