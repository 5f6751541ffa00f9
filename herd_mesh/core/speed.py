"""How fast this peer is, per model: measured where it can be, a hardware prior where it cannot yet.

Pure: no clock, no file I/O. The peer feeds in each job's timings, advertises the numbers and writes
`to_dict()` to disk; routing reads them back through `scheduling.PeerView`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import catalogue

EWMA_ALPHA = 0.3  # weight of the newest sample (dimensionless): ~3 jobs to follow a real change
MAX_SAMPLE_RATIO = 4.0  # a sample further than this factor from the estimate is clamped to it (one swap storm
# or a thermal hiccup must not make a fast Mac look slow for the next ten jobs)
DEFAULT_REF_MS_PER_MP_STEP = 6000.0  # ms per megapixel-step on an M3 Ultra for a model the catalogue lacks
DEFAULT_LOAD_S = 15.0  # seconds to load a model before any load was measured
DEFAULT_SLOWDOWN = 0.5  # prior until measured: each LLM/STT request in flight slows image work by half (x)
UNKNOWN_CHIP_FACTOR = 0.02  # speed of a non-Apple-Silicon host relative to an M3 Ultra (mflux on CPU crawls)
SCHEMA_VERSION = 1

# Reference machine: M3 Ultra, 80 GPU cores, 819 GB/s. Every factor is relative to it.
_REF_CORES = 80
_REF_BANDWIDTH_GBS = 819.0
_COMPUTE_WEIGHT = 0.75  # diffusion at 1024^2 is mostly compute-bound; bandwidth matters for the remainder

# Throughput of one GPU core of each generation relative to an M3 core (clock, ALU width, dynamic caching).
# M5 adds matrix units to every GPU core; MLX uses them, so its cores count for more on diffusion.
_PER_CORE: dict[int, float] = {1: 0.75, 2: 0.85, 3: 1.0, 4: 1.15, 5: 1.5}

# (generation, tier) -> the binned configurations Apple sold: (GPU cores, memory bandwidth in GB/s).
# The first bin is the smallest; it is the conservative guess when the core count is unknown.
_CHIPS: dict[tuple[int, str], tuple[tuple[int, float], ...]] = {
    (1, ""): ((7, 68.0), (8, 68.0)),
    (1, "pro"): ((14, 200.0), (16, 200.0)),
    (1, "max"): ((24, 400.0), (32, 400.0)),
    (1, "ultra"): ((48, 800.0), (64, 800.0)),
    (2, ""): ((8, 100.0), (10, 100.0)),
    (2, "pro"): ((16, 200.0), (19, 200.0)),
    (2, "max"): ((30, 400.0), (38, 400.0)),
    (2, "ultra"): ((60, 800.0), (76, 800.0)),
    (3, ""): ((8, 100.0), (10, 100.0)),
    (3, "pro"): ((14, 150.0), (18, 150.0)),
    (3, "max"): ((30, 300.0), (40, 400.0)),
    (3, "ultra"): ((60, 819.0), (80, 819.0)),
    (4, ""): ((8, 120.0), (10, 120.0)),
    (4, "pro"): ((16, 273.0), (20, 273.0)),
    (4, "max"): ((32, 410.0), (40, 546.0)),
    (5, ""): ((8, 153.0), (10, 153.0)),
}

_CHIP_RE = re.compile(r"\bM(\d{1,2})(?:\s*(Pro|Max|Ultra))?\b", re.IGNORECASE)


def _bins(generation: int, tier: str) -> tuple[tuple[int, float], ...]:
    """A chip newer than the table borrows the newest known generation's bins for its tier."""
    for gen in range(generation, 0, -1):
        if (gen, tier) in _CHIPS:
            return _CHIPS[(gen, tier)]
    return _CHIPS[(1, tier)]


