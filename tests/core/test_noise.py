import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from worldstream.core import lattice, noise
from worldstream.core.hashing import hash2


def test_noise_is_zero_on_its_lattice_and_bounded():
    o = noise.Octave(16.0, 1234)
    xs = (torch.arange(-40, 40, dtype=torch.float64) * 16.0).reshape(1, -1)
    ys = (torch.arange(-40, 40, dtype=torch.float64) * 16.0).reshape(-1, 1)
    assert torch.count_nonzero(noise.gradient_noise(xs, ys, o)) == 0
    v = noise.gradient_noise(xs + 5.3, ys + 2.1, o)
    assert v.abs().max() < 1.0 and v.std() > 0.05


@settings(max_examples=25, deadline=None)
@given(st.integers(-2**38, 2**38), st.integers(-2**38, 2**38), st.sampled_from([1.0, 7.0, 96.0, 6144.0]))
def test_same_point_same_bits_whatever_the_tensor_shape(ox, oy, spacing):
    """Grid path, full-array path and scattered points agree bit for bit."""
    o = noise.Octave(spacing, 99)
    xs = (torch.arange(37, dtype=torch.float64) + ox) * 0.5
    ys = (torch.arange(23, dtype=torch.float64) + oy) * 0.5
    grid = noise.gradient_noise(xs.reshape(1, -1), ys.reshape(-1, 1), o)
    full = noise.gradient_noise(xs.reshape(1, -1).expand(23, 37).contiguous(),
                                ys.reshape(-1, 1).expand(23, 37).contiguous(), o)
    idx = torch.randperm(37 * 23)[:50]
    pts = noise.gradient_noise(xs.repeat(23)[idx], ys.repeat_interleave(37)[idx], o)
    assert torch.equal(grid, full)
    assert torch.equal(grid.reshape(-1)[idx], pts)


def test_lattice_grid_and_points_agree_bitwise():
    def field(x, y):
        return {"v": noise.gradient_noise(x, y, noise.Octave(100.0, 5)) * 3.0}

    xs = torch.arange(-50, 50, dtype=torch.float64) * 3.0 + 1e9
    ys = torch.arange(-30, 30, dtype=torch.float64) * 3.0 - 2e9
    grid = lattice.on_grid(field, xs, ys, 16.0)["v"]
    pts = lattice.at_points(field, xs.repeat(60), ys.repeat_interleave(100), 16.0)["v"]
    assert torch.equal(grid.reshape(-1), pts)
    # at nodes the interpolation returns the node value exactly
    nodes = torch.arange(0, 10, dtype=torch.float64) * 16.0
    direct = field(nodes.reshape(1, -1), nodes.reshape(-1, 1))["v"]
    assert torch.equal(lattice.on_grid(field, nodes, nodes, 16.0)["v"], direct)


def test_numpy_in_numpy_out_and_torch_in_torch_out():
    x = np.linspace(0, 1000, 11)
    out = noise.noise2(x, x[::-1].copy(), seed=3, spacing=64.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (11,)
    t = noise.noise2(torch.from_numpy(x), torch.from_numpy(x[::-1].copy()), seed=3, spacing=64.0)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), out)


def test_hash_words_are_32_bit_and_well_spread():
    ix = torch.arange(-500, 500, dtype=torch.int64).reshape(1, -1) + 2**40
    iy = torch.arange(-500, 500, dtype=torch.int64).reshape(-1, 1) - 2**40
    h = hash2(ix, iy, 77)
    assert int(h.min()) >= 0 and int(h.max()) < 2**32
    assert torch.unique(h).numel() > 0.999 * h.numel()
    bits = torch.stack([(h >> b) & 1 for b in range(32)]).float().mean(dim=(1, 2))
    assert torch.all((bits - 0.5).abs() < 0.01)


def test_valleys_factor_is_bounded_and_shape_independent():
    octs = noise.octaves(7, 13, 2400.0, 3)
    xs = (torch.arange(300, dtype=torch.float64) * 37.0 - 5000.0).reshape(1, -1)
    ys = (torch.arange(200, dtype=torch.float64) * 41.0 + 2e7).reshape(-1, 1)
    v = noise.valleys(xs, ys, octs, depth=0.45)
    floor = (1 - 0.45) * (1 - 0.45 * 0.8) * (1 - 0.45 * 0.64)
    assert float(v.min()) >= floor - 1e-6 and float(v.max()) <= 1.0
    q = torch.quantile(v.reshape(-1), torch.tensor([0.05, 0.95], dtype=torch.float32))
    assert float(q[0]) < 0.45 and float(q[1]) > 0.85  # deep valley lines and high interfluves
    pts = noise.valleys(xs.expand(200, 300).reshape(-1), ys.expand(200, 300).reshape(-1), octs, depth=0.45)
    assert torch.equal(v.reshape(-1), pts)
