"""The compiled kernels (core/kernels.c) give their torch paths' bits, at every vector width."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from worldstream.core import kernels, lattice, terrain, twist
from worldstream.core.hashing import hash2
from worldstream.core.noise import octave_noise, octaves

SOURCE = Path(kernels.__file__).with_name("kernels.c")
# (spread of the points in metres, offset): one box of lattice nodes hashed once; boxes too wide
# for a node table (column and row hashes only); points too far apart for any (each corner hashed);
# far from the origin and below zero
SPREADS = [(4000.0, 0.0), (4000.0, -1e6), (1e5, 3e9), (50.0, -7.3e10), (1e7, 0.0), (4e9, 1e10)]
OCTAVES = octaves(7, 5, 6144.0, 6) + octaves(7, 6, 3072.0, 5) + octaves(7, 100, 1.0, 2)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def assert_same_bits(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_bits(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for p, q in zip(a, b):
            assert_same_bits(p, q)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(_bits(a), _bits(b))


def compiled_and_torch(monkeypatch, library, run):
    """`run()` with the kernels of `library`, then on the torch paths."""
    monkeypatch.setattr(kernels, "LIBRARY", library)
    compiled = run()
    monkeypatch.setattr(kernels, "LIBRARY", None)
    return compiled, run()


def points(n: int, spread: float, offset: float, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64) * spread + offset
    y = torch.rand(n, generator=g, dtype=torch.float64) * spread - offset
    return x, y


def vortices(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """tau of twist nodes: turns either way up to tan(22.5 deg), and none at a third of the nodes."""
    return ((i * 7 + j * 13) % 9 - 4).to(torch.float64) * (0.41421356 / 4) * ((i + j) % 3 != 0)


def check_library(monkeypatch, library) -> None:
    for spread, offset in SPREADS:
        x, y = points(3000, spread, offset)
        for derivatives in (False, True):
            assert_same_bits(*compiled_and_torch(monkeypatch, library, lambda: octave_noise(x, y, OCTAVES, derivatives)))
        # separable grids: below noise.GRID_MIN (broadcast points), and above (the grid path; the
        # 1 m octaves span more nodes than samples there, and take the points' path)
        for cols, rows in ((40, 30), (90, 70)):
            xs, ys = torch.sort(x[:cols]).values.reshape(1, -1), torch.sort(y[:rows]).values.reshape(-1, 1)
            grid = lambda: octave_noise(xs, ys, OCTAVES)  # noqa: E731
            assert_same_bits(*compiled_and_torch(monkeypatch, library, grid))
    g = torch.Generator().manual_seed(5)
    for bound in (1000, 2**40, 2**62):
        i = torch.randint(-bound, bound, (3000,), generator=g, dtype=torch.int64)
        j = torch.randint(-bound, bound, (3000,), generator=g, dtype=torch.int64)
        assert_same_bits(*compiled_and_torch(monkeypatch, library, lambda: hash2(i, j, 0xDEADBEEF)))
        assert_same_bits(*compiled_and_torch(monkeypatch, library, lambda: hash2(i[:50].reshape(-1, 1), j[:70], 7)))
    for spread, offset in ((3000.0, 0.0), (3000.0, -2e7)):
        x, y = points(4000, spread, offset, seed=4)
        for jacobian in (False, True):
            assert_same_bits(*compiled_and_torch(monkeypatch, library, lambda: twist.twist(x, y, vortices, jacobian)))
        assert_same_bits(*compiled_and_torch(monkeypatch, library, lambda: twist.untwist(x, y, vortices)))
    macro = terrain.MacroOctaves.for_seed(7)
    for spread, offset in ((4000.0, 1000.0), (60000.0, 0.0)):  # a node grid, and distinct nodes only
        x, y = points(5000, spread, offset, seed=2)
        assert_same_bits(*compiled_and_torch(monkeypatch, library, lambda: terrain.macro_fields(x, y, macro)))


@pytest.fixture(scope="module")
def built():
    if kernels.built_library() is None:
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            pytest.skip("no C compiler: `pip install` could not build core/kernels.c (the torch paths are used)")
        pytest.fail("core/kernels.c is not built: run ./install.sh (pip install -e .)")
    return kernels.open_library(kernels.built_library())


def test_the_installed_kernels_give_the_torch_paths_bits(monkeypatch, built):
    check_library(monkeypatch, built)


@pytest.mark.parametrize("flags", [[], ["-mavx2"]], ids=["x86-64", "avx2"])
def test_every_vector_width_gives_the_same_bits(monkeypatch, tmp_path, built, flags):
    """The installed library runs the widest clone this CPU has; one-width builds check the others."""
    if flags and "avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("this CPU has no AVX2")
    out = tmp_path / "kernels.so"
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-shared", "-fPIC", "-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math",
                    "-DWORLDSTREAM_NO_CLONES", *flags, str(SOURCE), "-o", str(out)], check=True)
    check_library(monkeypatch, kernels.open_library(str(out)))


def test_a_library_of_another_interface_is_refused(tmp_path):
    """A library left by an older build (other functions or arguments) must never be called."""
    stale = tmp_path / "stale.c"
    stale.write_text(SOURCE.read_text().replace("#define WORLDSTREAM_KERNELS_INTERFACE 1",
                                                "#define WORLDSTREAM_KERNELS_INTERFACE 0"))
    out = tmp_path / "stale.so"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-std=c99", str(stale), "-o", str(out)], check=True)
    with pytest.raises(OSError, match="interface 0"):
        kernels.open_library(str(out))


def test_kernels_are_used_only_on_the_cpu(monkeypatch, built):
    monkeypatch.setattr(kernels, "LIBRARY", built)
    assert kernels.available(torch.zeros(1))
    assert not kernels.available(torch.zeros(1), torch.zeros(1, device="meta"))
    monkeypatch.setattr(kernels, "LIBRARY", None)
    assert not kernels.available(torch.zeros(1))


def test_no_points_give_empty_octaves(monkeypatch, built):
    monkeypatch.setattr(kernels, "LIBRARY", built)
    empty = torch.zeros(0, dtype=torch.float64)
    values = octave_noise(empty, empty, OCTAVES[:3], with_derivatives=True)
    assert len(values) == 3 and all(t.shape == (0,) for v in values for t in v)


def test_lattice_points_through_the_kernel(monkeypatch, built):
    """at_points of a field whose nodes differ everywhere: every node and weight is placed right."""
    def field(x, y):
        return {"a": (x * 0.37 + y * 1.91).to(torch.float32), "b": torch.sin(x * 1e-3 + y * 7e-4).to(torch.float32)}

    for spread, offset in ((900.0, -3e4), (3e5, 0.0)):
        x, y = points(4000, spread, offset, seed=3)
        assert_same_bits(*compiled_and_torch(monkeypatch, built, lambda: lattice.at_points(field, x, y, 16.0)))
