"""The peer table's state machine: every transition, with time passed in."""

from __future__ import annotations

from herd_mesh.core.peer_table import FORGET_AFTER_S, SUSPECT_TO_DOWN_S, PeerTable

URL = "http://192.168.1.20:11435"
STATIC_URL = "http://192.168.1.30:11435"


def table() -> PeerTable:
    return PeerTable("me", static_urls=(STATIC_URL,))


def status(t: PeerTable, node_id: str) -> str | None:
    peer = t.get(node_id)
    return None if peer is None else peer.status


def test_a_discovered_peer_is_suspect_until_it_answers() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0, boot_id="b1")
    assert status(t, "studio") == "suspect"
    assert t.up() == []
    t.contact_ok("studio", now=1.0, boot_id="b1")
    assert status(t, "studio") == "up"
    assert [p.node_id for p in t.up()] == ["studio"]
    assert t.get("studio").last_seen == 1.0  # type: ignore[union-attr]


def test_one_failed_contact_makes_an_up_peer_suspect_at_once() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_ok("studio", now=1.0)
    t.contact_failed("studio", now=2.0, reason="connection refused")
    peer = t.get("studio")
    assert peer is not None
    assert peer.status == "suspect"
    assert peer.failures == 1
    assert peer.last_error == "connection refused"
    assert t.up() == []


def test_failing_long_enough_via_contact_failed_makes_it_down() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_ok("studio", now=0.0)
    t.contact_failed("studio", now=10.0, reason="timeout")
    t.contact_failed("studio", now=10.0 + SUSPECT_TO_DOWN_S - 0.01, reason="timeout")
    assert status(t, "studio") == "suspect"
    t.contact_failed("studio", now=10.0 + SUSPECT_TO_DOWN_S, reason="timeout")
    assert status(t, "studio") == "down"


def test_failing_long_enough_via_tick_makes_it_down() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_ok("studio", now=0.0)
    t.contact_failed("studio", now=10.0, reason="timeout")
    t.tick(now=10.0 + SUSPECT_TO_DOWN_S / 2)
    assert status(t, "studio") == "suspect"
    t.tick(now=10.0 + SUSPECT_TO_DOWN_S)
    assert status(t, "studio") == "down"


def test_a_down_peer_comes_back_up_on_contact() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_failed("studio", now=0.0, reason="x")
    t.tick(now=SUSPECT_TO_DOWN_S)
    assert status(t, "studio") == "down"
    t.contact_ok("studio", now=5.0)
    peer = t.get("studio")
    assert peer is not None
    assert (peer.status, peer.failures, peer.last_error) == ("up", 0, "")
    t.tick(now=5.0 + SUSPECT_TO_DOWN_S * 10)  # the old failure no longer counts
    assert status(t, "studio") == "up"


def test_recovering_resets_the_failure_clock() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_failed("studio", now=0.0, reason="x")
    t.contact_ok("studio", now=1.0)
    t.contact_failed("studio", now=SUSPECT_TO_DOWN_S + 0.5, reason="x")  # failing for 0 s, not 2.5 s
    assert status(t, "studio") == "suspect"


def test_goodbye_removes_a_discovered_peer() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_ok("studio", now=0.0)
    t.goodbye("studio", now=1.0)
    assert t.get("studio") is None
    assert t.all() == []


def test_goodbye_only_marks_a_static_peer_down() -> None:
    t = table()
    t.discovered("mini", STATIC_URL, now=0.0)  # its URL was given with --peer
    t.contact_ok("mini", now=0.0)
    t.goodbye("mini", now=1.0)
    peer = t.get("mini")
    assert peer is not None
    assert peer.static
    assert peer.status == "down"


def test_a_peer_added_as_static_stays_static() -> None:
    t = PeerTable("me")
    t.discovered("mini", URL, now=0.0, static=True)
    t.goodbye("mini", now=1.0)
    assert status(t, "mini") == "down"


def test_a_restart_resets_capabilities_and_keeps_one_entry() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0, boot_id="b1")
    t.contact_ok("studio", now=0.0, boot_id="b1", state_version=3)
    t.set_capabilities("studio", version=3, capabilities={"image_models": ["flux-dev"]})
    t.discovered("studio", URL, now=5.0, boot_id="b2")
    assert len(t.all()) == 1
    peer = t.get("studio")
    assert peer is not None
    assert peer.boot_id == "b2"
    assert peer.capabilities == {}
    assert peer.state_version == -1
    # a restarted peer starts counting its state versions again: version 1 must be accepted
    t.set_capabilities("studio", version=1, capabilities={"image_models": []})
    assert peer.capabilities == {"image_models": []}


