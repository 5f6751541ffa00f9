"""The one place that knows mflux's models: their names on the API, their commands and flags, their weights (where
they live, at which pinned revision, and how much memory they take), and mflux's defaults for each.

Figures are mflux 0.24.0's (read from its code; see tests/real_mflux/facts.md and docs/memory.md), and `PINS` is
its `ModelRevisions.PINNED` for the repos we use, kept here and checked against the installed mflux by the
real-mflux tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class NegativePrompt(Enum):
    """What a model does with `negative_prompt`."""

    IGNORED = "ignored"  # no classifier-free guidance: it cannot be used
    USED = "used"
    WITH_GUIDANCE = "with-guidance"  # used only when guidance is above 1 (Z-Image: classifier-free guidance)
    UNLESS_ONE = "unless-one"  # used unless guidance is exactly 1 (Anima: no unconditional pass at 1.0)


@dataclass(frozen=True)
class ImageModel:
    name: str  # the name clients send as `model`
    command: str  # the mflux console script that runs it
    extra_args: tuple[str, ...]  # flags the command needs besides the request's (mflux-generate needs --model)
    repos: tuple[str, ...]  # Hugging Face repos it loads, in order (fibo needs FIBO-vlm first)
    ref_ms_per_mp_step: float  # speed on an M3 Ultra at q8: ms per megapixel per step
    weights_bf16_gb: float  # every component's weights in bf16 (mflux's documented figure)
    default_steps: int  # mflux's command-line default
    default_guidance: float | None  # mflux's command-line default (None: the model takes no guidance)
    negative_prompt: NegativePrompt
    resident: tuple[str, str, str] | None = None  # (module, class, ModelConfig factory) for the Python API
    description: str = ""
    working_gb_per_mp: float = 2.0  # activations and VAE decode per megapixel (1024^2: ~2 GB)
    subdirs: tuple[str, ...] = ("text_encoder", "transformer", "vae")  # what a complete download holds
    mflux_name: str = ""  # mflux's own name for it (`--base-model`), when it differs from `name`
    path: str | None = None  # a model saved on this Mac (a fine-tune, `mflux-save`d): loaded from here
    base: str | None = None  # the catalogue model a local one is a variant of
    takes_guidance: bool = True  # False: guidance-distilled (schnell, z-image-turbo), a given value is ignored

    @property
    def base_model(self) -> str:
        return self.mflux_name or self.name

    def need_gb(self, quantize: int, width: int, height: int) -> float:
        """Memory a job takes at this quantization and size: weights plus working set plus runtime."""
        return self.weights_bf16_gb * quantize / 16 + self.working_gb_per_mp * width * height / 1e6 + RUNTIME_GB

    def negative_prompt_used(self, guidance: float | None) -> bool:
        if self.negative_prompt is NegativePrompt.USED:
            return True
        if self.negative_prompt is NegativePrompt.UNLESS_ONE:
            return guidance != 1.0
        return self.negative_prompt is NegativePrompt.WITH_GUIDANCE and (guidance or 0.0) > 1.0


RUNTIME_GB = 1.0  # MLX and the Python process around a model (GB)
FLUX_SUBDIRS = ("text_encoder", "text_encoder_2", "transformer", "vae")
ANIMA_API = ("mflux.models.anima.variants.txt2img.anima", "Anima", "anima_turbo")

# z-image-turbo: ~18 s for 1024x1024 at 4 steps on an M3 Ultra -> 18000 / (1.048576 * 4) ~ 4300 ms per MP-step.
# FLUX.1 schnell: ~10 s at 4 steps -> ~2400; dev shares schnell's transformer, so the same cost per step.
# Memory (bf16, all components): Z-Image ~31 GB, FLUX.1 ~34 GB, Qwen-Image ~58 GB, FLUX.2-klein-4B 14.9 GB,
# FIBO ~24 GB (+ its 4B VLM), Anima 5.7 GB (2.09B transformer, 0.6B text encoder, 0.13B VAE).
MODELS: dict[str, ImageModel] = {
    m.name: m
    for m in (
        ImageModel("z-image-turbo", "mflux-generate-z-image-turbo", (), ("Tongyi-MAI/Z-Image-Turbo",), 4300.0, 31.0,
                   4, None, NegativePrompt.IGNORED, ("mflux.models.z_image", "ZImageTurbo", "z_image_turbo"),
                   "Fast iteration (Z-Image-Turbo)", takes_guidance=False),
        ImageModel("flux-schnell", "mflux-generate", ("--model", "schnell"), ("black-forest-labs/FLUX.1-schnell",),
                   2400.0, 34.0, 4, None, NegativePrompt.IGNORED,
                   ("mflux.models.flux.variants.txt2img.flux", "Flux1", "schnell"), "Fastest FLUX.1 variant",
                   subdirs=FLUX_SUBDIRS, mflux_name="schnell", takes_guidance=False),
        ImageModel("flux-dev", "mflux-generate", ("--model", "dev"), ("black-forest-labs/FLUX.1-dev",), 2400.0, 34.0,
                   25, 3.5, NegativePrompt.IGNORED, ("mflux.models.flux.variants.txt2img.flux", "Flux1", "dev"),
                   "Highest quality FLUX.1", subdirs=FLUX_SUBDIRS, mflux_name="dev"),
        ImageModel("flux-krea-dev", "mflux-generate", ("--model", "krea-dev"), ("black-forest-labs/FLUX.1-Krea-dev",),
                   2400.0, 34.0, 25, 3.5, NegativePrompt.IGNORED, None, "FLUX.1 Krea dev", subdirs=FLUX_SUBDIRS,
                   mflux_name="krea-dev"),
        ImageModel("z-image", "mflux-generate-z-image", (), ("Tongyi-MAI/Z-Image",), 8600.0, 31.0, 50, None,
                   NegativePrompt.WITH_GUIDANCE, None, "Z-Image base"),
        ImageModel("qwen-image", "mflux-generate-qwen", (), ("Qwen/Qwen-Image-2512",), 6000.0, 58.0, 20, 3.5,
                   NegativePrompt.USED, None, "Qwen-Image (2512)"),
        ImageModel("fibo", "mflux-generate-fibo", (), ("briaai/FIBO-vlm", "briaai/FIBO"), 5000.0, 32.0, 50, 5.0,
                   NegativePrompt.USED, None, "Bria FIBO (its VLM turns a plain prompt into JSON first)"),
        ImageModel("anima-turbo", "mflux-generate-anima", (), ("circlestone-labs/Anima",), 1500.0, 5.7, 10, 1.0,
                   NegativePrompt.UNLESS_ONE, ANIMA_API, "Anima turbo (small: 2.1B)", working_gb_per_mp=1.0,
                   subdirs=()),
    )
}  # fmt: skip

# mflux 0.24.0's ModelRevisions.PINNED for the repos above: only `snapshots/<pin>/` counts as downloaded.
PINS: dict[str, str] = {
    "Tongyi-MAI/Z-Image-Turbo": "f332072aa78be7aecdf3ee76d5c247082da564a6",
    "Tongyi-MAI/Z-Image": "04cc4abb7c5069926f75c9bfde9ef43d49423021",
    "black-forest-labs/FLUX.1-schnell": "741f7c3ce8b383c54771c7003378a50191e9efe9",
    "black-forest-labs/FLUX.1-dev": "3de623fc3c33e44ffbe2bad470d0f45bccf2eb21",
    "black-forest-labs/FLUX.1-Krea-dev": "8162a9c7b05a641be098422bf2fcf335615c2f28",
    "Qwen/Qwen-Image-2512": "25468b98e3276ca6700de15c6628e51b7de54a26",
    "briaai/FIBO": "7c7e00ca081f6cd24bbbd745d13cc214484c9199",
    "briaai/FIBO-vlm": "bd13da5e0b73c808014d6260963e311c8cdf0d8b",
    "circlestone-labs/Anima": "f973fc41ec7545364ac9776c2440285f43ff2a30",
}
ANIMA_FILES = (  # Anima's upstream repo: one file per component, not subdirectories
    "split_files/vae/qwen_image_vae.safetensors",
    "split_files/diffusion_models/anima-turbo-v1.1.safetensors",
    "split_files/text_encoders/qwen_3_06b_base.safetensors",
)

INSTALL_COMMAND = "uv tool install mflux"
INSTALL_HINT = (
    f"install mflux on a Mac of the mesh with `{INSTALL_COMMAND}` (the peer notices within 30 s), then retry"
)


def get(name: str) -> ImageModel | None:
    return MODELS.get(name)


def local_model(name: str, *, path: str, base: str, steps: int | None = None, guidance: float | None = None,
                description: str = "") -> ImageModel:  # fmt: skip
    """A model saved on this Mac (`[image_models.<name>]` in config.toml): its base model's command, API and
    figures, loaded from `path`. KeyError when `base` is not in the catalogue."""
    parent = MODELS[base]
    return replace(
        parent,
        name=name,
        extra_args=("--model", path, "--base-model", parent.base_model),
        repos=(),
        default_steps=steps if steps is not None else parent.default_steps,
        default_guidance=guidance if guidance is not None else parent.default_guidance,
        description=description or f"{base}, saved at {path}",
        path=path,
        base=base,
        mflux_name=parent.base_model,
    )
