"""LLM and transcription request checks. Pure."""

from __future__ import annotations

import pytest

from herd_mesh.core.model_request import parse_audio_form, parse_llm_request
from herd_mesh.engines.whisper import model_sources
from herd_mesh.errors import RequestError


def test_llm_bodies() -> None:
    req = parse_llm_request(
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": "a, b"}}',
        default_stream=True,
        tags_header="c",
    )
    assert (req.model, req.stream, req.tags, req.prompt) == ("qwen3:8b", True, ("a", "b", "c"), "hi")
    assert parse_llm_request(b'{"model": "m", "stream": null}', default_stream=False).stream is False
    assert parse_llm_request(b'{"name": "m"}', default_stream=False).model == "m"  # /api/show's old field
    assert parse_llm_request(b'{"model": "m", "input": ["x", "y"]}', default_stream=False).prompt == "x\ny"
    assert parse_llm_request(b'{"model": "m", "metadata": {"user": "u"}}', default_stream=False).tags == ()
    for raw, needle in ((b"", "empty"), (b"[]", "object"), (b'{"model": 1}', "model"),
                        (b'{"model": "m", "stream": 1}', "stream"), (b'{"model": "m", "metadata": []}', "metadata"),
                        (b'{"model": "' + b"x" * 300 + b'"}', "200")):  # fmt: skip
        with pytest.raises(RequestError, match=needle):
            parse_llm_request(raw, default_stream=True)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"model": "m", "num_ctx": ' + b"9" * 5000 + b"}", "digits"),  # int() refuses over 4300 digits
        (b'{"model": "m", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"model": "m", "options": {"temperature": NaN}}', "NaN is not a JSON number"),
    ],
)
def test_llm_bodies_json_cannot_hold_are_a_400(raw: bytes, needle: str) -> None:
    with pytest.raises(RequestError, match=f"request body is not valid JSON: .*{needle}") as info:
        parse_llm_request(raw, default_stream=True)
    assert info.value.status == 400


def test_audio_forms() -> None:
    audio = parse_audio_form(
        {"audio": [("a.wav", b"RIFF")], "language": [(None, "EN")], "tags": [(None, "x,y")]},
        openai=False, tags_header=None,
    )  # fmt: skip
    assert (audio.audio, audio.language, audio.tags, audio.model) == (b"RIFF", "en", ("x", "y"), "")
    assert parse_audio_form({"file": [("a.wav", b"1")]}, openai=True, tags_header=None).audio == b"1"
    bad = [
        ({}, "'audio'"),
        ({"audio": [(None, "text")]}, "file upload"),
        ({"audio": [("a.wav", b"")]}, "empty"),
        ({"audio": [("a.wav", b"1")], "file": [("b.wav", b"2")]}, "not both"),
        ({"audio": [("a.wav", b"1")], "prompt": [(None, "x")]}, "unknown"),
        ({"audio": [("a.wav", b"1")], "metadata": [(None, "{oops")]}, "metadata"),
        ({"audio": [("a.wav", b"1")], "metadata": [(None, '{"n": ' + "9" * 5000 + "}")]}, "'metadata'.*digits"),
        ({"audio": [("a.wav", b"1")], "metadata": [(None, "[" * 5000)]}, "'metadata'.*nested too deeply"),
    ]
    for fields, needle in bad:
        with pytest.raises(RequestError, match=needle):
            parse_audio_form(fields, openai=False, tags_header=None)


def test_whisper_model_sources(tmp_path) -> None:
    (tmp_path / "small.en").mkdir()
    (tmp_path / "small.en" / "model.bin").write_bytes(b"x" * 10)
    local = model_sources(f"{tmp_path / 'small.en'}, large-v3", engine="faster-whisper")
    assert [(m.name, m.size) for m in local] == [("small.en", 10), ("large-v3", 0)]
    assert model_sources("none", engine="faster-whisper") == []
    assert model_sources(str(tmp_path / "missing"), engine="faster-whisper") == []
    assert model_sources("mlx-community/whisper-tiny", engine="mlx-whisper")[0].name == "whisper-tiny"
    assert model_sources(None, engine="mlx-whisper")[0].location == "mlx-community/whisper-large-v3-turbo"
