"""The mesh's history belongs to the mesh: every record is copied to every peer, so statistics survive any Mac
being off; retention and store_prompts hold on every copy; only verified peers exchange records."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd_mesh.core import stats
from herd_mesh.mesh.records_sync import accept, batches
from herd_mesh.storage.records import Records, RequestRecord
from herd_mesh.storage.writer import Writer
from tests.harness import Mesh, Peer, wait_until

NOW = 1_000_000.0
DAY = 86400.0
SMALL = {"model": "z-image-turbo", "prompt": "a lighthouse at dawn", "width": 256, "height": 256, "steps": 2}


def row(ts: float, job: str, *, entry: str = "alpha", status: str = "ok", **extra: Any) -> dict[str, Any]:
    values = {"ts": ts, "kind": "image", "model": "z-image-turbo", "status": status, "node": "bravo",
              "entry_node": entry, "job_id": job, "generation_ms": 1000, "queue_ms": 0, "tags": []}  # fmt: skip
    return values | extra


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    r = Records(tmp_path / "herd.db", Writer())
    yield r
    r.close()


# -- storage: copies stored once, changes read by cursor ---------------------------------------------------------
def test_a_copy_arriving_twice_is_stored_once_and_changes_skip_what_came_from_the_asker(records: Records) -> None:
    records.add(RequestRecord(kind="image", model="m", status="ok", entry_node="alpha", job_id="own", ts=NOW))
    records.flush()
    copies = [row(NOW + 1, "c1", entry="bravo"), row(NOW + 2, "c2", entry="bravo")]
    assert records.merge(copies, source="bravo") == 2
    assert records.merge(copies, source="charlie") == 0  # the same requests, from another peer
    everything, upto = records.changes(after=0, limit=100)
    assert [r["job_id"] for r in everything] == ["own", "c1", "c2"] and upto == records.seq
    for_bravo, _ = records.changes(after=0, limit=100, skip_source="bravo")
    assert [r["job_id"] for r in for_bravo] == ["own"]  # never sent back where it came from
    page, cursor = records.changes(after=0, limit=2)
    rest, end = records.changes(after=cursor, limit=2)
    assert [r["job_id"] for r in page + rest] == ["own", "c1", "c2"] and end == records.seq
    own, _ = records.changes(after=0, limit=100, own_only=True)
    assert [r["job_id"] for r in own] == ["own"]


def test_an_older_records_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "herd.db"
    old = sqlite3.connect(path)
    old.executescript("""CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,
        kind TEXT NOT NULL, model TEXT NOT NULL, width INTEGER, height INTEGER, steps INTEGER, node TEXT,
        entry_node TEXT, queue_ms INTEGER, generation_ms INTEGER, status TEXT NOT NULL, error TEXT,
        tags TEXT NOT NULL DEFAULT '[]', prompt TEXT, job_id TEXT);
        INSERT INTO requests (ts, kind, model, status, entry_node, job_id) VALUES (5, 'image', 'm', 'ok', 'a', 'j');
        INSERT INTO requests (ts, kind, model, status, entry_node, job_id) VALUES (5, 'image', 'm', 'ok', 'a', 'j');
        """)
    old.commit()
    old.close()
    upgraded = Records(path, Writer())
    try:
        assert [(r["job_id"], r["reason"], r["attempts"]) for r in upgraded.rows(since=0)] == [("j", None, [])]
        assert upgraded.seq == 1 and upgraded.db_id
    finally:
        upgraded.close()


# -- the rules every copy follows, pure ------------------------------------------------------------------------------
def test_copies_outside_retention_without_identity_or_malformed_are_refused_and_prompts_stay_home() -> None:
    sent = [row(NOW - 1, "fresh", prompt="a fox"), row(NOW - 31 * DAY, "too-old"), row(NOW - 1, ""),
            row(NOW - 1, "x", entry=None), {"ts": "soon"}, "garbage", row(NOW + 2 * DAY, "future")]  # fmt: skip
    kept = accept(sent, now=NOW, retention_days=30)
    assert [(r["job_id"], r["prompt"]) for r in kept] == [("fresh", None)]  # a peer sending a prompt loses it


def test_pushes_are_cut_under_the_body_limit() -> None:
    rows = [row(NOW, f"j{i}", prompt="p" * 1000) for i in range(50)]
    cut = batches(rows, max_bytes=10_000)
    assert sum(len(b) for b in cut) == 50 and all(len(json.dumps(b)) <= 10_000 for b in cut)


def test_copies_of_one_request_count_once_and_rejected_requests_are_counted_apart() -> None:
    request = row(NOW - 10, "j1", tags=["blog"])
    typo = row(NOW - 5, "j2", status="rejected", model="sdxl", node=None, error="unknown image model 'sdxl'")
    report = stats.report({"bravo": [request, typo], "charlie": [request, {**request, "prompt": "a fox"}]}, {},
                          kind="image", now=NOW, window_s=DAY)  # fmt: skip
    assert (report["total"], report["failed"], report["by_tag"]["blog"]["total"]) == (1, 0, 1)
    assert set(report["by_node"]) == {"bravo"} and set(report["by_model"]) == {"z-image-turbo"}
    assert report["rejected"] == {"total": 1, "by_model": {"sdxl": 1}, "by_reason": {"unknown image model 'sdxl'": 1}}
    assert report["recent"][1]["prompt"] == "a fox"  # the copy that had it


# -- real peers ------------------------------------------------------------------------------------------------------
def local_total(peer: Peer, tag: str | None = None) -> int:
    """What this peer's own file holds (no other peer asked), for one tag or in all."""
    doc = peer.get("/dashboard/api/image-stats?scope=local", timeout=5).json()
    return int(doc["by_tag"].get(tag, {}).get("total", 0)) if tag else int(doc["total"])


