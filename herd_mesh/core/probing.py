"""Which peers a liveness round probes: all of them in a small mesh, a bounded number in a large one.

Probing every peer every round costs each peer O(n) pings a round, O(n^2) across the mesh: at 50 peers 10 % of
a core and 200 KB/s per peer (docs/benchmarks.md). Beyond `MAX_PROBES_PER_ROUND` peers, a round probes first
the peers that matter now (a suspect to confirm or clear, a peer holding our jobs, one whose mDNS announcement
changed) and then the next few of the rest in turn, so every peer is still probed every
`n / MAX_PROBES_PER_ROUND` rounds, and each peer's cost stays constant as the mesh grows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

MAX_PROBES_PER_ROUND = 4  # peers probed per round once the mesh is larger than this
MAX_URGENT_PER_ROUND = 16  # at most this many of the urgent ones in one round (the rest wait their turn)
MIN_ROTATION_PER_ROUND = 2  # however many are urgent, the rotation moves on by at least this many


@dataclass(frozen=True)
class Round:
    targets: tuple[str, ...]
    cursor: int  # where the rotation goes on next round


def probe_round(
    peers: Sequence[tuple[str, str]],
    *,
    due: Collection[str] = (),
    busy: Collection[str] = (),
    cursor: int = 0,
    budget: int = MAX_PROBES_PER_ROUND,
) -> Round:
    """`peers`: (node id, status) of every known peer. `due`: announced a change; `busy`: holding our jobs."""
    ids = sorted(node for node, _ in peers)
    if len(ids) <= budget:
        return Round(tuple(ids), 0)
    status = dict(peers)
    urgent = [n for n in ids if status[n] == "suspect" or n in due or n in busy][:MAX_URGENT_PER_ROUND]
    chosen = set(urgent)
    rest = [n for n in ids if n not in chosen]
    take = min(len(rest), max(budget - len(urgent), MIN_ROTATION_PER_ROUND))
    start = cursor % len(rest) if rest else 0
    turn = [rest[(start + i) % len(rest)] for i in range(take)]
    return Round(tuple(urgent + turn), start + take)
