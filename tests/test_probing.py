"""Which peers a liveness round probes (`core/probing.py`): everyone in a small mesh; in a large one a bounded
number, the ones that matter now first, and everyone in turn."""

from __future__ import annotations

import math
from collections import Counter

from herd_mesh.core.probing import (
    MAX_PROBES_PER_ROUND,
    MAX_URGENT_PER_ROUND,
    MIN_ROTATION_PER_ROUND,
    probe_round,
)


def mesh(n: int, suspect: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    return [(f"mac{i:03d}", "suspect" if f"mac{i:03d}" in suspect else "up") for i in range(n)]


def test_a_small_mesh_probes_everyone_every_round() -> None:
    peers = mesh(MAX_PROBES_PER_ROUND)
    assert set(probe_round(peers).targets) == {node for node, _ in peers}


def test_a_large_mesh_probes_a_bounded_number_and_everyone_in_turn() -> None:
    peers = mesh(50)
    seen: Counter[str] = Counter()
    cursor = 0
    for _ in range(math.ceil(50 / MAX_PROBES_PER_ROUND)):  # everyone once
        chosen = probe_round(peers, cursor=cursor)
        assert len(chosen.targets) == MAX_PROBES_PER_ROUND
        seen.update(chosen.targets)
        cursor = chosen.cursor
    assert set(seen) == {node for node, _ in peers}
    assert max(seen.values()) <= 2


def test_suspects_announced_changes_and_peers_with_our_jobs_go_first() -> None:
    peers = mesh(50, suspect=frozenset({"mac040"}))
    chosen = probe_round(peers, due={"mac041"}, busy={"mac042"}, cursor=0)
    assert {"mac040", "mac041", "mac042"} <= set(chosen.targets)
    # they take turns' places, not extra ones (beyond the rotation's minimum step)
    assert len(chosen.targets) == max(MAX_PROBES_PER_ROUND, 3 + MIN_ROTATION_PER_ROUND)
    crowd = probe_round(peers, busy={node for node, _ in peers}, cursor=0)
    assert len(crowd.targets) == MAX_URGENT_PER_ROUND + MIN_ROTATION_PER_ROUND  # bounded when all hold our jobs