def hardware_prior(chip: str, gpu_cores: int | None = None) -> float:
    """Speed relative to an M3 Ultra (80 cores) from the chip name; a starting point until jobs are measured.

    `chip` is what `sysctl machdep.cpu.brand_string` says ("Apple M4 Pro"); anything that is not Apple Silicon
    gets `UNKNOWN_CHIP_FACTOR`, so a Linux box is only chosen when nothing else can serve.
    """
    match = _CHIP_RE.search(chip or "")
    apple = "apple" in (chip or "").lower() or (chip or "").strip().upper().startswith("M")
    if match is None or not apple:
        return UNKNOWN_CHIP_FACTOR
    generation = int(match.group(1))
    tier = (match.group(2) or "").lower()
    bins = _bins(generation, tier)
    if gpu_cores is None or gpu_cores <= 0:
        cores, bandwidth = bins[0]
    else:
        cores = gpu_cores
        bandwidth = min(bins, key=lambda b: abs(b[0] - gpu_cores))[1]
    per_core = _PER_CORE.get(generation, _PER_CORE[max(_PER_CORE)])
    compute = cores * per_core / (_REF_CORES * _PER_CORE[3])
    memory = bandwidth / _REF_BANDWIDTH_GBS
    return float(compute**_COMPUTE_WEIGHT * memory ** (1.0 - _COMPUTE_WEIGHT))


def prior_ms_per_mp_step(model: str, factor: float) -> float:
    """The catalogue's M3 Ultra figure scaled by a hardware factor (a 0.5x machine takes twice as long)."""
    entry = catalogue.get(model)
    ref = entry.ref_ms_per_mp_step if entry is not None else DEFAULT_REF_MS_PER_MP_STEP
    return ref / max(factor, 1e-6)


def _ewma(old: float | None, sample: float) -> float:
    if old is None:
        return sample
    sample = min(max(sample, old / MAX_SAMPLE_RATIO), old * MAX_SAMPLE_RATIO)
    return (1.0 - EWMA_ALPHA) * old + EWMA_ALPHA * sample


