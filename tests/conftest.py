"""Fixtures: a real mesh of peer processes, and the loopback multicast it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.harness import Mesh

T = TypeVar("T")


def _loopback_multicast() -> bool:
    out = subprocess.run(["ip", "link", "show", "lo"], capture_output=True, text=True).stdout
    return "MULTICAST" in out


@pytest.fixture(scope="session")
def multicast() -> None:
    """mDNS between peers on 127.0.0.x needs multicast on lo (`ip link set lo multicast on`, as root)."""
    if _loopback_multicast():
        return
    if os.geteuid() == 0:
        subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=False)
        if _loopback_multicast():
            return
    message = "loopback has no multicast: run `sudo ip link set lo multicast on` (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _mesh(request: pytest.FixtureRequest, base: Path) -> Iterator[Mesh]:
    """A mesh whose peers are all stopped afterwards; their logs are printed when the test failed."""
    m = Mesh(base)
    try:
        yield m
    finally:
        m.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(m.logs())


@pytest.fixture
def mesh(request: pytest.FixtureRequest, tmp_path: Path, multicast: None) -> Iterator[Mesh]:
    yield from _mesh(request, tmp_path)


@pytest.fixture
def static_mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    """Peers that use only --peer (no multicast needed)."""
    yield from _mesh(request, tmp_path)


@pytest.fixture
def closing() -> Iterator[Callable[[T], T]]:
    """Close what a test opens (the official SDK clients hold connections), even when the test fails."""
    opened: list[Any] = []

    def register(thing: T) -> T:
        opened.append(thing)
        return thing

    yield register
    for thing in reversed(opened):
        thing.close()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, driven by Playwright); missing is a failure in CI (`.ci/run` installs it)
    and a skip elsewhere. One per test: Playwright's sync API holds an event loop while it runs, and async
    tests cannot run beside it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = 'playwright is missing: pip install -e ".[test]"'
    else:
        reason = "" if os.path.exists(CHROMIUM) else "chromium is missing: apt-get install chromium"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
