"""Where a pulled model goes when the request names no peer: the one with the most free memory, then disk.

Free memory decides first because a model that fits in memory beside what runs there is one Ollama can load
without evicting others; free disk breaks ties (peers on one disk, or equal Macs) and rules out a peer that has
less room than the model needs, when its size is known from a peer that has it already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import RequestError
from .units import GIB


@dataclass(frozen=True)
class PullCandidate:
    """A live peer whose Ollama answers, as the pull decision sees it."""

    node_id: str
    is_self: bool
    memory_available_gb: float
    disk_free_gb: float | None  # where its Ollama keeps models; None: that peer did not say
    has_model: bool  # already installed there (pulling again updates it)


def needed_gb(sizes: Sequence[int]) -> float | None:
    """The disk a model needs, from the sizes the peers that have it advertise (bytes); None when unknown."""
    return max(sizes) / GIB if sizes else None


def pull_order(candidates: Sequence[PullCandidate], model: str, needed: float | None) -> list[PullCandidate]:
    """The peers to pull `model` on, best first; RequestError when no peer can take it.

    A peer without the model comes before one that has it (a pull with no peer named adds a copy); then the most
    free memory, the most free disk, this peer (no hop), and the node id, so that the choice is repeatable."""
    if not candidates:
        raise RequestError(
            f"no peer can pull {model!r}: no peer of the mesh has a running Ollama (start it with `ollama serve`)",
            503,
        )
    roomy = [c for c in candidates if needed is None or c.disk_free_gb is None or c.disk_free_gb >= needed]
    if not roomy:
        free = ", ".join(f"{c.node_id}: {c.disk_free_gb:.1f} GB" for c in candidates if c.disk_free_gb is not None)
        raise RequestError(f"no peer has room for {model!r} ({needed:.1f} GB); free disk: {free}", 507)
    return sorted(
        roomy,
        key=lambda c: (c.has_model, -c.memory_available_gb, -(c.disk_free_gb or 0.0), not c.is_self, c.node_id),
    )
