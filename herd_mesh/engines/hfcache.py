"""Is a model's weights already in the Hugging Face cache (ready now) or would mflux download tens of GB?"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The same lookup huggingface_hub does: HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME, then ~/.cache."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def weights_cached(repo: str, cache_dir: Path) -> bool:
    """A snapshot folder with files in it means a completed download of at least one revision."""
    snapshots = cache_dir / f"models--{repo.replace('/', '--')}" / "snapshots"
    try:
        return any(snapshot.is_dir() and any(snapshot.iterdir()) for snapshot in snapshots.iterdir())
    except OSError:
        return False
