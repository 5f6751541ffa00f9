"""The one way to tell a user how to add an optional part (an "extra") of herd-mesh.

herd-mesh is installed from a checkout (`uv tool install .`), not from PyPI, so the hint names the checkout."""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """E.g. `in the herd-mesh checkout: uv tool install --reinstall '.[stt]' (or pip install -e '.[stt]')`."""
    return f"in the herd-mesh checkout: uv tool install --reinstall '.[{extra}]' (or pip install -e '.[{extra}]')"
