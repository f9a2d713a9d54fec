"""Training the cascade denoiser: degradation, the loss falls, checkpoints resume exactly, data errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from worldstream.core.generators.learned.degradation import degrade
from worldstream.core.generators.learned.storage import load_cascade
from worldstream.core.generators.learned.training import TrainingError, p2_weights, train_cascade
from worldstream.core.generators.learned.training_data import PairSampler, TrainingDataError, load_images

from .tiny import tiny_config, write_training_images


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_training_images(tmp_path_factory.mktemp("data"))


def test_degradation_is_seeded_and_shrinks_by_the_scale_factor():
    hr = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    a = degrade(hr, 2, np.random.default_rng(5))
    b = degrade(hr, 2, np.random.default_rng(5))
    assert a.shape == (16, 16, 3) and a.dtype == np.float32 and np.array_equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert degrade(hr, 4, np.random.default_rng(5)).shape == (8, 8, 3)
    # degradation removes high frequencies: the condition is smoother than a plain 2x2 mean of the input
    mean2 = hr.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(np.diff(a, axis=1)).mean() < np.abs(np.diff(mean2, axis=1)).mean()


def test_pairs_cover_random_target_resolutions(data, tmp_path):
    images = load_images(data, default_mpp=2.0, min_size=16)
    assert len(images) == 6 and {im.resolution_source for im in images} == {"default"}
    sampler = PairSampler(images, 16, 2, octaves=2, seed=1)
    assert sampler.target_resolutions == [2.0, 4.0, 8.0]
    hr, lr, mpp = sampler.batch(12)
    assert hr.shape == (12, 3, 16, 16) and lr.shape == (12, 3, 8, 8) and set(mpp.tolist()) <= {2.0, 4.0, 8.0}
    assert -1 <= hr.min() and hr.max() <= 1
    # a GeoTIFF's pixel size is its resolution
    import tifffile
    geo = tmp_path / "geo"
    geo.mkdir()
    tifffile.imwrite(geo / "a.tif", np.zeros((20, 20, 3), np.uint8), extratags=[(33550, 12, 3, (0.5, 0.5, 0.0))])
    (im,) = load_images(geo, default_mpp=9.0, min_size=16)
    assert im.metres_per_pixel == 0.5 and im.resolution_source == "geotiff"


def test_training_data_errors_say_what_was_expected(tmp_path):
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_images(tmp_path / "none", 1.0, 16)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(TrainingDataError, match="at least 16 x 16"):
        load_images(tmp_path, 1.0, 16)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TrainingDataError, match="broken.png"):
        load_images(tmp_path, 1.0, 16)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_size=12), "power of two"), (dict(scale_factor=3), "2 or 4"),
    (dict(block_out_channels=(8, 10)), "multiple of the norm groups"), (dict(steps=0), "steps must be"),
    (dict(sample_size=8, block_out_channels=(4, 4, 4, 4)), "below 2 px")])
def test_bad_training_configurations_are_refused(kwargs, message):
    with pytest.raises(TrainingError, match=message):
        tiny_config(**kwargs)


def test_p2_weighting_favours_noisy_steps():
    ac = torch.linspace(0.999, 0.01, 1000)
    t = torch.tensor([10, 500, 990])
    assert torch.equal(p2_weights(ac, t, 0.0, 1.0), torch.ones(3))
    w = p2_weights(ac, t, 1.0, 1.0)
    assert w[0] < w[1] < w[2]


def test_tiny_model_trains_the_loss_falls_and_the_folder_loads(data, tmp_path):
    out = tmp_path / "models"
    summary = train_cascade(data, out, tiny_config(steps=60))
    log = [json.loads(line) for line in (out / "training" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(5, 61, 5))
    first, last = np.mean([r["loss"] for r in log[:3]]), np.mean([r["loss"] for r in log[-3:]])
    assert last < 0.8 * first, (first, last)
    assert summary["final_loss"] < summary["first_loss"]
    png = Image.open(out / "training" / "loss.png")
    assert png.size == (800, 450)
    den, _, card = load_cascade(out)
    assert card["steps"] == 60 and card["images"] == 6 and den.config.sample_size == 16
    assert "target resolutions" in (out / "README.md").read_text()
    assert sorted(p.name for p in (out / "training" / "checkpoints").iterdir()) == ["step-0000040", "step-0000060"]


def test_resume_continues_exactly_where_the_checkpoint_stopped(data, tmp_path):
    straight = tmp_path / "straight"
    train_cascade(data, straight, tiny_config(steps=40))
    split = tmp_path / "split"
    train_cascade(data, split, tiny_config(steps=20))
    with pytest.raises(TrainingError, match="--resume"):
        train_cascade(data, split, tiny_config(steps=40))
    summary = train_cascade(data, split, tiny_config(steps=40), resume=True)
    assert summary["resumed_from"] == 20
    a, _, _ = load_cascade(straight)
    b, _, _ = load_cascade(split)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    with pytest.raises(TrainingError, match="different configuration"):
        train_cascade(data, split, tiny_config(steps=60, learning_rate=1e-4), resume=True)
