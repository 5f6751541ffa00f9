"""The health checks: each reads the mesh's snapshot and yields advice that says what to do, or nothing.

`core/health.py` runs them all (`CHECKS`, in the order the dashboard lists them) and gathers the advice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import catalogue
from .catalogue import INSTALL_COMMAND
from .extras import install_hint
from .health_snapshot import Mdns, PeerSnapshot, image_models, number, section

CPU_BUSY_PERCENT = 90.0  # a peer this busy with no job of ours is worth a word: other work competes with ours
SETTINGS_DIFFER_ADVICE_S = 5.0  # settings still differing after this long means a peer cannot take ours
SLOWER_THAN_PRIOR = 2.0  # measured this many times slower than its chip's prior: something is wrong there
CLOCK_SKEW_S = 2.0  # peers' clocks further apart than this: settings and records use wall clocks
MDNS_GRACE_S = 15.0  # after this long up, peers seen only through --peer mean multicast does not work
DISK_FREE_GB = 2.0  # less free space than this (or DISK_FREE_FRACTION) in a data dir is near full
DISK_FREE_FRACTION = 0.05
FAILURES_MIN = 3  # this many failures on one peer in the last hour, at least FAILURES_SHARE of its jobs
FAILURES_SHARE = 0.5
FIT_SIZE = 1024  # an installed model should fit a 1024x1024 image at q8 in the Mac's memory
SERVICES = {  # setting -> what it serves, for advice when it is off
    "image_generation": "image generation",
    "llm": "LLM chat and completions",
    "embeddings": "embeddings",
    "transcription": "speech-to-text",
}
KEY_ADVICE = ("run `herd key generate` on one Mac, `herd key set <key>` on each other Mac, and restart the "
              "peers")  # fmt: skip
STT_INSTALL = install_hint("stt")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Context:
    peers: Sequence[PeerSnapshot]
    nodes: Sequence[dict[str, Any]]
    up: Sequence[tuple[PeerSnapshot, dict[str, Any]]]
    settings: Mapping[str, Any]
    now: float
    failures: Mapping[str, Mapping[str, Any]]
    mdns: Mdns | None

    @property
    def self_name(self) -> str:
        return next((str(p.node_id) for p in self.peers if p.is_self), "this peer")


# -- the checks: each yields advice that says what to do, and nothing when all is well ------------------------------
def _reachable(c: Context) -> Iterable[str]:
    for peer in c.peers:
        if peer.status != "down":
            continue
        if peer.node_id is None:
            yield (f"static peer {peer.url} has never answered ({peer.last_error}): check the URL and that `herd` "
                   "runs there")  # fmt: skip
        else:
            since = f" for {_duration(c.now - peer.unreachable_since)}" if peer.unreachable_since else ""
            yield (f"peer {peer.node_id} unreachable{since} ({peer.last_error or 'no answer'}): check that the Mac "
                   "is awake and on the network, and that `herd` runs on it")  # fmt: skip


def _mflux(c: Context) -> Iterable[str]:
    if not any(n["image_models"] for _, n in c.up):
        yield f"no peer has mflux: install it on a Mac with `{INSTALL_COMMAND}`"


def _pressure(c: Context) -> Iterable[str]:
    for peer, node in c.up:
        if node["memory_pressure"] in ("warn", "critical"):
            yield (f"peer {peer.node_id} is under memory pressure ({node['memory_pressure']}): close other apps, or "
                   "lower image_keep_alive_s so idle models are unloaded sooner")  # fmt: skip


def _cpu(c: Context) -> Iterable[str]:
    for peer, node in c.up:
        cpu = node["cpu_percent"]
        if isinstance(cpu, int | float) and cpu >= CPU_BUSY_PERCENT and not node["queue"]:
            yield (f"peer {peer.node_id} CPU is at {cpu:.0f}%: something else is busy there; new jobs prefer other "
                   "peers")  # fmt: skip


def _weights(c: Context) -> Iterable[str]:
    """Downloads in progress; and weights missing for a model the mesh uses (cached or loaded on another peer):
    mflux installs every model's command, so a model nobody uses is no reason to download gigabytes."""
    used: dict[str, set[str]] = {}
    for peer, _ in c.up:
        for name in _used_models_of(peer):
            used.setdefault(name, set()).add(str(peer.node_id))
    for peer, _ in c.up:
        models = image_models(peer)
        said = {m: s.get("weights") for m, s in models.items() if s.get("installed")}
        for model in sorted(m for m, w in said.items() if w == "downloading"):
            progress = models[model].get("download")  # [files done, files]
            how_far = ""
            if isinstance(progress, list) and len(progress) == 2 and all(number(v) for v in progress[1:]):
                how_far = f" ({number(progress[0]) or 0:.0f} of {number(progress[1]):.0f} files)"
            yield (f"peer {peer.node_id} is downloading the weights of {model}{how_far}: its first {model} image "
                   "waits for the download; other peers take those jobs meanwhile")  # fmt: skip
        missing = sorted(m for m, w in said.items() if w == "missing" and used.get(m, set()) - {peer.node_id})
        if missing:
            yield (f"peer {peer.node_id} has no weights for {', '.join(missing)}, which other peers use: the first "
                   "such image there downloads several GB first; download them ahead of time by running mflux "
                   f"once on that Mac (`{_download_command(missing[0])}`)")  # fmt: skip
        if said and not any(s.get("cached") or s.get("loaded") or s.get("weights") in ("cached", "downloading")
                            for s in models.values()):  # fmt: skip
            yield (f"peer {peer.node_id} has mflux but no model weights downloaded yet: its first image downloads "
                   "several GB; run one small image there ahead of time")  # fmt: skip


