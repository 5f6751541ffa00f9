"""Small JSON files in the data dir, written atomically (a crash never leaves half a file)."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077  # files this peer creates: readable by its user only (prompts, records, keys)


OWN_FILES = ("herd.db", "herd.db-wal", "herd.db-shm", "settings.json", "speed.json", "config.toml", "mesh.key")
OWN_DIRS = ("mflux-jobs",)


def make_private(data_dir: Path) -> None:
    """The data dir 0700 and the files herd-mesh keeps there 0600, including what an older version left
    readable by other users of the Mac. Only herd-mesh's own files are touched: a data dir may be shared."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, mode in [
        (data_dir, 0o700),
        *((data_dir / n, 0o600) for n in OWN_FILES),
        *((data_dir / n, 0o700) for n in OWN_DIRS),
    ]:
        if path.exists() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            logger.info("making %s private (mode %o)", path, mode)
            path.chmod(mode)


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or unreadable (callers fall back to defaults)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
