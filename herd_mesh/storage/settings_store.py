"""The settings in force on this peer, persisted in `<data-dir>/settings.json` (merge rules: `core.settings`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.settings import CLOCK_STEP_S, SCHEMA, digest, merge
from .files import write_json

logger = logging.getLogger(__name__)


class SettingsStore:
    """Per-key entries `{"value", "ts", "by"}`; a change made here always wins over what this peer has seen."""

    def __init__(self, path: Path, node_id: str) -> None:
        self.path = path
        self.node_id = node_id
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable settings file %s: %s", self.path, exc)
            return
        entries = raw.get("entries") if isinstance(raw, dict) else None
        if isinstance(entries, dict):
            self.entries, _ = merge({}, entries, now=time.time())
        else:
            logger.warning("ignoring settings file %s: no 'entries' object", self.path)

    def _save(self) -> None:
        write_json(self.path, {"entries": self.entries})

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        return entry["value"] if entry is not None else SCHEMA[key].default

    def values(self) -> dict[str, Any]:
        return {key: self.get(key) for key in SCHEMA}

    def update(self, changes: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """Apply validated changes made here; returns the resulting settings.

        A change made here always supersedes what this peer has seen, even an entry stamped by a peer whose
        clock runs ahead: its stamp is moved just past that entry's, so the merge cannot undo it.
        """
        stamp = time.time() if now is None else now
        for key, value in changes.items():
            current = self.entries.get(key)
            ts = max(stamp, float(current["ts"]) + CLOCK_STEP_S) if current is not None else stamp
            self.entries[key] = {"value": value, "ts": ts, "by": self.node_id}
        self._save()
        return self.values()

    def absorb(self, entries: Mapping[str, dict[str, Any]]) -> bool:
        """Merge entries from another peer; True when something here changed."""
        self.entries, changed = merge(self.entries, entries, now=time.time())
        if changed:
            self._save()
        return changed

    def digest(self) -> str:
        """Fingerprint peers compare in every probe answer to see whether they need to exchange settings.

        A hash of every entry: two peers that changed different keys at the same instant still differ.
        """
        return digest(self.entries)