def _download_command(name: str) -> str:
    """A tiny mflux run of `name` on the Mac itself: it downloads the weights (herd would route it elsewhere)."""
    model = catalogue.get(name)
    command = " ".join((model.command, *model.extra_args)) if model else f"mflux-generate-{name}"
    return f"{command} --steps 1 --width 256 --height 256 --prompt test"


def _used_models_of(peer: PeerSnapshot) -> set[str]:
    """The models whose weights this peer has (downloaded, or loaded now)."""
    return {name for name, s in image_models(peer).items()
            if s.get("cached") is True or s.get("loaded") is True or s.get("weights") == "cached"}  # fmt: skip


def _usedimage_models(c: Context) -> set[str]:
    """Models whose weights some up peer has: the ones the mesh actually runs (mflux installs every command)."""
    return {name for peer, _ in c.up for name in _used_models_of(peer)}


def _fit(c: Context) -> Iterable[str]:
    used = _usedimage_models(c)
    for peer, node in c.up:
        total = number(node["memory_total_gb"])
        cap = number(section(section(peer.capabilities, "image"), "memory").get("cap_gb"))
        limits = [v for v in (total, cap) if v is not None and v > 0]
        if not limits:
            continue
        room = min(limits)
        too_big: list[str] = []
        smaller: list[str] = []
        for name, state in sorted(image_models(peer).items()):
            model = catalogue.get(name) or catalogue.get(str(state.get("base") or ""))
            if not state.get("installed") or name not in used or model is None:
                continue
            need = model.need_gb(8, FIT_SIZE, FIT_SIZE)
            if need > room:
                too_big.append(f"{name} (about {need:.0f} GB)")
                if model.need_gb(4, FIT_SIZE, FIT_SIZE) <= room:
                    smaller.append(name)
        if not too_big:
            continue
        what = "its --max-memory-gb allows" if cap is not None and cap == room and cap != total else "it has"
        hint = (f'ask for "quantize": 4 with {", ".join(smaller)} (it fits then); ' if smaller else "") + (
            "jobs that do not fit go to bigger Macs, so keep one in the mesh"
        )
        yield (f"peer {peer.node_id} is too small for {', '.join(too_big)} at q8 and {FIT_SIZE}x{FIT_SIZE}: {what} "
               f"{room:.0f} GB; {hint}")  # fmt: skip


def _speed(c: Context) -> Iterable[str]:
    for peer, _ in c.up:
        speed = section(section(peer.capabilities, "image"), "speed")
        measured, prior = section(speed, "ms_per_mp_step"), section(speed, "prior_ms_per_mp_step")
        for model in sorted(measured):
            ms, expected = number(measured.get(model)), number(prior.get(model))
            if ms is None or expected is None or expected <= 0 or ms < SLOWER_THAN_PRIOR * expected:
                continue
            yield (f"peer {peer.node_id} runs {model} {ms / expected:.1f}x slower than a Mac with its chip should "
                   f"({ms:.0f} vs about {expected:.0f} ms per megapixel-step): check what else runs there (Activity "
                   "Monitor), Low Power Mode, and that it is not hot or on battery")  # fmt: skip


def _clocks(c: Context) -> Iterable[str]:
    for peer, _ in c.up:
        skew = peer.clock_skew_s
        if skew is None or abs(skew) < CLOCK_SKEW_S:
            continue
        way = "ahead of" if skew > 0 else "behind"
        yield (f"peer {peer.node_id}'s clock is {abs(skew):.1f} s {way} {c.self_name}'s: turn on \"Set time and "
               "date automatically\" (System Settings > General > Date & Time) on both; settings and statistics "
               "go by the clocks")  # fmt: skip


def _multicast(c: Context) -> Iterable[str]:
    mdns = c.mdns
    if mdns is None or not mdns.enabled or mdns.running_for_s < MDNS_GRACE_S:
        return
    others = [p for p, _ in c.up if not p.is_self and p.node_id]
    if others and not any(p.node_id in mdns.heard for p in others):
        names = ", ".join(sorted(str(p.node_id) for p in others))
        yield (f"multicast (mDNS) does not seem to work on this network: {c.self_name} sees {names} only through "
               "--peer addresses, so new Macs are not found by themselves; allow multicast on the router (turn "
               "off client or AP isolation), or start every peer with --peer naming another")  # fmt: skip


