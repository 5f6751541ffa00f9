"""The shapes every scheduling decision works on: one unit of work, one peer as the decider sees it, and the
bookkeeping of what was sent where. Plain frozen dataclasses, shared by images, LLMs, embeddings and
speech-to-text, and by the simulator in `benchmarks/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

IMAGE = "image"
KINDS = ("image", "llm", "embeddings", "transcription")  # what the records and statistics count


@dataclass(frozen=True)
class Work:
    """A job as the scheduler prices it. Images cost megapixel-steps; every other request costs one unit."""

    model: str
    job_id: str = ""
    kind: str = IMAGE
    width: int = 0
    height: int = 0
    steps: int = 0
    quantize: int = 8

    @classmethod
    def image(cls, model: str, width: int, height: int, steps: int, job_id: str = "", quantize: int = 8) -> Work:
        return cls(model, job_id, IMAGE, width, height, steps, quantize)

    @classmethod
    def request(cls, kind: str, model: str, job_id: str = "") -> Work:
        return cls(model, job_id, kind)

    @property
    def units(self) -> float:
        """Megapixel-steps for an image, 1 for any other request: what `PeerView.ms_per_unit` is per."""
        if self.kind == IMAGE:
            return self.width * self.height / 1e6 * self.steps
        return 1.0


@dataclass(frozen=True)
class PeerView:
    """One peer as the decider sees it for one kind of work: its own advertisement, possibly a second old."""

    node_id: str
    status: str = "up"  # "up" | "suspect" | "down"
    is_self: bool = False
    accepting: bool = True  # this kind of work is switched on there
    installed: frozenset[str] = frozenset()  # models it can run
    cached: frozenset[str] = frozenset()  # weights known to be on disk (a scan, or a job that ran there)
    missing: frozenset[str] = frozenset()  # weights known not to be on disk: the first job downloads them
    loaded: frozenset[str] = frozenset()  # resident in memory now (no load time)
    queued_models: frozenset[str] = frozenset()  # models of jobs running or waiting there: loaded by then
    ms_per_unit: Mapping[str, float] = field(default_factory=dict)  # measured, per model
    prior_ms_per_unit: Mapping[str, float] = field(default_factory=dict)  # hardware prior, per model
    load_s: Mapping[str, float] = field(default_factory=dict)  # measured load seconds per model
    prior_load_s: float = 15.0  # seconds, when no load was measured
    download_s: float = 900.0  # seconds to fetch weights that are not cached
    backlog_s: float = 0.0  # advertised seconds of work there, all slots together (running rest + queued)
    job_ids: frozenset[str] = frozenset()  # ids of jobs it advertised as running/queued
    slots: int = 1
    transfer_s: float = 0.0  # request + answer over the network (0 for self)
    contention: float = 1.0  # how much slower its work runs now because of other work on the machine (>= 1)
    memory_budget_gb: float | None = None  # memory this kind of work could have there now (None: unknown)
    memory_cap_gb: float | None = None  # the peer's --max-memory-gb
    peak_gb: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # "model@q" -> measured (GB, MP)
    cpu_percent: float = 0.0
    memory_pressure: str = "unknown"  # normal | warn | critical | unknown
    bases: Mapping[str, str] = field(default_factory=dict)  # a local model -> the catalogue model it varies


@dataclass(frozen=True)
class Sent:
    """Work a decider dispatched and whose target may not advertise it yet; `model` lets a queued cold load
    count once."""

    job_id: str
    node_id: str
    seconds: float  # its expected run (+ load) seconds at that peer, as estimated when sent
    sent_at: float
    model: str = ""


@dataclass(frozen=True)
class Choice:
    node_id: str
    completion_s: float
    reason: str  # human-readable breakdown, e.g. "queue 12.0s + run 4.1s + load 9.0s"


@dataclass(frozen=True)
class Handover:
    """The victim's answer to a steal request: which queued job to give away, and why it pays."""

    job_id: str
    index: int  # position in the victim's FIFO queue (0 = next to run)
    here_s: float  # when it would finish on the victim (seconds from now)
    there_s: float  # when it should finish on the thief (seconds from now)
    reason: str
