"""The one place that writes files: atomically, so an interrupted export never leaves a
half-written file or chunk folder that looks complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

TMP_MARK = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file_atomic(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` via a temporary file in the same folder, fsync and rename.

    durable=False skips the fsync: the file still appears whole or not at all to every reader and
    after the writing process dies, but after an OS crash or power loss it may be missing or empty
    until the caller makes it durable (`fsync_paths`). For writers of many small files that sync
    once at a checkpoint (datasets); exports keep the default."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + TMP_MARK, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; finished files get normal modes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_paths(paths) -> None:
    """fsync files and folders (a folder's fsync makes the renames into it durable)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_dir_atomic(path: Path | str, files: Mapping[str, bytes]) -> bool:
    """Create folder `path` holding `files` (name -> bytes) all at once.

    The files are written into a temporary sibling folder which is renamed into place when
    complete, so `path` either does not exist or holds every file. Returns False (and writes
    nothing) when `path` already exists.
    """
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + TMP_MARK, dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        for name, data in files.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"file names must be plain names, got {name!r}")
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        try:
            os.rename(tmp, path)
        except OSError:
            if path.exists():  # another writer finished the same chunk first: theirs is complete
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def remove_stale_temporaries(root: Path | str) -> int:
    """Delete temporary files/folders left by interrupted writes under `root`; returns the count."""
    root = Path(root)
    if not root.exists():
        return 0
    stale = [p for p in root.rglob(f"*{TMP_MARK}*")]
    for p in sorted(stale, key=lambda p: len(p.parts), reverse=True):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return len(stale)
