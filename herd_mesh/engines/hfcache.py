"""Are a model's weights on disk as mflux wants them, or would its first image download tens of GB?

mflux's own rule (0.24.0, `PathResolution._find_complete_cached_snapshot`): a pinned repo counts only at
`snapshots/<pinned commit>/`; there, every component folder (text_encoder, transformer, vae, ...) must hold at
least one safetensors file, and every shard its `*.safetensors.index.json` names must be present. Anything else,
an older revision or a partial download included, means a download.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..core.catalogue import ANIMA_FILES, PINS, ImageModel

FIBO_VLM_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The same lookup huggingface_hub does: HF_HUB_CACHE (or HUGGINGFACE_HUB_CACHE), then HF_HOME/hub, then
    XDG_CACHE_HOME, then ~/.cache."""
    env = os.environ if env is None else env
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def installed_pins() -> dict[str, str] | None:
    """mflux's own pins when mflux is importable in this process (a peer with the resident engine), else None."""
    try:
        from mflux.models.common.resolution.model_revisions import ModelRevisions
    except Exception:  # noqa: BLE001 - not installed, or an mflux that moved it: use the table
        return None
    pinned = getattr(ModelRevisions, "PINNED", None)
    return {str(k): str(v) for k, v in pinned.items()} if isinstance(pinned, dict) else None


def weights_cached(model: ImageModel, cache_dir: Path, pins: Mapping[str, str] = PINS) -> bool | None:
    """True when every repo the model loads is complete at its pinned revision, False when one is not, and None
    when there is no cache folder at all (the answer is unknown: do not guess that a download is due)."""
    if not cache_dir.is_dir():
        return None
    return all(_repo_complete(model, repo, cache_dir, pins.get(repo)) for repo in model.repos)


def _repo_complete(model: ImageModel, repo: str, cache_dir: Path, pin: str | None) -> bool:
    snapshots = cache_dir / f"models--{repo.replace('/', '--')}" / "snapshots"
    if pin is not None:
        candidates = [snapshots / pin]
    else:
        try:
            candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: -p.stat().st_mtime)
        except OSError:
            return False
    return any(_snapshot_complete(model, repo, snapshot) for snapshot in candidates)


def _snapshot_complete(model: ImageModel, repo: str, snapshot: Path) -> bool:
    if not snapshot.is_dir():
        return False
    if repo == "circlestone-labs/Anima":
        return all((snapshot / name).exists() for name in ANIMA_FILES)
    if repo == "briaai/FIBO-vlm":
        return all((snapshot / name).exists() for name in FIBO_VLM_FILES) and _weights_folder_complete(snapshot)
    return all(_weights_folder_complete(snapshot / subdir) for subdir in model.subdirs)


def _weights_folder_complete(folder: Path) -> bool:
    """At least one safetensors file (a symlink counts only if its blob exists), and every indexed shard."""
    try:
        files = [p for p in folder.iterdir() if p.name.endswith(".safetensors") and p.exists()]
    except OSError:
        return False
    if not files:
        return False
    for index in folder.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index.read_text()).get("weight_map") or {}
        except (OSError, ValueError, AttributeError):
            return False
        if not all((folder / str(shard)).exists() for shard in set(weight_map.values())):
            return False
    return True
