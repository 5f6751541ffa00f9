"""Speech-to-text on every peer: `POST /api/transcribe` (the seed's `curl -F audio=@recording.wav`) and OpenAI's
`POST /v1/audio/transcriptions`, routed to the best peer's Whisper like any other model request."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import RequestError
from ..llm_requests import parse_audio_form
from ..llm_routing import Call
from ..relay import error_response
from .llm import serve

MAX_FORM_FIELDS = 16
MAX_FORM_FILES = 2


async def _form_fields(request: Request) -> dict[str, list[tuple[str | None, Any]]]:
    """Field name -> [(filename, bytes)] for files, [(None, text)] for text fields."""
    try:
        form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    except HTTPException as exc:
        raise RequestError(f"could not read the multipart form: {exc.detail}") from exc
    fields: dict[str, list[tuple[str | None, Any]]] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                fields.setdefault(key, []).append((value.filename or "upload", await value.read()))
            else:
                fields.setdefault(key, []).append((None, value))
    finally:
        await form.close()
    return fields


async def _transcribe(request: Request, *, openai: bool) -> Response:
    api = "openai" if openai else "herd"
    content_type = request.headers.get("content-type", "")
    field = "file" if openai else "audio"
    try:
        if not content_type.lower().startswith("multipart/form-data"):
            raise RequestError(
                f"send multipart/form-data with the recording in a file field named '{field}', "
                f"e.g. curl -F {field}=@recording.wav http://localhost:11435{request.url.path}"
            )
        raw = await request.body()  # forwarded as it came; the form below is parsed from the same bytes
        audio = parse_audio_form(
            await _form_fields(request), openai=openai, tags_header=request.headers.get("X-Herd-Tags")
        )
    except RequestError as exc:
        return error_response(api, exc)
    call = Call(kind="transcription", api=api, path=request.url.path, body=raw, content_type=content_type,
                model=audio.model, tags=audio.tags, audio=audio)  # fmt: skip
    return await serve(request, call)


async def transcribe(request: Request) -> Response:
    return await _transcribe(request, openai=False)


async def openai_transcriptions(request: Request) -> Response:
    return await _transcribe(request, openai=True)


routes = [
    Route("/api/transcribe", transcribe, methods=["POST"]),
    Route("/v1/audio/transcriptions", openai_transcriptions, methods=["POST"]),
]
