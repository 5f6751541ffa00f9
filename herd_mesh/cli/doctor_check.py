"""One `herd doctor` finding: `ok|warn|fail: what — what to do`.

Its own module because the command and every group of checks speak it, and neither group should import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["ok", "warn", "fail"]
PROBE_TIMEOUT_S = 1.5  # a ping of a peer or of Ollama


@dataclass(frozen=True)
class Check:
    """What a check found, and (for a gap) what to do about it."""

    level: Level
    what: str
    todo: str = ""

    def line(self) -> str:
        """The line `herd doctor` prints."""
        return f"{self.level}: {self.what}" + (f" — {self.todo}" if self.todo else "")
