"""Serving one model call (LLM, embeddings, model details, speech-to-text): where it runs, and its answer in the
caller's API's own shape, streamed on when it streams."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...core.api_errors import error_body, in_api_shape, request_error_body
from ...core.protocol import H_FORWARDED, H_JOB
from ...dispatch.images import new_job_id
from ...dispatch.models import Call, ModelDispatch
from ...dispatch.recorder import Recorder, outcome
from ...dispatch.relay import Opened, relay_response
from ...errors import ClientGone, EngineError, PeerRefused, Reason, RequestError
from ...mesh.membership import Membership
from ..common import client_host, until_disconnect
from ..handlers import refusal_response
from .images import CLIENT_CLOSED

Done = Callable[[str, str | None, str | None, str], None]  # (status, node, error, model): records the outcome


class CallServer:
    def __init__(self, *, models: ModelDispatch, membership: Membership, recorder: Recorder) -> None:
        self.models = models
        self._membership = membership
        self._recorder = recorder

    def from_peer(self, request: Request) -> bool:
        """Only a known peer, calling from its own address, may hand us work to run here unrouted."""
        return self._membership.caller(request.headers, client_host(request)) is not None

    async def serve(self, request: Request, call: Call) -> Response:
        """Run `call` where it belongs and answer with its (possibly streamed) result, or an error in the call's
        API's own shape. A forwarded call runs here and only here, and is recorded by the peer that forwarded it."""
        started = time.monotonic()
        forwarded = request.headers.get(H_FORWARDED) == "1" and self.from_peer(request)
        job_id = (request.headers.get(H_JOB) if forwarded else None) or new_job_id()
        record = not forwarded and call.kind != "meta"
        me = self.models.me

        def done(status: str, node: str | None, error: str | None, model: str = "") -> None:
            if record:
                self._recorder.request(kind=call.kind, model=model or call.model, job_id=job_id, status=status,
                                       node=node, started=started, tags=call.tags, prompt=call.prompt,
                                       error=error)  # fmt: skip

        try:
            if forwarded:
                self._membership.heard_from(request.headers, client_host(request))
                opened = await until_disconnect(request, self.models.open_here(call, job_id))
            else:
                opened = await until_disconnect(request, self.models.open(call, job_id))
        except ClientGone:
            done("cancelled", None, "client disconnected", "")
            return Response(status_code=CLIENT_CLOSED)
        except PeerRefused as exc:  # refused where it ran, for a reason no other peer would change: as written
            done("failed", exc.node_id, exc.message, "")
            return shaped_refusal(call.api, exc, {"X-Fleet-Node": exc.node_id, "X-Fleet-Model": call.model})
        except RequestError as exc:  # refused before routing (rejected), or every peer tried failed
            done(outcome(exc, attempted=False), None, exc.message, "")
            return JSONResponse(
                request_error_body(call.api, exc), exc.status, headers={"X-Fleet-Node": me, **exc.headers()}
            )
        except EngineError as exc:  # only where a forwarded call runs: the entry peer tries another
            body = error_body(call.api, 503, str(exc), reason=str(Reason.ENGINE_FAILED))
            return JSONResponse(body, 503, headers={"X-Fleet-Node": me})
        return await self._respond(call, opened, done)

    @staticmethod
    async def _respond(call: Call, opened: Opened, done: Done) -> Response:
        """The whole answer when it is complete, else a relay of the stream; `done` records how it ended."""
        headers = {"X-Fleet-Node": opened.node, "X-Fleet-Model": opened.model or call.model,
                   "X-Fleet-Attempts": str(opened.attempts)}  # fmt: skip

        def on_end(status: str, error: str | None) -> None:
            done(status, opened.node, error, opened.model)

        if opened.complete:
            await opened.close()
            on_end("ok", None)
            return Response(opened.head, media_type=opened.content_type, headers=headers)
        return relay_response(opened, headers=headers, on_end=on_end, api=call.api)


def shaped_refusal(api: str, exc: PeerRefused, headers: dict[str, str]) -> Response:
    """A refusal passed on to the client in its API's error shape: as the peer wrote it when it already is
    (Ollama's own /v1 errors), else rewritten, so that the official client raises its proper exception."""
    reshaped = in_api_shape(api, exc.status, exc.fields, exc.message)
    if reshaped is None:
        return refusal_response(exc, headers)
    return JSONResponse(reshaped, exc.status, headers=headers)
