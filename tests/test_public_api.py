"""The package's public surface: the few names a user needs, and nothing that leaks the internals."""

from __future__ import annotations

import herd_mesh


def test_the_public_names_are_exactly_these() -> None:
    assert herd_mesh.__all__ == sorted(herd_mesh.__all__)
    assert herd_mesh.__all__ == [
        "AsyncChatStream",
        "AsyncClient",
        "Attempt",
        "ChatResult",
        "ChatStream",
        "Client",
        "ClientGone",
        "Config",
        "ConfigError",
        "Embeddings",
        "EngineError",
        "HerdError",
        "ImageResult",
        "Job",
        "JobNotFound",
        "ModelInfo",
        "NoPeerFound",
        "PeerError",
        "PeerInfo",
        "PeerRefused",
        "PeerUnreachable",
        "RequestError",
        "RequestFailed",
        "Segment",
        "Transcript",
        "__version__",
    ]
    for name in herd_mesh.__all__:
        assert getattr(herd_mesh, name) is not None


def test_every_error_a_user_can_catch_is_a_herd_error() -> None:
    for name in herd_mesh.__all__:
        value = getattr(herd_mesh, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, herd_mesh.HerdError), name
