"""Stand-ins for what is far: ground grids for the far tiles of a level-0 chunk's ground (samples
of the triangulated surface, errors checked against an independent trimesh ray cast of the grids,
square tiles that lose no triangle) and crown-only models for far trees; a far view drawn with
and without them (no hole below the skyline, the same depth and classes)."""

from __future__ import annotations

import asyncio

import numpy as np
import trimesh
from scipy.spatial import Delaunay

from worldstream.core import CLASS_IDS, World, WorldSpec
from worldstream.render import NO_HIT_DEPTH, Intrinsics, Pose, Renderer
from worldstream.render.culling import square_tile_triangles
from worldstream.render.ground_grid import STRIDES, choose_strides, ground_grid, sample_surfaces
from worldstream.render.view import WorldView

N, TILES, EXTENT = 64, 2, 640.0  # a 64-sample chunk, 10 m apart, in 2 x 2 tiles of 32 samples


def hills(n: int = N) -> np.ndarray:
    """(n + 1, n + 1) float64 smooth bumps, row 0 south."""
    r, c = np.mgrid[0:n + 1, 0:n + 1] / n
    return 40.0 * np.sin(7.0 * c) * np.cos(5.0 * r) + 25.0 * np.sin(13.0 * r + 2.0 * c) + 60.0 * r


def irregular_surface(heights: np.ndarray, keep: float = 0.3, seed: int = 5):
    """A triangulation of a random subset of the samples (corners and borders kept): (positions (V, 3)
    float32, triangles (T, 3) uint32), like the exporters' TIN."""
    n = heights.shape[0] - 1
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:n + 1, 0:n + 1]
    chosen = (rng.random(r.shape) < keep) | (r == 0) | (r == n) | (c == 0) | (c == n)
    rows, cols = r[chosen], c[chosen]
    res = EXTENT / n
    positions = np.stack([cols * res, rows * res, heights[rows, cols]], axis=1).astype(np.float32)
    return positions, Delaunay(positions[:, :2]).simplices.astype(np.uint32)


def test_samples_are_the_surfaces_own_interpolation():
    plane = 3.0 + 0.2 * np.mgrid[0:N + 1, 0:N + 1][1] * EXTENT / N - 0.05 * np.mgrid[0:N + 1, 0:N + 1][0] * EXTENT / N
    positions, triangles = irregular_surface(plane)
    assert np.abs(sample_surfaces([(positions, triangles)], N, EXTENT) - plane).max() < 1e-3  # a plane, exactly
    positions, triangles = irregular_surface(hills())
    sampled = sample_surfaces([(positions, triangles)], N, EXTENT)
    rows, cols = (np.rint(positions[:, 1] / (EXTENT / N)).astype(int), np.rint(positions[:, 0] / (EXTENT / N)).astype(int))
    assert np.abs(sampled[rows, cols] - positions[:, 2]).max() < 1e-3  # at the vertices, their heights
    mesh = trimesh.Trimesh(positions.astype(np.float64), triangles.astype(np.int64), process=False)
    down = vertical_ray_heights(mesh, N)
    assert np.abs(sampled - down).max() < 1e-3  # elsewhere, what a ray down through the triangles finds
    # a raised second surface over part of the chunk wins; a chunk with a hole has no samples
    raised = positions + np.array([0, 0, 5.0], np.float32)
    assert sample_surfaces([(positions, triangles), (raised, triangles[:10])], N, EXTENT).max() > sampled.max() - 1e-3
    assert sample_surfaces([(positions, triangles[10:])], N, EXTENT) is None


def vertical_ray_heights(mesh: trimesh.Trimesh, n: int) -> np.ndarray:
    """(n + 1, n + 1) highest hit of a ray straight down at each sample point of the chunk."""
    r, c = np.mgrid[0:n + 1, 0:n + 1]
    res = EXTENT / n
    # a hair inside the square so that rays at its border meet the triangles
    x, y = np.clip(c * res, 1e-4, EXTENT - 1e-4).ravel(), np.clip(r * res, 1e-4, EXTENT - 1e-4).ravel()
    origins = np.stack([x, y, np.full_like(x, 1e4)], axis=1)
    hits, rays, _ = mesh.ray.intersects_location(origins, np.tile([0.0, 0.0, -1.0], (len(x), 1)), multiple_hits=False)
    out = np.full(len(x), np.nan)
    out[rays] = hits[:, 2]
    return out.reshape(n + 1, n + 1)


