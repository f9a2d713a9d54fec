"""The chunk store, one format for `generate`'s outputs and the chunk service's cache (`serve
--cache`, `sim --cache`): ROOT/world.json, and per chunk ROOT/chunks/{level}/{x}/{y}/ with its files
and `sha256.json`, the SHA-256 of each file recorded when it was written, written after the files.

ROOT is a local folder (or one every node mounts) or an object store through fsspec
(`s3://bucket/prefix`, `gs://...`, any fsspec URL). Both are one `Store`, which only reads, writes
whole objects and (on a local disk) writes a new chunk folder at once; the rule of what is complete
lives here once for both (`check_chunk`): a chunk file counts only when the chunk's sha256.json is
present, records it and its bytes match. A reader trusts nothing else, so an interrupted write (an
object without its sha256.json, or a damaged file) is redone, never served, and a `generate` output
is a verified store the servers read from and add missing chunks to.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from ..core.errors import WorldstreamError
from .atomic import remove_stale_temporaries, write_dir_atomic, write_file_atomic

HASHES = "sha256.json"  # per chunk folder: file name -> SHA-256 hex digest, recorded at write time
CHUNKS = "chunks"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(files: dict[str, bytes], hashes: dict[str, str]) -> list[str]:
    """Names of the files whose bytes do not match their recorded hash (or have none)."""
    return [n for n, data in files.items() if hashes.get(n) != digest(data)]


def is_url(location: str | Path) -> bool:
    """Whether `location` names an fsspec store (`proto://...`) rather than a local path."""
    return "://" in str(location) and not str(location).startswith("file://")


# ---------------------------------------------------------------------------------------- stores
class Store:
    """Where a world's files live. Paths are relative, '/'-separated (`chunks/6/1/2/mesh.glb`).
    Every write is whole or absent for every reader (a temporary file renamed on a disk, a single
    PUT on an object store)."""

    location: str
    remote = False  # each read and write is a network round trip (servers do them off their event loop)

    def read(self, rel: str) -> bytes | None:
        """The bytes at `rel`, None when there is nothing there."""
        raise NotImplementedError

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        """The bytes of each of `rels` that exists (absent ones are left out)."""
        return {r: data for r in rels if (data := self.read(r)) is not None}

    def write(self, rel: str, data: bytes) -> None:
        raise NotImplementedError

    def write_new_folder(self, rel: str, files: Mapping[str, bytes]) -> bool:
        """Create folder `rel` holding `files` all at once; False (nothing written) when the store
        cannot, or the folder exists. The caller then writes the files one by one."""
        return False

    def has_chunk_glb(self) -> bool:
        """Whether any chunk folder holds a mesh.glb (a listing: for rare checks only)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Make the root usable (create a local folder); raises WorldstreamError saying why not."""

    def clean_temporaries(self) -> int:
        """Remove what interrupted writes left (a local disk's temporaries); returns the count."""
        return 0

    def url(self, rel: str = "") -> str:
        """`rel` inside this store, for messages."""
        return f"{self.location.rstrip('/')}/{rel}" if rel else self.location


class LocalStore(Store):
    """A folder on a local disk or a shared mount: temporary files renamed into place, new chunk
    folders renamed into place whole (exporters.atomic)."""

    def __init__(self, root: str | Path):
        self.root = Path(os.path.abspath(str(root).removeprefix("file://")))  # the same for every process
        self.location = str(self.root)

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write(self, rel: str, data: bytes) -> None:
        write_file_atomic(self.root / rel, data)

    def write_new_folder(self, rel: str, files: Mapping[str, bytes]) -> bool:
        return write_dir_atomic(self.root / rel, files)

    def has_chunk_glb(self) -> bool:
        return next(iter(self.root.glob(f"{CHUNKS}/*/*/*/mesh.glb")), None) is not None

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorldstreamError(f"{self.root}: cannot create the output folder: {exc}") from exc

    def clean_temporaries(self) -> int:
        return remove_stale_temporaries(self.root / CHUNKS)

    def url(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else self.location


class FsspecStore(Store):
    """An object store (or any fsspec file system) at URL: each object is written whole with one
    PUT (fsspec's pipe), so there are no temporaries; a chunk's sha256.json is written after its
    files. Credentials and endpoints come from fsspec's and the backend's usual mechanisms
    (AWS_* variables, ~/.aws, instance roles; FSSPEC_S3_ENDPOINT_URL or AWS_ENDPOINT_URL_S3 for
    MinIO and other S3-compatible servers; GOOGLE_APPLICATION_CREDENTIALS for gs://)."""

    remote = True

    def __init__(self, url: str):
        import fsspec

        self.location = url.rstrip("/")
        with remote_errors(self.location):
            try:
                self.fs, self.root = fsspec.core.url_to_fs(self.location)
            except ImportError as exc:
                raise WorldstreamError(f"{url}: this store needs its fsspec backend ({exc}); for s3:// "
                                       f"pip install 'worldstream[s3]'") from exc
            except ValueError as exc:  # fsspec: "Protocol not known: foo"
                raise WorldstreamError(f"{url}: not a store URL fsspec knows ({exc}); expected a local "
                                       f"folder or a URL such as s3://bucket/prefix") from exc
        self.root = self.root.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def read(self, rel: str) -> bytes | None:
        with remote_errors(self.url(rel)):
            try:
                return self.fs.cat_file(self._path(rel))
            except FileNotFoundError:
                return None

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        if not rels:
            return {}
        with remote_errors(self.url(rels[0])):
            got = self.fs.cat([self._path(r) for r in rels], on_error="return")  # concurrent GETs
            if not isinstance(got, dict):  # a single path comes back as its bytes
                got = {self._path(rels[0]): got}
            out = {}
            for r in rels:
                data = got.get(self._path(r), FileNotFoundError(r))
                if isinstance(data, FileNotFoundError):
                    continue
                if isinstance(data, BaseException):
                    raise data
                out[r] = data
            return out

    def write(self, rel: str, data: bytes) -> None:
        with remote_errors(self.url(rel)):
            self.fs.pipe_file(self._path(rel), data)

    def has_chunk_glb(self) -> bool:
        with remote_errors(self.url(CHUNKS)):
            return bool(self.fs.glob(self._path(f"{CHUNKS}/*/*/*/mesh.glb")))


def _reason(exc: BaseException) -> str:
    """A one-line reason for a store error, naming the usual fix."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
        return (f"no credentials for the store ({exc}); set them as the backend expects (for S3: "
                f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)")
    if isinstance(exc, PermissionError) or name in ("ClientError", "AccessDenied"):
        return f"access denied ({exc}); check the store's credentials and permissions"
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in name:
        return f"no such bucket or location ({exc}); create it first"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError") or isinstance(exc, ConnectionError):
        return f"cannot reach the store ({exc}); check its endpoint (FSSPEC_S3_ENDPOINT_URL / AWS_ENDPOINT_URL_S3)"
    return f"{name}: {exc}"


@contextmanager
def remote_errors(where: str) -> Iterator[None]:
    """Turn an object store's errors (botocore's, aiohttp's, OSError) into one clear line."""
    try:
        yield
    except WorldstreamError:
        raise
    except Exception as exc:
        raise WorldstreamError(f"store {where}: {_reason(exc)}") from exc


def open_store(location: str | Path) -> Store:
    """The store at `location`: a local folder, or an fsspec URL (s3://bucket/prefix, gs://...).
    Kept per process (a Ray worker or pool process opens each store once)."""
    return _open_store(str(location))


@functools.cache
def _open_store(location: str) -> Store:
    return FsspecStore(location) if is_url(location) else LocalStore(location)


# ------------------------------------------------------------------------- the chunk rule, once
def chunk_rel(path: str, name: str = "") -> str:
    return f"{CHUNKS}/{path}/{name}" if name else f"{CHUNKS}/{path}"


def read_hashes(store: Store, path: str) -> dict[str, str]:
    """A chunk's recorded hashes ({} when missing or unreadable: nothing there is trusted)."""
    try:
        hashes = json.loads(store.read(chunk_rel(path, HASHES)) or b"")
    except ValueError:
        return {}
    return hashes if isinstance(hashes, dict) else {}


@dataclass(frozen=True)
class ChunkCheck:
    """What a store holds of a chunk's files: the verified ones, the absent ones, and the bad ones
    (present but unrecorded in sha256.json or not matching it)."""

    files: dict[str, bytes] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    bad: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        """Files to (re)write: the chunk is complete for these names when this is empty."""
        return self.absent + self.bad


def check_chunk(store: Store, path: str, names: tuple[str, ...]) -> ChunkCheck:
    """The one completeness rule for every store: a file counts only when the chunk's sha256.json
    (written after the files) records it and its bytes match. A chunk without a sha256.json has no
    trusted file, and counts as absent (what an interrupted first write leaves: not damage), without
    reading its files: a new chunk costs one request."""
    hashes = read_hashes(store, path)
    if not hashes:
        return ChunkCheck({}, tuple(names), ())
    got = store.read_many([chunk_rel(path, n) for n in names])
    files = {n: got[chunk_rel(path, n)] for n in names if chunk_rel(path, n) in got}
    bad = verify(files, hashes)
    return ChunkCheck({n: d for n, d in files.items() if n not in bad},
                      tuple(n for n in names if n not in files), tuple(bad))


def write_chunk(store: Store, path: str, files: dict[str, bytes]) -> None:
    """A chunk's files into the store with their hashes. Where the store can (a disk), a new chunk's
    folder appears whole; otherwise, and into an existing chunk (other formats, or a bad entry being
    repaired), each file is written whole and the merged hashes are written last."""
    hashes = {n: digest(d) for n, d in files.items()}
    if store.write_new_folder(chunk_rel(path), {**files, HASHES: json.dumps(hashes, sort_keys=True).encode()}):
        return
    for name, data in files.items():
        store.write(chunk_rel(path, name), data)
    recorded = {**read_hashes(store, path), **hashes}
    store.write(chunk_rel(path, HASHES), json.dumps(recorded, sort_keys=True).encode())


def claim_world(store: Store, spec_json: str) -> bool:
    """Record the world in store/world.json; False (nothing written) when it holds another world."""
    from ..core.spec import WorldSpec

    existing = store.read("world.json")
    if existing is not None and WorldSpec.from_json(existing.decode()) != WorldSpec.from_json(spec_json):
        return False
    store.write("world.json", spec_json.encode())
    return True

