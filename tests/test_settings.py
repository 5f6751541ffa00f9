"""Runtime settings: validation, persistence across restarts, and the per-key last-writer-wins merge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from herd_mesh.core.settings import SCHEMA, merge, validate_changes
from herd_mesh.errors import RequestError
from herd_mesh.storage.settings_store import SettingsStore

DEFAULTS = {key: setting.default for key, setting in SCHEMA.items()}


def test_validate_changes_accepts_good_values() -> None:
    changes = {"image_generation": False, "image_keep_alive_s": 0, "stats_retention_days": 3650}
    assert validate_changes(changes) == changes


def test_unknown_key_lists_the_known_keys() -> None:
    with pytest.raises(RequestError) as info:
        validate_changes({"image_generation": True, "turbo_mode": True})
    assert "'turbo_mode'" in info.value.message
    for key in SCHEMA:
        assert key in info.value.message


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("image_generation", 1, "true or false"),
        ("image_generation", "false", "true or false"),
        ("store_prompts", None, "true or false"),
        ("image_keep_alive_s", True, "integer"),  # a bool is an int in Python, not here
        ("image_keep_alive_s", 1.5, "integer"),
        ("image_keep_alive_s", "300", "integer"),
        ("image_keep_alive_s", -1, "from 0 to 86400"),
        ("image_keep_alive_s", 86401, "from 0 to 86400"),
        ("stats_retention_days", 0, "from 1 to 3650"),
    ],
)
def test_wrong_types_and_ranges_are_refused_naming_the_key(key: str, value: Any, words: str) -> None:
    with pytest.raises(RequestError) as info:
        validate_changes({key: value})
    assert repr(key) in info.value.message
    assert words in info.value.message


@pytest.mark.parametrize("given", [None, [], "image_generation=false", {}])
def test_not_an_object_or_empty_is_refused(given: Any) -> None:
    with pytest.raises(RequestError):
        validate_changes(given)


def test_defaults_without_a_file(tmp_path: Path) -> None:
    assert SettingsStore(tmp_path / "settings.json", "a").values() == DEFAULTS


def test_a_change_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "settings.json"
    store = SettingsStore(path, "a")
    result = store.update({"image_generation": False, "image_keep_alive_s": 60}, now=100.0)
    assert result["image_generation"] is False
    again = SettingsStore(path, "a")
    assert again.get("image_generation") is False
    assert again.get("image_keep_alive_s") == 60
    assert again.get("llm") is True  # untouched keys keep their defaults
    assert again.entries["image_generation"] == {"value": False, "ts": 100.0, "by": "a"}


def entry(value: Any, ts: Any, by: str) -> dict[str, Any]:
    return {"value": value, "ts": ts, "by": by}


def test_merge_is_per_key_last_writer_wins() -> None:
    mine = {"llm": entry(False, 10.0, "a"), "image_keep_alive_s": entry(60, 30.0, "a")}
    theirs = {"llm": entry(True, 20.0, "b"), "image_keep_alive_s": entry(120, 25.0, "b")}
    merged, changed = merge(mine, theirs)
    assert changed
    assert merged["llm"] == entry(True, 20.0, "b")  # theirs is newer
    assert merged["image_keep_alive_s"] == entry(60, 30.0, "a")  # ours is newer


def test_merge_ties_are_broken_by_node_id_the_same_way_on_both_sides() -> None:
    a = {"llm": entry(False, 10.0, "alpha")}
    b = {"llm": entry(True, 10.0, "beta")}
    on_a, changed_a = merge(a, b)
    on_b, changed_b = merge(b, a)
    assert on_a == on_b == {"llm": entry(True, 10.0, "beta")}  # both peers converge
    assert (changed_a, changed_b) == (True, False)


def test_merge_two_peers_changing_different_keys_keep_both() -> None:
    a = {"llm": entry(False, 10.0, "a")}
    b = {"embeddings": entry(False, 10.0, "b")}
    merged, _ = merge(a, b)
    assert merged == {"llm": entry(False, 10.0, "a"), "embeddings": entry(False, 10.0, "b")}


def test_merge_skips_invalid_foreign_entries() -> None:
    mine = {"llm": entry(True, 10.0, "a")}
    theirs = {
        "llm": entry("no", 99.0, "b"),  # wrong type
        "turbo": entry(True, 99.0, "b"),  # unknown key
        "embeddings": {"ts": 99.0},  # no value
        "transcription": entry(False, "yesterday", "b"),  # bad timestamp
        "stats_retention_days": entry(0, 99.0, "b"),  # out of range
    }
    assert merge(mine, theirs) == (mine, False)


def test_absorb_reports_and_persists_changes(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    store = SettingsStore(path, "a")
    store.update({"llm": False}, now=10.0)
    assert store.absorb({"llm": entry(False, 10.0, "a")}) is False  # what we already have
    assert store.absorb({"llm": entry(True, 5.0, "b")}) is False  # older
    assert store.get("llm") is False
    assert store.absorb({"llm": entry(True, 11.0, "b")}) is True
    assert store.get("llm") is True
    assert SettingsStore(path, "a").get("llm") is True


def test_digest_changes_when_settings_change(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json", "a")
    before = store.digest()
    store.update({"llm": False}, now=10.0)
    assert store.digest() != before


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2]", '{"entries": []}', '{"entries": "x"}', "\x00\x01"])
def test_a_corrupt_file_is_ignored_with_defaults(tmp_path: Path, content: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    store = SettingsStore(path, "a")
    assert store.values() == DEFAULTS
    store.update({"llm": False}, now=1.0)  # and the next change replaces it with a good file
    assert json.loads(path.read_text())["entries"]["llm"]["value"] is False


def test_forged_stamps_cannot_wedge_or_lock_a_setting() -> None:
    """NaN, negative, far-future stamps and malformed authors from a peer are dropped, not merged."""
    now = 1_800_000_000.0
    mine = {"llm": {"value": True, "ts": now - 10, "by": "alpha"}}
    for entry in (
        {"value": False, "ts": float("nan"), "by": "x"},
        {"value": False, "ts": 1e300, "by": "zzzz"},
        {"value": False, "ts": now + 2 * 86400, "by": "x"},
        {"value": False, "ts": -5, "by": "x"},
        {"value": False, "ts": now, "by": "<img src=x>"},
        {"value": False, "ts": True, "by": "x"},
    ):
        merged, changed = merge(mine, {"llm": entry}, now=now)
        assert not changed and merged["llm"]["value"] is True, entry
    merged, changed = merge(mine, {"llm": {"value": False, "ts": now + 60, "by": "bravo"}}, now=now)
    assert changed and merged["llm"]["value"] is False  # a clock a minute ahead is still believed
