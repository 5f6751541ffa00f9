"""Schemathesis against a live peer: requests generated from the contract (`/openapi.json`), valid and invalid,
never get a 5xx, and the answers are what the contract says (status, content type, JSON shape, headers).

One real peer process (tests/harness.py) with the mflux stand-in (images take milliseconds) and the Ollama
stand-in serving the contract's example models, so valid requests really generate, chat, embed and pull. The
number of examples per operation is bounded (`EXAMPLES`) to keep the run within a minute on two cores.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from herd_mesh.core.settings import SCHEMA as SETTINGS
from herd_mesh.web.openapi import EXAMPLE_EMBED, EXAMPLE_LLM, SPEC
from tests.harness import Mesh, OllamaStandin, Peer

# Examples per operation (each operation also runs its explicit examples), the same ones on every run so that a
# failure in CI is reproducible here. HERD_CONTRACT_EXAMPLES=300 explores further, with fresh examples each run.
EXPLORE = int(os.environ.get("HERD_CONTRACT_EXAMPLES", "0"))
EXAMPLES = EXPLORE or 25
# What every answer is checked for. Left out: `positive_data_acceptance` (a valid request for a model nobody has
# is a 404) and the stateful checks (no operation creates a resource that another reads back).
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "negative_data_rejection")  # fmt: skip
# The Ollama, OpenAI and Anthropic routes check only what herd-mesh needs (model, stream, messages, metadata, the
# peer) and pass the rest to Ollama as sent, as their clients expect: refusing other wrong fields is Ollama's part.
PASSTHROUGH_TAGS = ["llm", "embeddings", "models"]
ENDLESS = [path for path, ops in SPEC["paths"].items() if any(op.get("x-endless") for op in ops.values())]
DEFAULT_SETTINGS = {key: s.default for key, s in SETTINGS.items()}
SEEN: defaultdict[str, Counter[int]] = defaultdict(Counter)  # "METHOD /path" -> status -> answers

CONFIG = schemathesis.Config.from_dict({
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    "generation": {"database": "none"},
    "operations": [{"include-tag": PASSTHROUGH_TAGS, "checks": {"negative_data_rejection": {"enabled": False}}}],
})  # fmt: skip
# Built from the module that serves it: schemathesis makes the tests at collection, before any peer runs;
# `test_the_live_peer_serves_this_contract` checks that the peer serves exactly this document.
schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG).exclude(path=ENDLESS)

pytestmark = pytest.mark.timeout(600 if EXPLORE else 180)


@pytest.fixture(scope="module")
def live_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """One peer, alone (no mDNS), with fast stand-ins for mflux and Ollama; its log is printed on failure."""
    base: Path = tmp_path_factory.mktemp("contract")
    ollama = OllamaStandin("solo", f"{EXAMPLE_LLM},{EXAMPLE_EMBED}", EXAMPLE_LLM, chunk_delay=0,
                           args=("--pull-seconds", "0.01"))  # fmt: skip
    mesh = Mesh(base)
    try:
        yield mesh.add("solo", args=["--no-mdns"], ollama_url=ollama.url, ms_per_mp_step=0.01)
    finally:
        mesh.close()
        ollama.stop()
        print(mesh.logs())


def test_the_live_peer_serves_this_contract(live_peer: Peer) -> None:
    response = live_peer.get("/openapi.json")
    assert response.status_code == 200 and response.json() == SPEC


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not EXPLORE,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_server_error(case: Any, live_peer: Peer) -> None:
    response = case.call(base_url=live_peer.url, timeout=60)
    SEEN[f"{case.method} {case.path}"][response.status_code] += 1
    try:
        case.validate_response(response)
    finally:
        if case.method == "POST" and case.path == "/dashboard/api/settings":  # switched back for the next case
            httpx.post(f"{live_peer.url}/dashboard/api/settings", json=DEFAULT_SETTINGS, timeout=10)


def test_valid_requests_reached_the_work_itself() -> None:
    """The examples did not all bounce off validation: images were made, models answered, settings changed."""
    if not SEEN:
        pytest.skip("the schemathesis cases did not run")
    print({op: dict(counts) for op, counts in sorted(SEEN.items())})
    for op in ("POST /api/generate-image", "POST /v1/images/generations", "POST /api/chat", "POST /api/generate",
               "POST /v1/chat/completions", "POST /v1/messages", "POST /v1/responses", "POST /v1/completions",
               "POST /api/embed", "POST /api/embeddings", "POST /v1/embeddings", "POST /api/show",
               "POST /api/pull", "POST /dashboard/api/settings", "GET /dashboard/api/stats",
               "GET /v1/models/{model}"):  # fmt: skip
        assert SEEN[op][200] > 0, f"{op}: no valid request succeeded: {dict(SEEN[op])}"
        assert sum(n for status, n in SEEN[op].items() if 400 <= status < 500) > 0, f"{op}: nothing was refused"


# -- what schemathesis found, pinned -----------------------------------------------------------------------------
def test_a_message_that_is_not_an_object_is_a_clear_400(live_peer: Peer) -> None:
    """Found by schemathesis: `"messages": [[null, null]]` was a 502 ("failed on every peer")."""
    for path in ("/api/chat", "/v1/chat/completions", "/v1/messages"):
        body = {"model": EXAMPLE_LLM, "messages": [[None, None]], "max_tokens": 5, "stream": False}
        response = live_peer.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert "'messages' must be a list of" in response.text


def test_a_field_ollama_cannot_read_is_its_400_not_a_502(live_peer: Peer) -> None:
    """Found by schemathesis: `"prompt": [null, null]` made the Ollama stand-in fail (500, so 502 here) where
    Ollama's JSON binding answers 400; the peer passes Ollama's 400 on as written."""
    response = live_peer.post("/api/generate", json={"model": EXAMPLE_LLM, "prompt": [None, None], "stream": False})
    assert response.status_code == 400 and "cannot unmarshal" in response.json()["error"]
