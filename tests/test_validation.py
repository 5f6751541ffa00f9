"""Image request validation: every rule, and every error names the field it is about."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herd_mesh.core import catalogue
from herd_mesh.core.image_request import (
    FIELDS,
    ImageRequest,
    header_tags,
    parse_image_request,
    parse_json_object,
    parse_openai_request,
    settle,
)
from herd_mesh.errors import RequestError


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "z-image-turbo", "prompt": "a lighthouse at dusk", **fields}


def refused(request: dict[str, Any], field: str) -> RequestError:
    """The request is refused with a message that names `field`."""
    with pytest.raises(RequestError) as info:
        parse_image_request(request)
    assert f"'{field}'" in info.value.message, info.value.message
    assert info.value.status == 400
    return info.value


def test_defaults() -> None:
    req = parse_image_request(body())
    assert req == ImageRequest(
        model="z-image-turbo",
        prompt="a lighthouse at dusk",
        width=1024,
        height=1024,
        steps=None,  # the model's own default, applied where the job runs (4 for z-image-turbo)
        quantize=8,
        seed=None,
        negative_prompt="",
        tags=(),
    )
    assert settle(req.job("j", 1), catalogue.MODELS["z-image-turbo"])[0].steps == 4


def test_every_field_accepted() -> None:
    req = parse_image_request(
        body(width=512, height=768, steps=20, quantize=4, seed=42, negative_prompt="blurry", metadata={"tags": ["x"]})
    )
    assert (req.width, req.height, req.steps, req.quantize, req.seed) == (512, 768, 20, 4, 42)
    assert (req.negative_prompt, req.tags) == ("blurry", ("x",))


def test_a_forwarded_job_round_trips() -> None:
    """A job travels to another peer as JSON and is read back there as the same job."""
    req = parse_image_request(body(width=512, seed=3, guidance=3.5, negative_prompt="blur", steps=7))
    job = req.job("j", 3)
    assert parse_image_request(job.to_json()).job("j", 3) == job
    unset = parse_image_request(body()).job("j", 9)  # steps and guidance stay unset: the runner's defaults apply
    assert "steps" not in unset.to_json() and "guidance" not in unset.to_json()
    assert parse_image_request(unset.to_json()).job("j", 9) == unset


@pytest.mark.parametrize("model", [None, "", "   ", 5, ["flux-dev"]])
def test_model_is_required(model: Any) -> None:
    request = body(model=model) if model is not None else {"prompt": "x"}
    refused(request, "model")


@pytest.mark.parametrize(("model", "shown"), [(0, "0"), (float("nan"), "NaN"), ([], "[]"), (True, "true")])
def test_a_model_that_is_not_a_string_is_named_as_such(model: Any, shown: str) -> None:
    error = refused(body(model=model), "model")
    assert error.message == f"'model' must be a string such as \"z-image-turbo\", got {shown}"
    with pytest.raises(RequestError, match="'model' must be a string"):
        parse_openai_request({"model": model, "prompt": "a cat"}, "z-image-turbo")


def test_model_is_trimmed() -> None:
    assert parse_image_request(body(model=" flux-dev ")).model == "flux-dev"


@pytest.mark.parametrize("prompt", [None, "", "  \n", 42, ["a"]])
def test_prompt_is_required_and_not_empty(prompt: Any) -> None:
    request = body(prompt=prompt) if prompt is not None else {"model": "flux-dev"}
    refused(request, "prompt")


def test_prompt_length_limit() -> None:
    assert len(parse_image_request(body(prompt="p" * 4000)).prompt) == 4000
    error = refused(body(prompt="p" * 4001), "prompt")
    assert "4000" in error.message


@pytest.mark.parametrize("side", ["width", "height"])
@pytest.mark.parametrize(("given", "expected"), [(64, 64), (2048, 2048), (512, 512), (512.0, 512), (1000, 1008)])
def test_sides_in_range(side: str, given: float, expected: int) -> None:
    assert getattr(parse_image_request(body(**{side: given})), side) == expected


@pytest.mark.parametrize("side", ["width", "height"])
@pytest.mark.parametrize(
    ("given", "expected"), [(100, 96), (103, 96), (104, 112), (520, 528), (536, 544), (2047, 2048)]
)
def test_sides_round_to_the_nearest_multiple_of_16(side: str, given: int, expected: int) -> None:
    """Nearest multiple of 16; exactly halfway (520, 536) always goes up."""
    assert expected % 16 == 0 and abs(expected - given) <= 8
    assert getattr(parse_image_request(body(**{side: given})), side) == expected


@pytest.mark.parametrize("side", ["width", "height"])
@pytest.mark.parametrize("given", [63, 2049, 0, -512, 512.5, "512", True, None, [512], float("inf"), float("nan")])
def test_bad_sides_are_refused(side: str, given: Any) -> None:
    refused(body(**{side: given}), side)


def test_infinity_from_the_wire_is_refused_not_a_crash() -> None:
    """Python's json module accepts Infinity and NaN by default; they are not JSON, and give a 400."""
    infinite = json.dumps(body(width=float("inf"))).encode()
    assert b"Infinity" in infinite
    for raw in (infinite, json.dumps(body(seed=float("nan"))).encode(), b'{"steps": -Infinity}'):
        with pytest.raises(RequestError, match="not valid JSON: .*(NaN|Infinity) is not a JSON number") as info:
            parse_json_object(raw)
        assert info.value.status == 400


