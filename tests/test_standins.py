"""The test stand-ins for mflux and Ollama behave like the real tools where herd-mesh cares.

Everything else in the suite trusts these stand-ins, so their quirks (no-overwrite output names,
failure modes, one-job-per-GPU locking, Ollama's wire shapes) are pinned down here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.standins.install import MFLUX_COMMANDS, OLLAMA_STANDIN, install_mflux_standin, path_with
from tests.standins.ollama_standin import build_app

# ---------------------------------------------------------------------------------------
# mflux stand-in
# ---------------------------------------------------------------------------------------

T = TypeVar("T")


@pytest.fixture(scope="module")
def mflux_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin dir holding the mflux command names (install.MFLUX_COMMANDS)."""
    return install_mflux_standin(tmp_path_factory.mktemp("bin"))


def run_mflux(bin_dir: Path, cwd: Path, command: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one stand-in command the way herd-mesh will: by name, found on PATH."""
    full_env = {**os.environ, "HERD_STANDIN_MS_PER_MP_STEP": "0", **env}
    full_env["PATH"] = path_with(bin_dir, full_env)
    # Bytes, decoded by hand: text=True would turn tqdm's "\r" refreshes into "\n".
    res = subprocess.run([command, *args], cwd=cwd, env=full_env, capture_output=True, timeout=20, check=False)
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(), res.stderr.decode())


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, after checking signature and chunk CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    ihdr = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    width, height, depth, colour = struct.unpack(">IIBB", ihdr[:10])
    assert (depth, colour) == (8, 2)  # 8-bit RGB
    return width, height


def png_pixels(path: Path) -> bytes:
    """Decompressed scanlines (filter byte + RGB per row) of a stand-in PNG."""
    data = path.read_bytes()
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_all_command_names_installed(mflux_bin: Path) -> None:
    for name in MFLUX_COMMANDS:
        assert os.access(mflux_bin / name, os.X_OK)


def test_png_real_and_deterministic(mflux_bin: Path, tmp_path: Path) -> None:
    args = ("--prompt", "a red fox", "--seed", "42", "--width", "64", "--height", "48", "--steps", "2")
    first = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, "--output", "a.png")
    second = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, "--output", "b.png")
    other = run_mflux(
        mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args[:3], "43", *args[4:], "--output", "c.png"
    )
    assert first.returncode == second.returncode == other.returncode == 0, first.stderr
    assert png_size(tmp_path / "a.png") == (64, 48)
    assert len(png_pixels(tmp_path / "a.png")) == 48 * (1 + 64 * 3)
    assert png_pixels(tmp_path / "a.png") == png_pixels(tmp_path / "b.png")  # the metadata has a timestamp
    assert png_pixels(tmp_path / "a.png") != png_pixels(tmp_path / "c.png")
    # tqdm on a pipe: "\r" before each refresh (initial + one per step), one "\n" at the end.
    assert first.stderr.count("\r") == 3
    assert "100%|██████████| 2/2 [" in first.stderr
    assert "INFO: Image saved successfully at: a.png" in first.stderr
    assert "Peak MLX memory" in first.stdout


def test_no_overwrite_and_seed_names(mflux_bin: Path, tmp_path: Path) -> None:
    base = ("--prompt", "p", "--width", "32", "--height", "32", "--steps", "1")
    for _ in range(3):
        assert run_mflux(mflux_bin, tmp_path, "mflux-generate-qwen", *base, "--seed", "1").returncode == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["image.png", "image_1.png", "image_2.png"]
    out = tmp_path / "multi"
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate", "-m", "schnell", *base, "--seed", "7", "8", "--output",
                    str(out / "x.png"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["x_seed_7.png", "x_seed_8.png"]


def test_dimensions_round_down_to_16(mflux_bin: Path, tmp_path: Path) -> None:
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image", "--prompt", "p", "--width", "70", "--height", "40",
                    "--steps", "1")  # fmt: skip
    assert res.returncode == 0
    assert "multiples of 16" in res.stderr
    assert png_size(tmp_path / "image.png") == (64, 32)


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        ("mflux-generate", ("--prompt", "p", "-m", "dev", "--seed", "x"), "argument --seed: invalid int value: 'x'"),
        ("mflux-generate-z-image-turbo", ("--prompt", "p", "--bogus"), "unrecognized arguments: --bogus"),
        ("mflux-generate-z-image-turbo", ("--prompt", "p", "-q", "7"), "invalid choice: 7"),
        ("mflux-generate-fibo", ("--prompt", "p", "--lora", "x.safetensors"), "unrecognized arguments"),
        ("mflux-generate-z-image-turbo", ("--prom", "p"), "unrecognized arguments"),  # allow_abbrev=False
    ],
)
def test_usage_errors(mflux_bin: Path, tmp_path: Path, command: str, args: tuple[str, ...], needle: str) -> None:
    res = run_mflux(mflux_bin, tmp_path, command, *args)
    assert res.returncode == 2
    assert res.stderr.startswith("usage: " + command)
    assert needle in res.stderr
    assert not list(tmp_path.iterdir())


def test_fail_error_and_no_image(mflux_bin: Path, tmp_path: Path) -> None:
    args = ("--prompt", "p", "--width", "32", "--height", "32", "--steps", "4")
    err = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, HERD_STANDIN_FAIL="error")
    assert err.returncode == 1
    assert err.stderr.strip().splitlines()[-1].startswith("RuntimeError: [METAL]")
    assert "Insufficient Memory" in err.stderr
    quiet = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, HERD_STANDIN_FAIL="no-image")
    assert quiet.returncode == 0  # mflux's quirk: interrupted runs exit 0 without an image
    assert "Stopping image generation at step 3/4" in quiet.stdout
    assert not list(tmp_path.glob("*.png"))


def read_log(path: Path) -> list[dict[str, Any]]:
    """Events the stand-in appended to HERD_STANDIN_LOG."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fail_hang_dies_on_sigterm(mflux_bin: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    env = {**os.environ, "HERD_STANDIN_FAIL": "hang", "HERD_STANDIN_LOG": str(log)}
    env["PATH"] = path_with(mflux_bin, env)
    proc = subprocess.Popen(
        ["mflux-generate-z-image-turbo", "--prompt", "p", "--width", "32", "--height", "32"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not read_log(log) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == -signal.SIGTERM
    assert [e["event"] for e in read_log(log)] == ["start"]
    assert not list(tmp_path.glob("*.png"))


def test_lock_serialises_and_log(mflux_bin: Path, tmp_path: Path) -> None:
    log, lock = tmp_path / "log.jsonl", tmp_path / "gpu.lock"
    # 3 steps * 32*32/1e6 MP * 80000 ms = ~0.25 s per run
    env = {**os.environ, "HERD_STANDIN_LOG": str(log), "HERD_STANDIN_LOCK": str(lock),
           "HERD_STANDIN_MS_PER_MP_STEP": "80000"}  # fmt: skip
    env["PATH"] = path_with(mflux_bin, env)
    args = ["--prompt", "p", "--width", "32", "--height", "32", "--steps", "3", "--seed", "1"]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            ["mflux-generate-z-image-turbo", *args, "--output", f"{i}.png"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for i in range(2)
    ]
    assert [p.wait(timeout=20) for p in procs] == [0, 0]
    assert time.monotonic() - started >= 0.45
    events = read_log(log)
    assert [e["event"] for e in events] == ["start", "end", "start", "end"]
    assert events[0]["pid"] == events[1]["pid"] != events[2]["pid"] == events[3]["pid"]
    assert events[2]["time"] >= events[1]["time"]
    assert events[0]["command"] == "mflux-generate-z-image-turbo"
    assert events[0]["argv"][0] == "mflux-generate-z-image-turbo" and "--prompt" in events[0]["argv"]
    assert events[1]["status"] == "ok" and events[1]["outputs"][0].endswith(".png")


# ---------------------------------------------------------------------------------------
# mflux stand-in: agreement with the real mflux 0.24.0 (tests/real_mflux/facts.md; the drift test,
# tests/test_standin_vs_real_mflux.py, checks the same against the installed package)
# ---------------------------------------------------------------------------------------

SMALL = ("--prompt", "a lighthouse", "--seed", "3", "--width", "32", "--height", "32")


def exif_record(path: Path) -> dict[str, Any]:
    """mflux's record, read the way users' tools read it: EXIF UserComment (0x9286) in the Exif IFD (0x8769)."""
    from PIL import Image

    with Image.open(path) as im:
        raw = im.getexif().get_ifd(0x8769)[0x9286]
    assert raw[:8] == b"ASCII\x00\x00\x00"
    return dict(json.loads(raw[8:]))


def chunk_types(path: Path) -> list[bytes]:
    data, pos, kinds = path.read_bytes(), 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        kinds.append(kind)
        pos += 12 + length
    return kinds


@pytest.mark.parametrize(
    ("command", "args", "steps", "guidance", "recorded", "model"),
    [  # the steps and guidance main() passes (facts.md §2); "recorded" is the metadata's guidance
        ("mflux-generate", ("-m", "dev"), 25, 3.5, 3.5, "black-forest-labs/FLUX.1-dev"),
        ("mflux-generate", ("-m", "krea-dev"), 25, 3.5, 3.5, "black-forest-labs/FLUX.1-Krea-dev"),
        ("mflux-generate", ("-m", "schnell"), 4, None, None, "black-forest-labs/FLUX.1-schnell"),  # ignored
        ("mflux-generate-z-image-turbo", (), 9, 0.0, None, "Tongyi-MAI/Z-Image-Turbo"),
        ("mflux-generate-z-image-turbo", ("--guidance", "5"), 9, 0.0, None, "Tongyi-MAI/Z-Image-Turbo"),  # forced
        ("mflux-generate-z-image", (), 50, 0.0, 0.0, "Tongyi-MAI/Z-Image"),
        ("mflux-generate-z-image", ("-m", "z-image-turbo"), 9, 0.0, None, "Tongyi-MAI/Z-Image-Turbo"),
        ("mflux-generate-qwen", (), 20, 3.5, None, "Qwen/Qwen-Image-2512"),
        ("mflux-generate-fibo", (), 50, 5.0, 5.0, "briaai/FIBO"),
        ("mflux-generate-fibo", ("-m", "fibo-lite"), 8, 1.0, 1.0, "briaai/Fibo-lite"),
        ("mflux-generate-flux2", (), 4, 1.0, 1.0, "black-forest-labs/FLUX.2-klein-4B"),
        ("mflux-generate-anima", (), 10, 1.0, 1.0, "circlestone-labs/Anima"),
        ("mflux-generate-anima", ("-m", "anima-base"), 30, 4.0, 4.0, "circlestone-labs/Anima"),
    ],
)
def test_defaults_per_command_are_mfluxs(
    mflux_bin: Path, tmp_path: Path, command: str, args: tuple[str, ...], steps: int, guidance: float | None,
    recorded: float | None, model: str,
) -> None:  # fmt: skip
    log = tmp_path / "log.jsonl"
    res = run_mflux(mflux_bin, tmp_path, command, *SMALL, *args, HERD_STANDIN_LOG=str(log))
    assert res.returncode == 0, res.stderr
    start = read_log(log)[0]
    assert (start["steps"], start["guidance"]) == (steps, guidance)
    record = exif_record(tmp_path / "image.png")
    assert (record["steps"], record["guidance"], record["model"]) == (steps, recorded, model)
    assert record["model_path"] is None and record["base_model"] is None
    assert f"{steps}/{steps} [" in res.stderr


def test_anima_turbo(mflux_bin: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "--negative-prompt", "blurry",
                    HERD_STANDIN_LOG=str(log))  # fmt: skip
    assert res.returncode == 0, res.stderr
    warning = "UserWarning: --negative-prompt is ignored at guidance 1.0; at guidance 1.0 (the Turbo default)"
    assert warning in res.stderr and "\n  sys.exit(main())\n" in res.stderr
    start = read_log(log)[0]
    assert (start["steps"], start["guidance"], start["scheduler"], start["negative_prompt_used"]) == (
        10, 1.0, "er_sde", False)  # fmt: skip
    assert exif_record(tmp_path / "image.png")["negative_prompt"] == "blurry"  # recorded although ignored

    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "--negative-prompt", "blurry",
                    "--guidance", "4", "--output", "cfg.png", HERD_STANDIN_LOG=str(log))  # fmt: skip
    assert res.returncode == 0 and "UserWarning" not in res.stderr
    assert read_log(log)[2]["negative_prompt_used"] is True

    for args, message in [
        (("-q", "3"), "ValueError: Anima does not work with -q 3, the 2B transformer turns to noise. Use -q 4, 5, 6 "
                      "or 8."),
        (("--steps", "0"), "ValueError: Anima takes 1 to 1000 steps, got 0."),
        (("--steps", "1001"), "ValueError: Anima takes 1 to 1000 steps, got 1001."),
        (("--width", "60"), "ValueError: Anima needs a width and height that are positive multiples of 16, got "
                            "60x32."),
        (("--scheduler", "dpm"), "ValueError: Unknown Anima sampler 'dpm'. Expected one of er_sde, euler."),
    ]:  # fmt: skip
        res = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, *args, "--output", "bad.png")
        assert res.returncode == 1, args
        assert res.stderr.startswith("Traceback (most recent call last):\n")
        assert res.stderr.strip().splitlines()[-1] == message
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "--width", "2x")
    assert res.returncode == 2 and "argument --width: invalid int value: '2x'" in res.stderr
    for q in ("4", "5", "6", "8"):
        assert run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "-q", q).returncode == 0
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize(
    ("command", "args", "code", "last_line"),
    [
        ("mflux-generate", (), 1,
         "mflux.utils.exceptions.ModelConfigError: No model requested: pass a model_name, a base_model, or both."),
        ("mflux-generate", ("-m", "foo"), 1,
         "mflux.utils.exceptions.ModelConfigError: Cannot infer base_model from foo"),
        ("mflux-generate-z-image-turbo", ("-m", "dev"), 1, "mflux.utils.exceptions.ModelConfigError: 'dev' is not "
         "Tongyi-MAI/Z-Image-Turbo; this CLI only accepts the aliases ['z-image-turbo', 'zimage-turbo']."),
        ("mflux-generate-qwen", ("-m", "/nonexistent/dir"), 1, "FileNotFoundError: Model not found: "
         "'/nonexistent/dir'. If local path, make sure it exists. If HuggingFace repo, use 'org/model' format."),
        ("mflux-generate-z-image", ("--compute-precision", "bfloat16"), 2,
         "mflux-generate-z-image: error: argument --compute-precision: invalid choice: 'bfloat16' (choose from "),
        ("mflux-generate-qwen", ("--vae-tile-size", "100"), 2, "mflux-generate-qwen: error: argument "
         "--vae-tile-size: '100' is too small: minimum tile size is 128 (tiles overlap by 64px)"),
        ("mflux-generate-qwen", ("--vae-tile-size", "200"), 2,
         "mflux-generate-qwen: error: argument --vae-tile-size: '200' must be a multiple of 16"),
        ("mflux-generate-qwen", ("--lora-style", "nope"), 2, "mflux-generate-qwen: error: argument --lora-style: "
         "invalid choice: 'nope' (choose from "),  # the choices' quoting depends on the Python version
        ("mflux-generate-qwen", ("-q", "2"), 2,
         "mflux-generate-qwen: error: argument --quantize/-q: invalid choice: 2 (choose from 3, 5, 4, 6, 8)"),
        ("mflux-generate-qwen", ("--steps", "1.5"), 2, "mflux-generate-qwen: error: argument --steps: invalid int "
         "value: '1.5'"),
        ("mflux-generate-qwen", ("--width", "x"), 2, "mflux-generate-qwen: error: argument --width: 'x' is not a "
         "valid integer or 'auto' or a scale factor like '2x' or '3.5x'"),
        ("mflux-generate-flux2", ("--negative-prompt", "x"), 2, "mflux-generate-flux2: error: --negative-prompt is "
         "not supported for FLUX.2. Focus on describing what you want."),
        ("mflux-generate-flux2", ("--guidance", "2"), 2, "mflux-generate-flux2: error: --guidance is only supported "
         "for FLUX.2 base models. Use --guidance 1.0, or declare a base checkpoint with --base-model."),
        ("mflux-generate-anima", ("--base-model", "foo"), 2, None),
    ],
)  # fmt: skip
def test_exit_codes_and_messages(
    mflux_bin: Path, tmp_path: Path, command: str, args: tuple[str, ...], code: int, last_line: str | None
) -> None:
    log = tmp_path / "log.jsonl"
    res = run_mflux(mflux_bin, tmp_path, command, *SMALL, *args, HERD_STANDIN_LOG=str(log))
    assert res.returncode == code, res.stderr
    if code == 2:
        assert res.stderr.startswith(f"usage: {command} [-h] [--verbose]")
    else:
        assert res.stderr.startswith("Traceback (most recent call last):\n")
    if last_line is not None:
        assert res.stderr.strip().splitlines()[-1].startswith(last_line)
    assert not read_log(log) and not list(tmp_path.glob("*.png"))  # failed before "loading"


