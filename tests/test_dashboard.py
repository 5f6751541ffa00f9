"""Mesh-wide statistics and health: the pure merge and advice, then real peers answering for the whole mesh."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from herd_mesh.core import health, stats
from herd_mesh.errors import RequestError
from herd_mesh.storage.records import Records, RequestRecord, shared_rows
from herd_mesh.storage.writer import Writer
from herd_mesh.web.common import int_param as _int_param
from tests.harness import Mesh, wait_until

NOW = 1_000_000.0
DAY = 86400.0
SMALL = {"model": "z-image-turbo", "prompt": "a red fox", "width": 256, "height": 256, "steps": 2}


def row(ts: float, *, entry: str, job: str, node: str | None = "alpha", status: str = "ok", **extra: Any) -> dict:
    values = {"ts": ts, "kind": "image", "model": "z-image-turbo", "status": status, "node": node,
              "entry_node": entry, "job_id": job, "generation_ms": 1000, "queue_ms": 0, "tags": []}  # fmt: skip
    return values | extra


# -- query parameters ----------------------------------------------------------------------------------------------
def _query(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/dashboard/api/stats", "query_string": query.encode()})


@pytest.mark.parametrize("raw", ["%C2%B2", "%EF%BC%91", "%D9%A3", "-1", "1.5", "", "0", "8761", "24h"])
def test_int_params_take_only_ascii_digits_in_range(raw: str) -> None:
    """`"²".isdigit()` is true and `int("²")` raises; full-width "１" would be read as 1."""
    with pytest.raises(RequestError, match="hours must be an integer from 1 to 8760") as info:
        _int_param(_query(f"hours={raw}"), "hours", 24, 1, 8760)
    assert info.value.status == 400
    assert _int_param(_query("hours=0012"), "hours", 24, 1, 8760) == 12
    assert _int_param(_query("limit=3"), "hours", 24, 1, 8760) == 24


# -- stats: pure ---------------------------------------------------------------------------------------------------
def test_union_keeps_each_request_once_and_drops_rows_that_are_not_rows() -> None:
    a = [row(NOW - 10, entry="alpha", job="j1"), row(NOW - 5, entry="alpha", job="j2")]
    b = [row(NOW - 7, entry="bravo", job="j3"), a[0], "garbage", {"ts": "yesterday"}, row(NOW, entry="b", job="x",
         status="exploded"), row(NOW, entry="b", job="y", kind="video"), row(True, entry="b", job="z")]  # fmt: skip
    merged = stats.union({"alpha": a, "bravo": b})
    assert [r["job_id"] for r in merged] == ["j1", "j3", "j2"]  # oldest first, j1 once


def test_union_repairs_odd_fields_instead_of_failing() -> None:
    odd = row(NOW, entry="alpha", job="j1", tags="not-a-list", width="512", generation_ms=True, node=7)
    (clean,) = stats.union({"alpha": [odd]})
    assert clean["tags"] == [] and clean["width"] is None and clean["generation_ms"] is None and clean["node"] is None


def test_report_covers_every_peer_and_names_the_missing_ones() -> None:
    answers = {
        "alpha": [row(NOW - 60, entry="alpha", job="a1", generation_ms=1000, tags=["blog"])],
        "bravo": [
            row(NOW - 30, entry="bravo", job="b1", node="charlie", generation_ms=3000),
            row(NOW - 20, entry="bravo", job="b2", node=None, status="failed", generation_ms=None, error="boom"),
            row(NOW - 2 * DAY, entry="bravo", job="old"),  # outside the window
            row(NOW - 10, entry="bravo", job="l1", kind="llm", model="llama3"),
        ],
    }
    report = stats.report(answers, {"delta": "unreachable: ConnectTimeout"}, kind="image", now=NOW, window_s=DAY)
    assert report["total"] == 3 and report["failed"] == 1 and report["succeeded"] == 2
    assert report["nodes_answered"] == ["alpha", "bravo"]
    assert report["nodes_missing"] == [{"node_id": "delta", "reason": "unreachable: ConnectTimeout"}]
    assert set(report["by_node"]) == {"alpha", "charlie", "unknown"} and report["by_tag"]["blog"]["total"] == 1
    assert (report["p50_generation_ms"], report["p95_generation_ms"]) == (1000, 3000)
    assert [e["job_id"] for e in report["recent"]] == ["b2", "b1", "a1"]
    assert sum(b["ok"] + b["failed"] for b in report["timeline"]) == 3
    assert len(report["timeline"]) == 25 and report["timeline"][1]["start"] % 3600 == 0  # on the hour, 24 h + now
    everything = stats.report(answers, {}, kind=None, now=NOW, window_s=DAY)
    assert everything["total"] == 4 and everything["by_model"]["llama3"]["total"] == 1


def test_prompts_are_shown_only_when_they_were_stored() -> None:
    answers = {"alpha": [row(NOW - 1, entry="alpha", job="p", prompt="a fox"), row(NOW - 2, entry="alpha", job="q")]}
    recent = stats.report(answers, {}, kind="image", now=NOW, window_s=DAY)["recent"]
    assert recent[0]["prompt"] == "a fox" and "prompt" not in recent[1]


def test_timeline_puts_rows_in_their_bucket() -> None:
    first, last = row(NOW - DAY + 1, entry="a", job="1"), row(NOW - 1, entry="a", job="2", status="failed")
    rows = stats.union({"a": [first, last]})
    buckets = stats.timeline(rows, now=NOW, window_s=DAY)
    assert (buckets[0]["ok"], buckets[-1]["failed"]) == (1, 1) and buckets[0]["p50_ms"] == 1000


WINDOWS = [(1, 300, 13), (24, 3600, 25), (168, 21600, 29), (720, 86400, 31)]  # hours, bucket width, bars


@pytest.mark.parametrize(("hours", "width", "bars"), WINDOWS)
def test_every_window_gets_round_buckets_on_the_viewers_clock(hours: int, width: int, bars: int) -> None:
    """The axis of "requests over time" goes 8 PM, 9 PM, ... (or local midnights), never 07:49 PM then 01:49 AM."""
    cest = 7200.0
    buckets = stats.timeline([], now=NOW, window_s=hours * 3600.0, tz_offset_s=cest)
    starts = [b["start"] for b in buckets]
    assert len(buckets) == bars and all(b - a == width for a, b in zip(starts, starts[1:], strict=False))
    assert all((s + cest) % width == 0 for s in starts) and starts[0] <= NOW - hours * 3600 < starts[1]


def test_shared_rows_sends_the_newest_and_says_when_it_cut(tmp_path: Path) -> None:
    records = Records(tmp_path / "herd.db", Writer())
    try:
        for i in range(5):
            records.add(RequestRecord(kind="image", model="m", status="ok", ts=NOW + i, prompt=None, job_id=str(i)))
        cut = shared_rows(records, since=0, limit=3)
        assert cut["truncated"] and [r["job_id"] for r in cut["rows"]] == ["2", "3", "4"]
        assert "id" not in cut["rows"][0]
        assert shared_rows(records, since=NOW + 3, limit=3) == {"rows": cut["rows"][1:], "truncated": False}
    finally:
        records.close()


# -- health: pure --------------------------------------------------------------------------------------------------
def caps(*, models: dict | None = None, pressure: str = "normal", cpu: float = 10.0, version: str = "0.1.0",
         **sections: Any) -> dict:  # fmt: skip
    system = {"chip": "Apple M3 Ultra", "memory_total_gb": 192.0, "memory_available_gb": 100.0,
              "memory_pressure": pressure, "cpu_percent": cpu}  # fmt: skip
    return {"version": version, "system": system, "image": {"models": models or {}, "queue": {}},
            "security": {"mesh_key": True}, **sections}  # fmt: skip


MFLUX = {"z-image-turbo": {"installed": True, "cached": True, "loaded": False}}


def test_health_advice_a_person_can_act_on() -> None:
    peers = [
        health.PeerSnapshot("alpha", "http://a", "up", True, caps(pressure="critical")),
        health.PeerSnapshot(
            "bravo", "http://b", "down", capabilities=caps(), unreachable_since=NOW - 300, last_error="ConnectTimeout"
        ),
        health.PeerSnapshot(
            "charlie", "http://c", "up", capabilities=caps(version="0.2.0", cpu=97.0), settings_differ_since=NOW - 30
        ),
        health.PeerSnapshot(None, "http://10.0.0.9:11435", "down", last_error="connection refused"),
    ]
    verdict = health.assess(peers, settings={"image_generation": False, "llm": True}, now=NOW)
    assert verdict["status"] == "degraded" and verdict["peers"] == {"up": 2, "suspect": 0, "down": 2}
    advice = "\n".join(verdict["recommendations"])
    assert "no peer has mflux" in advice and "`uv tool install mflux`" in advice
    assert "peer alpha is under memory pressure (critical)" in advice
    assert "peer bravo unreachable for 5 min (ConnectTimeout)" in advice
    assert "static peer http://10.0.0.9:11435 has never answered" in advice
    assert "peer charlie CPU is at 97%" in advice  # and it runs no job of ours: something else is busy
    assert "peer charlie's settings have differed from alpha's for 30 s" in advice
    assert "0.1.0 on alpha; 0.2.0 on charlie" in advice
    assert "image generation is switched off for the whole mesh" in advice and "LLM" not in advice
    bravo = verdict["nodes"][1]
    assert bravo["unreachable_for_s"] == 300 and bravo["last_error"] == "ConnectTimeout"


def test_healthy_mesh_has_nothing_to_say_but_notices_missing_weights() -> None:
    busy_with_our_job = caps(models=MFLUX, cpu=99.0)
    busy_with_our_job["image"]["queue"] = {"running": [{"job_id": "1", "kind": "image", "model": "z-image-turbo"}]}
    good = [health.PeerSnapshot("alpha", "http://a", "up", True, busy_with_our_job)]
    verdict = health.assess(good, settings={}, now=NOW)
    assert verdict["status"] == "healthy" and verdict["recommendations"] == []
    assert verdict["nodes"][0]["image_models"] == ["z-image-turbo"]
    no_weights = {"z-image-turbo": {"installed": True, "cached": False, "loaded": False}}
    bare = [health.PeerSnapshot("alpha", "http://a", "up", True, caps(models=no_weights))]
    assert "no model weights downloaded" in health.assess(bare, settings={}, now=NOW)["recommendations"][0]


def test_llm_advice_only_where_peers_offer_llms() -> None:
    without = [health.PeerSnapshot("a", "http://a", "up", True, caps(models=MFLUX, llm={"models": []}))]
    assert "`ollama serve`" in health.assess(without, settings={}, now=NOW)["recommendations"][0]
    assert health.assess(without, settings={"llm": False}, now=NOW)["recommendations"][-1].startswith("LLM chat")
    with_model = [health.PeerSnapshot("a", "http://a", "up", True, caps(models=MFLUX, llm={"models": ["llama3"]}))]
    assert health.assess(with_model, settings={}, now=NOW)["recommendations"] == []


def test_jobs_of_every_kind_get_their_badge() -> None:
    running = {"job_id": "1", "kind": "image", "model": "z-image-turbo"}
    state = caps(models=MFLUX, llm={"active": [{"kind": "llm", "model": "llama3"}, {"kind": "embed", "model": "n"}]},
                 stt={"active": [{"kind": "stt", "model": "whisper"}]})  # fmt: skip
    state["image"]["queue"] = {"running": [running], "waiting": [{**running, "job_id": "2"}]}
    jobs = health.jobs(state)
    assert [(j["kind"], j["state"]) for j in jobs] == [("image", "running"), ("image", "waiting"), ("llm", "running"),
                                                       ("embed", "running"), ("stt", "running")]  # fmt: skip
    assert health.queue_counts(state) == {"image": 2, "llm": 1, "embed": 1, "stt": 1}


def test_every_check_says_what_to_do() -> None:
    cached = {"installed": True, "cached": True, "weights": "cached"}
    studio = caps(models={"z-image-turbo": cached})
    studio["image"]["speed"] = {"ms_per_mp_step": {"z-image-turbo": 900.0},
                                "prior_ms_per_mp_step": {"z-image-turbo": 300.0}}  # fmt: skip
    mini = caps(models={"z-image-turbo": {"installed": True, "cached": False, "weights": "missing"},
                        "flux-dev": {"installed": True, "weights": "downloading", "download": [2, 5]},
                        "qwen-image": {"installed": True, "weights": "missing"}})  # fmt: skip
    mini["system"]["memory_total_gb"] = 16.0
    del mini["security"]  # an older peer says nothing about a key: an open mesh
    mini |= {"storage": {"data_dir": {"free_gb": 1.5, "total_gb": 500.0}},
             "llm": {"ollama": {"reachable": False}, "models": []}, "stt": {"models": []}}  # fmt: skip
    peers = [health.PeerSnapshot("studio", "http://s", "up", True, studio),
             health.PeerSnapshot("mini", "http://m", "up", capabilities=mini, clock_skew_s=-7.5)]  # fmt: skip
    failures = {"studio": {"failed": 4, "total": 5, "last_error": "mflux exited with code 1"},
                "mini": {"failed": 1, "total": 9, "last_error": "x"}}  # fmt: skip
    verdict = health.assess(peers, settings={}, now=NOW, failures=failures,
                            mdns=health.Mdns(enabled=True, heard=frozenset(), running_for_s=60))  # fmt: skip
    failing = {c["id"] for c in verdict["checks"] if not c["ok"]}
    assert failing == {"weights", "memory_fit", "speed", "clocks", "multicast", "mesh_key", "disk", "ollama",
                       "whisper", "failures"}  # fmt: skip
    advice = "\n".join(verdict["recommendations"])
    assert "peer mini is downloading the weights of flux-dev (2 of 5 files)" in advice
    assert "peer mini has no weights for z-image-turbo, which other peers use" in advice  # not qwen: nobody uses it
    assert "peer mini is too small for z-image-turbo (about 19 GB) at q8" in advice and '"quantize": 4' in advice
    assert "peer studio runs z-image-turbo 3.0x slower than a Mac with its chip should" in advice
    assert "peer mini's clock is 7.5 s behind studio's" in advice and "Set time and date automatically" in advice
    assert "multicast (mDNS) does not seem to work" in advice and "--peer" in advice
    assert "the mesh is open (no mesh key on mini)" in advice and "`herd key generate`" in advice
    assert "peer mini's data dir is on a nearly full disk (1.5 GB free of 500 GB)" in advice
    assert "no peer has an LLM" in advice and "`ollama serve`" in advice
    assert "no peer can transcribe" in advice and "'.[stt]'" in advice
    assert "peer studio failed 4 of its last 5 jobs in the last hour (last: mflux exited with code 1)" in advice
    assert "peer mini failed" not in advice  # 1 of 9 is no pattern
    assert all(": " in line for line in verdict["recommendations"])  # what is wrong: what to do
    assert verdict["nodes"][1]["clock_skew_s"] == -7.5 and verdict["nodes"][1]["mesh_key"] is False


def test_a_healthy_mesh_passes_every_check() -> None:
    good = caps(models={"z-image-turbo": {"installed": True, "cached": True, "weights": "cached"}},
                llm={"ollama": {"reachable": True}, "models": ["llama3.2"]}, stt={"models": ["tiny.en"]},
                storage={"data_dir": {"free_gb": 200.0, "total_gb": 500.0}})  # fmt: skip
    peers = [health.PeerSnapshot("a", "http://a", "up", True, good),
             health.PeerSnapshot("b", "http://b", "up", capabilities=good, clock_skew_s=0.3)]  # fmt: skip
    verdict = health.assess(peers, settings={}, now=NOW, failures={"a": {"failed": 1, "total": 40}},
                            mdns=health.Mdns(enabled=True, heard=frozenset({"b"}), running_for_s=600))  # fmt: skip
    assert verdict["recommendations"] == [] and len(verdict["checks"]) >= 17
    assert all(c["ok"] and c["title"] for c in verdict["checks"])


def test_failures_are_counted_per_peer_from_their_own_jobs_and_their_attempts() -> None:
    rows = stats.union({"a": [
        row(NOW - 30, entry="a", job="1", node="bravo", status="failed", error="mflux exited with code 1"),
        row(NOW - 20, entry="a", job="2", node="charlie", attempts=[{"node": "bravo", "reason": "unreachable: x"}]),
        row(NOW - 10, entry="a", job="3", node="bravo"),
        row(NOW - 5, entry="a", job="4", node=None, status="rejected", error="unknown image model 'sdxl'"),
    ]})  # fmt: skip
    seen = stats.failures_by_peer(rows)
    assert seen["bravo"] == {"failed": 2, "total": 3, "last_error": "unreachable: x"}
    assert seen["charlie"] == {"failed": 0, "total": 1, "last_error": None}
    listed = stats.failures(rows)
    assert [f["job_id"] for f in listed] == ["1"] and listed[0]["error"] == "mflux exited with code 1"
    assert stats.failure_reason("image generation failed on every peer tried (a: boom; b: bang)") == (
        "image generation failed on every peer tried"
    )
    assert stats.failure_reason("mflux exited with code 137") == "mflux exited with code N"


def test_routing_is_explained_from_the_routers_own_words() -> None:
    ran = row(NOW, entry="alpha", job="j", node="bravo",
              reason="queue 0.0s + run 4.1s + load 2.0s; charlie 9.3s; delta switched off; echo no flux-dev",
              attempts=[{"node": "foxtrot", "reason": "unreachable: ConnectError", "status": "502"}])  # fmt: skip
    route = stats.explain_route(stats.clean_row(ran) or {})
    assert route["options"][0] == {"node": "bravo", "chosen": True, "estimate": "queue 0.0s + run 4.1s + load 2.0s"}
    assert {"node": "charlie", "chosen": False, "estimate": "9.3s"} in route["options"]
    lines = route["explanation"]
    assert lines[0] == "entered the mesh at alpha" and "tried foxtrot: unreachable: ConnectError" in lines
    assert "the next best: charlie (9.3s)" in lines
    assert "could not run it: delta (switched off), echo (no flux-dev)" in lines and lines[-1] == "it ran on bravo"
    refused = stats.explain_route(stats.clean_row(row(NOW, entry="a", job="r", node=None, status="rejected",
                                                      error="unknown image model 'sdxl'")) or {})  # fmt: skip
    assert "refused before routing: unknown image model 'sdxl'" in refused["explanation"]


def test_trends_count_throughput_per_bucket_by_node_and_model() -> None:
    rows = stats.union({"a": [row(NOW - 7200 + 10 * i, entry="a", job=f"x{i}", node=f"n{i % 10}") for i in range(20)]
                        + [row(NOW - 60, entry="a", job="f", status="failed")]})  # fmt: skip
    trend = stats.trends(rows, now=NOW, window_s=DAY)
    assert trend["bucket_s"] == 3600 and len(trend["starts"]) == 25
    assert len(trend["by_node"]) == 9 and "other" in trend["by_node"]  # the 8 busiest, the rest summed
    assert sum(sum(v) for v in trend["by_node"].values()) == 20 and sum(trend["by_model"]["z-image-turbo"]) == 20


# -- real peers ----------------------------------------------------------------------------------------------------
def wait_for_capabilities(mesh: Mesh) -> None:
    """Listed up is not enough to route: each peer must also have fetched the others' state documents."""

    def known() -> bool:
        for peer in mesh.peers.values():
            others = [p for p in peer.get("/mesh/peers").json()["peers"] if not p["self"]]
            if not all(p["capabilities"].get("image") for p in others):
                return False
        return True

    wait_until(known, 5, what="every peer to know the others' capabilities")


