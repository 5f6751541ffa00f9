"""What `Client` and `AsyncClient` share: the defaults and timeouts, when to retry, and (re-exported from the
modules that do each job) finding a peer, its keys, request bodies and reading answers.

Nothing here does I/O; the two clients differ only in how they send. The clients, the CLI and the tests read
everything through this module, so the split into `_target`, `_auth`, `_bodies`, `_answers`, `_failures` and
`_readers` stays private to the package.
"""

from __future__ import annotations

from enum import Enum

from ._answers import (
    JOB_STATES,
    chat_chunk,
    chat_result,
    embeddings,
    image_result,
    job,
    job_state,
    models,
    peers,
    transcript,
)
from ._auth import KEY_FILE, KeyAuth, key_auth, local_key_fingerprint, local_mesh_key, loopback
from ._bodies import Messages, chat_body, image_body
from ._failures import error_from, job_not_found, transport_failure
from ._readers import json_object
from ._target import (
    DEFAULT_MESH,
    DEFAULT_PORT,
    LOCAL_URL,
    PROBE_PATH,
    Target,
    explicit_target,
    identity,
    identity_of,
    mesh_name,
    normalise_url,
    ping_node,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_MESH",
    "DEFAULT_MODEL",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT_S",
    "JOB_STATES",
    "KEY_FILE",
    "LOCAL_URL",
    "PROBE_PATH",
    "PROBE_TIMEOUT_S",
    "SHORT_TIMEOUT_S",
    "KeyAuth",
    "Messages",
    "Retry",
    "Target",
    "chat_body",
    "chat_chunk",
    "chat_result",
    "embeddings",
    "error_from",
    "explicit_target",
    "identity",
    "identity_of",
    "image_body",
    "image_result",
    "job",
    "job_not_found",
    "job_state",
    "json_object",
    "key_auth",
    "local_key_fingerprint",
    "local_mesh_key",
    "loopback",
    "mesh_name",
    "models",
    "normalise_url",
    "peers",
    "ping_node",
    "transcript",
    "transport_failure",
]

DEFAULT_MODEL = "z-image-turbo"
PROBE_TIMEOUT_S = 1.0  # a peer that does not answer a ping within this is not worth choosing
CONNECT_TIMEOUT_S = 5.0
SHORT_TIMEOUT_S = 30.0  # reads: peers, health, settings, jobs
DEFAULT_TIMEOUT_S = 900.0  # the longest image (a cold flux-dev at 2048 px) stays under this


class Retry(Enum):
    """When a request may be sent again to another peer after a transport error."""

    READ = "read"  # idempotent: retry on any transport error
    UNSENT = "unsent"  # only when the first try never connected (nothing reached a peer)
