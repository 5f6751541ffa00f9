"""The mesh's model lists, merged from each peer's own. Pure."""

from __future__ import annotations

from herd_mesh.core.model_lists import openai_models, union_ps, union_tags


def test_tags_are_deduplicated_by_name_with_every_peer_that_has_the_model() -> None:
    lists = [
        ("alpha", [{"name": "llama3.2:3b", "size": 1}, {"name": "nomic-embed-text:latest"}]),
        ("bravo", [{"name": "llama3.2:3b", "size": 2}, {"name": "qwen3:8b"}, {"bogus": True}]),
        ("charlie", []),
    ]
    tags = union_tags(lists)
    assert [t["name"] for t in tags] == ["llama3.2:3b", "nomic-embed-text:latest", "qwen3:8b"]
    assert tags[0]["nodes"] == ["alpha", "bravo"] and tags[0]["size"] == 1  # the first peer's entry


def test_ps_keeps_every_loaded_copy_with_its_node() -> None:
    ps = union_ps([("alpha", [{"name": "llama3.2:3b"}]), ("bravo", [{"name": "llama3.2:3b"}])])
    assert ps == [{"name": "llama3.2:3b", "node": "alpha"}, {"name": "llama3.2:3b", "node": "bravo"}]


def test_openai_models_from_tags() -> None:
    tags = [
        {"name": "llama3.2:3b", "modified_at": "2025-09-11T13:53:16.123456789+02:00", "nodes": ["a"]},
        {"name": "hf.co/org/model:q4", "modified_at": "garbage"},
    ]
    models = openai_models(tags)
    assert models[0] == {"id": "llama3.2:3b", "object": "model", "created": 1757591596, "owned_by": "library",
                         "nodes": ["a"]}  # fmt: skip
    assert models[1]["created"] == 0 and models[1]["owned_by"] == "hf.co"
