"""A throw-away network-namespace lab for fault tests: one host per namespace, all on one Linux bridge.

Why namespaces: on 127.0.0.x every peer shares one interface, so a partition or a pulled cable cannot be
faked. Here each host has its own namespace and veth pair, plugged into a bridge in the root namespace::

    root ns:  hb<tag>a (bridge, 10.x.y.254/24) --- hv<tag><i> ==veth== eth0 (10.x.y.<i+1>/24) in herd-<tag>-<i>
              hb<tag>p (bridge, 10.x.y.253/32)     the minority side of a partition

The facts this relies on are in /work/shared/notes/netns.md: multicast across a bridge needs multicast on the
veth, a 224.0.0.0/4 route in each namespace and IGMP snooping off on the bridge; a link taken down loses its
namespace's routes.

Hygiene: every name carries a random tag, every run a random subnet. Each object is written to a state file
(/tmp/herd-netns-state/<tag>.json) *before* it is created, so `cleanup_stale()` can remove what a killed run left
and touch nothing else. `Lab.close()` runs from `__exit__`, from a failed `open()` and, as a last resort, at exit.

Needs root, or passwordless sudo (then every `ip` and `kill` goes through `sudo -n`; untested here).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import Mesh, Peer

STATE_DIR = Path("/tmp/herd-netns-state")
NETNS_PREFIX = "herd-"  # namespaces are herd-<tag>-<i>
BRIDGE_ADDRESS = 254  # the root namespace's address on the main bridge; hosts reach the root through it
PARTITION_ADDRESS = 253  # the root's address on the partition bridge, so tests still reach the minority side
MULTICAST = "224.0.0.0/4"
INNER_IF = "eth0"


# -- privilege and availability --------------------------------------------------------------------------------
def _ip_binary() -> str | None:
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None)


def _sudo_prefix() -> list[str] | None:
    """[] as root, ['sudo', '-n'] with passwordless sudo, None otherwise."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        ok = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10).returncode == 0
        if ok:
            return ["sudo", "-n"]
    return None


_available: list[str | None] = []  # memo: probing creates and deletes a namespace and a bridge


def available() -> str | None:
    """None when a Lab can run here, else the reason (for `pytest.skip`, or a failure under CI=true).

    Probing really creates a namespace, a veth pair and a bridge, since containers often allow `ip` but not
    these (no CAP_SYS_ADMIN, no veth/bridge modules).
    """
    if _available:
        return _available[0]
    reason: str | None = None
    if os.uname().sysname != "Linux":
        reason = "network namespaces need Linux"
    elif _ip_binary() is None:
        reason = "the `ip` command (iproute2) is missing"
    elif _sudo_prefix() is None:
        reason = "network namespaces need root or passwordless sudo"
    else:
        try:
            with Lab(0, tag="p" + secrets.token_hex(3), _probe=True) as lab:
                lab._probe_objects()
        except (LabError, OSError, subprocess.SubprocessError) as exc:
            reason = f"cannot create namespaces, veths or bridges here: {exc}"
    _available.append(reason)
    return reason


class LabError(RuntimeError):
    """An `ip` command failed; the message carries the command and its stderr."""


