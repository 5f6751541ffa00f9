"""The thief (`dispatch/stealing.py`): an idle peer asks a peer with queued work for a job, and does not keep
asking one that gave nothing while that peer's queue looks the same (a queue whose jobs fit nowhere else would
otherwise be asked four times a second for as long as it lasts)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from herd_mesh.core.peer_table import PeerTable
from herd_mesh.dispatch import stealing
from herd_mesh.dispatch.stealing import Thief
from tests.test_scheduling import peer


@dataclass
class Victim:
    """A peer's client as the thief sees it: counts the asks and answers with `give` (or nothing)."""

    give: list[str] = field(default_factory=list)
    asks: int = 0

    async def post_json(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert path == "/mesh/steal-image" and "image" in body
        self.asks += 1
        return {"job_id": self.give.pop(0) if self.give else None}


class Mesh:
    """The thief's collaborators: one idle peer (itself) and one victim whose queue the test sets."""

    def __init__(self) -> None:
        self.queue = frozenset({"run", "wait1", "wait2"})
        self.victim = Victim()
        self.enabled = True  # ImageService

    def state(self) -> dict[str, Any]:
        return {"queue": {"slots": 1, "running": [], "waiting": []}}

    # MeshView
    def snapshot(self, now: float) -> Any:
        views = [peer("me", 1000.0, is_self=True), peer("v", 1000.0, backlog_s=40.0, job_ids=self.queue)]
        return type("Snapshot", (), {"image_views": views})()

    # PeerClients
    def for_node(self, node_id: str) -> Victim | None:
        return self.victim if node_id == "v" else None


def thief(mesh: Mesh) -> Thief:
    return Thief(
        service=mesh,  # type: ignore[arg-type]
        view=mesh,  # type: ignore[arg-type]
        table=PeerTable("me"),
        clients=mesh,  # type: ignore[arg-type]
        rng=random.Random(0),
        leaving=lambda: False,
    )


def test_a_victim_that_gave_nothing_is_asked_again_only_when_its_queue_changes() -> None:
    async def scenario() -> None:
        mesh = Mesh()
        queue = mesh.queue
        t = thief(mesh)
        assert await t.try_once() is False
        for _ in range(5):  # the same queue: not asked again
            assert await t.try_once() is False
        assert mesh.victim.asks == 1
        mesh.queue = queue | {"wait3"}  # a new job arrived: worth asking again
        mesh.victim.give = ["wait3"]
        assert await t.try_once() is True
        assert mesh.victim.asks == 2

    asyncio.run(scenario())


def test_a_refusal_is_forgotten_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        mesh = Mesh()
        t = thief(mesh)
        assert await t.try_once() is False
        monkeypatch.setattr(stealing, "REFUSED_QUIET_S", 0.0)  # as if REFUSED_QUIET_S had passed
        mesh.victim.give = ["wait1"]
        assert await t.try_once() is True
        assert mesh.victim.asks == 2

    asyncio.run(scenario())
