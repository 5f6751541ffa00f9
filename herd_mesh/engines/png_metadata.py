"""The metadata every image leaves a peer with, the same from either engine.

mflux embeds its own (EXIF, XMP and IPTC) with the prompt, the negative prompt and the local `model_path` in
every PNG, even when `store_prompts` is off, and with a creation time that makes two runs differ. Here all text
and EXIF chunks are dropped, without touching the pixels, and one EXIF UserComment is written in mflux's own
layout (`ASCII\\0\\0\\0` + JSON), so mflux's metadata reader and `--config-from-metadata` still read it: the
model, seed, steps, guidance, size and quantization, and the prompts only when `store_prompts` is on. Never a
path.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator

from .._version import __version__
from ..errors import EngineError
from .base import ImageJob

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DROPPED = frozenset({b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"tIME"})  # text, EXIF (XMP and IPTC travel in text)
USER_COMMENT_PREFIX = b"ASCII\x00\x00\x00"  # EXIF's character code for a UserComment, as mflux writes it
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


def chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) for each chunk; EngineError when the bytes are not a whole PNG."""
    if not png.startswith(PNG_SIGNATURE):
        raise EngineError("the engine's output is not a PNG")
    at = len(PNG_SIGNATURE)
    while at < len(png):
        if at + 12 > len(png):
            raise EngineError("the engine's PNG is cut short")
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(png):
            raise EngineError("the engine's PNG is cut short")
        yield kind, png[at + 8 : at + 8 + length]
        at = end
        if kind == b"IEND":
            return
    raise EngineError("the engine's PNG has no end")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def exif_user_comment(text: str) -> bytes:
    """A minimal little-endian TIFF/EXIF block: IFD0 points to an Exif IFD holding one UserComment."""
    comment = USER_COMMENT_PREFIX + text.encode()
    exif_ifd_at = 8 + 2 + 12 + 4
    data_at = exif_ifd_at + 2 + 12 + 4
    header = b"II*\x00" + struct.pack("<I", 8)
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", _EXIF_IFD, 4, 1, exif_ifd_at) + struct.pack("<I", 0)
    exif = struct.pack("<H", 1) + struct.pack("<HHII", _USER_COMMENT, 7, len(comment), data_at) + struct.pack("<I", 0)
    return header + ifd0 + exif + comment


def record(job: ImageJob, *, store_prompts: bool) -> dict[str, object]:
    """What the image says about itself (mflux's keys, where it has them)."""
    fields: dict[str, object] = {
        "generator": f"herd-mesh {__version__}",
        "model": job.model,
        "seed": job.seed,
        "steps": job.steps,
        "guidance": job.guidance,
        "width": job.width,
        "height": job.height,
        "quantize": job.quantize,
    }
    if store_prompts:
        fields["prompt"] = job.prompt
        if job.negative_prompt:
            fields["negative_prompt"] = job.negative_prompt
    return fields


def finish(png: bytes, job: ImageJob, *, store_prompts: bool) -> bytes:
    """The PNG with mflux's metadata replaced by ours; the image data is kept byte for byte."""
    comment = json.dumps(record(job, store_prompts=store_prompts), ensure_ascii=False, sort_keys=True)
    out = [PNG_SIGNATURE]
    for kind, data in chunks(png):
        if kind in DROPPED:
            continue
        if kind == b"IDAT" and comment:
            out.append(_chunk(b"tEXt", b"Software\x00" + f"herd-mesh {__version__}".encode()))
            out.append(_chunk(b"eXIf", exif_user_comment(comment)))
            comment = ""
        out.append(_chunk(kind, data))
    return b"".join(out)
