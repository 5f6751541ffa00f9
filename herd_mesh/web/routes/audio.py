"""Speech-to-text on every peer: `POST /api/transcribe` (the seed's `curl -F audio=@recording.wav`) and OpenAI's
`POST /v1/audio/transcriptions`, routed to the best peer's Whisper like any other model request."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core.api_errors import request_error_body
from ...core.model_request import parse_audio_form
from ...dispatch.models import Call
from ...errors import RequestError
from .calls import CallServer

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


class AudioRoutes:
    def __init__(self, *, server: CallServer) -> None:
        self._server = server

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/transcribe", self.transcribe, methods=["POST"]),
            Route("/v1/audio/transcriptions", self.openai_transcriptions, methods=["POST"]),
        ]

    async def transcribe(self, request: Request) -> Response:
        return await self._transcribe(request, openai=False)

    async def openai_transcriptions(self, request: Request) -> Response:
        return await self._transcribe(request, openai=True)

    async def _transcribe(self, request: Request, *, openai: bool) -> Response:
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
            return JSONResponse(request_error_body(api, exc), exc.status)
        call = Call(kind="transcription", api=api, path=request.url.path, body=raw, content_type=content_type,
                    model=audio.model, tags=audio.tags, audio=audio)  # fmt: skip
        return await self._server.serve(request, call)
