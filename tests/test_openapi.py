"""The API contract (`GET /openapi.json`) describes every public route, and says what the validators really do:
a limit changed in `core/` without the contract, or a route added without it, fails here."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from herd_mesh.core import settings
from herd_mesh.core.image_request import (
    FIELDS,
    MAX_SIDE,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MIN_SIDE,
    OPENAI_FIELDS,
    header_tags,
    parse_image_request,
    parse_openai_request,
)
from herd_mesh.core.model_request import OPENAI_TRANSCRIBE_FIELDS, TRANSCRIBE_FIELDS
from herd_mesh.errors import RequestError
from herd_mesh.web import openapi
from herd_mesh.web.app import CONVERSATION_PATHS, UPLOAD_PATHS
from herd_mesh.web.middleware.body_limit import MAX_BODY_BYTES, MAX_CONVERSATION_BYTES, MAX_UPLOAD_BYTES
from tests.inprocess import InProcessMesh

SPEC = openapi.SPEC
PEER_INTERNAL = "/mesh/"


def _body_schema(path: str, method: str = "post", media: str = "application/json") -> dict[str, Any]:
    return SPEC["paths"][path][method]["requestBody"]["content"][media]["schema"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route a peer serves, path parameters written as OpenAPI writes them."""
    mesh = InProcessMesh(tmp_path, ["solo"])
    async with mesh.running():  # and stopped: its files are closed
        routes = mesh.peers["solo"].app.routes
    found = set()
    for route in routes:
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", getattr(route, "path", ""))
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method.lower(), path))
    return found


@pytest.mark.anyio
async def test_every_public_route_is_described_and_nothing_else(tmp_path: Path) -> None:
    served = {(m, p) for m, p in await _app_routes(tmp_path) if not p.startswith(PEER_INTERNAL)}
    described = {(m, p) for p, ops in SPEC["paths"].items() for m in ops if m in ("get", "post", "delete", "put")}
    assert served - described == set(), "routes without a description in herd_mesh/web/openapi/"
    assert described - served == set(), "described routes that no peer serves"
    assert not any(p.startswith(PEER_INTERNAL) for p in SPEC["paths"]), "/mesh/ is peer-to-peer, not public API"


@pytest.mark.anyio
async def test_any_peer_serves_the_contract(tmp_path: Path) -> None:
    mesh = InProcessMesh(tmp_path, ["solo"])
    async with mesh.running(), mesh.client("solo") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.1") and "/api/generate-image" in doc["paths"]
    assert doc == SPEC


def test_the_document_is_valid_openapi_3_1() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR  # the metaschema schemathesis uses

    errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(SPEC)]
    assert errors == []


def test_request_fields_are_the_validators_fields() -> None:
    assert set(_body_schema("/api/generate-image")["properties"]) == set(FIELDS)
    assert set(_body_schema("/v1/images/generations")["properties"]) == set(OPENAI_FIELDS)
    assert set(_body_schema("/dashboard/api/settings")["properties"]) == set(settings.SCHEMA)
    form = "multipart/form-data"
    assert set(_body_schema("/api/transcribe", media=form)["properties"]) == set(TRANSCRIBE_FIELDS) - {"file"}
    openai_form = set(_body_schema("/v1/audio/transcriptions", media=form)["properties"])
    assert openai_form == set(OPENAI_TRANSCRIBE_FIELDS) - {"audio"}


def _image(**changes: Any) -> dict[str, Any]:
    return {"model": "z-image-turbo", "prompt": "a cat", **changes}


@pytest.mark.parametrize("field", ["width", "height", "steps", "seed", "guidance"])
def test_numeric_limits_are_the_validators_limits(field: str) -> None:
    """The contract's minimum and maximum are accepted; one step past either is a 400."""
    prop = _body_schema("/api/generate-image")["properties"][field]
    step = 1 if "integer" in prop["type"] else 0.001
    for value in (prop["minimum"], prop["maximum"]):
        parse_image_request(_image(**{field: value}))
    for value in (prop["minimum"] - step, prop["maximum"] + step):
        with pytest.raises(RequestError) as caught:
            parse_image_request(_image(**{field: value}))
        assert caught.value.status == 400 and field in caught.value.message


