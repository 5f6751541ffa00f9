"""Free disk where this Mac's Ollama keeps its models: what a pull with no peer named is placed by."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..core.units import GIB

logger = logging.getLogger(__name__)


def ollama_models_dir() -> Path:
    """Ollama's own rule: `OLLAMA_MODELS`, else `~/.ollama/models`."""
    configured = os.environ.get("OLLAMA_MODELS")
    return Path(configured).expanduser() if configured else Path.home() / ".ollama" / "models"


def free_gb(path: Path) -> float | None:
    """Free space (GB) on the disk that holds `path`, or its nearest existing parent (Ollama creates the folder
    on its first pull); None when it cannot be read."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return round(shutil.disk_usage(candidate).free / GIB, 1)
            except OSError as exc:
                logger.debug("cannot read free disk at %s: %s", candidate, exc)
                return None
    return None
