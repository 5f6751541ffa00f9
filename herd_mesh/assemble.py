"""Build a peer from its configuration: the node plus every service this machine can offer.

The one place that chooses engines: the resident mflux worker when the mflux package is importable (macOS),
else mflux's command line.
"""

from __future__ import annotations

import logging
import os

from starlette.applications import Starlette

from . import metrics, retention
from .app import create_app
from .config import Config
from .engines.base import ImageEngine
from .engines.mflux_cli import MfluxCliEngine
from .engines.ollama import OllamaClient, OllamaService
from .engines.whisper import WhisperService, choose_engine
from .image_routing import ImageRouter
from .image_service import ImageService, load_speed
from .llm_routing import ModelRouter
from .node import Node
from .records import Records
from .routes import audio, images, llm
from .settings import SettingsStore

logger = logging.getLogger(__name__)


def choose_image_engine(config: Config, settings: SettingsStore) -> ImageEngine:
    loader = os.environ.get("HERD_MFLUX_LOADER")  # "module:function": a stand-in model with mflux's API
    try:
        from .engines import mflux_resident
    except ImportError:  # pragma: no cover - the module ships with the package
        mflux_resident = None  # type: ignore[assignment]
    if mflux_resident is not None and (loader or mflux_resident.available()):
        kwargs = {"loader": loader} if loader else {}
        return mflux_resident.ResidentMfluxEngine(keep_alive_s=float(settings.get("image_keep_alive_s")), **kwargs)
    return MfluxCliEngine(pid_dir=config.data_dir / "mflux-jobs")


def build_app(config: Config) -> Starlette:
    node = Node(config)
    node.settings = SettingsStore(config.data_dir / "settings.json", config.node_id)
    node.records = Records(config.data_dir / "herd.db")
    node.background.append(lambda: retention.keep_pruned(node))
    engine = choose_image_engine(config, node.settings)
    service = ImageService(
        node_id=config.node_id,
        engine=engine,
        settings=node.settings,
        speed=load_speed(config.data_dir / "speed.json", metrics.chip_name(), metrics.gpu_cores()),
        speed_path=config.data_dir / "speed.json",
        on_change=node.notify,
    )
    node.add_service(service)
    logger.info("image engine: %s", engine.name)
    ollama = OllamaService(
        node_id=config.node_id, client=OllamaClient(config.ollama_url), settings=node.settings, on_change=node.notify
    )
    node.add_service(ollama)
    whisper_model = os.environ.get("HERD_WHISPER_MODEL") or config.extra.get("whisper_model")
    stt = WhisperService(
        node_id=config.node_id,
        engine=choose_engine(None if whisper_model is None else str(whisper_model)),
        settings=node.settings,
        on_change=node.notify,
    )
    node.add_service(stt)
    app = create_app(node, extra_routes=images.routes + llm.routes + audio.routes)
    app.state.images = router = ImageRouter(node, service)
    node.background.append(router.steal_loop)
    app.state.models = ModelRouter(node, llm=ollama, stt=stt)
    return app