def _run(prefix: Sequence[str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [*prefix, _ip_binary() or "ip", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done


# -- state files ----------------------------------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/pid/stat): a pid plus this names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class _State:
    """What one Lab created (or is about to create), kept on disk so a later run can remove it."""

    tag: str
    owner_pid: int = field(default_factory=os.getpid)
    owner_start: str | None = field(default_factory=lambda: _start_time(os.getpid()))
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # root-namespace links: veth ends and bridges

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.tag}.json"

    def record(self, *, netns: str | None = None, link: str | None = None) -> None:
        """Write the name down *before* creating the object: a crash in between leaves a name, not a leak."""
        if netns:
            self.netns.append(netns)
        if link:
            self.links.append(link)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(self.path)

    def owner_alive(self) -> bool:
        return self.owner_start is not None and _start_time(self.owner_pid) == self.owner_start


# -- processes inside namespaces ------------------------------------------------------------------------------
def _netns_pids(prefix: Sequence[str], netns: str) -> list[int]:
    done = _run(prefix, "netns", "pids", netns, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def _kill(prefix: Sequence[str], pids: Sequence[int], *, group: bool = False) -> None:
    """SIGKILL processes (or process groups); already-gone ones are fine."""
    for pid in pids:
        if prefix:
            subprocess.run([*prefix, "kill", "-KILL", "--", f"-{pid}" if group else str(pid)], capture_output=True)
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)


def _empty_netns(prefix: Sequence[str], netns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in the namespace, whoever started it, until none is left (children may fork late)."""
    deadline = time.monotonic() + timeout
    while pids := _netns_pids(prefix, netns):
        _kill(prefix, pids)
        if time.monotonic() > deadline:
            raise LabError(f"processes {pids} in {netns} survive SIGKILL")
        time.sleep(0.05)


def _existing_netns(prefix: Sequence[str]) -> set[str]:
    out = _run(prefix, "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_exists(prefix: Sequence[str], name: str) -> bool:
    return _run(prefix, "link", "show", "dev", name, check=False).returncode == 0


def _remove(prefix: Sequence[str], state: _State) -> list[str]:
    """Remove what `state` names: processes, then root-side links (veths before bridges), then namespaces.

    Veths go before their namespaces on purpose: deleting a namespace frees its devices later, in a kernel
    work queue, so the root end of a pair can outlive `ip netns delete` for a moment; deleting that end removes
    both at once. Keeps going past errors so one stuck object does not leak the rest; raises the first at the end.
    """
    removed: list[str] = []
    errors: list[Exception] = []
    present = _existing_netns(prefix)
    namespaces = [ns for ns in state.netns if ns in present]
    for ns in namespaces:
        try:
            _empty_netns(prefix, ns)
        except (LabError, OSError, subprocess.SubprocessError) as exc:
            errors.append(exc)
    for link in reversed(state.links):  # bridges are recorded first, so reversed: veths before bridges
        if not _link_exists(prefix, link):
            continue
        done = _run(prefix, "link", "delete", "dev", link, check=False)
        if done.returncode == 0:
            removed.append(link)
        elif _link_exists(prefix, link):  # not a namespace teardown that won the race
            errors.append(LabError(f"ip link delete dev {link}: {done.stderr.strip()}"))
    for ns in namespaces:
        done = _run(prefix, "netns", "delete", ns, check=False)
        if done.returncode == 0:
            removed.append(ns)
        elif ns in _existing_netns(prefix):
            errors.append(LabError(f"ip netns delete {ns}: {done.stderr.strip()}"))
    if errors:
        raise errors[0]
    with contextlib.suppress(FileNotFoundError):
        state.path.unlink()
    return removed


def cleanup_stale() -> list[str]:
    """Remove what earlier runs left (a SIGKILLed pytest runs no `finally`); returns the names removed.

    Only names recorded in a state file are touched, and only when the run that wrote it is gone, so two
    concurrent runs on one machine leave each other alone.
    """
    prefix = _sudo_prefix()
    if prefix is None or not STATE_DIR.is_dir():
        return []
    removed: list[str] = []
    for path in sorted(STATE_DIR.glob("*.json")):
        try:
            state = _State(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if state.owner_alive() and state.owner_pid != os.getpid():
            continue
        if state.owner_pid == os.getpid() and any(lab._state.tag == state.tag for lab in list(_open_labs)):
            continue  # one of ours, still open
        removed += _remove(prefix, state)
    return removed


def leftovers(tag: str) -> list[str]:
    """Namespaces and root-namespace links whose name contains `tag`: what a run with that tag left."""
    prefix = _sudo_prefix() or []
    names = [ns for ns in _existing_netns(prefix) if tag in ns]
    out = _run(prefix, "-o", "link", "show", check=False).stdout
    names += [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if tag in line.split(":")[1]]
    return names


# -- the lab ---------------------------------------------------------------------------------------------------
@dataclass
class Host:
    """One machine: a namespace with `eth0` at `address`; `veth` is the end of its cable on the root side."""

    index: int
    netns: str
    veth: str
    address: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.netns} ({self.address})"


_open_labs: set[Lab] = set()  # strong references: a Lab dropped without close() is still closed at exit


@atexit.register
def _close_all() -> None:
    """Last resort for a Lab nobody closed (an interrupted session); SIGKILL of the runner still leaks."""
    for lab in list(_open_labs):
        with contextlib.suppress(Exception):
            lab.close()


class Lab:
    """N hosts on one bridge; use as a context manager. Faults: link_down/up, partition/heal, kill_host::

    with Lab(3) as lab:
        proc = lab.start(lab.hosts[0], ["sleep", "9"], dict(os.environ), Path("/tmp/sleep.log"))
        lab.partition([lab.hosts[0]])
    """

    def __init__(self, n_hosts: int, tag: str | None = None, *, _probe: bool = False) -> None:
        self._mac = "02:" + ":".join(secrets.token_hex(1) for _ in range(5))  # locally administered, unicast
        self.tag = tag or secrets.token_hex(3)  # names: herd-<tag>-<i> and 15-char-limited hv<tag><i>, hb<tag>a
        if len(self.tag) > 8 or not self.tag.isalnum():
            raise ValueError("tag: at most 8 letters or digits (Linux link names are at most 15 characters)")
        if not 0 <= n_hosts < PARTITION_ADDRESS - 1:
            raise ValueError("n_hosts: 0..251")
        self.n_hosts = n_hosts
        self.bridge = f"hb{self.tag}a"
        self.partition_bridge = f"hb{self.tag}p"
        self.subnet = ipaddress.IPv4Network("10.0.0.0/24")  # chosen in open()
        self.hosts: list[Host] = []
        self.partitioned: list[Host] = []
        self._probe = _probe
        self._prefix: list[str] = []
        self._state = _State(self.tag)
        self._opened = False

    # -- setup ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self._prefix, *args, check=check)

    def _ns(self, host: Host, *args: str) -> None:
        self._ip("-n", host.netns, *args)

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        """A random 10.x.y.0/24 that overlaps no address or route the root namespace already has."""
        used = []
        for args in (("-4", "route", "show", "table", "all"), ("-4", "-o", "addr", "show")):
            for word in self._ip(*args).stdout.split():
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.IPv4Network(word, strict=False))
        for _ in range(100):
            net = ipaddress.IPv4Network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return net
        raise LabError("no free 10.x.y.0/24 subnet")

    def open(self) -> None:
        """Create the bridges and hosts; on any failure remove what was made, then raise."""
        prefix = _sudo_prefix()
        if prefix is None:
            raise LabError("network namespaces need root or passwordless sudo")
        self._prefix = prefix
        if not self._probe:
            cleanup_stale()
        if taken := leftovers(self.tag):  # never record (and later delete) a name somebody else owns
            raise LabError(f"tag {self.tag} is in use: {taken}")
        _open_labs.add(self)
        self._opened = True
        try:
            self._state.record()
            if self._probe:
                return
            self.subnet = self._pick_subnet()
            self._add_bridge(self.bridge, f"{self._addr(BRIDGE_ADDRESS)}/24")
            self._add_bridge(self.partition_bridge, f"{self._addr(PARTITION_ADDRESS)}/32")
            for _ in range(self.n_hosts):
                self.add_host()
        except BaseException:
            self.close()
            raise

    def _addr(self, last: int) -> str:
        return str(self.subnet.network_address + last)

    def _add_bridge(self, name: str, address: str) -> None:
        """Both bridges get one fixed MAC (`self._mac`): a bridge without one takes the lowest MAC of its ports,
        so moving a host's cable to the partition bridge and back would change both bridges' MACs, and the hosts'
        neighbour entries for the root namespace (where clients run) would point at a MAC that is gone: answers
        on connections opened before a split or heal were dropped for 6.5 s and more."""
        self._state.record(link=name)
        self._ip("link", "add", "name", name, "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
        self._ip("link", "set", "dev", name, "address", self._mac)
        snooping = Path(f"/sys/class/net/{name}/bridge/multicast_snooping")
        if snooping.exists() and snooping.read_text().strip() != "0":  # notes: snooping drops mDNS between ports
            raise LabError(f"{name}: IGMP snooping still on")
        self._ip("addr", "add", address, "dev", name)
        self._ip("link", "set", name, "up")

    def add_host(self) -> Host:
        """Plug one more machine into the main bridge (also after start: a newcomer joining a running mesh)."""
        i = len(self.hosts)
        if i + 1 >= PARTITION_ADDRESS:
            raise LabError("a lab holds at most 252 hosts")
        host = Host(
            index=i, netns=f"{NETNS_PREFIX}{self.tag}-{i}", veth=f"hv{self.tag}{i}", address=self._addr(i + 1)
        )
        self._state.record(netns=host.netns)
        self._ip("netns", "add", host.netns)
        self._ns(host, "link", "set", "lo", "up")
        self._state.record(link=host.veth)  # the pair goes when the namespace goes; the record covers a crash
        self._ip("link", "add", host.veth, "type", "veth", "peer", "name", INNER_IF, "netns", host.netns)
        self._ns(host, "addr", "add", f"{host.address}/24", "dev", INNER_IF)
        self._ns(host, "link", "set", INNER_IF, "multicast", "on", "up")
        self._ns(host, "route", "replace", MULTICAST, "dev", INNER_IF)
        self._ip("link", "set", host.veth, "master", self.bridge, "up")
        self.hosts.append(host)
        return host

    def _probe_objects(self) -> None:
        """For `available()`: a namespace, a veth into it and a bridge, each created once and removed."""
        ns, veth, br = f"{NETNS_PREFIX}{self.tag}-0", f"hv{self.tag}0", self.bridge
        for kind, name in (("netns", ns), ("link", br), ("link", veth)):
            self._state.record(**{kind: name})
        self._ip("netns", "add", ns)
        self._ip("link", "add", "name", br, "type", "bridge")
        self._ip("link", "add", veth, "type", "veth", "peer", "name", INNER_IF, "netns", ns)

    # -- processes -----------------------------------------------------------------------------------------
    def start(
        self,
        host: Host,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run `argv` inside the host's namespace, stdout and stderr appended to `log_path`.

        `ip netns exec` execs in place (as root), so the Popen's pid is the program's. It gets its own session
        and process group, so `kill_host` can SIGKILL it with every child, as a power cut would.
        """
        cmd = [*self._prefix, *(["env", *[f"{k}={v}" for k, v in env.items()]] if self._prefix else [])]
        cmd += [_ip_binary() or "ip", "netns", "exec", host.netns, *argv]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        host.procs.append(proc)
        return proc

    def kill_host(self, host: Host) -> None:
        """Machine death: SIGKILL the process groups started there, then anything else left in the namespace."""
        _kill(self._prefix, [p.pid for p in host.procs if p.poll() is None], group=True)
        _empty_netns(self._prefix, host.netns)
        for proc in host.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    # -- faults --------------------------------------------------------------------------------------------
    def link_down(self, host: Host) -> None:
        """Pull the cable inside the namespace: sends fail at once (ENETUNREACH), and the routes are gone."""
        self._ns(host, "link", "set", INNER_IF, "down")

    def link_up(self, host: Host) -> None:
        """Plug it back. Downing the link deleted the multicast route, so it is added again (the notes)."""
        self._ns(host, "link", "set", INNER_IF, "up")
        self._ns(host, "route", "replace", MULTICAST, "dev", INNER_IF)

    def partition(self, hosts: Sequence[Host]) -> None:
        """Split the network: `hosts` on one side, the rest on the other; no packet crosses, nothing is reset.

        The minority's cables move to a second bridge, so its hosts still reach each other (plain `nomaster`
        would isolate every one of them). The root namespace keeps reaching both sides: the second bridge has
        10.x.y.253/32 and a /32 route per moved host; the root does not forward between bridges unless
        ip_forward is on and the hosts had a route via it, which they do not (no default route).
        """
        if self.partitioned:
            self.heal()
        for host in hosts:
            self._ip("link", "set", host.veth, "nomaster")
            self._ip("link", "set", host.veth, "master", self.partition_bridge)
            self._ip(
                "route", "replace", f"{host.address}/32", "dev", self.partition_bridge,
                "src", self._addr(PARTITION_ADDRESS),
            )  # fmt: skip
            self.partitioned.append(host)

    def heal(self) -> None:
        """Put every cable back on the main bridge; the hosts keep their addresses and open TCP connections."""
        for host in self.partitioned:
            self._ip("link", "set", host.veth, "nomaster")
            self._ip("link", "set", host.veth, "master", self.bridge)
            self._ip("route", "delete", f"{host.address}/32", "dev", self.partition_bridge, check=False)
        self.partitioned = []

    # -- inspection and teardown ---------------------------------------------------------------------------
    def leftovers(self) -> list[str]:
        """Namespaces and links whose name carries this run's tag (empty after `close`)."""
        return leftovers(self.tag)

    def close(self) -> None:
        """Kill every process in the namespaces, delete namespaces, veths and bridges; idempotent."""
        if not self._opened:
            return
        self._opened = False
        try:
            for host in self.hosts:
                with contextlib.suppress(LabError):
                    self.kill_host(host)
        finally:
            _open_labs.discard(self)
            _remove(self._prefix, self._state)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)


# -- herd peers in a lab ---------------------------------------------------------------------------------------
# Kept here, not in a fixture, so any fault test can put peers in a Lab with the harness's env and log handling.


@dataclass
class LabPeer(Peer):
    """A harness `Peer` whose process runs inside a lab host's namespace, listening on that host's address."""

    lab: Lab | None = None
    lab_host: Host | None = None

    def start(self, wait: bool = True) -> LabPeer:
        assert self.lab is not None and self.lab_host is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "herd_mesh", "--host", self.host, "--node-id", self.node_id,
                "--mesh", self.mesh, "--data-dir", str(self.data_dir), *self.args]  # fmt: skip
        self.proc = self.lab.start(self.lab_host, argv, self.env, self.log_path)
        if wait:
            self.wait_ready()
        return self


def add_peer(
    mesh: Mesh,
    lab: Lab,
    host: Host,
    node_id: str,
    *,
    args: Sequence[str] = (),
    start: bool = True,
    wait: bool = True,
    ms_per_mp_step: float = 50.0,
) -> LabPeer:
    """Like `Mesh.add`, but on `host`: same env (mflux stand-in, HOME, HF_HOME), logs in mesh.logs()."""
    data_dir = mesh.base_dir / node_id
    peer = LabPeer(
        node_id=node_id,
        host=host.address,
        mesh=mesh.name,
        data_dir=data_dir,
        args=list(args),
        env=mesh.env(data_dir, mflux=True, ms_per_mp_step=ms_per_mp_step, extra=None),
        lab=lab,
        lab_host=host,
    )
    mesh.peers[node_id] = peer
    if start:
        peer.start(wait=wait)
    return peer
