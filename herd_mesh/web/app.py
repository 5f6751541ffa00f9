"""The one app factory: builds a whole peer from its configuration, every collaborator passed in by constructor,
in the order the layers go (storage, engines, services, mesh, dispatch, web).

This is the one place that chooses engines: the resident mflux worker when the mflux package is importable
(macOS), else mflux's command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from ..config import Config, host_names, local_addresses
from ..core import catalogue, signing
from ..core.catalogue import ImageModel
from ..core.ledger import Ledger
from ..core.peer_table import PeerTable
from ..core.protocol import Identity
from ..dispatch.dispatcher import Dispatcher
from ..dispatch.images import ImageDispatch
from ..dispatch.jobs import Jobs
from ..dispatch.manage import ModelManager
from ..dispatch.models import ModelDispatch
from ..dispatch.recorder import Recorder
from ..dispatch.stealing import Thief
from ..engines import mflux_resident
from ..engines.base import ImageEngine
from ..engines.mflux_cli import MfluxCliEngine
from ..engines.ollama_client import OllamaClient
from ..engines.whisper import choose_engine
from ..errors import PeerRefused, RequestError
from ..mesh import metrics
from ..mesh.clients import PeerClients, network_transports
from ..mesh.discovery import Discovery
from ..mesh.liveness import Liveness
from ..mesh.membership import Membership
from ..mesh.node import Node
from ..mesh.records_gather import MeshRecords
from ..mesh.records_sync import RecordsSync
from ..mesh.settings_sync import SettingsSync
from ..mesh.snapshot import MeshView
from ..mesh.state_document import StateDocument
from ..mesh.tasks import Tasks
from ..services import model_disk
from ..services.changes import Changes
from ..services.image_service import ImageService
from ..services.ollama_service import OllamaService
from ..services.retention import Retention
from ..services.storage_state import StorageState
from ..services.whisper_service import WhisperService
from ..storage.records import Records
from ..storage.settings_store import SettingsStore
from ..storage.speed_file import SpeedFile
from ..storage.writer import Writer
from . import handlers
from .middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ClientLimitMiddleware,
    MeshAuthMiddleware,
    SameOriginMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
)
from .routes.audio import AudioRoutes
from .routes.calls import CallServer
from .routes.dashboard import DashboardRoutes
from .routes.images import ImageRoutes
from .routes.jobs import JobRoutes
from .routes.manage import ManageRoutes
from .routes.mesh import MeshRoutes
from .routes.models import ModelRoutes
from .routes.records import RecordRoutes

logger = logging.getLogger(__name__)

UPLOAD_PATHS = ("/api/transcribe", "/v1/audio/transcriptions")  # audio uploads; every other body is JSON
CONVERSATION_PATHS = (  # chat: a whole conversation each turn (32 MB; other JSON bodies 1 MB)
    "/api/chat", "/api/generate", "/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/completions",
)  # fmt: skip
JSON_PATHS = ("/api/generate-image", "/v1/images/", "/api/jobs", "/dashboard/api/", "/mesh/")  # herd-mesh's own


@dataclass(frozen=True)
class Peer:
    """What `build` returns: the app to serve, the node (the CLI says goodbye through it on SIGTERM), and who
    the other peers are (the connection guards do not limit them like clients)."""

    app: Starlette
    node: Node
    is_peer_address: Callable[[str], bool]


def choose_image_engine(
    config: Config, models: Mapping[str, ImageModel], keep_alive_s: float, on_change: Changes
) -> ImageEngine:
    """The resident engine where a Python with mflux is found (this one, a `uv tool` or pipx environment, or
    `mflux_python`), else one `mflux-generate-*` process per image."""
    loader = os.environ.get("HERD_MFLUX_LOADER")  # "module:function": a stand-in model with mflux's API
    python = config.mflux_python or mflux_resident.find_mflux_python()
    if loader or python:
        return mflux_resident.ResidentMfluxEngine(
            keep_alive_s=keep_alive_s,
            loader=loader or mflux_resident.DEFAULT_LOADER,
            models=models,
            python=python,
            on_change=on_change.notify,
        )
    return MfluxCliEngine(pid_dir=config.data_dir / "mflux-jobs", models=models)


def build(
    config: Config, *, transport: httpx.AsyncBaseTransport | None = None, image_engine: ImageEngine | None = None
) -> Peer:
    """Every object of one peer, wired. The seams for in-process tests: `transport` carries peer-to-peer calls,
    `image_engine` replaces the engine this machine would choose."""
    fingerprint = signing.fingerprint(config.mesh_key) if config.mesh_key else ""
    identity = Identity(config.node_id, config.mesh, config.url, uuid.uuid4().hex[:12], time.time(), fingerprint)
    if config.mesh_key:
        logger.info("mesh key %s: only peers with the same key are members", fingerprint)
    else:
        logger.warning("the mesh is open: anyone on this network can join it, send it work and change its "
                       "settings. `herd key generate` (then `herd key set` on each Mac) closes it")  # fmt: skip
    rng = random.Random()

    # storage
    writer = Writer()
    settings = SettingsStore(config.data_dir / "settings.json", config.node_id)
    records = Records(config.data_dir / "herd.db", writer)
    speed_file = SpeedFile(config.data_dir / "speed.json", writer)

    # engines and services
    changes = Changes()
    image_models = {**catalogue.MODELS, **config.image_models}
    engine = image_engine or choose_image_engine(
        config, image_models, float(settings.get("image_keep_alive_s")), changes
    )
    logger.info("image engine: %s", engine.name)
    ollama = OllamaService(
        node_id=config.node_id, client=OllamaClient(config.ollama_url), settings=settings, on_change=changes.notify
    )
    whisper_model = os.environ.get("HERD_WHISPER_MODEL") or config.extra.get("whisper_model")
    stt = WhisperService(
        node_id=config.node_id,
        engine=choose_engine(None if whisper_model is None else str(whisper_model)),
        settings=settings,
        on_change=changes.notify,
    )
    images = ImageService(
        node_id=config.node_id,
        engine=engine,
        settings=settings,
        speed=speed_file.load(metrics.chip_name(), metrics.gpu_cores()),
        speed_file=speed_file,
        on_change=changes.notify,
        other_work=lambda: len(ollama.active.listing()) + len(stt.active.listing()),
        max_memory_gb=config.max_memory_gb,
        models=image_models,
    )
    machine = metrics.Machine(simulated_gb=_simulated_memory(), held_gb=lambda: images.held_gb() + ollama.vram_gb())
    retention = Retention(records, settings)

    # the mesh
    tasks = Tasks()
    ledger = Ledger()  # what this peer sent where, until the target advertises it
    table = PeerTable(config.node_id, config.peers)
    bind = None if config.host in ("0.0.0.0", "::", "") else config.host
    clients = PeerClients(
        identity, table, (lambda: transport) if transport else network_transports(bind), key=config.mesh_key
    )
    storage_state = StorageState(records, config.data_dir)  # the records' change sequence, the data dir's disk
    state = StateDocument(
        identity,
        (images, ollama, stt, storage_state),
        machine.sample(),
        api_keys=bool(config.api_keys),
        generation=lambda: changes.generation,
    )
    settings_sync = SettingsSync(
        node_id=config.node_id,
        settings=settings,
        table=table,
        clients=clients,
        tasks=tasks,
        on_applied=(images.settings_changed, retention.settings_changed, changes.notify),
    )
    probe_now = asyncio.Event()
    due: set[str] = set()  # peers whose announcement changed: probed in the next liveness round
    leaving = _Flag()
    membership = Membership(
        identity=identity,
        table=table,
        clients=clients,
        settings_sync=settings_sync,
        tasks=tasks,
        probe_now=probe_now,
        leaving=leaving.get,
        due=due,
    )
    liveness = Liveness(
        table=table,
        clients=clients,
        membership=membership,
        probe_now=probe_now,
        leaving=leaving.get,
        due=due,
        busy=lambda: {s.node_id for s in ledger.pending(time.time())},
    )
    discovery = (
        Discovery(
            mesh=config.mesh,
            node_id=config.node_id,
            host=config.host,
            port=config.port,
            addresses=config.advertised_addresses(),
            on_found=membership.on_mdns_found,
            on_gone=membership.on_mdns_gone,
        )
        if config.mdns
        else None
    )
    view = MeshView(table=table, state=state)
    mesh_records = MeshRecords(node_id=config.node_id, records=records, table=table, clients=clients)
    records_sync = RecordsSync(
        node_id=config.node_id, records=records, settings=settings, table=table, clients=clients
    )
    records.on_added = records_sync.added  # every new record is copied to the other peers at once

    # dispatch
    dispatcher = Dispatcher(view=view, table=table, ledger=ledger, rng=rng)
    recorder = Recorder(node_id=config.node_id, records=records, settings=settings, settle=records_sync.settle)
    jobs = Jobs()
    image_dispatch = ImageDispatch(
        dispatcher=dispatcher, service=images, clients=clients, recorder=recorder, jobs=jobs, rng=rng
    )
    model_dispatch = ModelDispatch(dispatcher=dispatcher, clients=clients, llm=ollama, stt=stt)
    manager = ModelManager(dispatcher=dispatcher, clients=clients, models=model_dispatch, llm=ollama,
                           models_dir=model_disk.ollama_models_dir())  # fmt: skip
    thief = Thief(service=images, view=view, table=table, clients=clients, rng=rng, leaving=leaving.get)

    node = Node(
        identity=identity,
        table=table,
        clients=clients,
        state=state,
        membership=membership,
        liveness=liveness,
        settings=settings,
        changes=changes,
        tasks=tasks,
        discovery=discovery,
        machine=machine,
        background=(retention.run, thief.run, records_sync.run),
        on_leave=leaving.set,
    )

    # web
    calls = CallServer(models=model_dispatch, membership=membership, recorder=recorder)
    routes: list[BaseRoute] = [
        Route("/", handlers.root),
        Route("/openapi.json", handlers.openapi_json, methods=["GET"]),
        *MeshRoutes(node=node, membership=membership, settings_sync=settings_sync, records=records).routes(),
        *RecordRoutes(node_id=config.node_id, records=records, sync=records_sync, membership=membership).routes(),
        *DashboardRoutes(
            node=node,
            settings=settings,
            settings_sync=settings_sync,
            mesh_records=mesh_records,
            records=records,
            clients=clients,
            changes=changes,
        ).routes(),
        *ImageRoutes(images=image_dispatch, membership=membership, view=view).routes(),
        *JobRoutes(jobs=jobs, view=view, clients=clients).routes(),
        *ModelRoutes(server=calls).routes(),
        *AudioRoutes(server=calls).routes(),
        *ManageRoutes(manager=manager, server=calls).routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()
            records.close()
            writer.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(TrustedHostMiddleware, names=host_names(config), local_addresses=local_addresses),
            Middleware(SameOriginMiddleware, cors_origins=config.cors_origins, json_paths=JSON_PATHS),
            Middleware(ClientLimitMiddleware, is_peer=membership.is_peer_address),
            Middleware(BodyLimitMiddleware, upload_paths=UPLOAD_PATHS, conversation_paths=CONVERSATION_PATHS),
            Middleware(MeshAuthMiddleware, key=config.mesh_key),
            Middleware(
                ApiKeyMiddleware,
                api_keys=config.api_keys,
                mesh_key=config.mesh_key,
                is_peer=membership.is_peer_address,
            ),
        ],
        exception_handlers={
            RequestError: handlers.request_error,
            PeerRefused: handlers.peer_refused,
            HTTPException: handlers.http_error,
            Exception: handlers.unexpected,
        },
    )
    return Peer(app, node, membership.is_peer_address)


def _simulated_memory() -> float | None:
    """`HERD_SIMULATE_MEMORY_GB`: act as a Mac with this much memory (a fleet of peers on one computer, in tests
    and demos); what this peer's engines hold counts as used."""
    value = os.environ.get("HERD_SIMULATE_MEMORY_GB")
    try:
        return float(value) if value else None
    except ValueError:
        logger.warning("ignoring HERD_SIMULATE_MEMORY_GB=%r: not a number", value)
        return None


class _Flag:
    """Set once the peer starts leaving; read by everything that must stop acting on the mesh then."""

    def __init__(self) -> None:
        self._value = False

    def set(self) -> None:
        self._value = True

    def get(self) -> bool:
        return self._value
