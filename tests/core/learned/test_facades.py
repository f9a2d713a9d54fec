"""The facade model (MetaEarth3D's lateral appearance inpainting), with tiny models built in code:
cross-view local attention mixes a view with its two circular neighbours only and adds no
parameters; training on rendered blocks saves, loads and resumes exactly; bad folders and settings
are refused; a models folder with a facades/ part bakes learned facades into a valid, deterministic GLB."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from worldstream.core import ChunkKey, World, WorldSpec
from worldstream.core.errors import GeneratorError
from worldstream.core.generators.learned.facade_data import load_blocks, prepare_blocks
from worldstream.core.generators.learned.facade_model import CrossViewAttnProcessor
from worldstream.core.generators.learned.facade_storage import load_facades
from worldstream.core.generators.learned.facade_training import FacadeTrainConfig, build_net, train_facades
from worldstream.core.generators.learned.storage import ModelFolderError, model_stages, models_digest
from worldstream.core.generators.learned.training_loop import TrainingError
from worldstream.render import RenderError

from ...exporters.test_glb_tiles import assert_valid_glbs

SPEC = WorldSpec(seed=7, chunk_size=64)
KEY = ChunkKey(6, 41, -50)  # three houses of seed 7's hillside town, 1 m/px
TINY = dict(views=8, view_size=16, vae_channels=(8, 8), unet_channels=(8, 16), norm_num_groups=4, text_hidden=8,
            steps=6, vae_steps=2, batch_size=1, learning_rate=2e-3, log_every=1, checkpoint_every=3)


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    try:
        count = prepare_blocks(SPEC, [KEY], folder, views=8, size=16)
    except RenderError as exc:
        pytest.skip(str(exc))
    assert count >= 2
    return folder


@pytest.fixture(scope="module")
def trained(blocks, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "facades"
    summary = train_facades(blocks, out, FacadeTrainConfig(**TINY))
    return out, summary


def test_cross_view_attention_mixes_a_view_with_its_two_neighbours_only_and_adds_no_parameters():
    net, _ = build_net(FacadeTrainConfig(**TINY))
    alone, _ = build_net(FacadeTrainConfig(**{**TINY, "cross_view": False}))
    assert sum(p.numel() for p in net.unet.parameters()) == sum(p.numel() for p in alone.unet.parameters())
    attn = next(m for name, m in net.unet.named_modules() if name.endswith("attn1"))
    assert isinstance(attn.processor, CrossViewAttnProcessor) and attn.processor.cross_view
    torch.manual_seed(0)
    x = torch.randn(2 * 8, 12, attn.to_q.in_features)  # two blocks of 8 views, 12 tokens each
    with torch.no_grad():
        base = attn(x)
        for changed in (0, 3, 7):
            y = x.clone()
            y[changed] += 1.0
            out = attn(y)
            moved = {i for i in range(16) if not torch.equal(out[i], base[i])}
            assert moved == {(changed - 1) % 8, changed, (changed + 1) % 8}, (changed, moved)  # block 2 untouched
        attn.processor = CrossViewAttnProcessor(8, cross_view=False)
        base = attn(x)
        y = x.clone()
        y[3] += 1.0
        out = attn(y)
        assert {i for i in range(16) if not torch.equal(out[i], base[i])} == {3}
        with pytest.raises(GeneratorError, match="whole blocks of 8 views"):
            CrossViewAttnProcessor(8).neighbours(torch.zeros(12, 4, 4))


def test_a_view_embedding_is_added_after_the_input_convolution():
    net, _ = build_net(FacadeTrainConfig(**{**TINY, "cross_view": False}))  # views apart: only view 5 may move
    n, m = 8, 8
    args = (torch.zeros(n, 4, m, m), torch.tensor(500), torch.zeros(n, 4, m, m), torch.zeros(n, 1, m, m),
            torch.zeros(n, 77, 8))
    with torch.no_grad():
        before = net.predict_noise(*args)
        assert all(torch.equal(before[0], before[i]) for i in range(n))  # a fresh embedding is zero
        net.view_embedding.table.data[5] = 1.0
        after = net.predict_noise(*args)
    assert [i for i in range(n) if not torch.equal(before[i], after[i])] == [5]
    assert len(net.unet.conv_in._forward_hooks) == 0  # the hook lives for one call


def test_train_save_load_round_trip_and_exact_resume(blocks, trained, tmp_path):
    out, summary = trained
    assert summary["blocks"] == len(load_blocks(blocks)) and summary["vae_steps"] == 2
    assert (out / "training" / "loss.png").is_file() and len((out / "training" / "log.jsonl").read_text().splitlines()) == 6
    net, card = load_facades(out)
    assert net.views == 8 and net.view_size == 16 and net.cross_view and card["steps"] == 6
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "WorldstreamFacades" and index["facades"]["views"] == 8
    assert net.unet.config.in_channels == 9  # [noisy latent 4, VAE(masked render) 4, mask 1]
    assert 0.01 < float(net.vae.config.scaling_factor) < 100
    # 3 steps, then 3 more resumed, equal 6 straight (the resumed run crosses no phase boundary, the first did)
    half = tmp_path / "half"
    train_facades(blocks, half, FacadeTrainConfig(**{**TINY, "steps": 3}))
    train_facades(blocks, half, FacadeTrainConfig(**TINY), resume=True)
    resumed, _ = load_facades(half)
    for a, b in ((net.unet, resumed.unet), (net.vae, resumed.vae), (net.view_embedding, resumed.view_embedding)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert net.vae.config.scaling_factor == resumed.vae.config.scaling_factor


def test_bad_folders_and_settings_are_refused_with_a_clear_error(blocks, trained, tmp_path):
    out, _ = trained
    with pytest.raises(TrainingError, match="already holds training checkpoints"):
        train_facades(blocks, out, FacadeTrainConfig(**TINY))
    with pytest.raises(TrainingError, match="no facade blocks"):
        train_facades(tmp_path, tmp_path / "x", FacadeTrainConfig(**TINY))
    with pytest.raises(TrainingError, match="does not exist"):
        train_facades(tmp_path / "nowhere", tmp_path / "y", FacadeTrainConfig(**TINY))
    with pytest.raises(TrainingError, match="hold 8 views of 16 px; the model is set for 8 of 32"):
        train_facades(blocks, tmp_path / "z", FacadeTrainConfig(**{**TINY, "view_size": 32}))
    with pytest.raises(TrainingError, match="view size 10 must be"):
        FacadeTrainConfig(**{**TINY, "view_size": 10})
    with pytest.raises(TrainingError, match="vae_steps must be in"):
        FacadeTrainConfig(**{**TINY, "vae_steps": 6})
    with pytest.raises(TrainingError, match="tau must be in"):
        FacadeTrainConfig(**{**TINY, "tau": 1.5})
    broken = tmp_path / "broken"
    shutil.copytree(out, broken, ignore=shutil.ignore_patterns("training"))
    shutil.rmtree(broken / "view_embedding")
    with pytest.raises(ModelFolderError, match=r"lacks its part\(s\) \['view_embedding'\]"):
        load_facades(broken)
    (broken / "model_index.json").unlink()
    with pytest.raises(ModelFolderError, match="no model_index.json"):
        load_facades(broken)
    bad = tmp_path / "bad"
    (bad / "b").mkdir(parents=True)
    (bad / "b" / "block.json").write_text('{"views": 8, "size": 16}')
    with pytest.raises(TrainingError, match="expected block.json, views.png and mask.png"):
        load_blocks(bad)


def test_a_models_folder_with_facades_bakes_learned_facades_into_a_valid_deterministic_glb(trained, tmp_path):
    from worldstream.exporters.chunk_mesh import chunk_mesh
    from worldstream.exporters.formats import export_chunk

    out, _ = trained
    models = tmp_path / "models"
    shutil.copytree(out, models / "facades", ignore=shutil.ignore_patterns("training"))
    assert model_stages(models) == ("facades",)
    params = {"models": str(models), "stages": ["facades"], "models_sha256": models_digest(models), "steps": 2}
    spec = dataclasses.replace(SPEC, generator="learned", generator_params=params)
    chunk = World(spec, cache_chunks=0).chunk(KEY)
    assert len(chunk.facade_views) >= 2 and all(len(b.frames) == 8 for b in chunk.facade_views)
    glb = export_chunk(chunk, spec, ("glb",))["mesh.glb"]
    again = export_chunk(World(spec, cache_chunks=0).chunk(KEY), spec, ("glb",))["mesh.glb"]
    assert glb == again
    plain = World(SPEC, cache_chunks=0).chunk(KEY)
    assert glb != export_chunk(plain, SPEC, ("glb",))["mesh.glb"]
    learned_atlas, procedural_atlas = chunk_mesh(chunk, spec).facade, chunk_mesh(plain, SPEC).facade
    assert learned_atlas.shape == procedural_atlas.shape and (learned_atlas != procedural_atlas).any(axis=2).mean() > 0.05
    assert_valid_glbs({"learned_facades": glb}, tmp_path)
    with pytest.raises(GeneratorError, match=r"learned stages are \['height'\] but .* holds \['facades'\]"):
        World(dataclasses.replace(spec, generator_params={**params, "stages": ["height"]}))


def test_cli_trains_facades_and_refuses_bad_flags(blocks, tmp_path, capsys):
    from worldstream.cli import main

    tiny = ["--view-size", "16", "--channels", "8,16", "--vae-channels", "8,8", "--norm-groups", "4", "--batch-size", "1"]
    assert main(["train", "facades", "--data", str(blocks), "--out", str(tmp_path / "f"), "--steps", "2", *tiny]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and (tmp_path / "f" / "model_index.json").is_file()
    assert main(["train", "facades", "--data", str(blocks), "--out", str(tmp_path / "g"), "--steps", "2",
                 "--channels", "8,x"]) == 2
    assert "--channels expects comma-separated integers" in capsys.readouterr().err
