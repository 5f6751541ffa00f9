"""This peer's capability document (`GET /mesh/state`), its mDNS summary and its probe answer.

The document has one section per service (`image`, `llm`, `stt`) plus identity and system metrics. Its version
moves only when a section changes (a job queued, a model loaded), not when CPU or memory wobble; peers refetch
the document when the version in a probe answer or TXT record moved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._version import __version__
from ..core import txt
from ..core.protocol import PROTOCOL_VERSION, Identity
from .metrics import SystemMetrics


class Service(Protocol):
    """A capability a peer offers (images, LLMs, speech-to-text): it adds a section to the state document."""

    name: str

    def state(self) -> dict[str, Any]: ...

    def summary(self) -> dict[str, Any]: ...  # fields for the TXT record

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class StateDocument:
    def __init__(
        self,
        identity: Identity,
        services: Sequence[Service],
        metrics: SystemMetrics,
        *,
        api_keys: bool = False,
        generation: Callable[[], int] | None = None,
    ) -> None:
        self.identity = identity
        self._generation = generation  # `Changes.generation`: sections read since it last moved are current
        self._read: tuple[tuple[int, int], dict[str, Any]] | None = None
        self._metrics_read = 0  # counts set_metrics calls
        self._fresh: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._security = {"mesh_key": bool(identity.key_fingerprint), "key": identity.key_fingerprint,
                          "api_keys": api_keys}  # fmt: skip
        self.services = tuple(services)
        self.metrics = metrics
        self.version = 0
        self._structural_key = ""
        self._doc: dict[str, Any] = {}
        self.rebuild()

    def set_metrics(self, metrics: SystemMetrics) -> None:
        self.metrics = metrics
        self._metrics_read += 1

    def _sections(self) -> dict[str, Any]:
        """Every service's section; read again only after a change was notified or new metrics came (so the
        per-request routing decision does not rebuild them: docs/benchmarks-profile.md)."""
        key = (self._generation(), self._metrics_read) if self._generation is not None else None
        if key is not None and self._read is not None and self._read[0] == key:
            return self._read[1]
        sections = {service.name: service.state() for service in self.services}
        if key is not None:
            self._read = (key, sections)
        return sections

    def rebuild(self) -> bool:
        """Rebuild the document; bump the version when anything but live metrics changed."""
        sections = self._sections()
        key = json.dumps(sections, sort_keys=True, default=str)
        changed = key != self._structural_key
        if changed:
            self._structural_key = key
            self.version += 1
        self._doc = self._document(sections)
        return changed

    def _document(self, sections: dict[str, Any]) -> dict[str, Any]:
        me = self.identity
        return {
            "proto": PROTOCOL_VERSION,
            "version": __version__,
            "node_id": me.node_id,
            "mesh": me.mesh,
            "url": me.url,
            "boot_id": me.boot_id,
            "started_at": me.started_at,
            "state_version": self.version,
            "generated_at": time.time(),
            "system": self.metrics.to_dict(),
            "security": self._security,
            **sections,
        }

    def current(self) -> dict[str, Any]:
        """The document as last built (what `/mesh/state` serves)."""
        return self._doc

    def fresh(self) -> dict[str, Any]:
        """The document with every section current: what this peer's own routing decisions see. The same object
        while nothing changed, so what decisions read from it is kept (`core.views.ViewCache`)."""
        sections = self._sections()
        if self._fresh is not None and self._fresh[0] is sections:
            return self._fresh[1]
        doc = self._document(sections)
        self._fresh = (sections, doc)
        return doc

    def summary(self) -> txt.Summary:
        fields: dict[str, Any] = {}
        for service in self.services:
            fields.update(service.summary())
        return txt.Summary(
            node_id=self.identity.node_id,
            mesh=self.identity.mesh,
            boot_id=self.identity.boot_id,
            state_version=self.version,
            key=self.identity.key_fingerprint,
            memory_available_gb=int(self.metrics.memory_available_gb),
            cpu_percent=int(self.metrics.cpu_percent),
            **fields,
        )

    def ping(self, *, leaving: bool, settings_digest: str, known_digest: str) -> dict[str, Any]:
        """What a probe returns: identity, state version and the live metrics that do not bump the version."""
        me = self.identity
        return {
            "proto": PROTOCOL_VERSION,
            "node_id": me.node_id,
            "mesh": me.mesh,
            "key": me.key_fingerprint,
            "boot_id": me.boot_id,
            "url": me.url,
            "state_version": self.version,
            "system": {
                "cpu_percent": self.metrics.cpu_percent,
                "memory_available_gb": self.metrics.memory_available_gb,
                "memory_pressure": self.metrics.memory_pressure,
            },
            "leaving": leaving,
            "settings": settings_digest,  # a peer whose digest differs exchanges settings with us
            "known": known_digest,  # which peers we see up: a prober that has not seen this list asks for it
            "now": time.time(),  # this peer's clock, for skew checks (`herd doctor`, health)
        }
