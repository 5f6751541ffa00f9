"""Settings made on any peer hold on every peer within 2 s, survive restarts, and reach peers that were away."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from herd_mesh.storage.settings_store import SettingsStore
from tests.harness import Mesh, Peer, wait_until

PROPAGATION_S = 2.0  # the promise


def settings_of(peer: Peer) -> dict:
    return peer.get("/dashboard/api/settings", timeout=2).json()


def everywhere(peers: list[Peer], **expected: object) -> bool:
    return all(settings_of(p).items() >= expected.items() for p in peers)


def test_same_entries_give_the_same_digest_on_every_peer(tmp_path: Path) -> None:
    a = SettingsStore(tmp_path / "a.json", "alpha")
    b = SettingsStore(tmp_path / "b.json", "bravo")
    assert a.digest() == b.digest()
    a.update({"llm": False}, now=10.0)
    b.update({"embeddings": False}, now=10.0)
    assert a.digest() != b.digest()  # same count and same time, different keys: still different
    a.absorb(b.entries)
    b.absorb(a.entries)
    assert a.digest() == b.digest() and a.values() == b.values()


def test_a_local_change_wins_over_an_entry_from_a_clock_that_runs_ahead(tmp_path: Path) -> None:
    here = SettingsStore(tmp_path / "here.json", "alpha")
    ahead = {"llm": {"value": False, "ts": 5000.0, "by": "bravo"}}  # bravo's clock is an hour ahead
    here.absorb(ahead)
    here.update({"llm": True}, now=1400.0)
    assert here.entries["llm"]["ts"] > 5000.0
    bravo = SettingsStore(tmp_path / "bravo.json", "bravo")
    bravo.absorb(ahead)
    assert bravo.absorb(here.entries) and bravo.get("llm") is True  # the later change wins on both peers


def test_a_change_on_one_peer_holds_on_all_within_2_s_and_after_restarts(mesh: Mesh) -> None:
    alpha, bravo, charlie = (mesh.add(n) for n in ("alpha", "bravo", "charlie"))
    peers = [alpha, bravo, charlie]
    mesh.wait_all_see_each_other()

    started = time.monotonic()
    answer = bravo.post("/dashboard/api/settings", json={"image_generation": False, "image_keep_alive_s": 60})
    assert answer.status_code == 200 and answer.json()["image_generation"] is False
    assert set(answer.headers["X-Herd-Applied-On"].split(",")) == {"alpha", "bravo", "charlie"}
    wait_until(lambda: everywhere(peers, image_generation=False, image_keep_alive_s=60), PROPAGATION_S,
               what="the change on every peer")  # fmt: skip
    elapsed = time.monotonic() - started
    refused = charlie.post("/api/generate-image", json={"model": "z-image-turbo", "prompt": "x", "width": 64})
    assert refused.status_code == 503, refused.text
    print(f"settings propagation: {elapsed * 1000:.0f} ms")

    # two peers change different keys at once: both changes win everywhere
    alpha.post("/dashboard/api/settings", json={"llm": False})
    charlie.post("/dashboard/api/settings", json={"embeddings": False})
    wait_until(lambda: everywhere(peers, llm=False, embeddings=False), PROPAGATION_S, what="both changes")

    # charlie is away while the mesh changes; it catches up when it comes back
    charlie.terminate()
    alpha.post("/dashboard/api/settings", json={"store_prompts": True})
    charlie.start()
    wait_until(lambda: everywhere([charlie], store_prompts=True), PROPAGATION_S + 1, what="charlie catching up")

    # a brand-new peer takes the mesh's settings, not its defaults
    delta = mesh.add("delta")
    wait_until(lambda: everywhere([delta], image_generation=False, llm=False, store_prompts=True), PROPAGATION_S + 1,
               what="the new peer catching up")  # fmt: skip

    # every peer restarted: the settings still hold
    for peer in [*peers, delta]:
        peer.terminate()
    for peer in [*peers, delta]:
        peer.start(wait=False)
    for peer in [*peers, delta]:
        peer.wait_ready()
    assert all(settings_of(p)["image_generation"] is False and settings_of(p)["store_prompts"] for p in peers)
    detail = alpha.get("/dashboard/api/settings?detail=1").json()
    assert detail["changed"]["image_generation"]["by"] == "bravo"
    keep_alive = detail["schema"]["image_keep_alive_s"]
    assert (keep_alive["type"], keep_alive["minimum"], keep_alive["maximum"]) == ("integer", 0, 86400)


def test_bad_settings_and_foreign_pushes_are_refused(mesh: Mesh) -> None:
    alpha = mesh.add("alpha")
    for body, words in (({"image_generation": "off"}, "true or false"), ({"turbo": True}, "known settings"),
                        ({"stats_retention_days": 0}, "from 1 to 3650"), ({}, "no settings")):  # fmt: skip
        response = alpha.post("/dashboard/api/settings", json=body)
        assert response.status_code == 400 and words in response.json()["error"], response.text
    entries = {"entries": {"llm": {"value": False, "ts": time.time() + 60, "by": "mallory"}}}
    stranger = alpha.post("/mesh/settings", json=entries, headers={"X-Herd-Mesh": "another-mesh"})
    assert stranger.status_code == 403 and "mesh" in stranger.json()["error"]
    malformed = alpha.post("/mesh/settings", json={"entries": [1]}, headers={"X-Herd-Mesh": mesh.name})
    assert malformed.status_code == 400 and "entries" in malformed.json()["error"]
    assert settings_of(alpha)["llm"] is True
    # a peer of this mesh with a newer entry wins, an invalid value is skipped
    entries["entries"]["embeddings"] = {"value": "no", "ts": time.time() + 60, "by": "x"}
    merged = httpx.post(alpha.url + "/mesh/settings", json=entries, headers={"X-Herd-Mesh": mesh.name}).json()
    assert merged["entries"]["llm"]["value"] is False and "embeddings" not in merged["entries"]
