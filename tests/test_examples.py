"""The seed's curl, Python and JavaScript examples, run unchanged against a peer of a 3-peer mesh."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Mesh

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def localhost_mesh(mesh: Mesh) -> Mesh:
    """`localhost:11435` is a peer without mflux; the two others make the images."""
    mesh.add("front", host="127.0.0.1", mflux=False)
    mesh.add("studio")
    mesh.add("mini")
    mesh.wait_all_see_each_other()
    return mesh


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_examples_work_verbatim(localhost_mesh: Mesh, tmp_path: Path) -> None:
    out = subprocess.run(["sh", str(EXAMPLES / "curl_generate.sh")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert is_png(tmp_path / "mflux_output.png") and is_png(tmp_path / "mflux_output_tagged.png")
    stats_text, health_text = out.stdout.split("\n}\n", 1)
    stats = json.loads(stats_text + "\n}")
    assert stats["total"] == 2 and stats["by_tag"]["mflux-project"]["total"] == 1
    assert json.loads(health_text)["peers"]["up"] == 3

    py = subprocess.run([sys.executable, str(EXAMPLES / "generate_image.py"), "a lighthouse"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert py.returncode == 0, py.stderr
    assert "mflux image generation completed on" in py.stdout
    node = py.stdout.split(" on ")[1].split(" in ")[0]
    assert node in ("studio", "mini")
    assert is_png(tmp_path / "mflux_output.png")

    node_bin = shutil.which("node")
    if node_bin is None:
        pytest.fail("node is needed to run the seed's JavaScript example (apt-get install nodejs)")
    js = subprocess.run([node_bin, str(EXAMPLES / "generate_image.mjs"), "a lighthouse"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert js.returncode == 0, js.stderr
    assert is_png(tmp_path / "mflux_output_js.png")


def test_javascript_example_reports_the_json_error(localhost_mesh: Mesh, tmp_path: Path) -> None:
    """The seed's JS throws `(await resp.json()).error`: our errors are JSON, so it gets a readable message."""
    localhost_mesh.peers["front"].post("/dashboard/api/settings", json={"image_generation": False})
    node_bin = shutil.which("node") or "node"
    js = subprocess.run([node_bin, str(EXAMPLES / "generate_image.mjs")], cwd=tmp_path, capture_output=True,
                        text=True, timeout=60)  # fmt: skip
    assert js.returncode != 0
    assert "image generation is switched off" in js.stderr
