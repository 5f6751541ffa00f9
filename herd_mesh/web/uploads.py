"""Uploads (audio for speech-to-text) are kept on disk past 1 MB, parsed from there, and forwarded from there:
a 90 MB recording costs disk, not memory, and a peer takes only a few at once."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncGenerator
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..errors import RequestError

SPOOL_MEMORY_BYTES = 1024 * 1024  # an upload stays in memory up to this size, then goes to a temporary file
CHUNK_BYTES = 64 * 1024
MAX_FORM_FIELDS = 16
MAX_FORM_FILES = 2
FormFields = dict[str, list[tuple[str | None, Any]]]  # name -> [(filename, file)] or [(None, text)]


class SpooledUpload:
    """One request's multipart body, on disk, with its parsed form; close it when the request is done."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed in close()
        self._form: FormData | None = None

    @classmethod
    async def receive(cls, request: Request) -> SpooledUpload:
        upload = cls()
        try:
            async for chunk in request.stream():
                upload._file.write(chunk)
            upload._form = await MultiPartParser(request.headers, upload.chunks(), max_files=MAX_FORM_FILES,
                                                 max_fields=MAX_FORM_FIELDS).parse()  # fmt: skip
        except MultiPartException as exc:
            await upload.close()
            raise RequestError(f"could not read the multipart form: {exc.message}") from exc
        except BaseException:
            await upload.close()
            raise
        return upload

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it came, from its start (each forwarding attempt reads it again)."""
        self._file.seek(0)
        while chunk := self._file.read(CHUNK_BYTES):
            yield chunk

    def fields(self) -> FormFields:
        """Field name -> [(filename, file)] for files, [(None, text)] for text fields."""
        fields: FormFields = {}
        for key, value in self._form.multi_items() if self._form is not None else []:
            if isinstance(value, UploadFile):
                fields.setdefault(key, []).append((value.filename or "upload", value.file))
            else:
                fields.setdefault(key, []).append((None, value))
        return fields

    async def close(self) -> None:
        if self._form is not None:
            await self._form.close()
        self._file.close()