def test_options_that_pass_validation(mflux_bin: Path, tmp_path: Path) -> None:
    for command, args in [
        ("mflux-generate-qwen", ("-q", "3", "--lora-style", "storyboard", "--vae-tile-size", "256")),
        ("mflux-generate-z-image-turbo", ("--compute-precision", "float16", "--steps", "1001", "--width", "65")),
        ("mflux-generate", ("-m", "dev", "--steps", "0", "--guidance", "nan")),
        ("mflux-generate-flux2", ("-m", "flux2-klein-base-4b", "--guidance", "4", "--steps", "1")),
    ]:
        res = run_mflux(mflux_bin, tmp_path, command, *SMALL, *args, "--output", "ok.png")
        assert res.returncode == 0, f"{command} {args}: {res.stderr}"
    record = exif_record(tmp_path / "ok_1.png")
    assert (record["compute_precision"], record["steps"], record["width"]) == ("float16", 1001, 64)


def test_seeds_out_of_range_fail_at_generation(mflux_bin: Path, tmp_path: Path) -> None:
    assert run_mflux(mflux_bin, tmp_path, "mflux-generate-qwen", "--prompt", "p", "--seed", "x").returncode == 2
    for seed in ("-1", str(2**64)):
        log = tmp_path / f"log{seed}.jsonl"
        res = run_mflux(
            mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "--seed", seed, HERD_STANDIN_LOG=str(log)
        )
        assert res.returncode == 1
        assert res.stderr.strip().splitlines()[-1] == "Invoked with types: int"
        assert "TypeError: key(): incompatible function arguments." in res.stderr
        assert [e["event"] for e in read_log(log)] == ["start", "end"]  # after "loading"
        assert read_log(log)[1]["status"] == "error"
        assert "Peak MLX memory:" in res.stdout
    assert not list(tmp_path.glob("*.png"))
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "--seed", "0", str(2**64 - 1))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["image_seed_0.png", f"image_seed_{2**64 - 1}.png"]


