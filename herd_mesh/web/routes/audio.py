"""Speech-to-text on every peer: `POST /api/transcribe` (the seed's `curl -F audio=@recording.wav`) and OpenAI's
`POST /v1/audio/transcriptions`, routed to the best peer's Whisper like any other model request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core.api_errors import request_error_body
from ...core.model_request import parse_audio_form
from ...dispatch.models import Call
from ...errors import RequestError
from ..uploads import SpooledUpload
from .calls import CallServer

MAX_UPLOADS_AT_ONCE = 4  # recordings this peer receives at once; more get 429 with Retry-After
RETRY_AFTER_S = 2


class AudioRoutes:
    def __init__(self, *, server: CallServer) -> None:
        self._server = server
        self._uploads = 0

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
        if not content_type.lower().startswith("multipart/form-data"):
            error = RequestError(
                f"send multipart/form-data with the recording in a file field named '{field}', "
                f"e.g. curl -F {field}=@recording.wav http://localhost:11435{request.url.path}"
            )
            return JSONResponse(request_error_body(api, error), error.status)
        if self._uploads >= MAX_UPLOADS_AT_ONCE:
            error = RequestError(f"{MAX_UPLOADS_AT_ONCE} recordings are arriving here already; retry in a moment",
                                 429, retry_after=RETRY_AFTER_S)  # fmt: skip
            return JSONResponse(request_error_body(api, error), error.status, headers=error.headers())
        self._uploads += 1
        upload: SpooledUpload | None = None
        try:
            upload = await SpooledUpload.receive(request)
            audio = parse_audio_form(upload.fields(), openai=openai, tags_header=request.headers.get("X-Herd-Tags"))
            call = Call(kind="transcription", api=api, path=request.url.path, body=upload.chunks,
                        content_type=content_type, model=audio.model, tags=audio.tags, audio=audio)  # fmt: skip
            return await self._server.serve(request, call)
        except RequestError as exc:
            return JSONResponse(request_error_body(api, exc), exc.status)
        finally:
            self._uploads -= 1
            if upload is not None:
                await upload.close()