def test_a_restart_noticed_on_contact_asks_for_a_fresh_fetch() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0, boot_id="b1")
    t.contact_ok("studio", now=0.0, boot_id="b1", state_version=3)
    t.set_capabilities("studio", version=3, capabilities={"image_models": ["flux-dev"]})
    assert t.contact_ok("studio", now=1.0, boot_id="b2", state_version=3) is True
    assert t.get("studio").capabilities == {}  # type: ignore[union-attr]
    assert len(t.all()) == 1


def test_an_address_change_updates_the_url_in_place() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0, boot_id="b1")
    t.contact_ok("studio", now=0.0, boot_id="b1")
    t.discovered("studio", "http://192.168.1.99:11435", now=1.0, boot_id="b1")
    assert len(t.all()) == 1
    peer = t.get("studio")
    assert peer is not None
    assert peer.url == "http://192.168.1.99:11435"
    assert peer.status == "up"  # same process: what we knew still holds


def test_self_is_never_added() -> None:
    t = table()
    assert t.discovered("me", URL, now=0.0) is None
    assert t.all() == []
    assert t.contact_ok("me", now=0.0) is False


def test_a_down_discovered_peer_is_forgotten_but_a_static_one_kept() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.discovered("mini", STATIC_URL, now=0.0)
    for node in ("studio", "mini"):
        t.contact_failed(node, now=0.0, reason="x")
    t.tick(now=SUSPECT_TO_DOWN_S)
    assert status(t, "studio") == status(t, "mini") == "down"
    t.tick(now=SUSPECT_TO_DOWN_S + FORGET_AFTER_S - 1)
    assert status(t, "studio") == "down"
    t.tick(now=SUSPECT_TO_DOWN_S + FORGET_AFTER_S)
    assert t.get("studio") is None
    assert status(t, "mini") == "down"


def test_pending_static_urls_lists_static_peers_not_yet_reached() -> None:
    other = "http://192.168.1.31:11435"
    t = PeerTable("me", static_urls=(STATIC_URL, other))
    assert t.pending_static_urls() == sorted([STATIC_URL, other])
    t.discovered("mini", STATIC_URL, now=0.0)
    assert t.pending_static_urls() == [other]


def test_set_capabilities_ignores_older_versions() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.set_capabilities("studio", version=5, capabilities={"v": 5})
    t.set_capabilities("studio", version=4, capabilities={"v": 4})
    assert t.get("studio").capabilities == {"v": 5}  # type: ignore[union-attr]
    t.set_capabilities("studio", version=6, capabilities={"v": 6})
    assert t.get("studio").capabilities == {"v": 6}  # type: ignore[union-attr]


def test_contact_ok_says_when_to_fetch_capabilities() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0, boot_id="b1")
    assert t.contact_ok("studio", now=0.0, boot_id="b1", state_version=1) is True  # never fetched
    t.set_capabilities("studio", version=1, capabilities={"image_models": []})
    assert t.contact_ok("studio", now=1.0, boot_id="b1", state_version=1) is False  # nothing new
    assert t.contact_ok("studio", now=2.0, boot_id="b1", state_version=2) is True  # its state changed
    t.set_capabilities("studio", version=2, capabilities={"image_models": ["fibo"]})
    assert t.contact_ok("studio", now=3.0, boot_id="b1", state_version=2) is False


def test_events_about_unknown_peers_are_ignored() -> None:
    t = table()
    assert t.contact_ok("ghost", now=0.0) is False
    t.contact_failed("ghost", now=0.0, reason="x")
    t.goodbye("ghost", now=0.0)
    t.set_capabilities("ghost", version=1, capabilities={})
    assert t.all() == []


def test_to_dict_reports_status_and_last_error() -> None:
    t = table()
    t.discovered("studio", URL, now=0.0)
    t.contact_failed("studio", now=0.0, reason="refused")
    d = t.get("studio").to_dict()  # type: ignore[union-attr]
    assert d["status"] == "suspect"
    assert d["last_error"] == "refused"
    assert d["url"] == URL


def test_a_process_that_said_goodbye_is_never_listed_again() -> None:
    """A probe the leaving peer sent just after its leave notice must not bring it back as a ghost."""
    table = PeerTable("me")
    table.discovered("mini", "http://10.0.0.2:11435", now=0.0, boot_id="boot-1")
    table.contact_ok("mini", now=0.1, boot_id="boot-1")
    table.goodbye("mini", now=1.0)
    assert table.discovered("mini", "http://10.0.0.2:11435", now=1.1, boot_id="boot-1") is None
    assert table.get("mini") is None
    restarted = table.discovered("mini", "http://10.0.0.2:11435", now=5.0, boot_id="boot-2")
    assert restarted is not None and table.get("mini") is not None
