"""Request records in SQLite, and the statistics the dashboard shows over them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd_mesh.core.stats import summarize
from herd_mesh.storage.records import Records, RequestRecord
from herd_mesh.storage.writer import Writer


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    r = Records(tmp_path / "data" / "records.sqlite", Writer())
    yield r
    r.close()


def image(ts: float, *, status: str = "ok", generation_ms: int | None = 1000, **fields: Any) -> RequestRecord:
    values: dict[str, Any] = {"model": "z-image-turbo", "node": "studio", "queue_ms": 10, "width": 512} | fields
    return RequestRecord(kind="image", status=status, generation_ms=generation_ms, ts=ts, **values)


def nearest_rank(values: list[int], pct: float) -> int:
    """The textbook nearest-rank percentile: the smallest value with at least pct% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


COLUMNS = (
    "ts",
    "kind",
    "model",
    "node",
    "entry_node",
    "width",
    "height",
    "steps",
    "queue_ms",
    "generation_ms",
    "status",
    "error",
    "tags",
    "job_id",
)


def stats(generation_ms: list[int]) -> dict[str, Any]:
    """summarize() over successful rows with these generation times (rows as Records.rows returns them)."""
    rows = [
        dict.fromkeys(COLUMNS) | {"ts": float(i), "status": "ok", "generation_ms": g, "tags": []}
        for i, g in enumerate(generation_ms)
    ]
    return summarize(rows)


def test_add_and_rows_since(records: Records) -> None:
    records.add(image(100.0, tags=("a", "b"), job_id="j1", width=768, height=512, steps=4))
    records.add(image(200.0, model="flux-dev"))
    records.add(RequestRecord(kind="llm", model="llama3", status="ok", ts=300.0))
    rows = records.rows(since=150.0)
    assert [r["ts"] for r in rows] == [200.0, 300.0]
    first = records.rows(since=0.0)[0]
    assert (first["model"], first["width"], first["height"], first["steps"]) == ("z-image-turbo", 768, 512, 4)
    assert first["tags"] == ["a", "b"]
    assert first["job_id"] == "j1"
    assert [r["model"] for r in records.rows(since=0.0, kind="image")] == ["z-image-turbo", "flux-dev"]


def test_rows_come_back_in_time_order(records: Records) -> None:
    for ts in (30.0, 10.0, 20.0):
        records.add(image(ts))
    assert [r["ts"] for r in records.rows(since=0.0)] == [10.0, 20.0, 30.0]


def test_summarize_counts_and_averages(records: Records) -> None:
    records.add(image(1.0, generation_ms=1000, queue_ms=100))
    records.add(image(2.0, generation_ms=3000, queue_ms=300))
    records.add(image(3.0, status="failed", generation_ms=None, error="mflux exited with code 1"))
    records.add(image(4.0, status="cancelled", generation_ms=None))
    s = summarize(records.rows(since=0.0))
    assert (s["total"], s["succeeded"], s["failed"], s["cancelled"]) == (4, 2, 1, 1)
    assert s["avg_generation_ms"] == 2000  # failed and cancelled requests have no timing
    assert s["avg_queue_ms"] == 200


def test_percentile_definition_is_sane() -> None:
    """p50 of four values is the second (or an interpolation); p95 of 1..100 is 95."""
    assert stats([100, 200, 300, 400])["p50_generation_ms"] in range(200, 251)
    assert stats(list(range(1, 101)))["p95_generation_ms"] == 95
    assert stats(list(range(1, 101)))["p50_generation_ms"] == 50


@pytest.mark.parametrize(
    "values",
    [[7], [5, 1], [100, 200, 300, 400], list(range(1, 21)), list(range(100, 0, -1)), [900, 40, 40, 7000, 1200, 3]],
)
def test_percentiles_are_nearest_rank(values: list[int]) -> None:
    s = stats(values)
    assert s["p50_generation_ms"] == nearest_rank(values, 50)
    assert s["p95_generation_ms"] == nearest_rank(values, 95)


def test_percentiles_of_nothing_are_none() -> None:
    s = summarize([])
    assert s["total"] == 0
    assert s["p50_generation_ms"] is None
    assert s["p95_generation_ms"] is None
    assert s["avg_generation_ms"] is None


def test_breakdowns_by_node_model_and_tag(records: Records) -> None:
    records.add(image(1.0, node="studio", model="flux-dev", tags=("x",), generation_ms=4000))
    records.add(image(2.0, node="mini", model="flux-dev", tags=("x", "y"), generation_ms=2000))
    records.add(image(3.0, node="mini", model="fibo", status="failed", generation_ms=None))
    records.add(image(4.0, node=None, model="fibo"))
    s = summarize(records.rows(since=0.0))
    assert set(s["by_node"]) == {"studio", "mini", "unknown"}
    assert (s["by_node"]["mini"]["total"], s["by_node"]["mini"]["failed"]) == (2, 1)
    assert s["by_model"]["flux-dev"]["total"] == 2
    assert s["by_model"]["flux-dev"]["avg_generation_ms"] == 3000
    assert s["by_model"]["fibo"]["failed"] == 1
    assert s["by_tag"]["x"]["total"] == 2
    assert s["by_tag"]["y"]["total"] == 1
    assert s["by_tag"]["y"]["p50_generation_ms"] == 2000


def test_recent_is_newest_first_and_limited(records: Records) -> None:
    for i in range(30):
        records.add(image(float(i), job_id=f"j{i}"))
    s = summarize(records.rows(since=0.0), recent=5)
    assert [e["job_id"] for e in s["recent"]] == ["j29", "j28", "j27", "j26", "j25"]
    assert "prompt" not in s["recent"][0]  # prompts stay out of the event list


def test_prune_removes_old_rows(records: Records) -> None:
    for ts in (10.0, 20.0, 30.0):
        records.add(image(ts))
    assert records.prune(older_than=25.0) == 2
    assert [r["ts"] for r in records.rows(since=0.0)] == [30.0]
    assert records.prune(older_than=25.0) == 0


def test_rows_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    first = Records(path, Writer())
    first.add(image(1.0, job_id="before-restart", prompt="a red fox"))
    first.close()
    again = Records(path, Writer())
    try:
        rows = again.rows(since=0.0)
        assert [(r["job_id"], r["prompt"]) for r in rows] == [("before-restart", "a red fox")]
        again.add(image(2.0))
        assert len(again.rows(since=0.0)) == 2
    finally:
        again.close()
