"""Trees: in the DSM, the class and instance rasters and the chunk's tree list, all agreeing; placed
where the land says (not on roads, in houses or in water); the same trees from every chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldstream.core import ChunkKey
from worldstream.core.settlements import footprint_local
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
            s, u, w, h = footprint_local(b, t.x, t.y)
            assert not (-1.0 <= s <= w + 1.0 and -1.0 <= u <= h + 1.0), (t, b)
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


RIVERSIDE = ChunkKey(6, -9, -4)  # seed 7: a river through woods


def test_no_tree_is_rooted_in_water_and_crowns_end_at_the_shore(world):
    c = world.chunk(RIVERSIDE)
    assert c.water.mean() > 0.05 and len(c.trees) > 100
    x = torch.tensor([t.x for t in c.trees], dtype=torch.float64)
    y = torch.tensor([t.y for t in c.trees], dtype=torch.float64)
    assert not world.generator.water_at(x, y).any()
    assert (c.canopy[c.water] == 0).all()
    # every tree id on a pixel is a listed tree of this chunk or a neighbour: no unlisted crown
    listed = {t.id for t in neighbourhood_trees(world, RIVERSIDE)}
    on_tree = c.semantic == CLASS_IDS["tree"]
    assert set(np.unique(c.instances[on_tree]).tolist()) <= listed


@pytest.mark.parametrize("key", [VILLAGE, RIVERSIDE])
def test_point_queries_give_the_grid_bits_along_a_chunk_border(world, key):
    """The separable-grid path (chunks) and the point path (collisions, height_at) evaluate tree
    candidates differently; along the chunk's west border and a row through it, both agree on the
    crown height and the tree id."""
    c = world.chunk(key)
    xs, ys = sample_grid(c)
    grid_x = torch.tensor(xs, dtype=torch.float64).reshape(1, -1)
    grid_y = torch.tensor(ys, dtype=torch.float64).reshape(-1, 1)
    gen = world.generator
    west, south, east, north = c.bounds
    veg = gen.vegetation_nodes(west, south, east, north)
    from worldstream.core.vegetation import canopy
    grid = canopy(world.spec.seed, grid_x, grid_y, veg, gen.point_blocks())
    pts_x = np.concatenate([np.full(len(ys), xs[0]), xs])
    pts_y = np.concatenate([ys, np.full(len(xs), ys[100])])
    crown, ids = world.trees_at(pts_x, pts_y)
    expect_h = np.concatenate([grid["height"].numpy()[:, 0], grid["height"].numpy()[100, :]])
    expect_id = np.concatenate([grid["id"].numpy()[:, 0], grid["id"].numpy()[100, :]]).astype(np.uint32)
    assert np.array_equal(crown, expect_h) and np.array_equal(ids, expect_id)
    assert (crown > 0).sum() > 20


def test_vegetation_zero_means_no_trees_at_any_level():
    from worldstream.core import World, WorldSpec
    bare = World(WorldSpec(seed=7, generator_params=(("vegetation", 0),)), cache_chunks=0)
    for key in (FOREST, COARSE_FOREST):
        c = bare.chunk(key)
        assert c.trees == () and not c.canopy.any()
        assert not (c.semantic == CLASS_IDS["tree"]).any()


def test_lattice_points_spread_far_apart_get_the_same_bits_as_on_a_grid(world):
    """The water test at trunks goes through lattice.at_points, whose clustered-points path
    evaluates each distinct node once: the values must be those of the chunk grid."""
    from worldstream.core import lattice
    c = world.chunk(RIVERSIDE)
    xs, ys = sample_grid(c)
    pick = [(0, 0), (3, 250), (128, 17), (256, 256)]
    far_x = torch.tensor([xs[j] for i, j in pick] + [xs[5] + 40000.0], dtype=torch.float64)
    far_y = torch.tensor([ys[i] for i, j in pick] + [ys[5] - 40000.0], dtype=torch.float64)
    got = lattice.at_points(world.generator.macro, far_x, far_y, 16.0)["wetness"]
    assert np.array_equal((got[:4] > 0).numpy(), np.array([c.water[i, j] for i, j in pick]))
    one_by_one = [lattice.at_points(world.generator.macro, far_x[k:k + 1], far_y[k:k + 1], 16.0)["wetness"][0]
                  for k in range(5)]
    assert torch.equal(got, torch.stack(one_by_one))


def test_many_points_are_evaluated_in_batches_with_the_same_bits(world):
    """`canopy` at more than POINT_BATCH scattered points runs in batches (its candidate pairs
    held 80 MB for a level-0 chunk); every point gets the bits of one evaluation of them all."""
    from worldstream.core import vegetation

    c = world.chunk(FOREST)
    gen = world.generator
    west, south, east, north = c.bounds
    veg = gen.vegetation_nodes(west, south, east, north)
    rng = np.random.default_rng(4)
    n = 2 * vegetation.POINT_BATCH + 123
    x = torch.tensor(rng.uniform(west, east, n), dtype=torch.float64).reshape(-1, 1).expand(-1, 1)
    y = torch.tensor(rng.uniform(south, north, n), dtype=torch.float64).reshape(-1, 1)
    batched = vegetation.canopy(world.spec.seed, x, y, veg, gen.point_blocks())
    whole = vegetation._canopy_at_points(world.spec.seed, x, y, veg, gen.point_blocks())
    assert batched.keys() == whole.keys()
    for k in whole:
        assert batched[k].shape == whole[k].shape == (n, 1) and torch.equal(batched[k], whole[k]), k
    assert (whole["height"] > 0).sum() > 100  # a forest: many points under crowns


@pytest.mark.parametrize("key", [FOREST, COARSE_FOREST])
def test_a_grid_cell_table_made_in_bands_of_rows_has_the_bits_of_one_made_at_once(world, key, monkeypatch):
    from worldstream.core import vegetation

    c = world.chunk(key)
    xs, ys = sample_grid(c)
    x = torch.tensor(xs, dtype=torch.float64).reshape(1, -1)
    y = torch.tensor(ys, dtype=torch.float64).reshape(-1, 1)
    gen = world.generator
    veg = gen.vegetation_nodes(*c.bounds)
    tables = []
    for batch in (300, 10**9):  # bands of a few rows; one band
        monkeypatch.setattr(vegetation, "POINT_BATCH", batch)
        for heights_only in (False, True):
            tables.append(vegetation.grid_table(world.spec.seed, x, y, veg, gen.point_blocks(), heights_only))
    for banded, whole in zip(tables[:2], tables[2:]):
        assert banded.nrow * banded.ncol > 3 * 300  # several bands
        assert banded.cells.keys() == whole.cells.keys()
        assert all(torch.equal(banded.cells[k], whole.cells[k]) for k in whole.cells)
    assert int(tables[0].cells["present"].sum()) > 50
