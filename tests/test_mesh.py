"""Real peer processes finding each other over real multicast mDNS, and noticing when one goes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from herd_mesh.core import txt
from tests.fakepeer import FakePeer
from tests.harness import Mesh, next_address, wait_until

IMAGE = {"model": "z-image-turbo", "prompt": "a test", "width": 64, "height": 64, "steps": 1}


def up_ids(peer) -> set[str]:
    return {k for k, v in peer.statuses().items() if v == "up"}


def test_three_peers_list_each_other(mesh: Mesh) -> None:
    a, b, c = (mesh.add(n) for n in ("alpha", "bravo", "charlie"))
    mesh.wait_all_see_each_other(timeout=10)
    doc = a.get("/mesh/peers").json()
    assert doc["self"] == "alpha" and doc["mesh"] == mesh.name
    by_id = {p["node_id"]: p for p in doc["peers"]}
    assert set(by_id) == {"alpha", "bravo", "charlie"}
    assert by_id["bravo"]["url"] == b.url
    assert by_id["charlie"]["capabilities"]["node_id"] == "charlie"
    assert by_id["bravo"]["last_seen"] is not None
    state = c.get("/mesh/state").json()
    assert state["node_id"] == "charlie" and state["mesh"] == mesh.name
    assert state["system"]["cores"] >= 1 and state["system"]["memory_total_gb"] > 0
    assert "z-image-turbo" in state["image"]["models"]


def test_sigterm_leaves_every_list(mesh: Mesh) -> None:
    a, b, c = (mesh.add(n) for n in ("alpha", "bravo", "charlie"))
    mesh.wait_all_see_each_other()
    assert c.terminate() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert "Application shutdown complete" in c.log_tail()
    for peer in (a, b):
        wait_until(lambda p=peer: "charlie" not in p.statuses(), 5, what="charlie to leave the list")
    time.sleep(3)  # a late probe from the leaving process must not bring it back as a ghost
    assert "charlie" not in a.statuses() and "charlie" not in b.statuses()


def test_sigkill_is_noticed_without_a_goodbye(mesh: Mesh) -> None:
    a, b, c = (mesh.add(n) for n in ("alpha", "bravo", "charlie"))
    mesh.wait_all_see_each_other()
    c.kill()
    for peer in (a, b):
        wait_until(lambda p=peer: p.statuses().get("charlie") not in (None, "up"), 6, what="charlie not up")
        wait_until(lambda p=peer: p.statuses().get("charlie") == "down", 8, what="charlie down")


def test_restart_with_same_id_replaces_the_entry(mesh: Mesh) -> None:
    a, b = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    first_boot = a.get("/mesh/peers").json()["peers"][1]["capabilities"]["boot_id"]
    b.kill()
    wait_until(lambda: a.statuses().get("bravo") != "up", 6, what="bravo not up")
    b.start()
    wait_until(lambda: a.statuses().get("bravo") == "up", 6, what="bravo up again")
    entries = [p for p in a.get("/mesh/peers").json()["peers"] if p["node_id"] == "bravo"]
    assert len(entries) == 1, entries
    wait_until(
        lambda: (
            [p for p in a.get("/mesh/peers").json()["peers"] if p["node_id"] == "bravo"][0]["capabilities"].get(
                "boot_id"
            )
            not in (None, first_boot)
        ),
        5,
        what="the new process's state",
    )


def test_changed_address_is_updated_in_place(mesh: Mesh) -> None:
    a, b = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    b.kill()
    b.host = next_address()  # DHCP gave the Mac a new address
    b.start()

    def moved() -> bool:
        entries = [p for p in a.get("/mesh/peers").json()["peers"] if p["node_id"] == "bravo"]
        return len(entries) == 1 and entries[0]["url"] == b.url and entries[0]["status"] == "up"

    wait_until(moved, 8, what="bravo's new address")


def test_static_peers_without_mdns(static_mesh: Mesh) -> None:
    a = static_mesh.add("alpha", args=["--no-mdns"])
    # bravo names alpha; alpha learns bravo when bravo calls it. An unreachable static peer is listed as down.
    dead = f"http://{next_address()}:11435"
    b = static_mesh.add("bravo", args=["--no-mdns", "--peer", a.url, "--peer", dead])
    wait_until(lambda: up_ids(a) == {"alpha", "bravo"}, 8, what="alpha to list bravo")
    wait_until(lambda: up_ids(b) == {"alpha", "bravo"}, 8, what="bravo to list alpha")
    listed = {p["url"]: p for p in b.get("/mesh/peers").json()["peers"]}
    assert listed[dead]["status"] == "down" and listed[dead]["static"] is True
    b.kill()
    wait_until(lambda: a.statuses().get("bravo") not in (None, "up"), 6, what="bravo not up on alpha")


def test_other_meshes_and_foreign_records_are_ignored(mesh: Mesh, tmp_path) -> None:
    a = mesh.add("alpha")
    other = Mesh(tmp_path / "other")
    host = next_address()
    junk = [
        {"v": "0", "id": "oldtimer", "mesh": mesh.name},  # an older protocol version
        {"hello": "world"},  # not ours at all
        {"v": "1", "id": "broken", "mesh": mesh.name, "sv": "NaN"},  # malformed
        {"v": "1", "mesh": mesh.name},  # no node id
        {"v": "1", "id": "<img src=x onerror=alert(1)>", "mesh": mesh.name},  # a name no peer may have
    ]
    zc = Zeroconf(interfaces=[host], ip_version=IPVersion.V4Only)
    try:
        stranger = other.add("stranger")
        for i, props in enumerate(junk):
            zc.register_service(
                ServiceInfo(
                    txt.SERVICE_TYPE,
                    f"junk{i}@{mesh.name}.{txt.SERVICE_TYPE}",
                    addresses=[socket.inet_aton(host)],
                    port=11435,
                    properties=props,
                )
            )
        # while every record is still announced: alpha has seen and refused each one, and lists only itself
        wait_until(lambda: a.log_tail(400).count("ignoring mDNS record junk") == len(junk), 10,
                   what="alpha to read and refuse every junk record")  # fmt: skip
        wait_until(lambda: "ignoring stranger" in a.log_tail(400), 10, what="alpha to see the other mesh's peer")
        assert up_ids(a) == {"alpha"}
        assert set(a.statuses()) == {"alpha"}
        assert a.alive and stranger.alive
    finally:
        zc.unregister_all_services()
        zc.close()
        other.close()


def test_port_in_use_exits_with_a_clear_message(mesh: Mesh) -> None:
    a = mesh.add("alpha")
    result = subprocess.run(
        [sys.executable, "-m", "herd_mesh", "--host", a.host, "--node-id", "beta", "--mesh", mesh.name,
         "--data-dir", str(mesh.base_dir / "beta")],
        capture_output=True, text=True, timeout=30, env=a.env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "11435" in result.stderr and "--port" in result.stderr


def test_root_redirects_to_the_dashboard_which_lists_peers(mesh: Mesh) -> None:
    a, _b = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    response = httpx.get(a.url + "/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"].endswith("/dashboard")
    page = a.get("/dashboard")
    assert page.status_code == 200 and "bravo" in page.text and "alpha" in page.text


@pytest.mark.parametrize("path", ["/mesh/nothing", "/api/nothing"])
def test_unknown_paths_get_json_404(mesh: Mesh, path: str) -> None:
    a = mesh.add("alpha")
    response = a.get(path)
    assert response.status_code == 404 and "error" in response.json()


def test_forged_peer_headers_cannot_add_move_or_remove_peers(mesh: Mesh) -> None:
    """Anyone on the LAN can send X-Herd-* headers; a peer believes them only after checking the address."""
    a, b = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    boot = b.get("/mesh/ping").json()["boot_id"]
    with FakePeer(next_address(), node_id="bravo", mesh=mesh.name) as fake:
        claim = {"X-Herd-Mesh": mesh.name, "X-Herd-Url": fake.url}
        # from its own address, the fake says "bravo moved here", and "I am a new peer called evil"
        fake.call(a, "GET", "/mesh/ping", headers={**claim, "X-Herd-Node": "bravo", "X-Herd-Boot": "new-boot"})
        fake.call(a, "GET", "/mesh/ping", headers={**claim, "X-Herd-Node": "evil"})
        # from a third address, the same claims are not even checked
        a.get("/mesh/ping", headers={**claim, "X-Herd-Node": "mallory"})
        # a leave notice for bravo, which is alive and not leaving
        a.post("/mesh/leave", headers={"X-Herd-Mesh": mesh.name, "X-Herd-Node": "bravo"})
        # alpha checked each claim made from the fake's own address (it pinged it) and refused them all
        wait_until(lambda: fake.pings >= 2, 10, what="alpha to check the claims at the fake's address")
        wait_until(lambda: "ignoring a claim that bravo moved" in a.log_tail(300), 10, what="bravo's claim refused")
        wait_until(lambda: "claimed to be evil" in a.log_tail(300), 10, what="evil's claim refused")
        wait_until(lambda: "ignoring a leave notice for bravo" in a.log_tail(300), 10, what="the notice refused")
        peers = {p["node_id"]: p for p in a.get("/mesh/peers").json()["peers"]}
        assert set(peers) == {"alpha", "bravo"}
        assert peers["bravo"]["status"] == "up" and peers["bravo"]["url"] == b.url
        assert b.get("/mesh/ping").json()["boot_id"] == boot
        # and no client's job ever reaches the fake
        for i in range(4):
            assert a.post("/api/generate-image", json={**IMAGE, "seed": i}).status_code == 200
        assert fake.hits["/api/generate-image"] == 0


def test_one_known_address_is_enough_to_join_without_multicast(static_mesh: Mesh) -> None:
    """Three peers with mDNS off: alpha and charlie each know only bravo's address, and bravo knows no one."""
    b = static_mesh.add("bravo", args=["--no-mdns"])
    a = static_mesh.add("alpha", args=["--no-mdns", "--peer", b.url])
    c = static_mesh.add("charlie", args=["--no-mdns", "--peer", b.url])
    everyone = {"alpha", "bravo", "charlie"}
    for peer in (a, b, c):
        wait_until(lambda peer=peer: up_ids(peer) == everyone, 15, what=f"{peer.node_id} to list every peer up")
    c.kill()  # no ghost: a peer that is gone is not passed around
    wait_until(lambda: "charlie" not in up_ids(a) and "charlie" not in up_ids(b), 10, what="charlie to be down")
    assert {p["node_id"] for p in a.get("/mesh/known").json()["peers"]} == {"bravo"}
