"""`herd key generate | show | set KEY | remove`: the mesh key in `<data-dir>/mesh.key`.

Generate it on one Mac, `herd key show` there, `herd key set <key>` on each other Mac, then restart the peers.
The file is the user's alone (0600); the peer reads it when no `--mesh-key` or `HERD_MESH_KEY` is given.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import config as config_mod
from ..core import signing
from ..errors import ConfigError
from ._common import error

KEY_BYTES = 32


def generate_key() -> str:
    """A fresh URL-safe key that never starts with '-', so `--mesh-key KEY` and `herd key set KEY` parse it."""
    while True:
        key = secrets.token_urlsafe(KEY_BYTES)
        if not key.startswith("-"):
            return key


def save_key(path: Path, key: str) -> None:
    """Write the key, readable by this user only, replacing the file in one step."""
    if not signing.valid_key(key):
        raise ConfigError(f"a mesh key is at least {signing.MIN_KEY_CHARS} printable characters without spaces")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="herd key", description=__doc__.split("\n\n")[0])
    data_dir = "the peer's data dir [HERD_DATA_DIR; default ~/.herd-mesh]"
    p.add_argument("--data-dir", help=data_dir)
    common = argparse.ArgumentParser(add_help=False)  # so `herd key show --data-dir X` works too
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_dir)
    sub = p.add_subparsers(dest="action", required=True)
    generate = sub.add_parser("generate", parents=[common], help="make a new random mesh key and save it")
    generate.add_argument(
        "--force", action="store_true", help="replace an existing key (every Mac needs the new one)"
    )
    sub.add_parser("show", parents=[common], help="print the key, to copy to the next Mac")
    set_ = sub.add_parser("set", parents=[common], help="save a key made on another Mac")
    set_.add_argument("key")
    sub.add_parser("remove", parents=[common], help="delete the key file: the mesh becomes open on this Mac")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    data_dir = Path(args.data_dir or os.environ.get("HERD_DATA_DIR") or config_mod.DEFAULT_DATA_DIR).expanduser()
    path = data_dir / config_mod.KEY_FILE
    existing = config_mod.read_key_file(data_dir)
    if args.action == "show":
        if not existing:
            error(f"no mesh key in {path}: `herd key generate` makes one (or `herd key set KEY`)")
            return 1
        print(existing)
        print(f"fingerprint {signing.fingerprint(existing)}; on each other Mac: herd key set <key>", file=sys.stderr)
        return 0
    if args.action == "remove":
        path.unlink(missing_ok=True)
        print(f"removed {path}; restart the peer: this Mac's mesh is open unless HERD_MESH_KEY is set")
        return 0
    if args.action == "generate" and existing and not args.force:
        error(f"{path} already holds a key (fingerprint {signing.fingerprint(existing)}); --force replaces it")
        return 1
    key = generate_key() if args.action == "generate" else args.key.strip()
    try:
        save_key(path, key)
    except (ConfigError, OSError) as exc:
        error(str(exc))
        return 1
    print(f"saved the mesh key in {path} (fingerprint {signing.fingerprint(key)})")
    if args.action == "generate":
        print("restart the peer; then, on every other Mac: herd key set <key> (`herd key show` prints it here)")
    else:
        print("restart the peer on this Mac: it joins the Macs with the same key")
    return 0
