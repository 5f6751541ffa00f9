"""The dashboard follows the mesh through its event stream, in a real headless Chromium (Debian's) with polling
turned off (`?poll=0`): settings, a running job's steps, finished requests, the time window, a peer going down and
coming back. Screenshots are saved in the test's temp dir (the path is printed) for a person to look at."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from tests.harness import Mesh, OllamaStandin

JOB = {"model": "z-image-turbo", "prompt": "a lighthouse at dawn", "width": 512, "height": 512, "steps": 5}
NO_POLLING = ("/mesh/peers", "/dashboard/api/settings?detail=1")  # what the page polls only without the stream


def test_the_page_follows_the_mesh_live_from_its_event_stream(mesh: Mesh, browser: Any, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\ndashboard screenshots: {shots}")
    ollama = OllamaStandin("ollama-charlie", "llama3.2:3b", chunk_delay=0.2)
    try:
        alpha = mesh.add("alpha", mflux=False)  # the page is served here; images can only run on bravo
        mesh.add("bravo", ms_per_mp_step=3000)  # about 0.8 s a step: steps can be watched going by
        charlie = mesh.add("charlie", mflux=False, ollama_url=ollama.url)
        mesh.wait_all_see_each_other()

        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        problems: list[str] = []
        asked: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        page.on("request", lambda request: asked.append(request.url))
        page.goto(alpha.url + "/dashboard?poll=0")
        page.wait_for_selector("#live.events", timeout=5000)  # the stream is open
        for name in ("alpha", "bravo", "charlie"):
            page.wait_for_selector(f".card[data-node='{name}'] .pill.up", timeout=5000)

        # a setting changed on another peer shows here, pushed
        assert charlie.post("/dashboard/api/settings", json={"store_prompts": True}).status_code == 200
        page.wait_for_selector("#setting-store_prompts:checked", timeout=3000)

        # a running image shows step i/n and an ETA; an LLM stream its model and elapsed time
        answers: dict[str, httpx.Response] = {}

        def image() -> None:
            headers = {"X-Request-Id": "live-job-1", "X-Herd-Tags": "launch"}
            answers["image"] = httpx.post(alpha.url + "/api/generate-image", json=JOB, headers=headers, timeout=60)

        def chat() -> None:
            words = " ".join(f"word{i}" for i in range(20))  # the stand-in echoes it, a word every 0.2 s
            body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": words}]}
            with httpx.stream("POST", charlie.url + "/api/chat", json=body, timeout=60) as response:
                answers["chat"] = response
                for _ in response.iter_lines():
                    pass

        clients = [threading.Thread(target=image), threading.Thread(target=chat)]
        for client in clients:
            client.start()
        try:
            bar = page.wait_for_selector("#queues tr.job.image [role=progressbar]:has-text('step 2/5')",
                                         timeout=15000)  # fmt: skip
            assert "ETA" in bar.inner_text() and "bravo" in page.inner_text("#queues tr.job.image")
            llm = page.wait_for_selector("#queues tr.job.llm:has-text('elapsed')", timeout=10000)
            assert "llama3.2:3b" in llm.inner_text() and "charlie" in llm.inner_text()
            page.screenshot(path=str(shots / "1-running-job.png"), full_page=True)
        finally:
            for client in clients:
                client.join()
        assert answers["image"].status_code == 200 and answers["chat"].status_code == 200

        # the finished job reaches the statistics without asking: in the recent table, under its tag
        page.wait_for_selector("#recent tr[data-job='live-job-1']", timeout=5000)
        page.wait_for_selector("#tags-table tr[data-tag='launch']", timeout=5000)
        page.click("#recent tr[data-job='live-job-1']")  # routing explained, from the router's own words
        page.wait_for_selector("#routing-result li:has-text('bravo was expected to finish first')", timeout=5000)
        assert "alpha (no z-image-turbo)" in page.inner_text("#routing-result")

        # the time window applies to every chart
        page.click("#window-tabs button[data-hours='1']")
        page.wait_for_selector("#stats-window:has-text('last 1 h')", timeout=5000)
        assert any("hours=1&" in url for url in asked)
        assert page.locator("#chart-timeline svg rect").count() >= 1 and page.locator("#chart-trend-node svg").count()
        page.click("#window-tabs button[data-hours='720']")
        page.wait_for_selector("#stats-window:has-text('last 30 d')", timeout=5000)
        assert "launch" in page.inner_text("#tags-table")
        page.screenshot(path=str(shots / "2-statistics-30d.png"), full_page=True)

        # a peer going down: shown down, with no queue it no longer has; and back up
        charlie.kill()
        page.wait_for_selector(".card[data-node='charlie'] .pill.down", timeout=6000)
        assert "unknown while it is down" in page.inner_text(".card[data-node='charlie']")
        assert page.locator("#queues tr", has_text="charlie").count() == 0
        page.wait_for_selector("#advice li:has-text('peer charlie unreachable')", timeout=5000)
        page.screenshot(path=str(shots / "3-peer-down.png"), full_page=True)
        charlie.start()
        page.wait_for_selector(".card[data-node='charlie'] .pill.up", timeout=10000)
        page.wait_for_selector("#advice li:has-text('peer charlie unreachable')", state="detached", timeout=5000)
        assert not [url for url in asked if url.endswith(NO_POLLING)], asked  # every change came pushed
        assert problems == [], problems
        page.screenshot(path=str(shots / "4-peer-back.png"), full_page=True)
    finally:
        ollama.stop()