def test_png_metadata_chunks_like_mflux(mflux_bin: Path, tmp_path: Path) -> None:
    from PIL import Image

    model_dir = tmp_path / "my-anima"
    model_dir.mkdir()
    args = ("--prompt", "a red fox <in> the snow & ☃", "--negative-prompt", "blurry, lowres", "--seed", "42",
            "--width", "64", "--height", "48", "--steps", "1", "-q", "8", "--model", str(model_dir),
            "--base-model", "anima-turbo")  # fmt: skip
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *args, "--metadata", "--output", "out.png")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out.png"
    assert chunk_types(out) == [b"IHDR", b"iTXt", b"tEXt", b"eXIf", b"IDAT", b"IEND"]
    assert "INFO: Image saved successfully at: out.png\nINFO: Metadata embedded successfully at: out.png\n" in (
        res.stderr)  # fmt: skip
    record = exif_record(out)
    assert {k: record[k] for k in ("prompt", "negative_prompt", "seed", "steps", "guidance", "model", "quantize",
                                   "width", "height", "model_path", "base_model", "mflux_version")} == {
        "prompt": "a red fox <in> the snow & ☃", "negative_prompt": "blurry, lowres", "seed": 42, "steps": 1,
        "guidance": 1.0, "model": "circlestone-labs/Anima", "quantize": 8, "width": 64, "height": 48,
        "model_path": str(model_dir), "base_model": None, "mflux_version": "0.24.0",
    }  # fmt: skip
    assert json.loads((tmp_path / "out.metadata.json").read_text()) == record
    with Image.open(out) as im:
        xmp, iptc = im.info["XML:com.adobe.xmp"], bytes.fromhex(im.info["IPTC"])
    assert '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">a red fox &lt;in&gt; the snow &amp; ☃' in xmp
    for field in (
        "<mflux:seed>42</mflux:seed>",
        "<mflux:steps>1</mflux:steps>",
        "<mflux:guidance>1.0</mflux:guidance>",
        "<mflux:model>circlestone-labs/Anima</mflux:model>",
        "<xmp:CreatorTool>MFLUX 0.24.0</xmp:CreatorTool>",
    ):
        assert field in xmp  # fmt: skip
    assert "blurry" not in xmp and str(model_dir) not in xmp  # only EXIF carries them
    records, pos = {}, 0
    while pos < len(iptc):
        assert iptc[pos : pos + 2] == b"\x1c\x02"
        dataset, length = iptc[pos + 2], int.from_bytes(iptc[pos + 3 : pos + 5], "big")
        records[dataset] = iptc[pos + 5 : pos + 5 + length].decode()
        pos += 5 + length
    assert records[120] == "a red fox <in> the snow & ☃" and records[122] == "Seed: 42"
    assert records[90] == "Model: circlestone-labs/Anima" and records[101] == "Steps:1 CFG:1.0"
    assert records[25] == "AI;Generated;MFLUX;seed-42;steps-1;guidance-1.0;model-circlestone-labs/Anima"

    bare = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *args, "--no-exif", "--output", "bare.png")
    assert bare.returncode == 0, bare.stderr
    assert chunk_types(tmp_path / "bare.png") == [b"IHDR", b"IDAT", b"IEND"]
    assert "Metadata embedded" not in bare.stderr
    with Image.open(tmp_path / "bare.png") as im:
        assert im.info == {}
    assert png_pixels(tmp_path / "bare.png") == png_pixels(out)
    again = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *args, "--no-exif", "--output", "again.png")
    assert again.returncode == 0
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "bare.png").read_bytes()  # deterministic


