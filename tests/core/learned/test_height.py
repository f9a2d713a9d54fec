"""The height model p(heights | ortho): the metres scheme, training, save/load, seamless tiling, the
learned world's height stage, and refusals. Tiny models built in code (CPU, seconds)."""

import json
import os
import pathlib
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from worldstream.core import ChunkKey, World, WorldSpec
from worldstream.core.errors import GeneratorError
from worldstream.core.generators.learned.cascade import Cascade
from worldstream.core.generators.learned.generator import chunk_raster_origin
from worldstream.core.generators.learned.height_data import HeightPairSampler, load_height_pairs
from worldstream.core.generators.learned.height_range import HeightRange, coarse_heights, upsample_corners
from worldstream.core.generators.learned.height_sampling import HeightWindowModel
from worldstream.core.generators.learned.height_storage import load_height, save_height
from worldstream.core.generators.learned.height_training import HeightTrainConfig, build_net, train_height
from worldstream.core.generators.learned.storage import ModelFolderError, model_stages, models_digest
from worldstream.core.generators.learned.tiling import Tiling
from worldstream.core.generators.learned.training_data import TrainingDataError
from worldstream.core.generators.learned.training_loop import TrainingError
from worldstream.exporters.sidecars import chunk_sidecars

from .processes import output, running
from .test_tiling import smooth_root

TINY = dict(window=16, vae_channels=(4, 4), latent_channels=4, unet_channels=(8, 16), norm_num_groups=4,
            embedding_dim=8, text_hidden=8, batch_size=4, learning_rate=2e-3, log_every=5, checkpoint_every=10,
            steps=20)
SPEC = WorldSpec(seed=7, chunk_size=32, levels=7)
TOWN = [ChunkKey(level, x, y) for level in (5, 6) for x, y in ((80 >> (6 - level), -104 >> (6 - level)),
                                                              ((80 >> (6 - level)) + 1, -104 >> (6 - level)))]


def tiny_config(**overrides) -> HeightTrainConfig:
    return HeightTrainConfig(**{**TINY, **overrides})


def write_export(folder: pathlib.Path, keys=TOWN, spec: WorldSpec = SPEC) -> pathlib.Path:
    """An export as `generate --format sidecars` lays it out: world.json, chunks/L/X/Y/{ortho.png,
    height.tif, dem.tif}."""
    world = World(spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "world.json").write_text(spec.to_json())
    for key in keys:
        files = chunk_sidecars(world.chunk(key), spec)
        d = folder / "chunks" / str(key.level) / str(key.x) / str(key.y)
        d.mkdir(parents=True, exist_ok=True)
        for name in ("ortho.png", "height.tif", "dem.tif"):
            (d / name).write_bytes(files[name])
    return folder