def test_any_peer_answers_for_the_whole_mesh_names_the_missing_and_survives_restarts(mesh: Mesh) -> None:
    alpha = mesh.add("alpha")
    bravo = mesh.add("bravo")
    charlie = mesh.add("charlie", mflux=False)
    mesh.wait_all_see_each_other()
    wait_for_capabilities(mesh)
    for entry, tag in ((alpha, "a"), (bravo, "b"), (charlie, "c"), (charlie, "c")):
        response = entry.post("/api/generate-image", json={**SMALL, "metadata": {"tags": [tag]}})
        assert response.status_code == 200, response.text
    started = time.monotonic()
    whole = charlie.get("/dashboard/api/image-stats").json()
    elapsed_ms = (time.monotonic() - started) * 1000
    assert whole["total"] == 4 and whole["nodes_answered"] == ["alpha", "bravo", "charlie"], whole
    assert whole["nodes_missing"] == [] and whole["by_tag"]["c"]["total"] == 2
    assert set(whole["by_node"]) <= {"alpha", "bravo"} and whole["timeline"][-1]["ok"] == 4
    assert elapsed_ms < 1000, f"mesh-wide stats took {elapsed_ms:.0f} ms"
    local = charlie.get("/dashboard/api/image-stats?scope=local").json()  # charlie's own file: copies of all
    assert local["total"] == 4 and local["nodes_answered"] == ["charlie"]
    every = alpha.get("/dashboard/api/stats").json()
    assert every["kinds"]["image"]["total"] == 4 and every["kinds"]["llm"]["total"] == 0
    assert alpha.get("/dashboard/api/stats?kind=image&hours=1").json()["total"] == 4

    for path, word in (("/dashboard/api/stats?kind=video", "kind"), ("/dashboard/api/image-stats?hours=0", "hours"),
                       ("/dashboard/api/image-stats?scope=all", "scope"), ("/mesh/records?since=soon", "since"),
                       ("/mesh/records?limit=-1", "limit"), ("/dashboard/static/dashboard.html", "dashboard file"),
                       ("/dashboard/api/settings?detail=maybe", "detail")):  # fmt: skip
        response = alpha.get(path)
        assert response.status_code in (400, 404) and word in response.json()["error"], (path, response.text)

    bravo.kill()
    wait_until(lambda: alpha.statuses().get("bravo") == "down", 5, what="bravo down on alpha")
    partial = alpha.get("/dashboard/api/image-stats").json()
    assert partial["total"] == 4 and partial["nodes_answered"] == ["alpha", "charlie"]  # bravo's from the copies
    assert [m["node_id"] for m in partial["nodes_missing"]] == ["bravo"] and partial["nodes_missing"][0]["reason"]
    verdict = alpha.get("/dashboard/api/health").json()
    assert verdict["peers"] == {"up": 2, "suspect": 0, "down": 1} and verdict["status"] == "degraded"
    assert any(r.startswith("peer bravo unreachable for") for r in verdict["recommendations"]), verdict
    assert verdict["last_24h"]["image"]["total"] == 4 and verdict["stats_nodes_missing"][0]["node_id"] == "bravo"
    charlie_node = next(n for n in verdict["nodes"] if n["node_id"] == "charlie")
    assert charlie_node["image_models"] == [] and charlie_node["cpu_percent"] is not None

    bravo.start()
    alpha.terminate()
    alpha.start()
    mesh.wait_all_see_each_other()
    after = charlie.get("/dashboard/api/image-stats").json()
    assert after["total"] == 4 and after["nodes_missing"] == []  # SQLite on every peer: nothing lost


