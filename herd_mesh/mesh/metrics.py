"""What this machine has to offer right now, read with psutil (and sysctl / /proc where psutil is silent)."""

from __future__ import annotations

import functools
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from ..core.units import GIB as GB


@dataclass(frozen=True)
class SystemMetrics:
    chip: str
    cores: int
    memory_total_gb: float
    memory_available_gb: float
    memory_pressure: str  # "normal" | "warn" | "critical" | "unknown"
    cpu_percent: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def chip_name() -> str:
    """`Apple M3 Ultra` on a Mac, the CPU model name on Linux."""
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def gpu_cores() -> int | None:
    """Apple Silicon GPU cores (an M3 Max has 30 or 40): the speed prior depends on it."""
    if platform.system() != "Darwin":
        return None
    try:
        out = subprocess.run(
            ["ioreg", "-rc", "AGXAccelerator", "-d", "1"], capture_output=True, text=True, timeout=3
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if '"gpu-core-count"' in line:
            try:
                return int(line.rsplit("=", 1)[1].strip())
            except ValueError:
                return None
    return None


def memory_pressure() -> str:
    """macOS reports a pressure level; Linux has PSI (share of time stalled on memory in the last 10 s)."""
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "kern.memorystatus_vm_pressure_level"], capture_output=True, text=True, timeout=2
            ).stdout.strip()
            return {"1": "normal", "2": "warn", "4": "critical"}.get(out, "unknown")
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    try:
        first = Path("/proc/pressure/memory").read_text().splitlines()[0]
        avg10 = float(first.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return "unknown"
    if avg10 >= 20:
        return "critical"
    if avg10 >= 5:
        return "warn"
    return "normal"


def sample() -> SystemMetrics:
    """One reading. `cpu_percent` is the average since the previous call, so call it on a steady tick."""
    vm = psutil.virtual_memory()
    return SystemMetrics(
        chip=chip_name(),
        cores=psutil.cpu_count(logical=True) or 1,
        memory_total_gb=round(vm.total / GB, 1),
        memory_available_gb=round(vm.available / GB, 1),
        memory_pressure=memory_pressure(),
        cpu_percent=psutil.cpu_percent(interval=None),
    )


class Machine:
    """This machine's readings, or a simulated Mac's: with `simulated_gb` (a fleet of peers on one computer), the
    memory is that much, of which what this peer's engines hold (`held_gb`) is in use."""

    def __init__(self, *, simulated_gb: float | None = None, held_gb: Callable[[], float] = lambda: 0.0) -> None:
        self._simulated_gb = simulated_gb
        self._held_gb = held_gb

    def sample(self) -> SystemMetrics:
        reading = sample()
        if self._simulated_gb is None:
            return reading
        available = max(0.0, self._simulated_gb - self._held_gb())
        return replace(reading, memory_total_gb=self._simulated_gb, memory_available_gb=round(available, 1),
                       memory_pressure="normal")  # fmt: skip
