"""The chunk store on disk, one format for `generate`'s output folders and the chunk service's
disk cache (`serve --cache`, `sim --cache`): DIR/world.json, and per chunk DIR/chunks/{level}/{x}/{y}/
with its files and `sha256.json`, the SHA-256 of each file recorded when it was written. A reader
trusts a file only if it matches its recorded hash, so a `generate` output folder is a verified
store the servers read from and add missing chunks to.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import write_dir_atomic, write_file_atomic

HASHES = "sha256.json"  # per chunk folder: file name -> SHA-256 hex digest, recorded at write time


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_hashes(folder: Path) -> dict[str, str]:
    """A chunk folder's recorded hashes ({} when missing or unreadable: nothing there is trusted)."""
    try:
        hashes = json.loads((folder / HASHES).read_bytes())
    except (OSError, ValueError):
        return {}
    return hashes if isinstance(hashes, dict) else {}


def verify(files: dict[str, bytes], hashes: dict[str, str]) -> list[str]:
    """Names of the files whose bytes do not match their recorded hash (or have none)."""
    return [n for n, data in files.items() if hashes.get(n) != digest(data)]


def write_chunk(chunks: Path, path: str, files: dict[str, bytes]) -> None:
    """A chunk's files into chunks/path with their hashes. A new chunk's folder appears whole (written
    aside, then renamed); into an existing folder (other formats, or a bad entry being repaired)
    each file is replaced atomically and the merged hashes are written last."""
    folder = chunks / path
    hashes = {n: digest(d) for n, d in files.items()}
    if write_dir_atomic(folder, {**files, HASHES: json.dumps(hashes, sort_keys=True).encode()}):
        return
    for name, data in files.items():
        write_file_atomic(folder / name, data)
    recorded = {**read_hashes(folder), **hashes}
    write_file_atomic(folder / HASHES, json.dumps(recorded, sort_keys=True).encode())
