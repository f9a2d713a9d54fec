"""The chunk store's one completeness rule, on a local folder and on an fsspec store (memory://,
in this process): a file counts only when the chunk's sha256.json records it and its bytes match;
a chunk without sha256.json has no trusted file; a repair rewrites the files and then the hashes.
Also the default Ray batch size."""

from __future__ import annotations

import uuid

import pytest

from worldstream.exporters.ray_export import auto_batch
from worldstream.exporters.store import HASHES, FsspecStore, LocalStore, Store, check_chunk, chunk_rel, open_store, \
    write_chunk

FILES = {"mesh.glb": b"glTF mesh bytes", "tile.json": b'{"x": 1}'}
NAMES = tuple(FILES)


@pytest.fixture(params=["local", "fsspec"])
def store(request, tmp_path) -> Store:
    return LocalStore(tmp_path / "w") if request.param == "local" else FsspecStore(f"memory://{uuid.uuid4().hex}/w")


def test_a_written_chunk_is_complete_and_verified(store):
    write_chunk(store, "6/1/2", FILES)
    check = check_chunk(store, "6/1/2", NAMES)
    assert check.files == FILES and check.missing == ()


def test_files_without_their_sha256_json_count_as_absent_and_damage_as_bad(store):
    write_chunk(store, "6/1/2", FILES)
    store.write(chunk_rel("6/1/2", "mesh.glb"), b"glTF damaged")
    assert check_chunk(store, "6/1/2", NAMES).bad == ("mesh.glb",)
    for name, data in FILES.items():  # a run that died before writing the hashes
        store.write(chunk_rel("6/3/4", name), data)
    assert check_chunk(store, "6/3/4", NAMES).absent == NAMES and not check_chunk(store, "6/3/4", NAMES).files
    assert check_chunk(store, "6/9/9", NAMES).absent == NAMES  # nothing there at all


def test_a_repair_or_a_new_format_merges_the_recorded_hashes(store):
    write_chunk(store, "6/1/2", {"mesh.glb": FILES["mesh.glb"]})
    write_chunk(store, "6/1/2", {"tile.json": FILES["tile.json"]})  # an existing chunk: files, then merged hashes
    assert check_chunk(store, "6/1/2", NAMES).files == FILES
    assert store.read(chunk_rel("6/1/2", HASHES)) is not None


def test_open_store_tells_folders_from_urls(tmp_path):
    assert isinstance(open_store(tmp_path / "a"), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}/b"), LocalStore)
    assert isinstance(open_store("memory://somewhere/c"), FsspecStore)


def test_the_default_ray_batch_gives_every_slot_many_tasks():
    assert auto_batch(56, 2) == 1 and auto_batch(20000, 100) == 12 and auto_batch(10**6, 8) == 16
    assert auto_batch(0, 4) == 1
