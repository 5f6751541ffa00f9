"""The randomness the core takes as a parameter: `random.Random` fits, and so does any seeded stand-in."""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Rng(Protocol):
    def shuffle(self, x: MutableSequence[Any]) -> None: ...

    def choice(self, seq: Sequence[T]) -> T: ...

    def randint(self, a: int, b: int) -> int: ...
