"""The learned backend through World and the CLI: train, generate, measure seams."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from worldstream.core import ChunkKey, World, WorldSpec
from worldstream.core.errors import GeneratorError
from worldstream.core.generators.learned.sampling import training_scheduler
from worldstream.core.generators.learned.storage import models_digest, save_cascade
from worldstream.core.seams import SeamMetricError, seam_stats

from .processes import output, running
from .tiny import tiny_denoiser, write_training_images


def run_cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "worldstream", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return save_cascade(tmp_path_factory.mktemp("m") / "models", tiny_denoiser(seed=4), training_scheduler(), {})


def learned_spec(models, **params):
    return WorldSpec(seed=7, chunk_size=32, levels=4, generator="learned",
                     generator_params={"models": str(models), "steps": 2, **params})


def test_learned_world_replaces_the_ortho_and_keeps_the_geometry(models):
    learned = World(learned_spec(models))
    procedural = World(WorldSpec(seed=7, chunk_size=32, levels=4))
    root = ChunkKey(0, 0, -1)
    assert np.array_equal(learned.chunk(root).ortho, procedural.chunk(root).ortho)  # the cascade's root
    key = ChunkKey(2, 1, -2)
    a, p = learned.chunk(key), procedural.chunk(key)
    assert a.ortho.shape == (32, 32, 3) and a.ortho.dtype == np.uint8
    assert not np.array_equal(a.ortho, p.ortho)
    assert np.array_equal(a.dsm, p.dsm) and np.array_equal(a.semantic, p.semantic)
    again = World(learned_spec(models)).chunk(key)  # a fresh world, different request history
    assert np.array_equal(again.ortho, a.ortho)


def test_learned_parameters_are_checked(models, tmp_path):
    with pytest.raises(GeneratorError, match="generator_params.models"):
        World(WorldSpec(generator="learned"))
    with pytest.raises(GeneratorError, match="'steps' must be an integer"):
        World(learned_spec(models, steps=0))
    with pytest.raises(GeneratorError, match="does not exist"):
        World(learned_spec(tmp_path / "missing"))
    with pytest.raises(GeneratorError, match="unknown procedural parameters"):
        World(learned_spec(models, bogus=1))
    with pytest.raises(GeneratorError, match="not the one this world was made with"):
        World(learned_spec(models, models_sha256="0" * 64))
    with pytest.raises(GeneratorError, match="'window' must be a multiple of 4 for this model"):
        World(learned_spec(models, window=18))
    assert World(learned_spec(models, models_sha256=models_digest(models), window=24)).generator.first_level == 1


def test_generate_with_the_learned_backend_is_byte_identical_across_runs(models, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]

    def generate(out, workers: str) -> list[str]:
        return [sys.executable, "-m", "worldstream", "generate", "--backend", "learned", "--models", str(models),
                "--sampling-steps", "2", "--seed", "7", "--chunk-size", "32", "--num-levels", "4", "--levels", "2:3",
                "--radius", "40", "--format", "sidecars", "--workers", workers, "--quiet", "--out", str(out)]

    with running(generate(outs[0], "1")) as one_worker, running(generate(outs[1], "2")) as two_workers:  # at once
        output(one_worker)
        output(two_workers)
    spec = json.loads((outs[0] / "world.json").read_text())
    assert spec["generator"] == "learned" and spec["generator_params"]["models"] == str(models)
    assert spec["generator_params"]["models_sha256"] == models_digest(models)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("ortho.png"))
    assert len(files) >= 8
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    r = run_cli("generate", "--models", str(models), "--out", str(tmp_path / "c"), check=False)
    assert r.returncode == 2 and "--backend learned" in r.stderr


def test_train_cli_then_generate_from_its_folder(tmp_path):
    data = write_training_images(tmp_path / "data")
    out = tmp_path / "models"
    r = run_cli("train", "cascade", "--data", str(data), "--out", str(out), "--steps", "10", "--batch-size", "4",
                "--window", "16", "--channels", "8,16", "--norm-groups", "4", "--condition-channels", "4",
                "--checkpoint-every", "5", "--mpp", "2")
    summary = json.loads(r.stdout)
    assert summary["steps"] == 10 and "loss" in r.stderr
    assert (out / "training" / "loss.png").is_file() and (out / "model_index.json").is_file()
    again = [sys.executable, "-m", "worldstream", "train", "cascade", "--data", str(data), "--out", str(out),
             "--steps", "12"]
    with running(again) as refused:  # beside the world built here from the folder
        world = World(WorldSpec(seed=1, chunk_size=32, levels=3, generator="learned",
                                generator_params={"models": str(out), "steps": 2}))
        assert world.chunk(ChunkKey(2, 0, 0)).ortho.shape == (32, 32, 3)
        _, stderr = refused.communicate(timeout=600)
    assert refused.returncode == 2 and "--resume" in stderr


def test_seam_metric_sees_seams_and_only_seams(tmp_path):
    rng = np.random.default_rng(0)
    smooth = rng.random((96, 96, 3))
    s = seam_stats(smooth, 16)
    assert 0.95 < s.ratio < 1.05 and s.lines == 10
    tiled = smooth + np.kron(rng.random((6, 6, 1)), np.ones((16, 16, 1)))  # a different offset per tile
    t = seam_stats(tiled, 16)
    assert t.ratio > 1.5 and abs(t.interior - s.interior) < 0.02
    assert seam_stats(tiled, 16, offset=(8, 8)).ratio < 1.2  # the wrong grid sees no seams
    Image.fromarray((np.clip(tiled / 2, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "t.png")
    r = json.loads(run_cli("metrics", "seams", str(tmp_path / "t.png"), "--period", "16").stdout)
    assert r["ratio"] > 1.5 and r["lines"] == 10
    with pytest.raises(SeamMetricError, match="no stitching line"):
        seam_stats(smooth[:10, :10], 16)
    with pytest.raises(SeamMetricError, match="period"):
        seam_stats(smooth, 1)


def test_serve_streams_the_learned_world_from_worker_processes(models):
    import io
    import urllib.request

    from bench.live import free_port, start_worldstream

    port = free_port()
    proc = start_worldstream(["serve", "--backend", "learned", "--models", str(models), "--sampling-steps", "2",
                              "--seed", "7", "--chunk-size", "32", "--num-levels", "4", "--workers", "2",
                              "--port", str(port)], port)
    try:
        png = urllib.request.urlopen(f"http://127.0.0.1:{port}/chunks/2/1/-2/ortho.png", timeout=120).read()
    finally:
        proc.terminate()
        proc.wait(30)
    stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in stderr, f"exit {proc.returncode}: {stderr}"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), World(learned_spec(models)).chunk(ChunkKey(2, 1, -2)).ortho)
