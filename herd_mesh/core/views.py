"""Adapters from peers' capability documents (another peer's JSON) to the frozen views the core decides on, and
the one snapshot of the mesh each routing decision reads.

A document is untrusted: a part of the wrong shape counts as empty, a number that is not finite and
non-negative as absent, and nothing here raises.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from .model_scoring import ModelFacts, normalize_model
from .speed import DEFAULT_SLOWDOWN
from .work import PeerView

TRANSFER_BASE_S = 0.05  # one LAN round trip plus request handling (seconds)
LIVE = ("up", "suspect")


@dataclass(frozen=True)
class PeerState:
    """One peer in a snapshot: its status and its capability document (this peer's own is always fresh)."""

    node_id: str
    status: str
    document: Mapping[str, Any]
    is_self: bool = False
    url: str = ""


class ViewCache:
    """What was read from each peer's document, kept while that document (the same object) is current: a peer's
    document changes only when it is fetched again, so a decision re-reads only what changed. Parsing every
    document for every decision cost ~20 us a peer, most of a decision at 50 peers (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[Mapping[str, Any], str, bool, Any]] = {}

    def get(self, key: str, peer: PeerState, make: Callable[[PeerState, str], Any]) -> Any:
        """`make(peer, key)`, or what it gave for this very document before."""
        entry = self._entries.get((key, peer.node_id))
        if entry is not None and entry[0] is peer.document and entry[1] == peer.status and entry[2] == peer.is_self:
            return entry[3]
        value = make(peer, key)
        self._entries[(key, peer.node_id)] = (peer.document, peer.status, peer.is_self, value)
        return value

    def forget(self, keep: set[str]) -> None:
        """Drop what belongs to peers no longer in the mesh."""
        for key in [k for k in self._entries if k[1] not in keep]:
            del self._entries[key]


@dataclass(frozen=True)
class MeshSnapshot:
    """The mesh as one decision sees it: every peer (this one first) at one `now`."""

    now: float
    me: str
    peers: tuple[PeerState, ...]
    cache: ViewCache | None = field(default=None, compare=False, repr=False)

    @cached_property
    def image_views(self) -> list[PeerView]:
        """Every peer that advertises an image section, as the image scheduler sees it (built once)."""
        out = []
        for p in self.peers:
            if not isinstance(p.document.get("image"), dict):
                continue
            if self.cache is None:
                out.append(image_view(p.node_id, p.status, p.document, is_self=p.is_self, now=self.now))
                continue
            parsed: _ParsedImage = self.cache.get("image", p, _parse_image)
            out.append(parsed.at(self.now))
        return out

    def model_facts(self, kind: str) -> list[ModelFacts]:
        """Every peer that offers `kind` ("llm", "embeddings", "transcription" or "meta")."""
        out = []
        for peer in self.peers:
            facts = self.cache.get(kind, peer, _facts) if self.cache else _facts(peer, kind)
            if facts is not None:
                out.append(facts)
        return out

    def holders(self, kind: str) -> dict[str, list[str]]:
        """Model -> the live peers that advertise it, as each named it."""
        named: dict[str, list[str]] = {}
        section = section_for(kind)
        for peer in self.peers:
            doc = peer.document.get(section)
            if peer.status not in LIVE or not isinstance(doc, dict):
                continue
            models = doc.get("models")
            if section == "image":
                names = [
                    m for m, s in _object(models).items() if isinstance(s, Mapping) and s.get("installed") is True
                ]
            else:
                names = _names(models)
            for model in names:
                named.setdefault(str(model), []).append(peer.node_id)
        return named


def _facts(peer: PeerState, kind: str) -> ModelFacts | None:
    section = section_for(kind)
    doc = peer.document.get(section)
    if not isinstance(doc, dict):
        return None
    memory = _number(_object(peer.document.get("system")).get("memory_available_gb")) or 0.0
    facts = facts_from_state(peer.node_id, peer.status, doc, kind=kind, memory_available_gb=memory,
                             is_self=peer.is_self)  # fmt: skip
    return replace(facts, other_jobs=other_work(peer.document, section))


@dataclass(frozen=True)
class _ParsedImage:
    """A peer's image view with its running jobs kept apart: their remaining time is the one thing that moves
    with `now`."""

    view: PeerView  # backlog_s holds only the waiting jobs' estimates
    running: tuple[tuple[float, float], ...]  # (estimate_s, started_at) of each running job

    def at(self, now: float) -> PeerView:
        if not self.running:
            return self.view
        view = copy.copy(self.view)  # a frozen dataclass: copied, then its one moving field set
        left = sum(max(0.0, estimate - max(0.0, now - started)) for estimate, started in self.running)
        object.__setattr__(view, "backlog_s", self.view.backlog_s + left)
        return view


def _parse_image(peer: PeerState, _key: str = "image") -> _ParsedImage:
    """`image_view` without the running jobs' remaining time (see `_ParsedImage.at`)."""
    queue = _object(_object(peer.document.get("image")).get("queue"))
    running = tuple((_number(j.get("estimate_s")) or 0.0, started) for j in _jobs(queue.get("running"))
                    if (started := _number(j.get("started_at"))) is not None)  # fmt: skip
    # at an infinite `now` the jobs with a start time have nothing left; those without count whole, as ever
    view = image_view(peer.node_id, peer.status, peer.document, is_self=peer.is_self, now=math.inf)
    return _ParsedImage(view, running)


def section_for(kind: str) -> str:
    return {"image": "image", "transcription": "stt"}.get(kind, "llm")


def image_view(node_id: str, status: str, state: Any, *, is_self: bool, now: float) -> PeerView:
    """Adapter: a peer's advertised capability document -> the scheduler's frozen PeerView.

    The remaining time of running jobs is computed here from when they started, so the document itself can
    stay free of ticking clocks. The document is another peer's JSON: a part of the wrong shape counts as
    empty, a number that is not finite and non-negative as absent, and nothing here raises.
    """
    doc = _object(state)
    image = _object(doc.get("image"))
    system = _object(doc.get("system"))
    models = {m: s for m, s in _object(image.get("models")).items() if isinstance(s, dict)}
    queue = _object(image.get("queue"))
    speed = _object(image.get("speed"))
    memory = _object(image.get("memory"))
    backlog = 0.0
    job_ids: set[str] = set()
    queued: set[str] = set()
    for job in _jobs(queue.get("running")):
        started = _number(job.get("started_at")) or now
        backlog += max(0.0, (_number(job.get("estimate_s")) or 0.0) - max(0.0, now - started))
        job_ids.add(str(job.get("job_id")))
        queued.add(str(job.get("model")))
    for job in _jobs(queue.get("waiting")):
        backlog += _number(job.get("estimate_s")) or 0.0
        job_ids.add(str(job.get("job_id")))
        queued.add(str(job.get("model")))
    slots = queue.get("slots")
    others = other_work(doc, "image")
    available = _number(system.get("memory_available_gb"))
    held = _number(memory.get("held_gb")) or 0.0
    slowdown = _number(speed.get("slowdown")) if _number(speed.get("slowdown")) is not None else DEFAULT_SLOWDOWN
    return PeerView(
        node_id=node_id,
        status=status,
        is_self=is_self,
        accepting=image.get("enabled") is True,
        installed=frozenset(m for m, s in models.items() if s.get("installed") is True),
        bases={m: s["base"] for m, s in models.items() if isinstance(s.get("base"), str)},
        cached=frozenset(m for m, s in models.items() if s.get("cached") is True),
        missing=frozenset(m for m, s in models.items() if s.get("weights") == "missing"),
        loaded=frozenset(m for m, s in models.items() if s.get("loaded") is True),
        queued_models=frozenset(queued),
        ms_per_unit=_numbers(speed.get("ms_per_mp_step")),
        prior_ms_per_unit=_numbers(speed.get("prior_ms_per_mp_step")),
        load_s=_numbers(speed.get("load_s")),
        backlog_s=backlog,  # scheduling divides by slots
        job_ids=frozenset(job_ids),
        slots=slots if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1 else 1,
        transfer_s=0.0 if is_self else TRANSFER_BASE_S,
        contention=1.0 + (slowdown or 0.0) * others,
        memory_budget_gb=None if available is None else available + held,
        memory_cap_gb=_number(memory.get("cap_gb")),
        peak_gb=_peaks(memory.get("peak")),
        cpu_percent=_number(system.get("cpu_percent")) or 0.0,
        memory_pressure=str(system.get("memory_pressure") or "unknown"),
    )


def other_work(doc: Mapping[str, Any], kind: str) -> int:
    """Requests of the other kinds in flight on that machine: they share its GPU and memory with `kind`."""
    count = 0
    for name, section in doc.items():
        if name == kind or not isinstance(section, Mapping):
            continue
        count += len(_jobs(section.get("active")))
        if name == "image":
            count += len(_jobs(_object(section.get("queue")).get("running")))
    return count


def _peaks(value: Any) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for key, pair in _object(value).items():
        if isinstance(pair, list) and len(pair) == 2:
            gb, mp = _number(pair[0]), _number(pair[1])
            if gb is not None and mp is not None:
                out[str(key)] = (gb, mp)
    return out


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _jobs(value: Any) -> list[dict[str, Any]]:
    return [job for job in value if isinstance(job, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    """A finite, non-negative JSON number as a float; anything else (a string, NaN, -1, true, 1e999) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _numbers(value: Any) -> dict[str, float]:
    return {k: n for k, v in _object(value).items() if isinstance(k, str) and (n := _number(v)) is not None}


def facts_from_state(
    node_id: str,
    status: str,
    section: Mapping[str, Any],
    *,
    kind: str,
    memory_available_gb: float,
    is_self: bool,
) -> ModelFacts:
    """Adapter: a peer's `llm` or `stt` state section -> ModelFacts for one kind of request.

    `kind` is "llm", "embeddings" or "transcription" (whose setting must be on), or "meta" (model details:
    served whatever the settings say). Ollama model names are normalised; Whisper names are kept as they are.
    """
    enabled = section.get("enabled")
    if isinstance(enabled, Mapping):  # Ollama: {"llm": .., "embeddings": ..}; Whisper: one flag
        accepting = kind == "meta" or enabled.get(kind) is True
    else:
        accepting = enabled is True
    norm = normalize_model if kind != "transcription" else (lambda name: name)
    return ModelFacts(
        node_id=node_id,
        status=status,
        is_self=is_self,
        accepting=accepting,
        installed=frozenset(norm(m) for m in _names(section.get("models"))),
        loaded=frozenset(norm(m) for m in _names(section.get("loaded"))),
        sizes={norm(k): int(v) for k, v in _numbers(section.get("sizes")).items()},
        active=frozenset(str(a.get("job_id")) for a in _jobs(section.get("active"))),
        memory_available_gb=float(memory_available_gb or 0.0),
    )


def _names(value: Any) -> list[str]:
    """A list of model names; anything that is not a string is dropped."""
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []
