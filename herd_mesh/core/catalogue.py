"""The one place that knows mflux's models: their names on the API, their commands, flags and weights."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageModel:
    name: str  # the name clients send as `model`
    command: str  # the mflux console script that runs it
    extra_args: tuple[str, ...]  # flags the command needs besides the request's (mflux-generate needs --model)
    hf_repo: str  # where its weights live on the Hugging Face Hub (and so in the local cache)
    ref_ms_per_mp_step: float  # measured-ish speed on an M3 Ultra at q8: ms per megapixel per step
    weights_gb: float  # roughly what loading it at q8 takes in memory
    resident: tuple[str, str, str] | None = None  # (module, class, ModelConfig factory) for the Python API
    description: str = ""


# z-image-turbo: ~18 s for 1024x1024 at 4 steps on an M3 Ultra -> 18000 / (1.048576 * 4) ~ 4300 ms per MP-step.
# FLUX.1 schnell: ~10 s at 4 steps -> ~2400; dev shares schnell's transformer, so the same cost per step.
MODELS: dict[str, ImageModel] = {
    m.name: m
    for m in (
        ImageModel(
            "z-image-turbo",
            "mflux-generate-z-image-turbo",
            (),
            "Tongyi-MAI/Z-Image-Turbo",
            4300.0,
            12.0,
            ("mflux.models.z_image", "ZImageTurbo", "z_image_turbo"),
            "Fast iteration (Z-Image-Turbo)",
        ),
        ImageModel(
            "flux-schnell",
            "mflux-generate",
            ("--model", "schnell"),
            "black-forest-labs/FLUX.1-schnell",
            2400.0,
            14.0,
            ("mflux.models.flux.variants.txt2img.flux", "Flux1", "schnell"),
            "Fastest FLUX.1 variant",
        ),
        ImageModel(
            "flux-dev",
            "mflux-generate",
            ("--model", "dev"),
            "black-forest-labs/FLUX.1-dev",
            2400.0,
            14.0,
            ("mflux.models.flux.variants.txt2img.flux", "Flux1", "dev"),
            "Highest quality FLUX.1",
        ),
        ImageModel(
            "flux-krea-dev",
            "mflux-generate",
            ("--model", "krea-dev"),
            "black-forest-labs/FLUX.1-Krea-dev",
            2400.0,
            14.0,
            None,
            "FLUX.1 Krea dev",
        ),
        ImageModel("z-image", "mflux-generate-z-image", (), "Tongyi-MAI/Z-Image", 8600.0, 12.0, None, "Z-Image base"),
        ImageModel("qwen-image", "mflux-generate-qwen", (), "Qwen/Qwen-Image", 6000.0, 24.0, None, "Qwen-Image"),
        ImageModel("fibo", "mflux-generate-fibo", (), "briaai/FIBO", 5000.0, 16.0, None, "Bria FIBO"),
    )
}

INSTALL_COMMAND = "uv tool install mflux"
INSTALL_HINT = (
    f"install mflux on a Mac of the mesh with `{INSTALL_COMMAND}` (the peer notices within 30 s), then retry"
)


def get(name: str) -> ImageModel | None:
    return MODELS.get(name)