def test_local_model_paths(mflux_bin: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "my-schnell-finetune"
    ckpt.mkdir()
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate", *SMALL, "-m", str(ckpt), "--base-model", "schnell")
    assert res.returncode == 0, res.stderr
    record = exif_record(tmp_path / "image.png")
    assert (record["model"], record["model_path"], record["base_model"], record["steps"]) == (
        str(ckpt), str(ckpt), "black-forest-labs/FLUX.1-schnell", 4)  # fmt: skip
    missing = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "-m", str(tmp_path / "gone"),
                        "--base-model", "anima-turbo")  # fmt: skip
    assert missing.returncode == 1 and "FileNotFoundError: Model not found" in missing.stderr
    foreign = run_mflux(mflux_bin, tmp_path, "mflux-generate-anima", *SMALL, "-m", str(ckpt), "--base-model", "dev")
    assert foreign.returncode == 1
    assert foreign.stderr.strip().endswith("this CLI only accepts the aliases ['anima-turbo', 'anima', "
                                           "'anima-aesthetic', 'anima-base'].")  # fmt: skip


# ---------------------------------------------------------------------------------------
# Ollama stand-in, in-process over ASGI
# ---------------------------------------------------------------------------------------

MODELS = "llama3.2:3b,nomic-embed-text"


