"""An off-the-shelf diffusers upscaler (StableDiffusionUpscalePipeline layout, built tiny in code) as
the cascade's window model: same results as the pipeline itself, same tiling, same noise sharing."""

import json
import sys

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_upscale

from worldstream.core import ChunkKey, World, WorldSpec
from worldstream.core.errors import GeneratorError
from worldstream.core.generators.learned.cascade import Cascade
from worldstream.core.generators.learned.storage import ModelFolderError, models_digest, save_cascade
from worldstream.core.generators.learned.sampling import training_scheduler
from worldstream.core.generators.learned.tiling import Tiling, window_noise
from worldstream.core.generators.learned.upscaler import load_upscaler

from .processes import output, running
from .test_tiling import smooth_root
from .tiny import tiny_denoiser, tiny_upscaler_pipeline, write_tiny_upscaler


@pytest.fixture(scope="module")
def upscaler_folder(tmp_path_factory):
    return write_tiny_upscaler(tmp_path_factory.mktemp("up") / "x4")


@pytest.mark.parametrize("prompt, guidance", [("", 1.0), ("aerial photo", 3.0)])
def test_windows_equal_the_diffusers_pipeline_run_on_the_same_noise(upscaler_folder, monkeypatch, prompt, guidance):
    model = load_upscaler(upscaler_folder, steps=3, noise_level=20, prompt=prompt, guidance_scale=guidance)
    assert (model.scale_factor, model.window, model.noise_channels, model.noise_cell) == (4, 32, 7, 4)
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(2, 7, 8, 8, generator=gen)
    condition = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    ours = model.sample(noise, condition, 1.0)
    assert ours.shape == (2, 3, 32, 32) and ours.dtype == torch.float32

    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_pretrained(upscaler_folder, local_files_only=True,
                                                          low_cpu_mem_usage=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for k in range(2):
        # the pipeline draws the condition's augmentation noise with randn_tensor: hand it the same
        monkeypatch.setattr(pipeline_stable_diffusion_upscale, "randn_tensor",
                            lambda shape, **kw: noise[k:k + 1, 4:].clone())
        with torch.no_grad():
            ref = pipe(prompt=prompt, negative_prompt="", image=(condition[k:k + 1] + 1) / 2, num_inference_steps=3,
                       guidance_scale=guidance, noise_level=20, eta=0.0, latents=noise[k:k + 1, :4].clone(),
                       output_type="pt").images
        assert torch.allclose((ours[k:k + 1] + 1) / 2, ref, atol=1e-4), float(((ours[k:k + 1] + 1) / 2 - ref).abs().max())
    plain = load_upscaler(upscaler_folder, steps=3).sample(noise, condition, 1.0)
    assert torch.equal(plain, ours) == (prompt == "")  # the prompt reaches the UNet


def test_overlapping_windows_share_latent_and_augmentation_noise():
    t = Tiling(32)
    a, right, below = (window_noise(2, 4, t, i, j, 7, cell=4) for i, j in ((-1, 3), (-1, 4), (0, 3)))
    assert a.shape == (7, 8, 8)
    assert torch.equal(a[:, :, 4:], right[:, :, :4]) and torch.equal(a[:, 4:, :], below[:, :4, :])
    with pytest.raises(GeneratorError, match="noise cell"):
        window_noise(2, 4, Tiling(12), 0, 0, 7, cell=4)


def whole_and_scrambled_quarters(folder) -> tuple[np.ndarray, np.ndarray]:
    """A 72x56 level-3 region asked in one go, and the same region stitched from four quarters asked
    in a scrambled order of another cascade (other windows missing each time, other conditions)."""
    def cascade():
        model = load_upscaler(folder, steps=2, guidance_scale=2.0)
        return Cascade(model, Tiling(model.window), 9, smooth_root, 2, lambda level: 64.0 / 2**level)

    whole = cascade().region(3, -40, 24, 72, 56)
    pieces = cascade()
    stitched = np.empty_like(whole)
    for (r0, h), (c0, w) in (((8, 24), (40, 40)), ((-40, 48), (24, 16)), ((8, 24), (24, 16)), ((-40, 48), (40, 40))):
        stitched[:, r0 + 40:r0 + 40 + h, c0 - 24:c0 - 24 + w] = pieces.region(3, r0, c0, h, w)
    return whole, stitched


def test_upscaler_cascade_regions_do_not_depend_on_how_they_were_asked(upscaler_folder):
    whole, stitched = whole_and_scrambled_quarters(upscaler_folder)
    assert whole.shape == (3, 72, 56) and whole.dtype == np.float32
    assert stitched.tobytes() == whole.tobytes()


OTHER_CPU_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(2)
sys.path.insert(0, sys.argv[2])
from tests.core.learned.test_upscaler import whole_and_scrambled_quarters
whole, stitched = whole_and_scrambled_quarters(sys.argv[1])
print(stitched.tobytes() == whole.tobytes(), hashlib.sha256(whole.tobytes()).hexdigest())
"""

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_request_independence_holds_under_other_cpu_kernels(upscaler_folder):
    """What another x86-64 CPU changes is which torch / oneDNN kernels run (a CPU without AVX-512
    gets the AVX2 ones), and a process may run on more threads: the guarantee (a region's bytes do
    not depend on how it was asked) must hold under those kernels too. Equality of bytes *across*
    kernels is not promised, so it is not asserted. The two settings run at once, a process each."""
    import os
    import pathlib

    repo = str(pathlib.Path(__file__).resolve().parents[3])
    script = [sys.executable, "-c", OTHER_CPU_SCRIPT, str(upscaler_folder), repo]
    with running(script, cwd=repo) as default_kernels, \
            running(script, cwd=repo, env={**os.environ, **AVX2_ONLY}) as avx2_kernels:
        for name, proc in (("default kernels", default_kernels), ("AVX2-only kernels", avx2_kernels)):
            independent, _ = output(proc).split()
            assert independent == "True", name


def test_learned_world_on_an_upscaler_folder(upscaler_folder, tmp_path):
    out = tmp_path / "gen"  # another process, another request order: the same bytes (it runs beside the checks here)
    with running([sys.executable, "-m", "worldstream", "generate", "--backend", "learned", "--models",
                  str(upscaler_folder), "--sampling-steps", "2", "--params",
                  json.dumps({"prompt": "aerial photo", "guidance_scale": 2.0}), "--seed", "7", "--chunk-size", "32",
                  "--num-levels", "4", "--levels", "3", "--radius", "60", "--format", "sidecars", "--quiet", "--out",
                  str(out)]) as generate:
        spec = WorldSpec(seed=7, chunk_size=32, levels=4, generator="learned",
                         generator_params={"models": str(upscaler_folder), "steps": 2, "prompt": "aerial photo",
                                           "guidance_scale": 2.0, "models_sha256": models_digest(upscaler_folder)})
        world = World(spec)
        assert world.generator.first_level == 2  # x4: level 2 is generated from level 0
        procedural = World(WorldSpec(seed=7, chunk_size=32, levels=4))
        key = ChunkKey(3, 2, -3)
        chunk = world.chunk(key)
        assert chunk.ortho.shape == (32, 32, 3) and not np.array_equal(chunk.ortho, procedural.chunk(key).ortho)
        assert np.array_equal(chunk.dsm, procedural.chunk(key).dsm)
        assert np.array_equal(world.chunk(ChunkKey(1, 0, 0)).ortho, procedural.chunk(ChunkKey(1, 0, 0)).ortho)
        output(generate)

    written = json.loads((out / "world.json").read_text())["generator_params"]
    assert written["models_sha256"] == models_digest(upscaler_folder)
    pngs = sorted(out.rglob("ortho.png"))
    assert pngs
    from PIL import Image

    for png in pngs:
        level, x, y = (int(p) for p in png.parent.relative_to(out / "chunks").parts)
        assert np.array_equal(np.asarray(Image.open(png)), world.chunk(ChunkKey(level, x, y)).ortho), png


def test_bad_upscaler_settings_and_folders_are_refused(upscaler_folder, tmp_path):
    with pytest.raises(ModelFolderError, match=r"noise_level must be in \[0, 100\]"):
        load_upscaler(upscaler_folder, noise_level=101)
    with pytest.raises(ModelFolderError, match="guidance_scale must be >= 1"):
        load_upscaler(upscaler_folder, guidance_scale=0.5)
    cascade = save_cascade(tmp_path / "cascade", tiny_denoiser(), training_scheduler(), {})
    with pytest.raises(ModelFolderError, match="not a StableDiffusionUpscalePipeline"):
        load_upscaler(cascade)
    with pytest.raises(GeneratorError, match="'window' must be a multiple of 8 for this model"):
        World(WorldSpec(generator="learned", generator_params={"models": str(upscaler_folder), "window": 36}))
    with pytest.raises(GeneratorError, match="apply to upscaler folders only"):
        World(WorldSpec(generator="learned", generator_params={"models": str(cascade), "prompt": "x"}))
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelFolderError, match="expected a WorldstreamCascade .* or a diffusers Stable"):
        World(WorldSpec(generator="learned", generator_params={"models": str(odd)}))
    broken = tmp_path / "broken"
    tiny_upscaler_pipeline().save_pretrained(broken)
    for f in (broken / "unet").iterdir():
        f.unlink()
    with pytest.raises(ModelFolderError, match="could not load the upscaler"):
        load_upscaler(broken)