@pytest.mark.parametrize(
    ("steps", "ok"), [(1, True), (100, True), (0, False), (101, False), (4.5, False), ("4", False)]
)
def test_steps_bounds(steps: Any, ok: bool) -> None:
    if ok:
        assert parse_image_request(body(steps=steps)).steps == steps
    else:
        refused(body(steps=steps), "steps")


@pytest.mark.parametrize("quantize", [3, 4, 5, 6, 8])
def test_quantize_levels_accepted(quantize: int) -> None:
    assert parse_image_request(body(quantize=quantize)).quantize == quantize


@pytest.mark.parametrize("quantize", [2, 7, 16, 0, "8", True, None])
def test_other_quantize_values_refused(quantize: Any) -> None:
    error = refused(body(quantize=quantize), "quantize")
    assert "3, 4, 5, 6, 8" in error.message


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1])
def test_seed_range(seed: int) -> None:
    assert parse_image_request(body(seed=seed)).seed == seed


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "42", True])
def test_bad_seeds_refused(seed: Any) -> None:
    refused(body(seed=seed), "seed")


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
@pytest.mark.parametrize("text", ["\ud800", "a cat \udfff", "a\u0000b", "\x00"])
def test_text_mflux_cannot_receive_is_refused(field: str, text: str) -> None:
    """A process argument cannot hold a NUL, and an unpaired surrogate has no UTF-8 encoding."""
    refused(body(**{field: text}), field)
    refused(parse_json_object(json.dumps(body(**{field: text})).encode()), field)  # "\\ud800" on the wire


def test_negative_prompt_must_be_a_string() -> None:
    assert parse_image_request(body(negative_prompt=None)).negative_prompt == ""
    refused(body(negative_prompt=3), "negative_prompt")
    refused(body(negative_prompt="n" * 4001), "negative_prompt")


def test_tags_accepted() -> None:
    tags = [f"tag-{i}" for i in range(20)]
    assert parse_image_request(body(metadata={"tags": tags})).tags == tuple(tags)
    assert parse_image_request(body(metadata={"tags": ["t" * 64]})).tags == ("t" * 64,)
    assert parse_image_request(body(metadata={})).tags == ()
    assert parse_image_request(body(metadata=None)).tags == ()


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ("project-x", "metadata"),
        (["project-x"], "metadata"),
        ({"tags": "project-x"}, "metadata.tags"),
        ({"tags": ["ok", 3]}, "metadata.tags"),
        ({"tags": [f"t{i}" for i in range(21)]}, "metadata.tags"),
        ({"tags": [""]}, "metadata.tags"),
        ({"tags": ["t" * 65]}, "metadata.tags"),
    ],
)
def test_bad_tags_refused(metadata: Any, field: str) -> None:
    refused(body(metadata=metadata), field)