def asgi_call(app: Any, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """One request against the ASGI app (whole body read)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://standin") as client:
            return await client.request(method, path, json=body)

    return asyncio.run(go())


@pytest.fixture
def app() -> Any:
    """A stand-in node with one model loaded and no streaming delay."""
    return build_app(MODELS, "llama3.2:3b", "mac-a", 0.0, None)


def test_ollama_listing_and_version(app: Any) -> None:
    assert asgi_call(app, "GET", "/api/version").json() == {"version": "0.12.0"}
    names = [m["name"] for m in asgi_call(app, "GET", "/api/tags").json()["models"]]
    assert names == ["llama3.2:3b", "nomic-embed-text:latest"]
    ps = asgi_call(app, "GET", "/api/ps").json()["models"]
    assert [m["name"] for m in ps] == ["llama3.2:3b"]
    assert {"expires_at", "size_vram", "size", "digest", "details", "context_length"} <= set(ps[0])
    models = asgi_call(app, "GET", "/v1/models").json()
    assert models["object"] == "list"
    assert set(models["data"][0]) == {"id", "object", "created", "owned_by"}


def test_ollama_chat_stream_ndjson(app: Any) -> None:
    res = asgi_call(
        app, "POST", "/api/chat", {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi you"}]}
    )
    assert res.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in res.text.splitlines()]
    assert len(lines) >= 4
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == "[mac-a] echo: hi you"
    assert {"total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration"} <= set(lines[-1])
    gen = asgi_call(app, "POST", "/api/generate", {"model": "llama3.2:3b", "prompt": "yo", "stream": False}).json()
    assert gen["response"] == "[mac-a] echo: yo" and gen["done"] is True


def test_openai_chat_stream_sse(app: Any) -> None:
    body = {"model": "llama3.2:3b", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    res = asgi_call(app, "POST", "/v1/chat/completions", body)
    events = [line.removeprefix("data: ") for line in res.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "[mac-a] echo: hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    plain = asgi_call(app, "POST", "/v1/chat/completions", {**body, "stream": False}).json()
    assert plain["object"] == "chat.completion" and plain["usage"]["total_tokens"] > 0


def test_embeddings_shapes_and_lazy_load(app: Any) -> None:
    res = asgi_call(app, "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b", "c"]}).json()
    assert len(res["embeddings"]) == 3 and all(len(v) == 8 for v in res["embeddings"])
    single = asgi_call(app, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "a"}).json()
    assert single["embeddings"] == res["embeddings"][:1]  # deterministic
    legacy = asgi_call(app, "POST", "/api/embeddings", {"model": "nomic-embed-text", "prompt": "a"}).json()
    assert len(legacy["embedding"]) == 8
    oai = asgi_call(app, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": ["a", "b"]}).json()
    assert [d["index"] for d in oai["data"]] == [0, 1] and len(oai["data"][0]["embedding"]) == 8
    loaded = [m["name"] for m in asgi_call(app, "GET", "/api/ps").json()["models"]]
    assert sorted(loaded) == ["llama3.2:3b", "nomic-embed-text:latest"]


def test_unknown_model_and_fail_status(app: Any) -> None:
    res = asgi_call(app, "POST", "/api/chat", {"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert res.status_code == 404
    assert res.json() == {"error": 'model "x" not found, try pulling it first'}
    oai = asgi_call(
        app, "POST", "/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "h"}]}
    )
    assert oai.status_code == 404 and "not found" in oai.json()["error"]["message"]
    failing = build_app(MODELS, "", "mac-b", 0.0, 503)
    down = asgi_call(failing, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "a"})
    assert down.status_code == 503 and "error" in down.json()
    assert asgi_call(failing, "GET", "/api/tags").status_code == 200
    failing.state.standin.fail_status = None  # recoverable at runtime
    assert asgi_call(failing, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "a"}).status_code == 200


# ---------------------------------------------------------------------------------------
# Ollama stand-in as a real process, driven by the official clients
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ollama_url() -> Iterator[str]:
    """Start the stand-in CLI on a free port and yield its base URL."""
    cmd = [sys.executable, str(OLLAMA_STANDIN), "--port", "0", "--models", MODELS, "--loaded", "llama3.2:3b",
           "--node", "mac-cli", "--chunk-delay", "0.01"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    try:
        line = ""
        timer = threading.Timer(15, proc.kill)  # never hang the suite on a broken start
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        assert line.startswith("OLLAMA_STANDIN_LISTENING "), line
        url = line.split()[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url + "/api/version", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_official_ollama_client(ollama_url: str, closing: Callable[[T], T]) -> None:
    ollama = pytest.importorskip("ollama")
    client = closing(ollama.Client(host=ollama_url))
    assert [m.model for m in client.list().models] == ["llama3.2:3b", "nomic-embed-text:latest"]
    assert client.ps().models[0].expires_at is not None
    pieces = list(client.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "hey"}], stream=True))
    assert len(pieces) >= 3 and pieces[-1].done
    assert "".join(p.message.content or "" for p in pieces) == "[mac-cli] echo: hey"
    assert len(client.embed(model="nomic-embed-text", input=["a", "b"]).embeddings) == 2
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404


def test_official_openai_client(ollama_url: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=ollama_url + "/v1", api_key="ollama", max_retries=0)
    try:
        assert {m.id for m in client.models.list()} == {"llama3.2:3b", "nomic-embed-text:latest"}
        stream = client.chat.completions.create(
            model="llama3.2:3b", messages=[{"role": "user", "content": "hey"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "[mac-cli] echo: hey"
        done = client.chat.completions.create(model="llama3.2:3b", messages=[{"role": "user", "content": "x"}])
        assert done.choices[0].message.content == "[mac-cli] echo: x" and done.usage is not None
        assert len(client.embeddings.create(model="nomic-embed-text", input="abc").data[0].embedding) == 8
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    finally:
        client.close()
