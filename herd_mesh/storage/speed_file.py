"""`<data-dir>/speed.json`: this peer's measured speeds, kept across restarts (the book itself: `core.speed`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.speed import SpeedBook
from .files import read_json, write_json
from .writer import Writer

logger = logging.getLogger(__name__)


class SpeedFile:
    def __init__(self, path: Path, writer: Writer) -> None:
        self.path = path
        self._writer = writer

    def load(self, chip: str, gpu_cores: int | None = None) -> SpeedBook:
        """The saved book, or a fresh one for this hardware (measurements from other hardware are dropped)."""
        return SpeedBook.from_dict(read_json(self.path), chip=chip, gpu_cores=gpu_cores)

    def save(self, book: SpeedBook) -> None:
        """Queue a save of a copy of `book` on the writer thread."""
        data = book.to_dict()

        def write() -> None:
            try:
                write_json(self.path, data)
            except OSError as exc:
                logger.warning("cannot save speed measurements to %s: %s", self.path, exc)

        self._writer.submit(write)
