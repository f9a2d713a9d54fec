"""Sidecar encodings read back by real readers, and the CLI end to end (generate, rerun, interrupt)."""

import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from worldstream.core import ChunkKey, PALETTE
from worldstream.exporters import atomic
from worldstream.core.heightfield import surface_normals as normals_from_heights
from worldstream.exporters.sidecars import chunk_sidecars, decode_instances, decode_normals_png

rasterio = pytest.importorskip("rasterio")


def run_cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "worldstream", *args], capture_output=True, text=True, check=check)


def test_sidecars_decode_to_the_chunk(world, spec, tmp_path):
    c = world.chunk(ChunkKey(3, 1, -2))
    files = chunk_sidecars(c, spec)
    (tmp_path / "h.tif").write_bytes(files["height.tif"])
    with rasterio.open(tmp_path / "h.tif") as ds:
        assert np.array_equal(ds.read(1), c.dsm)
        proj = ds.crs.to_proj4()
        assert "+proj=ortho" in proj and f"+lat_0={spec.origin.lat}" in proj and f"+lon_0={spec.origin.lon}" in proj
        # PixelIsPoint: sample [0, 0] is the chunk's north-west corner
        x, y = ds.xy(0, 0)
        assert (x, y) == (c.bounds[0], c.bounds[3])
    sem = Image.open(io.BytesIO(files["semantic.png"]))
    assert sem.mode == "P" and np.array_equal(np.asarray(sem), c.semantic)
    assert tuple(sem.getpalette()[3:6]) == PALETTE[1]
    assert np.array_equal(decode_instances(files["instances.png"]), c.instances)
    assert (c.instances > 0).any()
    normals = decode_normals_png(files["normal.png"])
    assert np.abs(normals - normals_from_heights(c.dsm, c.resolution)).max() < 1.0 / 127
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(files["ortho.png"]))), c.ortho)
    ann = json.loads(files["annotations.json"])
    assert ann["key"] == {"level": 3, "x": 1, "y": -2} and len(ann["buildings"]) == len(c.buildings)
    assert abs(sum(ann["class_fractions"].values()) - 1.0) < 1e-9


def test_flat_ground_has_upward_normals():
    n = normals_from_heights(np.zeros((5, 5), np.float32), 1.0)
    assert np.allclose(n, [0, 0, 1])
    tilted = normals_from_heights(np.tile(np.arange(5, dtype=np.float32), (5, 1)), 1.0)  # rises to the east
    assert np.allclose(tilted[..., 0], -np.sqrt(0.5)) and np.allclose(tilted[..., 2], np.sqrt(0.5))


def test_atomic_dir_is_all_or_nothing(tmp_path):
    target = tmp_path / "chunks" / "1" / "0" / "0"

    class Boom(Exception):
        pass

    class Exploding(dict):
        def items(self):
            yield "a.bin", b"1"
            raise Boom()

    with pytest.raises(Boom):
        atomic.write_dir_atomic(target, Exploding())
    assert not target.exists() and list(target.parent.iterdir()) == []
    assert atomic.write_dir_atomic(target, {"a.bin": b"1", "b.bin": b"2"})
    assert not atomic.write_dir_atomic(target, {"a.bin": b"x"})  # finished chunks are never rewritten
    assert (target / "a.bin").read_bytes() == b"1"
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((target / "a.bin").stat().st_mode & 0o777) == 0o666 & ~mask
    atomic.write_file_atomic(tmp_path / "f.json", b"{}")
    assert ((tmp_path / "f.json").stat().st_mode & 0o777) == 0o666 & ~mask


def test_generate_writes_every_file_and_reruns_skip(tmp_path):
    out = tmp_path / "w"
    r = run_cli("generate", "--seed", "7", "--center", "0,0", "--radius", "100", "--levels", "5:6", "--out", str(out),
                "--quiet", "--format", "sidecars")
    chunks = sorted(p for p in (out / "chunks").glob("*/*/*") if p.is_dir())
    assert len(chunks) == 4 + 4 and "8 chunks" in r.stderr
    names = {"height.tif", "dem.tif", "normal.png", "semantic.png", "instances.png", "ortho.png", "annotations.json",
             "normal.png.aux.xml", "semantic.png.aux.xml", "instances.png.aux.xml", "ortho.png.aux.xml"}
    for c in chunks:
        assert {p.name for p in c.iterdir()} == names | {"sha256.json"}  # each file's hash, for readers to verify
        hashes = json.loads((c / "sha256.json").read_text())
        assert hashes == {n: hashlib.sha256((c / n).read_bytes()).hexdigest() for n in names}
    spec = json.loads((out / "world.json").read_text())
    assert spec["seed"] == 7
    before = {p: p.stat().st_mtime_ns for p in chunks}
    # an interrupted run leaves only a temporary folder, which a rerun removes and redoes
    victim = chunks[0]
    os.rename(victim, victim.with_name(victim.name + atomic.TMP_MARK + "x"))
    r2 = run_cli("generate", "--seed", "7", "--center", "0,0", "--radius", "100", "--levels", "5:6", "--out", str(out),
                 "--quiet", "--format", "sidecars")
    assert "7 already done" in r2.stderr and "1 stale" in r2.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != victim)
    assert victim.is_dir() and not list((out / "chunks").rglob(f"*{atomic.TMP_MARK}*"))


def test_generate_refuses_to_mix_worlds(tmp_path):
    out = tmp_path / "w"
    run_cli("generate", "--seed", "1", "--radius", "10", "--levels", "6", "--out", str(out), "--quiet")
    r = run_cli("generate", "--seed", "2", "--radius", "10", "--levels", "6", "--out", str(out), "--quiet", check=False)
    assert r.returncode == 2 and "different world" in r.stderr


def test_bad_arguments_get_clear_errors(tmp_path):
    # three independent processes, started together (each is mostly its imports)
    procs = [subprocess.Popen([sys.executable, "-m", "worldstream", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for args in (("generate", "--center", "abc", "--out", str(tmp_path)),
                          ("generate", "--levels", "3:9", "--out", str(tmp_path / "x")),
                          ("generate", "--base-resolution", "3", "--out", str(tmp_path / "y")))]
    (_, center), (_, levels), (_, resolution) = (p.communicate(timeout=300) for p in procs)
    codes = [p.returncode for p in procs]
    assert codes[0] == 2 and "expected two numbers as X,Y" in center, center
    assert codes[1] == 2 and "past this world's levels" in levels, levels
    assert codes[2] == 2 and "power of two" in resolution, resolution


@pytest.mark.parametrize("sub", ["generate", "preview"])
def test_every_subcommand_has_help(sub):
    assert "usage: worldstream " + sub in run_cli(sub, "--help").stdout


def test_preview_writes_a_picture(tmp_path):
    out = tmp_path / "map.png"
    # the town's corner of four 64 px chunks at level 4 (4 m/px): a 100 px mosaic across both seams, resized to 80
    r = run_cli("preview", "--seed", "7", "--chunk-size", "64", "--center", "3072,-3072", "--size", "400",
                "--pixels", "80", "--out", str(out))
    assert "at level 4 (4 m/px)" in r.stderr
    img = np.asarray(Image.open(out))
    assert img.shape == (80, 80, 3) and img.std() > 5
