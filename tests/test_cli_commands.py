"""The `herd` command for people, run as a person would (subprocesses) against a live 3-peer mesh: the peer still
starts bare, every command answers, `herd generate` shows progress and writes images, exit codes mean what
the help says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client_fakes import FLEET, JobsPeer, fleet
from tests.harness import Mesh, OllamaStandin, Peer, next_address

HERD = [sys.executable, "-m", "herd_mesh"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Mesh, OllamaStandin]]:
    with fleet(tmp_path_factory.mktemp("cli-fleet")) as pair:
        yield pair


def herd(*args: str, mesh: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "OLLAMA_"))}
    if mesh:
        env["HERD_MESH"] = mesh
    return subprocess.run([*HERD, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def test_bare_herd_is_still_the_peer_and_serve_is_the_same(tmp_path: Path, multicast: None) -> None:
    usage = herd("--help")
    assert usage.returncode == 0 and "--node-id" in usage.stdout and "--cors-origin" in usage.stdout
    assert "herd generate" in usage.stdout and "herd service" in usage.stdout
    assert herd("--version").stdout.startswith("herd-mesh ")
    node_script = Path(sys.executable).parent / "herd-node"
    if node_script.exists():
        assert "--node-id" in subprocess.run([str(node_script), "--help"], capture_output=True, text=True).stdout
    mesh = Mesh(tmp_path)
    try:
        peer = mesh.add("served", args=[], start=False)
        peer.start = lambda wait=True: _start_with_serve(peer)  # type: ignore[method-assign]
        peer.start()
        peer.wait_ready()
        assert peer.get("/mesh/ping").json()["node_id"] == "served"
        assert "herd serve" in herd("serve", "--help").stdout
    finally:
        mesh.close()


def _start_with_serve(peer: Peer) -> Peer:
    peer.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [*HERD, "serve", "--host", peer.host, "--node-id", peer.node_id, "--mesh", peer.mesh,
            "--data-dir", str(peer.data_dir)]  # fmt: skip
    with peer.log_path.open("ab") as log:
        peer.proc = subprocess.Popen(argv, env=peer.env, stdout=log, stderr=subprocess.STDOUT)
    return peer


def test_peers_status_models_settings_and_stats(live: tuple[Mesh, OllamaStandin]) -> None:
    mesh, _ = live
    peers = herd("peers", mesh=mesh.name)
    assert peers.returncode == 0, peers.stderr
    rows = peers.stdout.splitlines()
    assert rows[0].split() == ["NODE", "STATUS", "MODELS", "MEMORY", "RUNNING", "QUEUED"]
    assert {row.split()[0] for row in rows[1:4]} == set(FLEET) and "3 of 3 peers up" in peers.stdout
    assert all("z-image-turbo" in row for row in rows[1:4])  # the default model is named first

    beta = ("--url", mesh.peers["beta"].url)  # the rest skip discovery: one command above has shown it
    status = herd("status", *beta)
    assert status.returncode == 0 and "3 peers up" in status.stdout and "image generation on" in status.stdout

    models = herd("models", *beta)
    assert models.returncode == 0
    assert any(line.startswith("llama3:8b") and "alpha" in line for line in models.stdout.splitlines())

    assert herd("settings", "get", "image_keep_alive_s", *beta).stdout.strip() == "300"
    changed = herd("settings", "set", "image_keep_alive_s", "90", *beta)
    assert changed.returncode == 0 and "image_keep_alive_s = 90" in changed.stdout
    assert "image_keep_alive_s = 90" in herd("settings", "get", *beta).stdout
    assert herd("settings", "set", "image_keep_alive_s", "300", *beta).returncode == 0
    wrong = herd("settings", "set", "store_prompts", "maybe", *beta)
    assert wrong.returncode == 2 and "not true or false" in wrong.stderr
    unknown = herd("settings", "get", "colour", *beta)
    assert unknown.returncode == 2 and "image_generation" in unknown.stderr

    stats = herd("stats", "--hours", "1", *beta)
    assert stats.returncode == 0 and stats.stdout.startswith("last 1 h across the mesh")
    assert herd("peers", "--json", "--url", mesh.peers["beta"].url).stdout.lstrip().startswith("[")


def test_generate_writes_the_images_and_reports_each(live: tuple[Mesh, OllamaStandin], tmp_path: Path) -> None:
    mesh, _ = live
    one = herd("generate", "a cat", "-o", "cat.png", "--width", "256", "--height", "256", "--tags", "cli,test",
               mesh=mesh.name, cwd=tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "cat.png").read_bytes().startswith(b"\x89PNG")
    path, node, seed, ms = one.stdout.strip().split("\t")
    assert path == "cat.png" and node in FLEET and seed.isdigit() and ms.isdigit()
    assert f"done on {node}" in one.stderr

    many = herd("generate", "a dog", "-o", "out/dog.png", "--count", "3", "--seed", "10", "--width", "128",
                "--height", "128", mesh=mesh.name, cwd=tmp_path)  # fmt: skip
    assert many.returncode == 0, many.stderr
    lines = [line.split("\t") for line in many.stdout.strip().splitlines()]
    assert [line[0] for line in lines] == [f"out/dog-{i}.png" for i in (1, 2, 3)]
    assert [line[2] for line in lines] == ["10", "11", "12"]
    assert all((tmp_path / "out" / f"dog-{i}.png").is_file() for i in (1, 2, 3))
    assert "[3/3]" in many.stderr


def test_generate_shows_where_it_waits_and_each_step(tmp_path: Path) -> None:
    fake = JobsPeer("jobs-mesh", seconds=2.0)
    try:
        out = herd("generate", "a cat", "-o", "cat.png", "--url", fake.url, cwd=tmp_path)
    finally:
        fake.close()
    assert out.returncode == 0, out.stderr
    assert "queued on fake-gpu, number 1 in line" in out.stderr
    steps = set(re.findall(r"fake-gpu: step (\d)/4", out.stderr))
    assert len(steps) >= 2 and "done on fake-gpu in 1.2 s, seed 7" in out.stderr
    assert len(fake.request_ids) == 1 and len(fake.request_ids[0]) == 32  # the id it polled /api/jobs/ with


def test_exit_codes_are_for_people(live: tuple[Mesh, OllamaStandin], tmp_path: Path) -> None:
    mesh, _ = live
    refused = herd("generate", "a cat", "--model", "no-such-model", mesh=mesh.name, cwd=tmp_path)
    assert refused.returncode == 1 and "no-such-model" in refused.stderr and not refused.stdout
    assert herd("generate", "a cat", "--count", "0", cwd=tmp_path).returncode == 2
    assert herd("generate", "--width", "x", cwd=tmp_path).returncode == 2
    lonely = herd("peers", "--url", f"http://{next_address()}:11435", "--mesh", "nobody-at-all")
    assert lonely.returncode == 3 and "no herd-mesh peer found" in lonely.stderr