def test_six_tagged_images_are_still_counted_after_their_entry_peer_is_killed(mesh: Mesh) -> None:
    """The issue's done-when: three peers, six tagged images entered at one, that one SIGKILLed at once."""
    alpha, bravo, charlie = mesh.add("alpha"), mesh.add("bravo"), mesh.add("charlie")
    mesh.wait_all_see_each_other()
    for i in range(6):
        tagged = {"headers": {"X-Herd-Tags": "campaign"}} if i % 2 else {}
        body = SMALL if i % 2 else {**SMALL, "metadata": {"tags": ["campaign"]}}
        response = alpha.post("/api/generate-image", json=body, **tagged)
        assert response.status_code == 200, response.text
    typo = alpha.post("/api/generate-image", json={**SMALL, "model": "sdxl"})
    bad = alpha.post("/api/generate-image", json={**SMALL, "width": 13})
    assert (typo.status_code, bad.status_code) == (404, 400)
    alpha.kill()  # at once: no goodbye, no time to copy anything after the answers

    for survivor in (bravo, charlie):
        doc = survivor.get("/dashboard/api/image-stats").json()
        assert doc["by_tag"]["campaign"]["total"] == 6 and doc["total"] == 6 and doc["failed"] == 0, doc
        assert doc["rejected"]["total"] == 2 and doc["rejected"]["by_model"] == {"sdxl": 1, "z-image-turbo": 1}
        assert "unknown" not in doc["by_node"] and "sdxl" not in doc["by_model"]
    wait_until(lambda: bravo.statuses().get("alpha") == "down", 5, what="alpha down on bravo")
    down = bravo.get("/dashboard/api/image-stats").json()
    assert down["by_tag"]["campaign"]["total"] == 6 and [m["node_id"] for m in down["nodes_missing"]] == ["alpha"]


def test_a_peer_that_was_off_catches_up_and_prompts_never_leave_their_mac(mesh: Mesh) -> None:
    alpha, bravo = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    assert alpha.post("/api/generate-image", json=SMALL).status_code == 200
    bravo.kill()
    assert alpha.post("/dashboard/api/settings", json={"store_prompts": True}).status_code == 200
    for _ in range(2):
        assert alpha.post("/api/generate-image", json={**SMALL, "prompt": "a secret fox"}).status_code == 200
    bravo.start()
    wait_until(lambda: local_total(bravo) == 3, 10, what="bravo to pull the two records it missed")
    mesh.wait_all_see_each_other()
    assert alpha.post("/api/generate-image", json={**SMALL, "prompt": "a secret owl"}).status_code == 200
    copies = bravo.get("/dashboard/api/image-stats?scope=local").json()  # copied before alpha answered
    assert copies["total"] == 4 and "secret" not in json.dumps(copies)  # store_prompts on: still only on alpha
    own = alpha.get("/dashboard/api/image-stats?scope=local").json()["recent"]
    assert [r.get("prompt") for r in own] == ["a secret owl", "a secret fox", "a secret fox", None]
    whole = bravo.get("/dashboard/api/image-stats").json()  # asks alpha too: its rows come without prompts
    assert whole["total"] == 4 and "secret" not in json.dumps(whole)


def test_only_verified_peers_may_push_or_read_records(mesh: Mesh) -> None:
    alpha, bravo = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    forged = [row(time.time(), "forged", entry="bravo")]
    claims = {"X-Herd-Node": "bravo", "X-Herd-Mesh": mesh.name}
    for call in (
        lambda: httpx.post(alpha.url + "/mesh/records", json={"rows": forged}, headers=claims, timeout=5),
        lambda: httpx.get(alpha.url + "/mesh/records/changes?after=0", headers=claims, timeout=5),
    ):
        response = call()  # from the test's own address, not bravo's: a claim, not a peer
        assert response.status_code == 403 and "known peers" in response.json()["error"], response.text
    stored = alpha.call_from(bravo, "POST", "/mesh/records", json={"rows": forged}, headers=claims)
    assert stored.status_code == 200 and stored.json()["stored"] == 1
    for body in ({"rows": "all"}, [1, 2], {"rows": [{}] * 5001}):
        refused = alpha.call_from(bravo, "POST", "/mesh/records", json=body, headers=claims)
        assert refused.status_code == 400 and "error" in refused.json(), refused.text
    assert alpha.call_from(bravo, "GET", "/mesh/records/changes?after=-1", headers=claims).status_code == 400