def test_unknown_fields_are_refused_naming_the_allowed_ones() -> None:
    error = refused(body(sampler="euler", cfg=7), "cfg")
    assert "'sampler'" in error.message
    for name in FIELDS:
        assert name in error.message


def test_parse_json_object() -> None:
    assert parse_json_object(b'{"model": "fibo"}') == {"model": "fibo"}
    for raw, words in [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"{model: fibo}", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "got list"),
        (b"null", "got null"),
        (b'"prompt"', "got str"),
        (b'{"seed": ' + b"9" * 5000 + b"}", "not valid JSON: .*digits"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not valid JSON: nested too deeply"),
        (b'{"a": NaN}', "not valid JSON: NaN is not a JSON number"),
    ]:
        with pytest.raises(RequestError, match=words):
            parse_json_object(raw)


def test_header_tags() -> None:
    assert header_tags(None) == ()
    assert header_tags("") == ()
    assert header_tags("project-x, client-a,,  ") == ("project-x", "client-a")
    with pytest.raises(RequestError, match="'metadata.tags'"):
        header_tags("t" * 65)
    with pytest.raises(RequestError, match="'metadata.tags'"):
        header_tags(",".join(f"t{i}" for i in range(21)))


def openai(body: dict[str, Any], default: str = "z-image-turbo") -> tuple[ImageRequest, int]:
    return parse_openai_request(body, default)


def test_openai_defaults() -> None:
    req, n = openai({"prompt": "a cat"})
    assert n == 1
    assert (req.model, req.prompt, req.width, req.height) == ("z-image-turbo", "a cat", 1024, 1024)


def test_openai_fields_map_onto_the_native_request() -> None:
    req, n = openai(
        {
            "model": "flux-dev",
            "prompt": "a cat",
            "n": 3,
            "size": "512x768",
            "response_format": "b64_json",
            "quality": "hd",
            "style": "vivid",
            "user": "u1",
            "seed": 9,
            "steps": 12,
            "negative_prompt": "dogs",
            "metadata": {"tags": ["openai"]},
        }
    )
    assert n == 3
    assert (req.model, req.width, req.height, req.seed, req.steps) == ("flux-dev", 512, 768, 9, 12)
    assert (req.negative_prompt, req.tags) == ("dogs", ("openai",))


@pytest.mark.parametrize("size", ["1024", "1024*1024", "x", 1024, "1024x1024x2", "big"])
def test_openai_size_must_be_w_x_h(size: Any) -> None:
    with pytest.raises(RequestError, match="'size'"):
        openai({"prompt": "a cat", "size": size})


def test_openai_size_out_of_range_names_the_side() -> None:
    with pytest.raises(RequestError, match="'width'"):
        openai({"prompt": "a cat", "size": "32x512"})


@pytest.mark.parametrize("n", [0, 5, -1, 1.5, "2", True])
def test_openai_n_is_1_to_4(n: Any) -> None:
    with pytest.raises(RequestError, match="'n'"):
        openai({"prompt": "a cat", "n": n})


@pytest.mark.parametrize("fmt", ["url", "png", None])
def test_openai_only_b64_json(fmt: Any) -> None:
    with pytest.raises(RequestError, match="'response_format'"):
        openai({"prompt": "a cat", "response_format": fmt})


def test_openai_unknown_field_refused() -> None:
    with pytest.raises(RequestError, match="'background'"):
        openai({"prompt": "a cat", "background": "transparent"})


def test_openai_prompt_still_required() -> None:
    with pytest.raises(RequestError, match="'prompt'"):
        openai({"size": "512x512"})