def test_each_grid_departs_from_the_samples_by_its_measured_error_and_no_more():
    heights = hills()
    grid = ground_grid(heights, EXTENT, TILES)
    assert grid.errors.shape == (TILES * TILES, len(STRIDES)) and (grid.errors[:, -1] > grid.errors[:, 0]).all()
    for k, s in enumerate(STRIDES):
        for tile in range(TILES * TILES):
            first, count = grid.starts[k, tile], grid.counts[k, tile]
            tris = grid.triangles[first:first + count].astype(np.int64)
            flat = np.ptp(grid.positions[tris][:, :, :2], axis=1).min(axis=1) > 0  # the grid; skirts are vertical
            mesh = trimesh.Trimesh(grid.positions.astype(np.float64), tris[flat], process=False)
            tr, tc = divmod(tile, TILES)
            t = N // TILES
            down = vertical_ray_heights(mesh, N)[tr * t:tr * t + t + 1, tc * t:tc * t + t + 1]
            truth = heights[tr * t:tr * t + t + 1, tc * t:tc * t + t + 1]
            assert np.isfinite(down).all(), (s, tile)  # the grid covers its whole square
            assert abs(np.abs(down - truth).max() - grid.errors[tile, k]) < 1e-3, (s, tile)
            skirt = tris[~flat]
            assert len(skirt) == 8 * (t // s)  # two triangles under each edge segment of the tile
            depth = np.ptp(grid.positions[skirt][:, :, 2], axis=1)  # each hangs from the edge below twice the worst error
            assert (depth >= 2 * grid.errors[tile].max()).all(), (s, tile)


def test_far_tiles_take_coarser_grids_and_near_ones_none():
    grid = ground_grid(hills(), EXTENT, TILES)
    near = choose_strides(grid, np.array([-1.0, -1.0, -200.0]), focal=128.0)  # the camera just off the south-west corner
    far = choose_strides(grid, np.array([50000.0, 0.0, -200.0]), focal=128.0)
    assert near[0] == -1 and (far == len(STRIDES) - 1).all()


def test_square_tiles_keep_every_triangle_and_put_the_overhanging_ones_last():
    positions, triangles = irregular_surface(hills(), keep=0.05)
    tiled, starts, counts, inside, boxes = square_tile_triangles(positions, triangles, 4, EXTENT)
    assert sorted(map(tuple, tiled.tolist())) == sorted(map(tuple, triangles.tolist()))
    size = EXTENT / 4
    for tile in range(16):
        tr, tc = divmod(tile, 4)
        corners = positions[tiled[starts[tile]:starts[tile] + counts[tile]].astype(np.int64)][:, :, :2]
        lo, hi = np.array([tc, tr]) * size - 1e-3, np.array([tc + 1, tr + 1]) * size + 1e-3
        within = ((corners >= lo) & (corners <= hi)).all(axis=(1, 2))
        assert within[:inside[tile]].all() and not within[inside[tile]:].any()
    assert (counts > inside).any()  # some do overhang


def test_a_far_view_with_stand_ins_has_the_same_depth_and_classes_and_no_holes(renderer):
    world = World(WorldSpec(seed=7), cache_chunks=64)
    view = WorldView(world, renderer=renderer)
    intr = Intrinsics(256, 144, 90)
    x, y = 3000.0, -3000.0
    _, surface = world.height_at(np.array([x]), np.array([y]), level=6)
    pose = Pose.from_angles((x, y, float(surface[0]) + 40.0), yaw_deg=45.0, pitch_deg=-20.0)
    chunks = asyncio.run(view.chunks_for(pose, intr))
    assert any(c.ground is not None for c in chunks)
    with_grids = renderer.render(chunks, pose, intr)
    drawn_with = renderer.triangles_drawn
    plain = Renderer(ground_error_px=0.0, tree_error_px=0.0)
    try:
        without = plain.render(chunks, pose, intr)
        drawn_without = plain.triangles_drawn
    finally:
        plain.close()
    assert drawn_with < 0.75 * drawn_without
    a, b = with_grids.depth_planar, without.depth_planar
    ground_a, ground_b = a < NO_HIT_DEPTH, b < NO_HIT_DEPTH
    sky_b = np.pad(~ground_b, 2)
    lost = np.argwhere(ground_b & ~ground_a)  # sky where the ground was: only on the skyline, from the 1 px error
    assert len(lost) < 0.002 * a.size and all(sky_b[r:r + 5, c:c + 5].sum() > 1 for r, c in lost)
    both = ground_a & ground_b
    rel = np.abs(a[both] - b[both]) / b[both]
    assert np.median(rel) < 1e-4 and np.quantile(rel, 0.98) < 0.01
    assert (with_grids.classes == without.classes).mean() > 0.99
    trees = [(f.classes == CLASS_IDS["tree"]).sum() for f in (with_grids, without)]
    assert trees[1] > 1000 and abs(trees[0] - trees[1]) < 0.02 * trees[1]