def test_enums_and_text_limits_are_the_validators() -> None:
    props = _body_schema("/api/generate-image")["properties"]
    for level in props["quantize"]["enum"]:
        parse_image_request(_image(quantize=level))
    with pytest.raises(RequestError):
        parse_image_request(_image(quantize=max(props["quantize"]["enum"]) + 1))
    longest = props["prompt"]["maxLength"]
    parse_image_request(_image(prompt="x" * longest))
    for bad in ("x" * (longest + 1), "   ", "a\x00b"):
        assert len(bad) > longest or not re.search(props["prompt"]["pattern"], bad), "the contract allows it"
        with pytest.raises(RequestError):
            parse_image_request(_image(prompt=bad))
    tags = SPEC["components"]["schemas"]["Tags"]
    parse_image_request(_image(metadata={"tags": ["t" * tags["items"]["maxLength"]] * tags["maxItems"]}))
    with pytest.raises(RequestError):
        parse_image_request(_image(metadata={"tags": ["t"] * (tags["maxItems"] + 1)}))


def test_the_size_pattern_is_exactly_the_sizes_allowed() -> None:
    """Every side from 0 to 9999, plain and zero-padded: the contract and the validator agree on each."""
    pattern = re.compile(openapi.SIZE_PATTERN)
    for side in range(0, 10_000):
        for text in {str(side), str(side).zfill(3), str(side).zfill(4), str(side).zfill(5)}:
            size = f"{text}x{MIN_SIDE}"
            try:
                parse_openai_request({"prompt": "a cat", "size": size}, default_model="z-image-turbo")
            except RequestError:
                assert not pattern.fullmatch(size), size
            else:
                assert pattern.fullmatch(size), size
                assert MIN_SIDE <= side <= MAX_SIDE


def test_the_tags_pattern_is_exactly_the_tags_allowed() -> None:
    """Tag lists as `X-Herd-Tags` (and the string form of `metadata.tags`): the contract and `header_tags`
    agree on tricky ones and on thousands of random ones."""
    pattern = re.compile(openapi.TAGS_HEADER_PATTERN)
    rng = random.Random(7)
    longest = "t" * MAX_TAG_CHARS
    cases = ["", " ", ",", " a ", ",a,,b, ", longest, f" {longest} ", longest + "t", ",".join(["t"] * MAX_TAGS),
             ",".join(["t"] * (MAX_TAGS + 1)), ",".join(["t"] * MAX_TAGS) + ", ,", "a b, c"]  # fmt: skip
    for _ in range(3000):
        parts = rng.randint(MAX_TAGS - 3, MAX_TAGS + 2)
        cases.append(
            ",".join(rng.choice(["", " ", " y ", "x" * rng.randint(1, MAX_TAG_CHARS + 2)]) for _ in range(parts))
        )
        cases.append("".join(rng.choice("a ,") for _ in range(rng.randint(0, 40))))
    for value in cases:
        try:
            header_tags(value)
        except RequestError:
            assert not pattern.fullmatch(value), value
        else:
            assert pattern.fullmatch(value), value


def test_the_examples_are_accepted() -> None:
    parse_image_request(SPEC["paths"]["/api/generate-image"]["post"]["requestBody"]["content"]["application/json"]
                        ["example"])  # fmt: skip
    openai_example = SPEC["paths"]["/v1/images/generations"]["post"]["requestBody"]["content"]["application/json"]
    parse_openai_request(openai_example["example"], default_model="z-image-turbo")
    settings_example = SPEC["paths"]["/dashboard/api/settings"]["post"]["requestBody"]["content"]["application/json"]
    settings.validate_changes(settings_example["example"])


def test_body_limits_are_the_routes_limits() -> None:
    """Chat routes take a whole conversation (32 MB), audio 100 MB, every other JSON body 1 MB."""
    for path, ops in SPEC["paths"].items():
        for op in ops.values():
            if "413" in op["responses"]:
                limit = MAX_UPLOAD_BYTES if path in UPLOAD_PATHS else MAX_CONVERSATION_BYTES if path in \
                    CONVERSATION_PATHS else MAX_BODY_BYTES  # fmt: skip
                expected = f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"
                assert expected in op["responses"]["413"]["description"], (path, expected)


def test_errors_are_json_with_an_error_field() -> None:
    """Every 4xx of every operation is described as JSON with `error`."""
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                    assert "error" in SPEC["components"]["schemas"][schema]["required"], (method, path, status)
