"""The one place that knows herd-mesh's mDNS TXT record: a compact summary, never the full state.

RFC 6763 wants each `key=value` entry <= 255 bytes and the whole record small (advice: < 400 bytes, never over
1300). So the record carries counts and a few short names; the full capability document is `GET /mesh/state`,
fetched when `sv` (the state version) changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..errors import TxtError
from .names import valid_node_id
from .protocol import PROTOCOL_VERSION

SERVICE_TYPE = "_herd-mesh._tcp.local."
MAX_ENTRY_BYTES = 255
MAX_RECORD_BYTES = 400  # our own target, well under RFC 6763's 1300
_MAX_IMAGE_LIST_BYTES = 160
METRICS_ANNOUNCE_S = 30.0  # CPU and free memory alone re-announce at most this often
TxtProperties = Mapping[bytes, bytes | None] | Mapping[str, str | None]  # as zeroconf or a test hands them over


@dataclass(frozen=True)
class Summary:
    node_id: str
    mesh: str
    boot_id: str  # changes on every start: tells a restart from a peer we already know
    state_version: int
    memory_available_gb: int = 0
    cpu_percent: int = 0
    queue: int = 0  # image jobs running + waiting
    image_models: tuple[str, ...] = ()  # installed mflux models
    image_loaded: tuple[str, ...] = ()  # resident now
    llm_models: int = 0
    llm_loaded: int = 0
    stt: bool = False
    key: str = ""  # the mesh key's fingerprint (`signing.fingerprint`), never the key; "" in an open mesh
    proto: int = PROTOCOL_VERSION
    extra: Mapping[str, str] = field(default_factory=dict)


def encode(s: Summary) -> dict[str, str]:
    """Summary -> TXT properties. Image model names are cut (never split) to keep the record small."""
    names: list[str] = []
    used = 0
    loaded = set(s.image_loaded)
    for name in s.image_models:
        item = ("*" if name in loaded else "") + name
        if used + len(item) + 1 > _MAX_IMAGE_LIST_BYTES:
            break
        names.append(item)
        used += len(item) + 1
    props = {
        "v": str(s.proto),
        "id": s.node_id,
        "mesh": s.mesh,
        "boot": s.boot_id,
        "sv": str(s.state_version),
        "mem": str(s.memory_available_gb),
        "cpu": str(s.cpu_percent),
        "q": str(s.queue),
        "img": ",".join(names),
        "llm": f"{s.llm_models}/{s.llm_loaded}",
        "stt": "1" if s.stt else "0",
    }
    if s.key:
        props["kf"] = s.key
    for key, value in props.items():
        if len(key) + 1 + len(value.encode()) > MAX_ENTRY_BYTES:
            raise TxtError(f"TXT entry {key!r} is over {MAX_ENTRY_BYTES} bytes")
    return props


def record_size(props: Mapping[str, str]) -> int:
    """Bytes on the wire: one length byte plus `key=value` per entry."""
    return sum(1 + len(k.encode()) + 1 + len(v.encode()) for k, v in props.items())


def _text(raw: TxtProperties, key: str) -> str | None:
    for k, v in raw.items():
        k_text = k.decode("utf-8", "replace") if isinstance(k, bytes) else k
        if k_text == key:
            if v is None:
                return ""
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return None


def _int(raw: TxtProperties, key: str, default: int = 0) -> int:
    value = _text(raw, key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise TxtError(f"TXT entry {key!r} is not a number: {value!r}") from exc


def decode(raw: TxtProperties) -> Summary:
    """TXT properties (as zeroconf hands them over, bytes or str) -> Summary; TxtError if foreign or too old."""
    version = _text(raw, "v")
    if version is None:
        raise TxtError("no protocol version ('v') entry: not a herd-mesh record")
    try:
        proto = int(version)
    except ValueError as exc:
        raise TxtError(f"protocol version {version!r} is not a number") from exc
    if proto != PROTOCOL_VERSION:
        raise TxtError(f"protocol version {proto} is not supported (this peer speaks {PROTOCOL_VERSION})")
    node_id = _text(raw, "id")
    mesh = _text(raw, "mesh")
    if not node_id or mesh is None:
        raise TxtError("record lacks the node id ('id') or mesh name ('mesh')")
    if not valid_node_id(node_id) or not valid_node_id(mesh):
        raise TxtError(f"node id {node_id[:60]!r} or mesh name {mesh[:60]!r} is not a valid name")
    images = [n for n in (_text(raw, "img") or "").split(",") if n]
    llm_text = _text(raw, "llm") or "0/0"
    try:
        llm_models, llm_loaded = (int(x) for x in llm_text.split("/", 1))
    except ValueError as exc:
        raise TxtError(f"TXT entry 'llm' must be 'installed/loaded', got {llm_text!r}") from exc
    return Summary(
        node_id=node_id,
        mesh=mesh,
        boot_id=_text(raw, "boot") or "",
        state_version=_int(raw, "sv"),
        memory_available_gb=_int(raw, "mem"),
        cpu_percent=_int(raw, "cpu"),
        queue=_int(raw, "q"),
        image_models=tuple(n.lstrip("*") for n in images),
        image_loaded=tuple(n[1:] for n in images if n.startswith("*")),
        llm_models=llm_models,
        llm_loaded=llm_loaded,
        stt=_text(raw, "stt") == "1",
        key=(_text(raw, "kf") or "")[:32],
        proto=proto,
    )


def instance_name(node_id: str, mesh: str) -> str:
    """`node@mesh`: two fleets on one LAN may both have a Mac called `studio`. DNS labels stop at 63 bytes."""
    return f"{node_id}@{mesh}"[:63]


def meaningful(a: Summary, b: Summary, *, since_s: float = math.inf) -> bool:
    """Worth a re-announce, `since_s` seconds after the last one? Any change of state or models at once. CPU and
    free memory only when they moved by 10 points or 2 GB and the last announcement is METRICS_ANNOUNCE_S old:
    every peer multicasts to every other, a busy Mac's metrics move all the time, and the ping carries them live."""
    if replace(a, cpu_percent=0, memory_available_gb=0) != replace(b, cpu_percent=0, memory_available_gb=0):
        return True
    moved = abs(a.cpu_percent - b.cpu_percent) >= 10 or abs(a.memory_available_gb - b.memory_available_gb) >= 2
    return moved and since_s >= METRICS_ANNOUNCE_S
