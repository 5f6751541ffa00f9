"""Write a random-weight Anima (anima-turbo) model in mflux's saved layout. Run with the mflux venv's python.

    python make_anima.py --out DIR [--seed N]

What ``mflux-save`` would write, without any download:
- transformer/, text_encoder/, vae/: ``N.safetensors`` shards plus ``model.safetensors.index.json``, written by
  mflux's own ``ModelSaver._save_weights`` in bfloat16, labelled ``quantization_level=8`` but left dense (no
  ``.scales``), so ``--quantize 8`` loads them as they are and the CPU never runs quantized matmuls;
- tokenizer/: a small WordLevel fast tokenizer (mflux loads it with ``AutoTokenizer``, as Qwen3's);
- tokenizer_2/: a small Unigram tokenizer saved by ``transformers.T5Tokenizer`` (mflux loads it with
  ``T5Tokenizer``).

The model is built the way ``AnimaInitializer.init`` builds it, minus the weight loading: ``_init_config`` and
``_init_models`` give MLX's lazy random initialisation, seeded with ``mx.random.seed(seed)``, so the weights are
the same on every run of the same mflux/MLX versions. Components are written one at a time to bound memory.
The images it makes are noise; the point is a real mflux run (CLI and Python API) on a CPU-only box.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from pathlib import Path

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


# Small, fixed vocabularies: the ids stay far below Qwen3's 151936 and the adapter's 32128 embedding rows.
WORDS_TEXT = (
    "a an the of and in on with at by for to from is are cat dog bird fox horse cow fish tree flower "
    "house car city street sky sun moon star cloud rain snow sea lake river mountain forest field road "
    "bridge man woman child girl boy portrait photo painting drawing sketch anime style red orange yellow "
    "green blue purple pink black white gray brown gold silver light dark bright soft sharp blurry blur "
    "detailed simple high low quality best worst masterpiece lowres bad ugly beautiful cute small big "
    "tiny large old new sitting standing running flying on under over near far day night morning evening "
    "sunset sunrise winter summer"
)
WORDS = WORDS_TEXT.split()
SPECIALS_QWEN = ("<|endoftext|>", "<unk>")
PUNCTUATION = tuple(string.punctuation)


def qwen_like_tokenizer():
    """A WordLevel fast tokenizer standing in for Qwen3's BPE (mflux loads it with AutoTokenizer)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*SPECIALS_QWEN, *WORDS, *PUNCTUATION, *string.ascii_lowercase, *string.digits):
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )


def t5_like_tokenizer():
    """A Unigram T5Tokenizer (sentencepiece-style pieces with the ▁ word marker), no <extra_id_N> tokens."""
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    seen = {p for p, _ in pieces}
    for word in WORDS:
        for piece in (f"▁{word}", word):
            if piece not in seen:
                seen.add(piece)
                pieces.append((piece, -5.0 - 0.01 * len(pieces)))
    for char in (*string.ascii_lowercase, *string.ascii_uppercase, *string.digits, *PUNCTUATION):
        for piece in (f"▁{char}", char):
            if piece not in seen:
                seen.add(piece)
                pieces.append((piece, -10.0 - 0.01 * len(pieces)))
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=4096)


def save_tokenizers(out: Path) -> None:
    from mflux.models.anima.weights.anima_weight_definition import AnimaWeightDefinition

    # qwen3 -> tokenizer/, t5 -> tokenizer_2/
    subdirs = {t.name: t.hf_subdir for t in AnimaWeightDefinition.get_tokenizers()}
    for name, tokenizer in (("qwen3", qwen_like_tokenizer()), ("t5", t5_like_tokenizer())):
        path = out / subdirs[name]
        path.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(path))
        say(f"tokenizer {name} ({type(tokenizer).__name__}, {len(tokenizer)} tokens) -> {path}")


def check_tokenizers(out: Path) -> None:
    """Load the tokenizers exactly as Anima does (TokenizerLoader) and tokenize a prompt."""
    from mflux.models.anima.weights.anima_weight_definition import AnimaWeightDefinition
    from mflux.models.common.tokenizer import TokenizerLoader

    tokenizers = TokenizerLoader.load_all(definitions=AnimaWeightDefinition.get_tokenizers(), model_path=str(out))
    for name, tok in tokenizers.items():
        ids = tok.tokenize("A red fox, sitting in the snow!", keep_empty=True).input_ids
        say(f"tokenizer check {name}: {type(tok.tokenizer).__name__} ids={ids.tolist()}")
        if ids.size == 0:
            raise SystemExit(f"tokenizer {name} produced no ids")


def save_weights(out: Path, seed: int) -> dict[str, int]:
    import mlx.core as mx
    from mflux.models.anima.anima_initializer import AnimaInitializer
    from mflux.models.anima.variants.txt2img.anima import Anima
    from mflux.models.anima.weights.anima_weight_definition import AnimaWeightDefinition
    from mflux.models.common.config import ModelConfig
    from mflux.models.common.weights.loading.weight_definition import ComponentDefinition
    from mflux.models.common.weights.saving.model_saver import ModelSaver
    from mlx import nn
    from mlx.utils import tree_flatten

    mx.random.seed(seed)
    model = Anima.__new__(Anima)
    nn.Module.__init__(model)
    AnimaInitializer._init_config(model, ModelConfig.anima_turbo())
    AnimaInitializer._init_models(model)  # lazy: nothing is materialised until saved

    components = AnimaWeightDefinition.get_components()
    subdirs = ComponentDefinition.save_subdirs(components)
    counts: dict[str, int] = {}
    for component_def in components:
        attr = component_def.model_attr or component_def.name
        module = getattr(model, attr)
        counts[component_def.name] = sum(v.size for _, v in tree_flatten(module.parameters()))
        billions = counts[component_def.name] / 1e9
        say(f"writing {component_def.name} ({billions:.2f}B params) -> {subdirs[component_def.name]}/")
        # Cast the lazy parameters first, so only bf16 arrays are ever held (the float32 initial values are
        # transient): peak memory stays at about the largest component in bf16 (4.2 GB for the transformer).
        module.set_dtype(mx.bfloat16)
        ModelSaver._save_weights(str(out), 8, module, subdirs[component_def.name])
        setattr(model, attr, None)  # free it before the next component
        del module
        mx.clear_cache()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to create (must not exist, or be empty)")
    parser.add_argument("--seed", type=int, default=0, help="seed for MLX's random initialisation")
    args = parser.parse_args(argv)

    import mflux.models.anima  # noqa: F401 - fail early and clearly if this is not the mflux venv
    from mflux.utils.version_util import VersionUtil

    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    version = VersionUtil.get_mflux_version()
    say(f"mflux {version}: random-weight anima-turbo, seed {args.seed}, into {out}")
    save_tokenizers(out)
    check_tokenizers(out)
    counts = save_weights(out, args.seed)
    info = {
        "what": "random-weight Anima (anima-turbo) in mflux's saved layout, for tests; images are noise",
        "mflux_version": version,
        "seed": args.seed,
        "params": counts,
        "load_with": "--model DIR --base-model anima-turbo --quantize 8 | "
        "Anima(quantize=8, model_path=DIR, model_config=ModelConfig.anima_turbo())",
    }
    (out / "herd_random_anima.json").write_text(json.dumps(info, indent=2) + "\n")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
