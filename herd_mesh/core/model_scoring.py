"""Where an LLM, embedding or transcription request should run, scored with the image scheduler itself.

Pure: frozen snapshots in, decisions out; the randomness is a parameter. Rather than a second scheduler, each
peer is described as a `PeerView` and a request as one unit of `Work`, so
`ranking.rank` (up before suspect, near-ties shuffled, work sent but not yet advertised counted) decides:

- queue: every request in flight on that peer (`active` in its state) costs `in_flight_s`;
- run: one request, `in_flight_s` (the same on every peer; it also is what a sent, unseen request adds);
- load: zero when the model is resident, else `cold_base_s + size / load_gb_per_s` plus a memory term: a model
  that does not fit in the free memory costs `no_room_s` (Ollama must evict or swap), one that fits costs up to
  `tight_memory_s`, less with more headroom;
- transfer: `transfer_s` for another peer, so among equals the entry peer serves without a hop.

So a peer with the model loaded is strongly preferred (a cold 8 GB model costs as much as 6 requests in
flight), then the one with fewer requests in flight, then the one with more free memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .ranking import rank, sent_record
from .rng import Rng
from .units import GIB
from .work import Choice, PeerView, Sent, Work

ANY_MODEL = ""  # a request that names no model (transcription): any model the peer has will do


@dataclass(frozen=True, kw_only=True)
class Costs:
    """Seconds each fact is worth; one set for Ollama, one for Whisper."""

    in_flight_s: float  # one request already running or waiting there
    cold_base_s: float  # a cold load, however small the model (process start, warm-up)
    load_gb_per_s: float  # weights read into memory per second
    prior_model_gb: float  # size assumed for a model whose size is not advertised
    memory_factor: float  # memory a loaded model needs per byte of weights (KV cache, buffers)
    no_room_s: float  # a cold model larger than the free memory: others must be evicted first
    tight_memory_s: float  # a cold model that fits: up to this much, scaled by the share of free memory it takes
    transfer_s: float  # another peer rather than this one (a hop; breaks ties in favour of no hop)
    other_work_s: float = 2.0  # each job of another kind (an image) running there: it shares the GPU and memory

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0 or (name in ("load_gb_per_s", "memory_factor") and value == 0):
                raise ValueError(f"Costs.{name} must be positive, got {value}")


LLM_COSTS = Costs(
    in_flight_s=3.0, cold_base_s=10.0, load_gb_per_s=1.0, prior_model_gb=4.0, memory_factor=1.2,
    no_room_s=60.0, tight_memory_s=5.0, transfer_s=0.1,
)  # fmt: skip
STT_COSTS = Costs(
    in_flight_s=2.0, cold_base_s=1.0, load_gb_per_s=0.5, prior_model_gb=0.5, memory_factor=1.5,
    no_room_s=30.0, tight_memory_s=1.0, transfer_s=0.1,
)  # fmt: skip


@dataclass(frozen=True)
class ModelFacts:
    """One peer's advertised model capability, as the decider sees it (a second old for other peers)."""

    node_id: str
    status: str = "up"  # "up" | "suspect" | "down"
    is_self: bool = False
    accepting: bool = True  # the setting for this kind of request is on there, and the backend answers
    installed: frozenset[str] = frozenset()
    loaded: frozenset[str] = frozenset()
    sizes: Mapping[str, int] | None = None  # bytes of weights per model
    active: frozenset[str] = frozenset()  # ids of the requests in flight there
    memory_available_gb: float = 0.0
    other_jobs: int = 0  # work of other kinds running on that machine (image jobs, transcriptions)


def normalize_model(name: str) -> str:
    """Ollama's rule (a name without a tag means `:latest`), case-folded for matching."""
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def load_seconds(facts: ModelFacts, model: str, costs: Costs) -> float:
    """Zero when resident; else the cold load plus what the memory it needs costs on that peer."""
    if model in facts.loaded or (model == ANY_MODEL and facts.loaded):
        return 0.0
    size = (facts.sizes or {}).get(model)
    if size is None and model == ANY_MODEL and facts.sizes:
        size = min(facts.sizes.values())
    size_gb = size / GIB if size else costs.prior_model_gb
    need_gb = size_gb * costs.memory_factor
    free_gb = max(facts.memory_available_gb, 0.0)
    memory = costs.no_room_s if need_gb > free_gb else costs.tight_memory_s * need_gb / free_gb
    return costs.cold_base_s + size_gb / costs.load_gb_per_s + memory


def peer_view(facts: ModelFacts, model: str, costs: Costs) -> PeerView:
    """The image scheduler's view of this peer for one request of `model`."""
    installed = set(facts.installed)
    loaded = set(facts.loaded)
    if model == ANY_MODEL and installed:
        installed.add(ANY_MODEL)
    if model in loaded or (model == ANY_MODEL and loaded):
        loaded.add(model)
    run_ms = costs.in_flight_s * 1000.0
    return PeerView(
        node_id=facts.node_id,
        status=facts.status,
        is_self=facts.is_self,
        accepting=facts.accepting,
        installed=frozenset(installed),
        cached=frozenset(installed),  # Ollama and Whisper models on disk: nothing to download
        loaded=frozenset(loaded),
        ms_per_unit={model: run_ms},
        prior_ms_per_unit={model: run_ms},
        load_s={model: load_seconds(facts, model, costs)},
        backlog_s=len(facts.active) * costs.in_flight_s + facts.other_jobs * costs.other_work_s,
        job_ids=facts.active,
        slots=1,
        transfer_s=0.0 if facts.is_self else costs.transfer_s,
    )


def rank_peers(
    peers: Iterable[ModelFacts], work: Work, costs: Costs, *, sent: Iterable[Sent] = (), rng: Rng
) -> list[Choice]:
    """Best first; never a peer that is down, switched off, or without the model."""
    return rank([peer_view(p, work.model, costs) for p in peers], work, sent=sent, rng=rng)


def sent_for(facts: ModelFacts, work: Work, costs: Costs, *, sent: Iterable[Sent], now: float) -> Sent:
    """What the decider remembers after sending a request to `facts`' peer, until its answer ends."""
    return sent_record(peer_view(facts, work.model, costs), work, sent=sent, now=now)