def _mesh_key(c: Context) -> Iterable[str]:
    open_peers = sorted(str(p.node_id) for p, n in c.up if not n["mesh_key"])
    if open_peers:
        yield (f"the mesh is open (no mesh key on {', '.join(open_peers)}): any computer on this network can join "
               f"it, send it jobs and read its records; {KEY_ADVICE}")  # fmt: skip


def _disk(c: Context) -> Iterable[str]:
    for peer, node in c.up:
        free, total = node["disk_free_gb"], node["disk_total_gb"]
        if free is None or not total:
            continue
        if free < DISK_FREE_GB or free / total < DISK_FREE_FRACTION:
            yield (f"peer {peer.node_id}'s data dir is on a nearly full disk ({free:.1f} GB free of {total:.0f} GB): "
                   "free some space there; records and model downloads fail when it is full")  # fmt: skip


def _ollama(c: Context) -> Iterable[str]:
    if c.settings.get("llm") is False and c.settings.get("embeddings") is False:
        return
    sections = [(p, section(p.capabilities, "llm")) for p, _ in c.up if "llm" in p.capabilities]
    if not sections or any(s.get("models") for _, s in sections):
        return
    running = [str(p.node_id) for p, s in sections if section(s, "ollama").get("reachable") is True]
    if running:
        yield (f"Ollama runs on {', '.join(running)} but has no model: pull one there (`ollama pull llama3.2`)")
    else:
        yield ("no peer has an LLM: install Ollama on a Mac, start it (`ollama serve`) and pull a model "
               "(`ollama pull llama3.2`)")  # fmt: skip


def _whisper(c: Context) -> Iterable[str]:
    if c.settings.get("transcription") is False:
        return
    sections = [section(p.capabilities, "stt") for p, _ in c.up if "stt" in p.capabilities]
    if sections and not any(s.get("models") for s in sections):
        yield f"no peer can transcribe (no Whisper model): install the stt extra on a Mac (`{STT_INSTALL}`)"


def _failures(c: Context) -> Iterable[str]:
    for node_id, seen in sorted(c.failures.items()):
        failed, total = int(seen.get("failed") or 0), int(seen.get("total") or 0)
        if failed >= FAILURES_MIN and total and failed / total >= FAILURES_SHARE:
            last = str(seen.get("last_error") or "no reason given")[:200]
            yield (f"peer {node_id} failed {failed} of its last {total} jobs in the last hour (last: {last}): "
                   "look at its log or run `herd doctor` on it; switch image generation off there if it keeps "
                   "failing")  # fmt: skip


def _settings_differ(c: Context) -> Iterable[str]:
    for peer, _ in c.up:
        since = peer.settings_differ_since
        if since is not None and c.now - since >= SETTINGS_DIFFER_ADVICE_S:
            yield (f"peer {peer.node_id}'s settings have differed from {c.self_name}'s for "
                   f"{_duration(c.now - since)}: run the same herd-mesh version on every peer")  # fmt: skip


def _versions(c: Context) -> Iterable[str]:
    versions: dict[str, list[str]] = {}
    for peer, node in c.up:
        if node["version"]:
            versions.setdefault(str(node["version"]), []).append(str(peer.node_id))
    if len(versions) > 1:
        listing = "; ".join(f"{v} on {', '.join(sorted(n))}" for v, n in sorted(versions.items()))
        yield f"peers run different herd-mesh versions ({listing}): upgrade them to the same one"


def _switched_off(c: Context) -> Iterable[str]:
    for key, what in SERVICES.items():
        if c.settings.get(key) is False:
            yield (f"{what} is switched off for the whole mesh: turn it on in the dashboard's settings or POST "
                   f"{{\"{key}\": true}} to /dashboard/api/settings")  # fmt: skip


CHECKS: tuple[tuple[str, str, Callable[[Context], Iterable[str]]], ...] = (
    ("peers", "every peer reachable", _reachable),
    ("mflux", "some peer has mflux", _mflux),
    ("memory_pressure", "no peer under memory pressure", _pressure),
    ("cpu", "no peer busy with other work", _cpu),
    ("weights", "model weights downloaded", _weights),
    ("memory_fit", "installed models fit their Mac's memory", _fit),
    ("speed", "peers as fast as their chips should be", _speed),
    ("clocks", "peers' clocks agree", _clocks),
    ("multicast", "peers find each other over multicast", _multicast),
    ("mesh_key", "the mesh has a key", _mesh_key),
    ("disk", "room on every data dir's disk", _disk),
    ("ollama", "an LLM is available", _ollama),
    ("whisper", "speech-to-text is available", _whisper),
    ("failures", "no peer keeps failing", _failures),
    ("settings_sync", "settings agree on every peer", _settings_differ),
    ("versions", "one herd-mesh version", _versions),
    ("switched_off", "every service switched on", _switched_off),
)
