"""The README's promises: its test command is exactly what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("**Run the whole test suite**", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert block.strip() in [line.strip() for line in ci]


def test_installing_pulls_no_torch_or_cuda() -> None:
    """A plain install (and the test extra) must stay small on Linux: no torch, no NVIDIA wheels."""
    from importlib import metadata

    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert "herd-mesh" in names
    heavy = sorted(n for n in names if n in ("torch", "mlx", "mflux") or n.startswith(("nvidia-", "mlx-")))
    assert heavy == [], heavy