@dataclass
class SpeedBook:
    """Per-model moving averages of this peer's own speed and load time, over a hardware prior.

    `chip`/`gpu_cores` travel with the measurements so that a state file copied to a different Mac is not
    trusted (`from_dict` drops measurements taken on other hardware).
    """

    chip: str = ""
    gpu_cores: int | None = None
    factor: float = UNKNOWN_CHIP_FACTOR  # hardware prior, relative to an M3 Ultra
    ms: dict[str, float] = field(default_factory=dict)  # model -> ms per megapixel-step (EWMA)
    runs: dict[str, int] = field(default_factory=dict)  # model -> number of runs measured
    load: dict[str, float] = field(default_factory=dict)  # model -> load seconds (EWMA)
    loads: dict[str, int] = field(default_factory=dict)  # model -> number of loads measured
    slowdown: float | None = None  # learned: each other request in flight slows a run by this share (EWMA)
    peak_gb: dict[str, tuple[float, float]] = field(default_factory=dict)  # "model@q" -> (peak GB, megapixels)

    @classmethod
    def for_hardware(cls, chip: str, gpu_cores: int | None = None) -> SpeedBook:
        return cls(chip=chip, gpu_cores=gpu_cores, factor=hardware_prior(chip, gpu_cores))

    def record_run(self, model: str, mp_steps: float, ms: float, *, others: int = 0) -> None:
        """One finished generation (load excluded); nonsense timings are ignored rather than averaged in.

        `others` is how many requests of other kinds (LLM, speech-to-text) ran on this machine meanwhile: such a
        run teaches the slowdown they cause, not the speed."""
        if mp_steps <= 0 or ms <= 0:
            return
        self.runs[model] = self.runs.get(model, 0) + 1
        sample = ms / mp_steps
        idle = self.ms.get(model)
        if others <= 0 or idle is None:
            self.ms[model] = _ewma(idle, sample if others <= 0 else sample / (1 + self.slowdown_per_job() * others))
            return
        per_job = max(0.0, (sample / idle - 1.0) / others)
        self.slowdown = per_job if self.slowdown is None else (1 - EWMA_ALPHA) * self.slowdown + EWMA_ALPHA * per_job

    def slowdown_per_job(self) -> float:
        return self.slowdown if self.slowdown is not None else DEFAULT_SLOWDOWN

    def record_peak(self, model: str, quantize: int, peak_gb: float, megapixels: float) -> None:
        """What a run really took (the engine's peak memory), so later fits use it where it is larger."""
        if peak_gb > 0 and megapixels > 0:
            self.peak_gb[f"{model}@{quantize}"] = (round(peak_gb, 2), round(megapixels, 3))

    def record_load(self, model: str, seconds: float) -> None:
        if seconds <= 0:
            return
        self.load[model] = _ewma(self.load.get(model), seconds)
        self.loads[model] = self.loads.get(model, 0) + 1

    def prior_ms_per_mp_step(self, model: str) -> float:
        return prior_ms_per_mp_step(model, self.factor)

    def ms_per_mp_step(self, model: str) -> float:
        measured = self.ms.get(model)
        return measured if measured is not None else self.prior_ms_per_mp_step(model)

    def load_seconds(self, model: str) -> float:
        measured = self.load.get(model)
        return measured if measured is not None else DEFAULT_LOAD_S

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "chip": self.chip,
            "gpu_cores": self.gpu_cores,
            "factor": self.factor,
            "slowdown": self.slowdown,
            "peak_gb": {key: list(value) for key, value in sorted(self.peak_gb.items())},
            "models": {
                model: {
                    "ms_per_mp_step": self.ms.get(model),
                    "runs": self.runs.get(model, 0),
                    "load_s": self.load.get(model),
                    "loads": self.loads.get(model, 0),
                }
                for model in sorted(set(self.ms) | set(self.load))
            },
        }

    @classmethod
    def from_dict(cls, data: Any, *, chip: str | None = None, gpu_cores: int | None = None) -> SpeedBook:
        """Restore a saved book; never raises, since a corrupt state file must not stop the peer.

        With `chip` given (the hardware we run on now), measurements saved on other hardware are dropped and
        the prior is recomputed for this machine.
        """
        if not isinstance(data, dict):
            data = {}
        saved_chip = data.get("chip") if isinstance(data.get("chip"), str) else ""
        saved_cores = data.get("gpu_cores") if isinstance(data.get("gpu_cores"), int) else None
        if chip is not None:
            book = cls.for_hardware(chip, gpu_cores)
            if (saved_chip, saved_cores) != (chip, gpu_cores):
                return book
        else:
            factor = data.get("factor")
            ok = isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 0
            book = cls(chip=saved_chip, gpu_cores=saved_cores, factor=float(factor) if ok else UNKNOWN_CHIP_FACTOR)
        slowdown = data.get("slowdown")
        if isinstance(slowdown, int | float) and not isinstance(slowdown, bool) and 0 <= slowdown < 100:
            book.slowdown = float(slowdown)
        peaks = data.get("peak_gb")
        for key, pair in peaks.items() if isinstance(peaks, dict) else []:
            if isinstance(pair, list) and len(pair) == 2 and all(_positive(v) for v in pair):
                book.peak_gb[str(key)] = (float(pair[0]), float(pair[1]))
        models = data.get("models")
        if not isinstance(models, dict):
            return book
        for model, entry in models.items():
            if not isinstance(model, str) or not isinstance(entry, dict):
                continue
            ms, runs = entry.get("ms_per_mp_step"), entry.get("runs")
            if isinstance(ms, int | float) and _positive(ms):
                book.ms[model] = float(ms)
                book.runs[model] = runs if isinstance(runs, int) and runs > 0 else 1
            load, loads = entry.get("load_s"), entry.get("loads")
            if isinstance(load, int | float) and _positive(load):
                book.load[model] = float(load)
                book.loads[model] = loads if isinstance(loads, int) and loads > 0 else 1
        return book


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value == value
