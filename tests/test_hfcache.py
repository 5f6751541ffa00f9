"""Where the Hugging Face cache is, and whether a model's weights are already downloaded there."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd_mesh.engines.hfcache import hub_cache_dir, weights_cached


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def test_hf_hub_cache_wins(home: Path) -> None:
    env = {"HF_HUB_CACHE": "/cache/hub", "HF_HOME": "/hf", "XDG_CACHE_HOME": "/xdg"}
    assert hub_cache_dir(env) == Path("/cache/hub")


def test_hf_home_then_hub(home: Path) -> None:
    assert hub_cache_dir({"HF_HOME": "/hf", "XDG_CACHE_HOME": "/xdg"}) == Path("/hf/hub")


def test_xdg_cache_home_next(home: Path) -> None:
    assert hub_cache_dir({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/huggingface/hub")


def test_home_cache_last(home: Path) -> None:
    assert hub_cache_dir({}) == home / ".cache" / "huggingface" / "hub"


def test_empty_values_count_as_unset(home: Path) -> None:
    assert hub_cache_dir({"HF_HUB_CACHE": "", "HF_HOME": "", "XDG_CACHE_HOME": ""}) == home / ".cache/huggingface/hub"


def test_tilde_is_expanded(home: Path) -> None:
    assert hub_cache_dir({"HF_HOME": "~/hf"}) == home / "hf" / "hub"


def test_reads_the_process_environment_by_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", "/from/env")
    assert hub_cache_dir() == Path("/from/env/hub")


def snapshots(cache: Path, repo: str) -> Path:
    return cache / f"models--{repo.replace('/', '--')}" / "snapshots"


def test_weights_cached_only_with_a_non_empty_snapshot(tmp_path: Path) -> None:
    repo = "Tongyi-MAI/Z-Image-Turbo"
    assert not weights_cached(repo, tmp_path)  # nothing at all
    snaps = snapshots(tmp_path, repo)
    snaps.mkdir(parents=True)
    assert not weights_cached(repo, tmp_path)  # download never got to a snapshot
    revision = snaps / "0123abcd"
    revision.mkdir()
    assert not weights_cached(repo, tmp_path)  # an empty snapshot is not a download
    (revision / "model_index.json").write_text("{}")
    assert weights_cached(repo, tmp_path)


def test_weights_cached_is_per_repo(tmp_path: Path) -> None:
    revision = snapshots(tmp_path, "black-forest-labs/FLUX.1-dev") / "abc"
    revision.mkdir(parents=True)
    (revision / "model_index.json").write_text("{}")
    assert weights_cached("black-forest-labs/FLUX.1-dev", tmp_path)
    assert not weights_cached("black-forest-labs/FLUX.1-schnell", tmp_path)


def test_a_stray_file_in_snapshots_is_not_a_download(tmp_path: Path) -> None:
    snaps = snapshots(tmp_path, "briaai/FIBO")
    snaps.mkdir(parents=True)
    (snaps / ".DS_Store").write_text("")
    assert not weights_cached("briaai/FIBO", tmp_path)
