"""What an engine's failure says to a client: its last meaningful line, never a traceback or a home path."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

MAX_CHARS = 300
_HOMES = re.compile(r"(/Users|/home)/[^/\s'\"]+")  # someone's home directory, in a path


def _noise(line: str) -> bool:
    """Traceback scaffolding and progress bars: nothing a person can act on."""
    return (
        line.startswith(("Traceback (most recent call last)", 'File "', "During handling of", "The above exception"))
        or set(line) <= set("^~ ")
        or "%|" in line
    )


def tidy(lines: Iterable[str], *, keep: int = 3) -> str:
    """The last `keep` meaningful lines, joined by " | ", with home directories shown as `~`."""
    home = str(Path.home())
    meaningful = [line.strip() for line in lines if line.strip() and not _noise(line.strip())]
    text = " | ".join(meaningful[-keep:]) or "(no output)"
    if home not in ("", "/"):
        text = text.replace(home, "~")
    return _HOMES.sub("~", text)[:MAX_CHARS]


def tidy_text(text: str, *, keep: int = 3) -> str:
    return tidy(text.splitlines(), keep=keep)
