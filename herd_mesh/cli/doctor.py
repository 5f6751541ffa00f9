"""`herd doctor`: check this machine for what a peer needs, and say in plain words what to do about each gap.

Every check gives one line, `ok|warn|fail: what — what to do`. Exit code 1 when a check fails (with `--strict`,
also when one warns), else 0. Warnings are things this Mac can live without (no mflux on a Mac that only routes,
no Whisper); failures stop a peer from working (its port taken by another program, multicast broken with no
`--peer` to fall back on).

This module is the command (options, order, printing, exit code); the checks live in `doctor_engines` (what this
machine runs) and `doctor_network` (how its peer meets the others).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from .. import config as config_mod
from ..config import Config
from ..errors import ConfigError
from . import serve
from .doctor_check import PROBE_TIMEOUT_S, Check, Level
from .doctor_engines import (
    apple_silicon,
    check_image_engine,
    check_local_models,
    check_mflux,
    check_ollama,
    check_python,
    check_weights,
    check_whisper,
)
from .doctor_network import (
    DOCTOR_SERVICE_TYPE,
    MULTICAST_WAIT_S,
    SKEW_WARN_S,
    Seen,
    check_clocks,
    check_mesh_key,
    check_multicast,
    check_port,
    clock_offset,
    listeners,
    local_url,
    multicast_works,
    peers_seen,
    port_free,
)

__all__ = [  # the checks stay reachable as `doctor.check_*`, where the tests and older callers look
    "DOCTOR_SERVICE_TYPE",
    "MULTICAST_WAIT_S",
    "PROBE_TIMEOUT_S",
    "SKEW_WARN_S",
    "Check",
    "Level",
    "Seen",
    "apple_silicon",
    "build_parser",
    "check_clocks",
    "check_image_engine",
    "check_local_models",
    "check_mesh_key",
    "check_mflux",
    "check_multicast",
    "check_ollama",
    "check_port",
    "check_python",
    "check_weights",
    "check_whisper",
    "clock_offset",
    "listeners",
    "local_url",
    "main",
    "multicast_works",
    "peers_seen",
    "port_free",
    "run_checks",
]


# -- the command ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The peer's own options, so that doctor checks the peer `herd` would start."""
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
    """Print each check as it finishes; exit 1 when one failed (with --strict, or warned)."""
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
