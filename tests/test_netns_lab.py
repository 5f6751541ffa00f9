"""Peers on separate (namespaced) machines: real mDNS across a bridge, partitions, pulled cables, and no leftovers.

Each test gets its own Lab (random tag and subnet) and its own mesh name. HTTP from this process reaches the
peers through the lab's bridge address in the root namespace, the minority side of a partition included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import netns
from tests.harness import Mesh, wait_until
from tests.netns import Lab, LabPeer, add_peer

pytestmark = pytest.mark.netns

NAMES = ("n0", "n1", "n2")


def _require_lab() -> None:
    reason = netns.available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    _require_lab()
    with Lab(3) as lab:
        yield lab
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"lab {lab.tag}: {lab.subnet}, hosts {[str(h) for h in lab.hosts]}")


@pytest.fixture
def mesh(static_mesh: Mesh) -> Mesh:
    """The harness's Mesh for env, stand-in and logs (printed on failure), without loopback multicast: its
    peers live in the lab."""
    return static_mesh


def start_three(mesh: Mesh, lab: Lab) -> list[LabPeer]:
    """One peer per host, started together (2 cores: staggered waits would add up), real mDNS, no --peer."""
    peers = [add_peer(mesh, lab, host, name, wait=False) for host, name in zip(lab.hosts, NAMES, strict=True)]
    for peer in peers:
        peer.wait_ready(timeout=30)
    return peers


def status_of(peer: LabPeer, other: str) -> str | None:
    return peer.statuses().get(other)


def timed(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """`wait_until`, returning how long it took (printed, so a run shows the timings)."""
    started = time.monotonic()
    wait_until(predicate, timeout, interval=0.1, what=what)
    return time.monotonic() - started


def test_peers_in_namespaces_find_each_other_over_mdns(mesh: Mesh, lab: Lab) -> None:
    peers = start_three(mesh, lab)
    took = timed(
        lambda: all(set(p.statuses().values()) == {"up"} and len(p.statuses()) == 3 for p in peers),
        10,
        "all three to list each other up",
    )
    mesh.wait_all_see_each_other(timeout=10)  # and have fetched each other's state
    print(f"discovery over the bridge took {took:.1f}s after all three answered")
    for peer in peers:
        doc = peer.get("/mesh/peers").json()
        urls = {p["node_id"]: p["url"] for p in doc["peers"]}
        # found at their namespace addresses over mDNS, not via loopback or a static list
        assert {k: v for k, v in urls.items() if k != peer.node_id} == {
            o.node_id: o.url for o in peers if o is not peer
        }
    # each peer really sits in its own namespace: its address is not local to the root namespace
    root_addrs = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    assert all(f" {p.host}/" not in root_addrs for p in peers)


def test_partition_marks_both_sides_down_and_heal_brings_them_back(mesh: Mesh, lab: Lab) -> None:
    n0, n1, n2 = start_three(mesh, lab)
    mesh.wait_all_see_each_other(timeout=10)
    lab.partition([lab.hosts[0]])
    took = timed(
        lambda: status_of(n1, "n0") == "down" and status_of(n2, "n0") == "down", 6, "n1 and n2 to mark n0 down"
    )
    wait_until(
        lambda: status_of(n0, "n1") == "down" and status_of(n0, "n2") == "down", 3, what="n0 to mark both down"
    )
    print(f"partition noticed as down after {took:.1f}s")
    assert took < 4.5, took  # ping every 0.5 s, down after 2 s of failures
    # the majority side still works as a mesh: a partition is not a blackout
    assert status_of(n1, "n2") == "up" and status_of(n2, "n1") == "up"
    lab.heal()
    took = timed(lambda: all(set(p.statuses().values()) == {"up"} for p in (n0, n1, n2)), 10, "all up after heal")
    print(f"heal noticed after {took:.1f}s")


def test_link_down_then_up_comes_back_everywhere(mesh: Mesh, lab: Lab) -> None:
    n0, n1, n2 = start_three(mesh, lab)
    mesh.wait_all_see_each_other(timeout=10)
    host = lab.hosts[2]
    lab.link_down(host)
    with pytest.raises(httpx.HTTPError):  # the cable is out: this process cannot reach it either
        n2.get("/mesh/ping", timeout=httpx.Timeout(1.0, connect=0.5))
    wait_until(lambda: status_of(n0, "n2") == "down" and status_of(n1, "n2") == "down", 6, what="n2 down")
    lab.link_up(host)
    routes = subprocess.run(
        ["ip", "-n", host.netns, "route", "show", netns.MULTICAST], capture_output=True, text=True
    )
    assert "eth0" in routes.stdout, "link_up must restore the multicast route"
    wait_until(lambda: all(set(p.statuses().values()) == {"up"} for p in (n0, n1, n2)), 10, what="all up again")
    # discovery works again on the revived host: a newcomer, known to nobody yet, and n2 find each other
    n3 = add_peer(mesh, lab, lab.add_host(), "n3")
    wait_until(lambda: status_of(n3, "n2") == "up" and status_of(n2, "n3") == "up", 10, what="n3 and n2 to meet")


def test_close_leaves_nothing_behind_and_stale_runs_are_cleaned(mesh: Mesh, tmp_path: Path) -> None:
    _require_lab()
    with Lab(2) as lab:
        peer = add_peer(mesh, lab, lab.hosts[0], "solo")
        assert peer.get("/mesh/ping").status_code == 200
        lab.kill_host(lab.hosts[0])  # power cut: the peer and anything it spawned, no goodbye
        assert peer.proc is not None and peer.proc.returncode == -9
        assert (
            subprocess.run(["ip", "netns", "pids", lab.hosts[0].netns], capture_output=True, text=True).stdout == ""
        )
        add_peer(mesh, lab, lab.hosts[1], "other")  # still running when the Lab closes
        assert lab.leftovers()
    assert lab.leftovers() == []
    assert all(p.proc is not None and p.proc.poll() is not None for p in mesh.peers.values())
    assert not (netns.STATE_DIR / f"{lab.tag}.json").exists()
    assert lab.tag not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.tag not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout

    # a run that dies by SIGKILL runs no finally and no atexit: the next cleanup_stale() removes its leftovers
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from tests.netns import Lab
        lab = Lab(2).__enter__()
        lab.start(lab.hosts[1], ["sleep", "600"], dict(os.environ), Path({str(tmp_path / "sleep.log")!r}))
        print(lab.tag, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    tag = done.stdout.strip()
    assert tag, done.stderr
    assert netns.leftovers(tag), "the killed run should have left its lab behind"
    sleepers = subprocess.run(["ip", "netns", "pids", f"herd-{tag}-1"], capture_output=True, text=True).stdout.split()
    assert sleepers
    removed = netns.cleanup_stale()
    assert f"herd-{tag}-0" in removed and f"hb{tag}a" in removed
    assert netns.leftovers(tag) == []
    assert not (netns.STATE_DIR / f"{tag}.json").exists()
    assert not [pid for pid in sleepers if _running(int(pid))]


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait for whatever reaps in this container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
