"""The peer-to-peer wire protocol's one vocabulary: who a peer is, and the headers peers put on their calls."""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1

# Headers a peer puts on every call to another peer, so the callee learns about the caller (symmetric static
# meshes) and a forwarded job is never forwarded again.
H_NODE = "X-Herd-Node"
H_MESH = "X-Herd-Mesh"
H_URL = "X-Herd-Url"
H_BOOT = "X-Herd-Boot"
H_FORWARDED = "X-Herd-Forwarded"  # set on a job one peer hands to another: run it here, do not route
H_REDIRECTABLE = "X-Herd-Redirectable"  # the receiver may answer "busy, try X" once
H_JOB = "X-Herd-Job"


@dataclass(frozen=True)
class Identity:
    """This peer, as other peers know it; `boot_id` changes on every start, so a restart is told apart."""

    node_id: str
    mesh: str
    url: str
    boot_id: str
    started_at: float = 0.0
    key_fingerprint: str = ""  # the mesh key's public fingerprint ("" in an open mesh): peers with another ignore us

    def headers(self) -> dict[str, str]:
        return {H_NODE: self.node_id, H_MESH: self.mesh, H_URL: self.url, H_BOOT: self.boot_id}
