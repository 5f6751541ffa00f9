"""Does an image job fit in a peer's memory? The catalogue's figures, refined by what runs there really took.

A job needs its model's weights at the requested quantization, plus a working set that grows with the image, plus
the runtime (`ImageModel.need_gb`). Where a peer measured a run of the same model and quantization, that peak
(scaled to the new size) counts when it is larger. It fits when the need is within both the peer's budget (memory
available now, plus what herd-mesh's own image engine holds and would give back) and its `--max-memory-gb`.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import Reason, RequestError
from . import catalogue
from .work import PeerView, Work

UNKNOWN_MODEL_GB = 16.0  # a model the catalogue does not know (a local model without a base): assume this


def peak_key(model: str, quantize: int) -> str:
    return f"{model}@{quantize}"


def need_gb(work: Work, peer: PeerView | None = None) -> float:
    entry = catalogue.get(work.model)
    if entry is None and peer is not None and work.model in peer.bases:  # a local model: its base's figures
        entry = catalogue.get(peer.bases[work.model])
    megapixels = work.width * work.height / 1e6
    if entry is None:
        estimate = UNKNOWN_MODEL_GB * work.quantize / 8 + catalogue.RUNTIME_GB
        per_mp = 2.0
    else:
        estimate = entry.need_gb(work.quantize, work.width, work.height)
        per_mp = entry.working_gb_per_mp
    measured = peer.peak_gb.get(peak_key(work.model, work.quantize)) if peer is not None else None
    if measured is not None:
        peak, at_mp = measured
        estimate = max(estimate, peak + per_mp * (megapixels - at_mp))
    return estimate


def room_gb(peer: PeerView) -> float | None:
    """What an image job may use there: the budget, within the cap; None when the peer does not say."""
    limits = [v for v in (peer.memory_budget_gb, peer.memory_cap_gb) if v is not None]
    return min(limits) if limits else None


def fits(peer: PeerView, work: Work) -> bool:
    room = room_gb(peer)
    return room is None or need_gb(work, peer) <= room


def shortfall(peer: PeerView, work: Work) -> str | None:
    """Why the job does not fit there, in a few words, or None when it does."""
    room = room_gb(peer)
    need = need_gb(work, peer)
    if room is None or need <= room:
        return None
    capped = peer.memory_cap_gb is not None and peer.memory_cap_gb <= (peer.memory_budget_gb or peer.memory_cap_gb)
    return f"no room (needs {need:.0f} GB, {room:.0f} {'allowed' if capped else 'free'})"


QUANTIZE_LEVELS = (3, 4, 5, 6, 8)


def no_room_error(work: Work, peers: list[PeerView]) -> RequestError:
    """The answer when the job fits on no peer that could run it: what it needs, what each offers, what would."""
    need = min((need_gb(work, p) for p in peers), default=need_gb(work))
    offers = []
    for peer in peers:
        room = room_gb(peer)
        if room is None:
            continue
        capped = peer.memory_cap_gb is not None and peer.memory_cap_gb == room
        offers.append(f"{peer.node_id} {room:.0f} GB {'(its --max-memory-gb)' if capped else 'free'}")
    smaller = [q for q in QUANTIZE_LEVELS if q < work.quantize and any(fits(p, replace(work, quantize=q))
                                                                        for p in peers)]  # fmt: skip
    hints = []
    if smaller:
        q = max(smaller)
        lighter = replace(work, quantize=q)
        hints.append(f'"quantize": {q} needs {min(need_gb(lighter, p) for p in peers):.0f} GB and fits')
    if any(p.memory_cap_gb is not None for p in peers):
        hints.append("or raise --max-memory-gb on a peer")
    hints.append("or close other apps (and LLMs) on a Mac")
    size = f"{work.width}x{work.height}"
    return RequestError(
        f"{work.model} at q{work.quantize}, {size} needs about {need:.0f} GB of memory; "
        f"{', '.join(offers) or 'no peer says how much it has'}. Try: {'; '.join(hints)}",
        507,
        reason=Reason.NO_ROOM,
        need_gb=round(need, 1),
        offers={p.node_id: None if room_gb(p) is None else round(room_gb(p) or 0.0, 1) for p in peers},
    )