def smooth_heights(level, r0, c0, h, w):
    """(2, h, w) metres: a DEM of gentle waves and a DSM with 6 m blocks on it, a pure function of position."""
    rr = np.arange(r0, r0 + h).reshape(-1, 1)
    cc = np.arange(c0, c0 + w).reshape(1, -1)
    dem = 100.0 + 20.0 * np.sin(rr * 0.05 + level) * np.cos(cc * 0.04)
    blocks = ((rr // 5 + cc // 7) % 3 == 0) * 6.0
    return np.stack([dem, dem + blocks]).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_export(tmp_path_factory.mktemp("heightdata") / "export")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("heightmodel") / "height"
    return out, train_height(data, out, tiny_config())


def test_the_metres_scheme_round_trips_and_bounds_each_level_by_the_one_above():
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(3, 2, 8, 8, generator=g) * 300.0
    ref = upsample_corners(coarse)
    assert ref.shape == (3, 2, 16, 16) and torch.equal(ref[..., ::2, ::2], coarse)  # even samples are the coarse ones
    assert torch.allclose(ref[..., 1, 0], (coarse[..., 0, 0] + coarse[..., 1, 0]) / 2)
    hr = HeightRange(min_scale=4.0, relief_gain=0.1)
    scale = hr.scale(coarse)
    assert scale.shape == (3, 1, 1, 1)
    flat = coarse.flatten(1)
    assert torch.allclose(scale.flatten(), 4.0 + 0.1 * (flat.amax(1) - flat.amin(1)))
    inside = ref + scale * (torch.rand(ref.shape, generator=g) * 2 - 1)  # within the window's range
    y = hr.normalise(inside, coarse)
    assert y.abs().max() <= 1.0
    assert torch.allclose(hr.metres(y, coarse), inside, atol=1e-3)  # metres come back (float32 at ~300 m)
    outside = ref + 3.0 * scale
    assert torch.allclose(hr.metres(hr.normalise(outside, coarse), coarse), ref + scale, atol=1e-3)  # clipped at s
    # the coarser level of a linear surface is itself, and upsampling it gives the surface back
    plane = (torch.arange(16.0).reshape(1, -1) * 0.5 + torch.arange(16.0).reshape(-1, 1) * 2.0)[None]
    c = coarse_heights(plane)
    assert c.shape == (1, 8, 8) and torch.allclose(c[:, 1:-1, 1:-1], plane[:, 2:-2:2, 2:-2:2])
    assert torch.allclose(upsample_corners(plane[:, ::2, ::2])[:, :-1, :-1], plane[:, :-1, :-1])
    with pytest.raises(GeneratorError, match="min_scale must be > 0"):
        HeightRange(min_scale=0.0)
    with pytest.raises(GeneratorError, match="relief_gain must be a finite number"):
        HeightRange(relief_gain=-1.0)


def test_pairs_from_exports_and_from_geotiff_pairs(data, tmp_path):
    pairs = load_height_pairs(data, 9.0, 16)
    assert len(pairs) == 4 and {p.metres_per_pixel for p in pairs} == {2.0, 1.0}
    assert all(p.source == "worldstream:worldstream" and p.has_dem for p in pairs)
    dsm = tifffile.imread(data / "chunks" / "6" / "80" / "-104" / "height.tif")
    one = next(p for p in pairs if p.path.endswith("6/80/-104/ortho.png"))
    assert np.array_equal(one.heights[1], dsm[:32, :32]) and (one.heights[1] >= one.heights[0]).all()
    ortho, heights, coarse, mpp = HeightPairSampler(pairs, 16, seed=1).batch(6)
    assert ortho.shape == (6, 3, 16, 16) and heights.shape == (6, 2, 16, 16) and coarse.shape == (6, 2, 8, 8)
    assert -1 <= ortho.min() and ortho.max() <= 1 and set(mpp.tolist()) <= {1.0, 2.0}
    own = tmp_path / "own"
    own.mkdir()
    tifffile.imwrite(own / "a_ortho.tif", np.zeros((20, 20, 3), np.uint8), extratags=[(33550, 12, 3, (0.5, 0.5, 0.0))])
    tifffile.imwrite(own / "a_dsm.tif", np.ones((21, 21), np.float32))
    (p,) = load_height_pairs(own, 9.0, 16)
    assert p.metres_per_pixel == 0.5 and not p.has_dem and np.array_equal(p.heights[0], p.heights[1])
    tifffile.imwrite(own / "b_ortho.tif", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(TrainingDataError, match="b_dsm.tif"):
        load_height_pairs(own, 1.0, 16)
    tifffile.imwrite(own / "b_dsm.tif", np.ones((30, 30), np.float32))
    with pytest.raises(TrainingDataError, match=r"expected 20 x 20 or 21 x 21"):
        load_height_pairs(own, 1.0, 16)
    with pytest.raises(TrainingDataError, match="no \\(ortho, heights\\) pair"):
        load_height_pairs(data / "chunks" / "5", 1.0, 64)  # pairs, all smaller than asked


def test_train_save_load_round_trip(trained, data, tmp_path):
    out, summary = trained
    log = [json.loads(line) for line in (out / "training" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20] and summary["final_loss"] < summary["first_loss"]
    assert Image.open(out / "training" / "loss.png").size == (800, 450)
    assert sorted(p.name for p in (out / "training" / "checkpoints").iterdir()) == ["step-0000010", "step-0000020"]
    net, card = load_height(out)
    assert card["steps"] == 20 and card["pairs"] == 4 and net.window == 16 and net.factor == 2
    assert 0.0 <= card["clipped_fraction"] < 0.05
    copy = save_height(tmp_path / "copy", net, card)
    again, _ = load_height(copy)
    for (name, p), (_, q) in zip(net.unet.state_dict().items(), again.unet.state_dict().items()):
        assert torch.equal(p, q), name
    g = torch.Generator().manual_seed(3)
    noise, coarse = torch.randn(1, 8, 8, 8, generator=g), 50 + 10 * torch.rand(1, 2, 8, 8, generator=g)
    ortho = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    a = HeightWindowModel(net, steps=3).sample(noise, coarse, 1.0, guide=ortho)
    b = HeightWindowModel(again, steps=3).sample(noise, coarse, 1.0, guide=ortho)
    assert a.shape == (1, 2, 16, 16) and a.dtype == torch.float32 and torch.equal(a, b)
    assert (a[:, 1] >= a[:, 0]).all()
    scale = net.height_range.scale(coarse)
    off = (a - upsample_corners(coarse)).abs() <= scale + 1e-3  # within the window's range of the level above
    assert off[:, 0].all() and (off[:, 1] | (a[:, 1] == a[:, 0])).all()  # the DSM, unless raised to the DEM
    # resume: 10 + 10 steps give the weights of 20 straight
    split = tmp_path / "split"
    train_height(data, split, tiny_config(steps=10))
    with pytest.raises(TrainingError, match="--resume"):
        train_height(data, split, tiny_config())
    assert train_height(data, split, tiny_config(), resume=True)["resumed_from"] == 10
    resumed, _ = load_height(split)
    for (name, p), (_, q) in zip(net.unet.state_dict().items(), resumed.unet.state_dict().items()):
        assert torch.equal(p, q), name
    with pytest.raises(TrainingError, match="different configuration"):
        train_height(data, split, tiny_config(steps=30, min_scale=2.0), resume=True)


def height_cascade(net, shared_noise: bool = True) -> Cascade:
    model = HeightWindowModel(net, steps=2)
    return Cascade(model, Tiling(model.window, shared_noise=shared_noise), 5, smooth_heights, 4,
                   lambda level: 64.0 / 2**level, guide=smooth_root)


def whole_and_scrambled_pieces(net) -> tuple[np.ndarray, np.ndarray]:
    """A 24 x 20 level-4 height region asked whole, and stitched from four pieces asked in a
    scrambled order of a fresh cascade (other windows cached, other conditions each time)."""
    whole = height_cascade(net).region(4, -12, 4, 24, 20)
    pieces = height_cascade(net)
    stitched = np.empty_like(whole)
    for (r0, h), (c0, w) in (((-1, 13), (13, 11)), ((-12, 11), (4, 9)), ((-1, 13), (4, 9)), ((-12, 11), (13, 11))):
        stitched[:, r0 + 12:r0 + 12 + h, c0 - 4:c0 - 4 + w] = pieces.region(4, r0, c0, h, w)
    return whole, stitched


OTHER_CPU_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(2)
sys.path.append(sys.argv[1])  # tests/ from the repository; worldstream as this interpreter imports it
from tests.core.learned.test_height import build_net, tiny_config, whole_and_scrambled_pieces
whole, stitched = whole_and_scrambled_pieces(build_net(tiny_config())[0])
print(stitched.tobytes() == whole.tobytes(), hashlib.sha256(whole.tobytes()).hexdigest())
"""


@pytest.fixture(scope="module", autouse=True)
def avx2_process(tmp_path_factory):
    """The seamless-tiling check in another process, on 2 threads, under the AVX2 kernels a CPU
    without AVX-512 runs, with an untrained tiny model built in code; started with the module so
    that it runs beside the other tests (two cores)."""
    repo = str(pathlib.Path(__file__).resolve().parents[3])
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    with running([sys.executable, "-c", OTHER_CPU_SCRIPT, repo], cwd=str(tmp_path_factory.mktemp("avx2")),
                 env=env) as proc:
        yield proc


def test_seamless_tiling_a_region_asked_whole_equals_it_asked_in_scrambled_pieces(trained, avx2_process):
    """Bit for bit, here with the trained model and in another process under other kernels and
    threads (equality of bytes across kernels is not promised, so not asserted)."""
    net, _ = load_height(trained[0])
    whole, stitched = whole_and_scrambled_pieces(net)
    assert whole.shape == (2, 24, 20) and whole.dtype == np.float32
    assert stitched.tobytes() == whole.tobytes()
    assert (whole[1] >= whole[0]).all()
    # overlapping windows start from the same latents; the ablation gives them noise of their own
    shared, own = height_cascade(net), height_cascade(net, shared_noise=False)
    assert not np.array_equal(shared.region(4, 0, 0, 8, 8), own.region(4, 0, 0, 8, 8))
    independent, _ = output(avx2_process).split()
    assert independent == "True"


def test_a_models_folder_with_a_height_part_makes_learned_heights(trained, tmp_path):
    out, _ = trained
    models = tmp_path / "models"
    models.mkdir()
    (models / "height").symlink_to(out, target_is_directory=True)
    assert model_stages(models) == ("height",)
    params = {"models": str(models), "steps": 2, "stages": ["height"], "height_first_level": 5, "height_window": 32,
              "models_sha256": models_digest(models)}
    spec = WorldSpec(seed=7, chunk_size=32, levels=7, generator="learned", generator_params=params)
    world, procedural = World(spec), World(WorldSpec(seed=7, chunk_size=32, levels=7))
    key = ChunkKey(5, 40, -52)
    a, p = world.chunk(key), procedural.chunk(key)
    assert np.array_equal(a.ortho, p.ortho)  # no ortho model: the ortho stays procedural
    assert a.dem.shape == (33, 33) and a.dem.dtype == np.float32 and not np.array_equal(a.dsm, p.dsm)
    assert (a.dsm >= a.dem).all() and np.abs(a.dem - p.dem).max() < 50.0
    assert np.array_equal(world.chunk(ChunkKey(4, 20, -26)).dsm, procedural.chunk(ChunkKey(4, 20, -26)).dsm)
    right = world.chunk(ChunkKey(5, 41, -52))
    assert np.array_equal(a.dsm[:, -1], right.dsm[:, 0])  # neighbours share their border samples
    again = World(spec).generator.heights.region(5, *chunk_raster_origin(key, 32), 33, 33)  # a fresh world, as a region
    assert np.array_equal(again[1], a.dsm) and np.array_equal(again[0], a.dem)
    # point queries (the simulator's ground) follow the learned heights, bilinear like the mesh
    west, _, _, north = a.bounds
    i, j = np.array([0, 5, 32, 17]), np.array([0, 31, 32, 3])
    dem, dsm = world.height_at(west + j * 2.0 + [0, 0, 0, 1.0], north - i * 2.0, 5)
    assert np.allclose(dem[:3], a.dem[i[:3], j[:3]]) and np.allclose(dsm[:3], a.dsm[i[:3], j[:3]])
    assert np.isclose(dsm[3], (a.dsm[17, 3] + a.dsm[17, 4]) / 2)
    # beside an ortho cascade: both stages learned, the heights guided by the learned ortho
    from worldstream.core.generators.learned.sampling import training_scheduler
    from worldstream.core.generators.learned.storage import save_cascade

    from .tiny import tiny_denoiser

    both = save_cascade(tmp_path / "both", tiny_denoiser(), training_scheduler(), {})
    (both / "height").symlink_to(out, target_is_directory=True)
    assert model_stages(both) == ("ortho", "height") and models_digest(both) != models_digest(models)
    params = {**params, "models": str(both), "stages": ["ortho", "height"], "first_level": 5,
              "models_sha256": models_digest(both)}
    learned = World(WorldSpec(seed=7, chunk_size=32, levels=7, generator="learned", generator_params=params))
    c = learned.chunk(key)
    assert not np.array_equal(c.ortho, p.ortho) and not np.array_equal(c.dsm, a.dsm) and (c.dsm >= c.dem).all()


def test_bad_height_folders_and_settings_are_refused(trained, data, tmp_path):
    out, _ = trained
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_height(tmp_path / "none")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFolderError, match="holds no model: expected model_index.json .* height/model_index.json"):
        model_stages(empty)
    with pytest.raises(GeneratorError, match="holds no model"):
        World(WorldSpec(generator="learned", generator_params={"models": str(empty)}))
    net, card = load_height(out)
    broken = save_height(tmp_path / "broken", net, card)
    index = json.loads((broken / "model_index.json").read_text())
    (broken / "model_index.json").write_text(json.dumps({**index, "height": {"range": {"min_scale": -1}}}))
    with pytest.raises(ModelFolderError, match="no valid 'height' scheme"):
        load_height(broken)
    (broken / "model_index.json").write_text(json.dumps({**index, "_class_name": "WorldstreamCascade"}))
    with pytest.raises(ModelFolderError, match="not a WorldstreamHeight"):
        load_height(broken)
    (broken / "model_index.json").write_text(json.dumps(index))
    import shutil
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelFolderError, match=r"lacks its part\(s\) \['vae'\]"):
        load_height(broken)
    models = tmp_path / "models"
    models.mkdir()
    (models / "height").symlink_to(out, target_is_directory=True)
    params = {"models": str(models)}
    for extra, message in (({"stages": ["ortho", "height"]}, "learned stages are .* holds \\['height'\\]"),
                           ({"window": 16}, "apply to an ortho model"),
                           ({"height_window": 10}, "'height_window' must be a multiple of 4"),
                           ({"height_first_level": 0}, "'height_first_level' must be an integer >= 1"),
                           ({"models_sha256": "0" * 64}, "not the one this world was made with")):
        with pytest.raises(GeneratorError, match=message):
            World(WorldSpec(generator="learned", generator_params={**params, **extra}))
    for kwargs, message in ((dict(window=12), "power of two"), (dict(vae_channels=(4,) * 5), "window 16 must be a multiple of 32"),
                            (dict(unet_channels=(8, 10)), "multiple of the norm groups"),
                            (dict(min_scale=0.0), "min_scale must be > 0"), (dict(steps=0), "steps must be")):
        with pytest.raises((TrainingError, GeneratorError), match=message):
            tiny_config(**kwargs)
    with pytest.raises(GeneratorError, match="needs its ortho"):
        HeightWindowModel(net, steps=1).sample(torch.zeros(1, 8, 8, 8), torch.zeros(1, 2, 8, 8), 1.0)
    with pytest.raises(GeneratorError, match="must take 20 and predict 8"):
        type(net)(**{**net.__dict__, "unet": build_net(tiny_config(latent_channels=3))[0].unet})
    with pytest.raises(ModelFolderError, match="--pretrained .* expected a local diffusers folder"):
        train_height(data, tmp_path / "x", tiny_config(pretrained=str(empty)))


def test_cli_trains_a_height_model_and_generate_puts_learned_heights_into_sidecars_and_meshes(data, tmp_path, capsys):
    from worldstream.cli import main

    models = tmp_path / "models"
    assert main(["train", "height", "--data", str(data), "--out", str(models / "height"), "--steps", "2",
                 "--batch-size", "2", "--window", "16", "--channels", "8,16", "--vae-channels", "4,4",
                 "--norm-groups", "4", "--checkpoint-every", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    out = tmp_path / "gen"
    assert main(["generate", "--backend", "learned", "--models", str(models), "--sampling-steps", "1", "--seed", "7",
                 "--chunk-size", "16", "--num-levels", "4", "--levels", "3", "--radius", "10", "--params",
                 '{"height_first_level": 3}', "--format", "sidecars,glb", "--workers", "1", "--quiet",
                 "--out", str(out)]) == 0
    params = json.loads((out / "world.json").read_text())["generator_params"]
    assert params["stages"] == ["height"] and params["models_sha256"] == models_digest(models)
    tifs = sorted(out.rglob("height.tif"))
    assert tifs and all((t.parent / "mesh.glb").is_file() for t in tifs)
    key = ChunkKey(3, *(int(p) for p in tifs[0].parent.parts[-2:]))
    truth = tmp_path / "truth.tif"
    tifffile.imwrite(truth, World(WorldSpec(seed=7, chunk_size=16, levels=4)).chunk(key).dsm)
    learned = World(WorldSpec.from_json((out / "world.json").read_text())).chunk(key)
    assert np.array_equal(tifffile.imread(tifs[0]), learned.dsm)
    capsys.readouterr()
    assert main(["metrics", "heights", str(tifs[0]), str(truth)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["samples"] == 17 * 17 and 0 < scores["rmse_m"] < 50 and scores["mae_m"] <= scores["rmse_m"]
    assert main(["metrics", "seams", str(tifs[0]), "--period", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["seam_gradient"] > 0


def test_pretrained_vae_and_text_encoder_from_a_local_diffusers_folder_stay_frozen(data, tmp_path):
    from .tiny import write_tiny_upscaler

    sd = write_tiny_upscaler(tmp_path / "sd")  # holds vae/ (4x), text_encoder/ and tokenizer/, as an SD folder does
    out = tmp_path / "height"
    summary = train_height(data, out, tiny_config(pretrained=str(sd), steps=2, checkpoint_every=2))
    assert summary["steps"] == 2
    net, card = load_height(out)
    assert net.factor == 4 and net.latent_channels == 32 and card["vae"].startswith("pretrained, frozen")
    from diffusers import AutoencoderKL

    source = AutoencoderKL.from_pretrained(sd / "vae", local_files_only=True, low_cpu_mem_usage=False)
    for (name, p), (_, q) in zip(source.state_dict().items(), net.vae.state_dict().items()):
        assert torch.equal(p, q), name
    assert [p.name for p in (out / "training" / "checkpoints" / "step-0000002").iterdir() if p.is_dir()] == ["unet"]
