"""Trees: in the DSM, the class and instance rasters and the chunk's tree list, all agreeing; placed
where the land says (not on roads, in houses or in water); the same trees from every chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldstream.core import ChunkKey
from worldstream.core.biomes import CLASS_IDS
from worldstream.core.vegetation import KINDS, SETTINGS, TREE_ID_BIT, crown_height

FOREST = ChunkKey(6, 3, 5)  # seed 7: a forest edge with fields, 1 m/px
VILLAGE = ChunkKey(6, 11, -12)  # seed 7: houses on a hill, 1 m/px
COARSE_FOREST = ChunkKey(3, -1, 1)  # seed 7: about a third tree cover at 8 m/px


def neighbourhood_trees(world, key):
    return [t for dx in (-1, 0, 1) for dy in (-1, 0, 1)
            for t in world.chunk(ChunkKey(key.level, key.x + dx, key.y + dy)).trees]


def sample_grid(c):
    n = c.dem.shape[0]
    west, _, _, north = c.bounds
    return west + np.arange(n) * c.resolution, north - np.arange(n) * c.resolution


@pytest.mark.parametrize("key", [FOREST, VILLAGE])
def test_the_dsm_carries_exactly_the_listed_trees_crowns(world, key):
    c = world.chunk(key)
    trees = neighbourhood_trees(world, key)
    assert len(c.trees) > (300 if key == FOREST else 20)
    xs, ys = sample_grid(c)
    px = torch.tensor(xs, dtype=torch.float64)
    py = torch.tensor(ys, dtype=torch.float64)
    expect = torch.zeros(c.dem.shape, dtype=torch.float32)
    res, (west, _, _, north) = c.resolution, c.bounds
    for t in trees:  # the crown formula the generator uses, tree by tree from the lists, over its window
        j0, j1 = max(0, int((t.x - 6 - west) / res)), min(len(xs), int((t.x + 6 - west) / res) + 2)
        i0, i1 = max(0, int((north - t.y - 6) / res)), min(len(ys), int((north - t.y + 6) / res) + 2)
        if j0 >= j1 or i0 >= i1:
            continue
        dx = (px[j0:j1].reshape(1, -1) - t.x).to(torch.float32)
        dy = (py[i0:i1].reshape(-1, 1) - t.y).to(torch.float32)
        z = crown_height(dx * dx + dy * dy, torch.tensor(t.height, dtype=torch.float32),
                         torch.tensor(t.crown_radius, dtype=torch.float32), torch.tensor(KINDS.index(t.kind)))
        expect[i0:i1, j0:j1] = torch.maximum(expect[i0:i1, j0:j1], z)
    expect = expect.numpy()
    dry = ~c.water
    # trees rooted in water are not listed, their crowns over dry land are in the DSM: none here
    assert np.array_equal(c.canopy[dry], expect[dry])
    assert (c.canopy[c.water] == 0).all()
    raised = c.canopy > 0
    assert raised.mean() > (0.3 if key == FOREST else 0.01)
    assert (c.dsm[raised] >= c.dem[raised] + c.canopy[raised]).all()


def test_tree_pixels_ids_and_list_agree(world):
    c = world.chunk(FOREST)
    on_tree = c.semantic == CLASS_IDS["tree"]
    assert on_tree.mean() > 0.3
    ids = c.instances[on_tree]
    assert (ids >= TREE_ID_BIT).all()
    listed = {t.id for t in neighbourhood_trees(world, FOREST)}
    assert set(np.unique(ids).tolist()) <= listed
    own = {t.id for t in c.trees}
    assert len(own) == len(c.trees)  # ids are unique
    assert len(set(np.unique(ids).tolist()) & own) > 0.9 * len(own)  # nearly every tree shows from above
    west, south, east, north = c.bounds
    for t in c.trees:
        assert west <= t.x < east and south <= t.y < north and t.id & TREE_ID_BIT
        assert 3.0 <= t.height <= 40.0 and 0.5 <= t.crown_radius <= 5.5
        assert t.kind in KINDS and t.setting in SETTINGS


def test_trees_stand_on_the_ground_not_on_roads_houses_or_water(world):
    c = world.chunk(VILLAGE)
    west, _, _, north = c.bounds
    res = c.resolution
    settings = {t.setting for t in c.trees}
    assert {"garden", "street"} <= settings  # village trees, not forest
    ground, _ = world.height_at(np.array([t.x for t in c.trees]), np.array([t.y for t in c.trees]),
                                level=c.key.level)
    assert np.allclose([t.ground for t in c.trees], ground, atol=1e-3)
    for t in c.trees:
        j, i = int((t.x - west) / res), int((north - t.y) / res)
        # the trunk's pixel: only the crown of a (possibly other) tree or the ground cover
        for b in c.buildings:
            (x0, y0), _, (x1, y1), _ = b.footprint
            assert not (x0 - 1.0 <= t.x <= x1 + 1.0 and y0 - 1.0 <= t.y <= y1 + 1.0), (t, b)
        assert c.semantic[i, j] not in (CLASS_IDS["road"], CLASS_IDS["water"], CLASS_IDS["building"])


def test_coarse_levels_keep_the_crowns_as_relief_and_tree_cover(world):
    c = world.chunk(COARSE_FOREST)
    assert c.trees == ()  # too many to list at 8 m/px
    assert (c.canopy > 5.0).mean() > 0.2
    assert (c.semantic == CLASS_IDS["tree"]).mean() > 0.2
    assert (c.instances[c.semantic == CLASS_IDS["tree"]] == 0).all()


def test_point_queries_find_the_chunk_trees(world):
    c = world.chunk(FOREST)
    xs, ys = sample_grid(c)
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, len(ys), 300), rng.integers(0, len(xs), 300)
    crown, _ = world.trees_at(xs[j], ys[i])
    dry = ~c.water[i, j]
    assert np.array_equal(crown[dry], c.canopy[i, j][dry])


def test_point_queries_where_no_tree_can_be_and_with_no_points(world):
    crown, ids = world.trees_at([9000.0], [-9000.0])  # high mountains: no candidate within reach
    assert crown.tolist() == [0.0] and ids.tolist() == [0]
    ground, surface = world.height_at([9000.0], [-9000.0])
    assert surface[0] == ground[0]
    crown, ids = world.trees_at([], [])
    assert crown.shape == ids.shape == (0,)
