"""The denoiser, DDIM sampling, diffusers-format save/load, and determinism across processes."""

import hashlib
import json
import sys

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from worldstream.core.generators.learned.cascade import Cascade
from worldstream.core.generators.learned.model import resolution_embedding
from worldstream.core.generators.learned.sampling import DDIMWindowModel, training_scheduler
from worldstream.core.generators.learned.storage import ModelFolderError, load_cascade, save_cascade
from worldstream.core.generators.learned.tiling import Tiling

from ..learned.test_tiling import smooth_root
from .processes import output, running
from .tiny import tiny_denoiser


def test_tiny_model_shapes_and_size():
    m = tiny_denoiser()
    params = sum(p.numel() for p in m.parameters())
    assert params < 20_000
    x = torch.randn(2, 3, 16, 16)
    out = m(x, torch.tensor([10, 900]), torch.randn(2, 3, 8, 8), torch.tensor([1.0, 4.0]))
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32


def test_the_target_resolution_changes_the_prediction():
    m = tiny_denoiser()
    for p in m.resolution_mlp.parameters():  # make the embedding's effect visible in a fresh model
        torch.nn.init.normal_(p, std=0.5)
    x, c = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        a = m(x, 500, c, torch.tensor([1.0]))
        b = m(x, 500, c, torch.tensor([2.0]))
    assert (a - b).abs().max() > 1e-4
    e = resolution_embedding(torch.tensor([0.25, 0.5, 64.0, 1e4]), 16)
    assert e.shape == (4, 16) and torch.isfinite(e).all() and (e[0] - e[1]).abs().max() > 0.1


def test_ddim_is_deterministic_with_eta_zero():
    model = DDIMWindowModel(tiny_denoiser(), training_scheduler(), steps=2)
    noise, cond = torch.randn(3, 3, 16, 16), torch.rand(3, 3, 8, 8) * 2 - 1
    a, b = model.sample(noise, cond, 2.0), model.sample(noise, cond, 2.0)
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b) and a.abs().max() <= 1.0
    assert model.scheduler.config.timestep_spacing == "trailing" and len(model.scheduler.timesteps) == 2
    assert not torch.equal(model.sample(noise, cond, 4.0), a)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    den, sch = tiny_denoiser(seed=5), training_scheduler()
    folder = save_cascade(tmp_path / "models", den, sch, {"data": "unit test", "steps": 0})
    assert (folder / "denoiser" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((folder / "denoiser" / "config.json").read_text())["scale_factor"] == 2
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "WorldstreamCascade"
    card = (folder / "README.md").read_text()
    assert "library_name: diffusers" in card and "data: unit test" in card
    den2, sch2, info = load_cascade(folder)
    assert isinstance(sch2, DDIMScheduler) and info["data"] == "unit test"
    noise, cond = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 8, 8) * 2 - 1
    a = DDIMWindowModel(den, sch, steps=2).sample(noise, cond, 1.0)
    b = DDIMWindowModel(den2, sch2, steps=2).sample(noise, cond, 1.0)
    assert torch.equal(a, b)


def test_incomplete_or_foreign_model_folders_are_refused(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_cascade(tmp_path / "nothing")
    folder = save_cascade(tmp_path / "m", tiny_denoiser(), training_scheduler(), {})
    (folder / "model_index.json").unlink()  # as an interrupted save leaves it
    with pytest.raises(ModelFolderError, match="interrupted save"):
        load_cascade(folder)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelFolderError, match="not a WorldstreamCascade"):
        load_cascade(folder)


REGION_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(2)  # the test process runs on 1: sampling must not depend on it
from worldstream.core.generators.learned.cascade import Cascade
from worldstream.core.generators.learned.sampling import DDIMWindowModel
from worldstream.core.generators.learned.storage import load_cascade
from worldstream.core.generators.learned.tiling import Tiling
sys.path.insert(0, sys.argv[2])
from tests.core.learned.test_tiling import smooth_root
den, sch, _ = load_cascade(sys.argv[1])
c = Cascade(DDIMWindowModel(den, sch, steps=2), Tiling(16), 11, smooth_root, 1, lambda l: 64.0 / 2**l)
print(hashlib.sha256(c.region(3, -21, 13, 40, 36).tobytes()).hexdigest())
"""


def test_tiny_diffusion_cascade_is_request_and_process_independent(tmp_path):
    import pathlib

    folder = save_cascade(tmp_path / "m", tiny_denoiser(seed=2), training_scheduler(), {})
    repo = str(pathlib.Path(__file__).resolve().parents[3])
    with running([sys.executable, "-c", REGION_SCRIPT, str(folder), repo], cwd=repo) as other:
        den, sch, _ = load_cascade(folder)

        def cascade():
            return Cascade(DDIMWindowModel(den, sch, steps=2), Tiling(16), 11, smooth_root, 1, lambda l: 64.0 / 2**l)

        whole = cascade().region(3, -21, 13, 40, 36)
        c = cascade()
        right = c.region(3, -21, 13 + 17, 40, 19)  # the right part first, then the left
        left = c.region(3, -21, 13, 40, 17)
        assert np.array_equal(np.concatenate([left, right], axis=2), whole)
        assert output(other).strip() == hashlib.sha256(whole.tobytes()).hexdigest()
