"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright) against a real mesh."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from tests.harness import Mesh, wait_until

SMALL = {"model": "z-image-turbo", "prompt": "a lighthouse at dawn", "width": 512, "height": 512, "steps": 4}


def test_dashboard_shows_the_mesh_live_and_its_switch_turns_images_off_everywhere(
    mesh: Mesh, browser: Any, tmp_path: Path
) -> None:
    alpha = mesh.add("alpha", mflux=False)  # the page is served here; the job can only run on bravo
    bravo = mesh.add("bravo", ms_per_mp_step=20000)  # ~20 s per image: long enough to be seen running
    charlie = mesh.add("charlie", mflux=False)
    mesh.wait_all_see_each_other()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.goto(alpha.url + "/dashboard")
    for name in ("alpha", "bravo", "charlie"):
        page.wait_for_selector(f".card[data-node='{name}'] .pill.up", timeout=5000)
    page.wait_for_selector("#setting-image_generation:checked", timeout=5000)
    page.wait_for_selector("#tiles .tile", timeout=5000)

    # a job running on bravo shows on alpha's page with its badge; the client hangs up after 4 s, which cancels it
    def slow_job() -> None:
        try:
            httpx.post(bravo.url + "/api/generate-image", json=SMALL, timeout=4)
        except httpx.TimeoutException:
            pass

    client = threading.Thread(target=slow_job)
    client.start()
    try:
        job = page.wait_for_selector("#queues tr.job.image", timeout=5000)
        assert "[IMAGE]" in job.inner_text() and "bravo" in job.inner_text()
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    finally:
        client.join()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    # switching image generation off in alpha's page: a request to charlie gets 503 within 2 s
    page.uncheck("#setting-image_generation")
    page.wait_for_selector("#settings-note:has-text('applied on')", timeout=3000)

    def refused() -> bool:
        response = charlie.post("/api/generate-image", json=SMALL, timeout=10)
        return response.status_code == 503 and "switched off" in response.json()["error"]

    wait_until(refused, 2.0, interval=0.1, what="charlie to refuse images")
    assert "alpha, bravo, charlie" in page.inner_text("#settings-note")
    assert problems == [], problems