def test_the_page_is_served_with_its_files_and_the_peer_list(mesh: Mesh) -> None:
    alpha, _bravo = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    page = alpha.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"bravo"' in page.text and "/*BOOTSTRAP*/" not in page.text
    for name, media in (("dashboard.js", "javascript"), ("dashboard.css", "css")):
        response = alpha.get(f"/dashboard/static/{name}")
        assert response.status_code == 200 and media in response.headers["content-type"]
    assert alpha.get("/dashboard/static/nope.js").status_code == 404


def test_records_older_than_the_retention_setting_are_pruned(mesh: Mesh) -> None:
    alpha = mesh.add("alpha", start=False)
    records = Records(alpha.data_dir / "herd.db", Writer())
    now = time.time()
    for age_days in (40, 2, 0):
        records.add(RequestRecord(kind="image", model="z-image-turbo", status="ok", ts=now - age_days * DAY - 60))
    records.close()
    alpha.start()
    year = "/dashboard/api/image-stats?hours=8760"
    wait_until(lambda: alpha.get(year).json()["total"] == 2, 3, what="the 40-day-old row pruned at start")
    assert alpha.post("/dashboard/api/settings", json={"stats_retention_days": 1}).status_code == 200
    wait_until(lambda: alpha.get(year).json()["total"] == 1, 3, what="the 2-day-old row pruned after the change")
