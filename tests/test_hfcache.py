"""Where the Hugging Face cache is, and whether a model's weights are already downloaded there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd_mesh.core.catalogue import MODELS, PINS
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


def download(cache: Path, repo: str, subdirs: tuple[str, ...], *, revision: str | None = None,
             shards: int = 1, missing_shard: bool = False) -> Path:  # fmt: skip
    """A snapshot as huggingface_hub lays it out: each folder's safetensors shards and their index."""
    snapshot = snapshots(cache, repo) / (revision or PINS[repo])
    for subdir in subdirs:
        folder = snapshot / subdir
        folder.mkdir(parents=True)
        names = [f"diffusion_pytorch_model-0000{i + 1}-of-0000{shards}.safetensors" for i in range(shards)]
        for name in names[: -1 if missing_shard else None]:
            (folder / name).write_bytes(b"weights")
        if shards > 1:
            index = {"weight_map": {f"layer{i}": name for i, name in enumerate(names)}}
            (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    return snapshot


TURBO = MODELS["z-image-turbo"]
SCHNELL = MODELS["flux-schnell"]
Z = "Tongyi-MAI/Z-Image-Turbo"


def test_no_cache_folder_at_all_is_unknown_not_missing(tmp_path: Path) -> None:
    assert weights_cached(TURBO, tmp_path / "nowhere") is None
    assert weights_cached(TURBO, tmp_path) is False  # a cache folder without the model: a download is due


def test_only_the_pinned_revision_with_every_folder_counts(tmp_path: Path) -> None:
    download(tmp_path, Z, ("text_encoder", "transformer", "vae"), revision="0000old")
    assert weights_cached(TURBO, tmp_path) is False  # an older revision: mflux downloads its pin
    download(tmp_path, Z, ("transformer", "vae"))
    assert weights_cached(TURBO, tmp_path) is False  # the pinned one, without its text encoder
    (snapshots(tmp_path, Z) / PINS[Z] / "text_encoder").mkdir()
    assert weights_cached(TURBO, tmp_path) is False  # the folder is there, but empty
    (snapshots(tmp_path, Z) / PINS[Z] / "text_encoder" / "model.safetensors").write_bytes(b"w")
    assert weights_cached(TURBO, tmp_path) is True


def test_every_indexed_shard_must_be_on_disk(tmp_path: Path) -> None:
    download(tmp_path, Z, ("text_encoder", "transformer", "vae"), shards=3, missing_shard=True)
    assert weights_cached(TURBO, tmp_path) is False  # an interrupted download
    other = tmp_path / "complete"
    download(other, Z, ("text_encoder", "transformer", "vae"), shards=3)
    assert weights_cached(TURBO, other) is True


def test_flux_needs_its_second_text_encoder_and_a_broken_link_is_not_a_file(tmp_path: Path) -> None:
    repo = "black-forest-labs/FLUX.1-schnell"
    snapshot = download(tmp_path, repo, ("text_encoder", "transformer", "vae"))
    assert weights_cached(SCHNELL, tmp_path) is False
    (snapshot / "text_encoder_2").mkdir()
    (snapshot / "text_encoder_2" / "model.safetensors").symlink_to(tmp_path / "blobs" / "gone")
    assert weights_cached(SCHNELL, tmp_path) is False
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "gone").write_bytes(b"w")
    assert weights_cached(SCHNELL, tmp_path) is True


def test_qwen_image_is_the_2512_repo_and_fibo_needs_its_vlm_too(tmp_path: Path) -> None:
    assert MODELS["qwen-image"].repos == ("Qwen/Qwen-Image-2512",)
    download(tmp_path, "Qwen/Qwen-Image", ("text_encoder", "transformer", "vae"), revision="a" * 40)
    assert weights_cached(MODELS["qwen-image"], tmp_path) is False  # the old repo id is not what mflux loads
    download(tmp_path, "Qwen/Qwen-Image-2512", ("text_encoder", "transformer", "vae"))
    assert weights_cached(MODELS["qwen-image"], tmp_path) is True
    fibo = MODELS["fibo"]
    download(tmp_path, "briaai/FIBO", ("text_encoder", "transformer", "vae"))
    assert weights_cached(fibo, tmp_path) is False  # the VLM that turns a plain prompt into JSON is missing
    vlm = snapshots(tmp_path, "briaai/FIBO-vlm") / PINS["briaai/FIBO-vlm"]
    vlm.mkdir(parents=True)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (vlm / name).write_text("x")
    assert weights_cached(fibo, tmp_path) is True


def test_the_pins_come_from_the_installed_mflux_when_given(tmp_path: Path) -> None:
    download(tmp_path, Z, ("text_encoder", "transformer", "vae"), revision="newer")
    assert weights_cached(TURBO, tmp_path) is False
    assert weights_cached(TURBO, tmp_path, {Z: "newer"}) is True
