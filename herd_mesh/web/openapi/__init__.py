"""The public API's contract, served as `GET /openapi.json` (OpenAPI 3.1), so clients, tools and agents can see
every route with the fields and limits the peer really enforces.

One dict, built from the validators' own constants (`core/image_request.py`, `core/model_request.py`,
`core/settings.py`, the dashboard's query limits), so a limit changed there changes the contract too; one module
per family of routes. `tests/test_openapi.py` fails when a public route is added without being described here,
and `tests/test_api_contract.py` runs schemathesis against a live peer with it. `/mesh/*` is peer-to-peer and
left out on purpose: it is no API for clients.
"""

from __future__ import annotations

import copy

from ..._version import __version__
from .audio import audio_paths
from .dashboard import dashboard_paths, other_paths
from .images import image_paths
from .llm import llm_paths, manage_paths
from .schemas import COMPONENTS, EXAMPLE_EMBED, EXAMPLE_LLM, SIZE_PATTERN, TAGS_HEADER_PATTERN, Schema

__all__ = ["EXAMPLE_EMBED", "EXAMPLE_LLM", "SIZE_PATTERN", "SPEC", "TAGS_HEADER_PATTERN", "build_spec"]


def build_spec() -> Schema:
    """The whole document, freshly built (callers may change their copy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "herd-mesh",
            "version": __version__,
            "description": "Every peer of the mesh serves this API on port 11435 and routes each request to the "
            'best Mac. Errors are JSON: `{"error": "..."}` (OpenAI\'s shape on the /v1 model routes) with a 4xx '
            "status for a bad request. The peer-to-peer endpoints under /mesh/ are internal and not described.",
        },
        "tags": [
            {"name": name} for name in ("images", "llm", "embeddings", "models", "audio", "dashboard", "jobs", "meta")
        ],
        "paths": {
            **image_paths(),
            **llm_paths(),
            **manage_paths(),
            **audio_paths(),
            **dashboard_paths(),
            **other_paths(),
        },
        "components": {
            **copy.deepcopy(COMPONENTS),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key, or the mesh key"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "Anthropic's"},
            },
        },
        # Keys are optional: needed only on a peer started with --api-key (and, with a mesh key, for changes)
        "security": [{}, {"bearer": []}, {"x-api-key": []}],
    }


SPEC = build_spec()
