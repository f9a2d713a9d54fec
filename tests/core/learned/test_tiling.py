"""The window grid, blending weights, noise fields and the cascade's request independence (stub model)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from worldstream.core.errors import GeneratorError
from worldstream.core.generators.learned.cascade import Cascade
from worldstream.core.generators.learned.tiling import Tiling, blend, blend_weights, gaussian_field, window_noise


@settings(max_examples=60, deadline=None)
@given(row0=st.integers(-10**6, 10**6), col0=st.integers(-10**6, 10**6), h=st.integers(1, 50), w=st.integers(1, 50),
       size=st.sampled_from([4, 8, 16]), overlap=st.booleans())
def test_every_pixel_is_covered_by_the_listed_windows_only(row0, col0, h, w, size, overlap):
    t = Tiling(size, overlap=overlap)
    count = np.zeros((h, w), dtype=int)
    for i, j in t.covering(row0, col0, h, w):
        r, c = t.origin(i, j)
        rows = slice(max(r, row0) - row0, min(r + size, row0 + h) - row0)
        cols = slice(max(c, col0) - col0, min(c + size, col0 + w) - col0)
        assert rows.stop > rows.start and cols.stop > cols.start  # every listed window touches the region
        count[rows, cols] += 1
    assert (count == (4 if overlap else 1)).all()


def test_blending_identical_windows_returns_them_unchanged():
    t = Tiling(16)
    field = lambda r0, c0, h, w: np.sin(np.add.outer(np.arange(r0, r0 + h) * 0.37, np.arange(c0, c0 + w) * 0.11))[None]
    windows = {(i, j): field(*t.origin(i, j), 16, 16).astype(np.float32) for i, j in t.covering(-13, 5, 40, 29)}
    out = blend(t, windows, -13, 5, 40, 29)
    assert np.abs(out - field(-13, 5, 40, 29)).max() < 1e-5
    w = blend_weights(t)
    assert w.min() > 0
    profile = np.sqrt(np.diag(w))  # the weights are the outer product of one profile with itself
    assert np.allclose(profile[:8] + profile[8:], 1.0, atol=1e-6)  # partition of unity at 50% overlap


def test_overlapping_windows_start_from_identical_noise_and_ablations_do_not():
    shared, own = Tiling(16), Tiling(16, shared_noise=False)
    a, right = window_noise(3, 5, shared, -2, 7, 3), window_noise(3, 5, shared, -2, 8, 3)
    below = window_noise(3, 5, shared, -1, 7, 3)
    assert torch.equal(a[:, :, 8:], right[:, :, :8]) and torch.equal(a[:, 8:, :], below[:, :8, :])
    b, b_right = window_noise(3, 5, own, -2, 7, 3), window_noise(3, 5, own, -2, 8, 3)
    assert not torch.equal(b[:, :, 8:], b_right[:, :, :8])
    assert not torch.equal(window_noise(3, 6, shared, -2, 7, 3), a)  # levels differ
    assert not torch.equal(window_noise(4, 5, shared, -2, 7, 3), a)  # seeds differ


def test_noise_field_is_standard_normal_and_cut_consistently():
    big = gaussian_field(99, -200, 10**9, 256, 256, 2)
    assert abs(float(big.mean())) < 0.02 and abs(float(big.std()) - 1) < 0.02
    assert abs(float(torch.corrcoef(torch.stack([big[0].flatten(), big[1].flatten()]))[0, 1])) < 0.02
    assert abs(float(torch.corrcoef(torch.stack([big[0, :, :-1].flatten(), big[0, :, 1:].flatten()]))[0, 1])) < 0.02
    assert torch.equal(gaussian_field(99, -150, 10**9 + 30, 7, 9, 2), big[:, 50:57, 30:39])


class StubModel:
    """A pure function of (noise, condition, resolution), with a context-dependent term so windows
    that overlap still disagree a little, as real ones do."""

    channels, scale_factor, noise_channels, noise_cell, window_multiple = 3, 2, 3, 1, 4

    def sample(self, noise, condition, resolution):
        up = torch.nn.functional.interpolate(condition, scale_factor=2, mode="bilinear", align_corners=False)
        ctx = noise.mean(dim=(2, 3), keepdim=True)
        return torch.tanh(up + 0.1 * noise + ctx + 0.01 * resolution)


def smooth_root(level, r0, c0, h, w):
    rr = np.arange(r0, r0 + h).reshape(-1, 1) * 0.21
    cc = np.arange(c0, c0 + w).reshape(1, -1) * 0.13
    return (0.7 * np.stack([np.sin(rr + cc), np.cos(rr - cc), np.sin(rr * cc * 0.01)])).astype(np.float32)


def make_cascade(model=None, cache_mb=64.0, tiling=Tiling(16)):
    return Cascade(model or StubModel(), tiling, 11, smooth_root, 1, lambda level: 64.0 / 2**level,
                   cache_mb=cache_mb)


@pytest.mark.parametrize("cache_mb", [64.0, 0.0])
def test_a_region_does_not_depend_on_how_or_in_what_order_it_was_asked_for(cache_mb):
    whole = make_cascade().region(4, -37, 21, 45, 51)
    assert whole.shape == (3, 45, 51) and whole.dtype == np.float32
    c = make_cascade(cache_mb=cache_mb)
    c.region(2, 100, -300, 10, 10)  # unrelated work first
    pieces = {}
    for r0, c0, h, w in [(-37 + 30, 21 + 20, 15, 31), (-37, 21, 30, 20), (-37 + 30, 21, 15, 20), (-37, 21 + 20, 30, 31)]:
        pieces[(r0, c0)] = c.region(4, r0, c0, h, w)
    top = np.concatenate([pieces[(-37, 21)], pieces[(-37, 41)]], axis=2)
    bottom = np.concatenate([pieces[(-7, 21)], pieces[(-7, 41)]], axis=2)
    assert np.array_equal(np.concatenate([top, bottom], axis=1), whole)


def test_windows_are_cached_and_the_cascade_reaches_the_root():
    c = make_cascade()
    c.region(3, 0, 0, 16, 16)
    first = c.windows_sampled
    assert first > 0
    c.region(3, 4, 4, 8, 8)
    assert c.windows_sampled == first  # served from the cache
    root_only = make_cascade().region(0, 0, 0, 8, 8)
    assert np.array_equal(root_only, smooth_root(0, 0, 0, 8, 8))


def test_bad_cascade_setups_are_refused():
    with pytest.raises(GeneratorError, match="multiple of the scale factor"):
        make_cascade(tiling=Tiling(6))
    with pytest.raises(GeneratorError, match="even number"):
        Tiling(7)
    with pytest.raises(GeneratorError, match="no level"):
        Cascade(StubModel(), Tiling(16), 0, smooth_root, 0, lambda level: 1.0)
