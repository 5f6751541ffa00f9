"""The mDNS TXT record: round trips, RFC 6763 size limits, rejection of foreign records, re-announce decisions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from herd_mesh.core import txt
from herd_mesh.core.catalogue import MODELS
from herd_mesh.core.txt import Summary
from herd_mesh.errors import TxtError

MAX_NAME = "n" * 48  # config allows node ids and mesh names of 1-48 characters


def summary(**fields: object) -> Summary:
    values: dict[str, object] = {
        "node_id": "studio",
        "mesh": "default",
        "boot_id": "0123456789ab",
        "state_version": 7,
        "memory_available_gb": 96,
        "cpu_percent": 12,
        "queue": 2,
        "image_models": ("z-image-turbo", "flux-schnell"),
        "image_loaded": ("flux-schnell",),
        "llm_models": 5,
        "llm_loaded": 1,
        "stt": True,
    }
    values.update(fields)
    return Summary(**values)  # type: ignore[arg-type]


def as_zeroconf(props: dict[str, str]) -> dict[bytes, bytes]:
    """zeroconf hands properties over as bytes keys and bytes values."""
    return {k.encode(): v.encode() for k, v in props.items()}


def test_round_trip_with_bytes_as_zeroconf_gives_them() -> None:
    s = summary()
    assert txt.decode(as_zeroconf(txt.encode(s))) == s


def test_round_trip_with_str() -> None:
    s = summary(stt=False, image_models=(), image_loaded=(), queue=0)
    assert txt.decode(txt.encode(s)) == s


def test_loaded_models_are_marked_and_recovered() -> None:
    props = txt.encode(summary(image_models=("z-image-turbo", "flux-dev"), image_loaded=("flux-dev",)))
    assert props["img"] == "z-image-turbo,*flux-dev"
    decoded = txt.decode(props)
    assert decoded.image_models == ("z-image-turbo", "flux-dev")
    assert decoded.image_loaded == ("flux-dev",)


def test_a_key_without_value_reads_as_empty() -> None:
    """zeroconf gives None for a bare `key` entry: an empty image list is no image models."""
    raw = as_zeroconf(txt.encode(summary()))
    raw[b"img"] = None  # type: ignore[assignment]
    assert txt.decode(raw).image_models == ()


def test_a_big_peer_fits_the_rfc_6763_limits() -> None:
    """100 LLMs and every image model, with the longest allowed node id and mesh name."""
    s = summary(
        node_id=MAX_NAME,
        mesh="m" * 48,
        boot_id="f" * 32,
        state_version=2**31,
        memory_available_gb=512,
        cpu_percent=100,
        queue=999,
        image_models=tuple(MODELS),
        image_loaded=tuple(MODELS),
        llm_models=100,
        llm_loaded=100,
    )
    assert len(MODELS) == 8
    props = txt.encode(s)
    for key, value in props.items():
        assert len(key.encode()) + 1 + len(value.encode()) <= txt.MAX_ENTRY_BYTES, key
    assert txt.record_size(props) < 400
    decoded = txt.decode(as_zeroconf(props))
    assert decoded.image_models == tuple(MODELS)  # all eight still listed
    assert decoded.llm_models == 100
    assert decoded.node_id == MAX_NAME


def test_an_entry_over_255_bytes_is_refused_rather_than_sent() -> None:
    with pytest.raises(TxtError, match="'id'"):
        txt.encode(summary(node_id="n" * 260))


def test_record_size_counts_length_byte_and_equals_sign() -> None:
    assert txt.record_size({"v": "1"}) == 4  # \x03 v = 1
    assert txt.record_size({"id": "é"}) == 1 + 2 + 1 + 2  # é is two bytes in UTF-8


def test_a_long_image_list_is_cut_at_a_name_boundary() -> None:
    names = tuple(f"model-number-{i:03d}" for i in range(40))
    props = txt.encode(summary(image_models=names, image_loaded=()))
    listed = props["img"].split(",")
    assert 0 < len(listed) < len(names)
    assert tuple(listed) == names[: len(listed)]  # whole names, in order, none split
    assert txt.record_size(props) < txt.MAX_RECORD_BYTES


def test_another_protocol_version_is_refused() -> None:
    props = txt.encode(summary())
    props["v"] = str(txt.PROTOCOL_VERSION + 1)
    with pytest.raises(TxtError, match="not supported"):
        txt.decode(props)


@pytest.mark.parametrize("drop", ["v", "id", "mesh"])
def test_a_record_missing_an_identity_entry_is_refused(drop: str) -> None:
    props = txt.encode(summary())
    del props[drop]
    with pytest.raises(TxtError):
        txt.decode(props)


def test_an_empty_node_id_is_refused() -> None:
    props = txt.encode(summary())
    props["id"] = ""
    with pytest.raises(TxtError):
        txt.decode(props)


def test_someone_elses_service_is_refused() -> None:
    with pytest.raises(TxtError, match="'v'"):
        txt.decode({b"path": b"/", b"model": b"printer"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("v", "one"), ("sv", "x"), ("mem", "1.5"), ("cpu", "high"), ("q", "-"), ("llm", "many/2"), ("llm", "5")],
)
def test_non_numeric_numbers_are_refused(key: str, value: str) -> None:
    props = txt.encode(summary())
    props[key] = value
    with pytest.raises(TxtError, match=repr(key) if key != "v" else "version"):
        txt.decode(as_zeroconf(props))


def test_small_cpu_and_memory_wobbles_are_not_worth_announcing() -> None:
    a = summary(cpu_percent=20, memory_available_gb=50)
    assert not txt.meaningful(a, replace(a, cpu_percent=29))
    assert not txt.meaningful(a, replace(a, cpu_percent=11, memory_available_gb=51))
    assert not txt.meaningful(a, a)


def test_big_cpu_or_memory_moves_are_worth_announcing_but_not_more_often_than_every_30_s() -> None:
    """A busy Mac's CPU and free memory move all the time; every peer hears every announcement."""
    a = summary(cpu_percent=20, memory_available_gb=50)
    for moved in (replace(a, cpu_percent=30), replace(a, memory_available_gb=48)):
        assert txt.meaningful(a, moved, since_s=txt.METRICS_ANNOUNCE_S)
        assert not txt.meaningful(a, moved, since_s=txt.METRICS_ANNOUNCE_S - 1)


@pytest.mark.parametrize(
    "change",
    [
        {"queue": 3},
        {"image_models": ("z-image-turbo",)},
        {"image_loaded": ()},
        {"llm_models": 6},
        {"llm_loaded": 0},
        {"stt": False},
        {"state_version": 8},
        {"boot_id": "newboot"},
    ],
)
def test_queue_and_model_changes_are_worth_announcing_even_with_a_small_wobble(change: dict[str, object]) -> None:
    a = summary()
    b = replace(a, cpu_percent=a.cpu_percent + 1, **change)  # type: ignore[arg-type]
    assert txt.meaningful(a, b, since_s=0.0)  # at once, however recent the last announcement


def test_instance_name_names_node_and_mesh() -> None:
    assert txt.instance_name("studio", "lab") == "studio@lab"


def test_instance_name_fits_a_dns_label() -> None:
    name = txt.instance_name(MAX_NAME, "m" * 48)
    assert len(name.encode()) <= 63
    assert name.startswith(MAX_NAME + "@")
