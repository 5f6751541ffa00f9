"""Put the mflux stand-in on PATH under mflux's console-script names.

Each name is a tiny ``/bin/sh`` wrapper that execs the stand-in with *this* interpreter
(``sys.executable``), so tests do not depend on whatever ``python3`` is on PATH, and that
passes the impersonated name in ``HERD_STANDIN_COMMAND`` (argv[0] of a Python script is
the script path, so ``exec -a`` would not reach it).
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

STANDIN_DIR = Path(__file__).resolve().parent
MFLUX_STANDIN = STANDIN_DIR / "mflux_standin.py"
OLLAMA_STANDIN = STANDIN_DIR / "ollama_standin.py"

MFLUX_COMMANDS: tuple[str, ...] = (
    "mflux-generate",
    "mflux-generate-z-image-turbo",
    "mflux-generate-z-image",
    "mflux-generate-qwen",
    "mflux-generate-fibo",
    "mflux-generate-flux2",
    "mflux-generate-anima",
)


def install_mflux_standin(bin_dir: Path) -> Path:
    """Create the mflux command names (:data:`MFLUX_COMMANDS`) in ``bin_dir`` (created if missing); return it.

    Prepend the result to ``PATH`` (e.g. ``monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")``).
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    MFLUX_STANDIN.chmod(MFLUX_STANDIN.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    python = shlex.quote(sys.executable)
    script = shlex.quote(str(MFLUX_STANDIN))
    for name in MFLUX_COMMANDS:
        wrapper = bin_dir / name
        wrapper.write_text(
            "#!/bin/sh\n"
            f"HERD_STANDIN_COMMAND={shlex.quote(name)}\n"
            "export HERD_STANDIN_COMMAND\n"
            f'exec {python} {script} "$@"\n'
        )
        wrapper.chmod(0o755)
    return bin_dir


def path_with(bin_dir: Path, env: dict[str, str] | None = None) -> str:
    """Return a PATH value with ``bin_dir`` first, for subprocess ``env=`` dicts."""
    base = (env if env is not None else os.environ).get("PATH", "")
    return f"{bin_dir}{os.pathsep}{base}" if base else str(bin_dir)
