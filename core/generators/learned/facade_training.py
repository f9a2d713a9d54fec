"""Training the facade model on multi-view renders of blocks with known facades.

Two phases in one run of the shared loop (training_loop.py: log, loss.png, checkpoints, exact
`--resume`): the first `vae_steps` steps train a fresh AutoencoderKL to reconstruct the views (MSE
of the decoded posterior mean); then the VAE is frozen, its latent scaling set to 1 / std of the
latents of a fixed batch (as Stable Diffusion chose 0.18215), and the UNet and the view embedding
are trained with the standard noise-prediction loss, one timestep per block. With `pretrained`, a
local diffusers folder's vae/, text_encoder/ and tokenizer/ are used, frozen, and the first phase is
skipped. `--data` holds block folders (facade_data.py), or is a worldstream export (`generate`:
world.json and chunks/L/X/Y/): then the blocks of its building levels are rendered from its world
into OUT/training/blocks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...device import default_device
from .facade_data import BlockSampler, load_blocks, prepare_blocks
from .facade_model import FacadeNet, ViewEmbedding, facade_unet
from .facade_storage import save_facades
from .height_model import vae_factor
from .height_training import check_sizes, encoder_parts
from .sampling import training_scheduler
from .training import RUN_LENGTH_FIELDS, config_dict
from .training_loop import TrainingError, TrainingRun, refuse_unless_resuming


@dataclass(frozen=True)
class FacadeTrainConfig:
    views: int = 8
    view_size: int = 64
    cross_view: bool = True  # cross-view local attention (off: the ablation, each view attends to itself)
    tau: float = 0.25
    vae_channels: tuple[int, ...] = (32, 32)  # a fresh VAE: 2 ** (len - 1) x downsampling
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    text_hidden: int = 32
    pretrained: str | None = None  # local diffusers folder with vae/, text_encoder/, tokenizer/
    steps: int = 2000
    vae_steps: int = 500  # first phase (a fresh VAE only)
    batch_size: int = 2  # blocks per step (each of `views` images)
    learning_rate: float = 2e-4
    checkpoint_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.views <= 64:
            raise TrainingError(f"views must be 1..64, got {self.views}")
        if not 0.0 < self.tau < 1.0:
            raise TrainingError(f"tau must be in (0, 1), got {self.tau}")
        check_sizes(self)
        if not 0 <= self.vae_steps < self.steps:
            raise TrainingError(f"vae_steps must be in [0, steps), got {self.vae_steps} of {self.steps}")
        if self.text_hidden % 2:
            raise TrainingError("text_hidden must be even")
        if not self.learning_rate > 0:
            raise TrainingError("the learning rate must be positive")
        if self.pretrained is None:
            self.check_size(2 ** (len(self.vae_channels) - 1))

    def check_size(self, factor: int) -> None:
        """Refuse a view size the VAE's factor and the UNet's downsamplings cannot divide."""
        multiple = factor * 2 ** (len(self.unet_channels) - 1)
        if self.view_size < 8 or self.view_size % multiple:
            raise TrainingError(f"view size {self.view_size} must be >= 8 and a multiple of {multiple} (VAE {factor}x, "
                                f"{len(self.unet_channels)} UNet blocks)")


def build_net(config: FacadeTrainConfig) -> tuple[FacadeNet, bool]:
    """(a fresh FacadeNet, whether its VAE is trained) for `config`."""
    vae, text_encoder, tokenizer, trained_vae = encoder_parts(config, config.check_size)
    torch.manual_seed(config.seed + 2)
    unet = facade_unet(config.view_size, vae_factor(vae), int(vae.config.latent_channels),
                       int(text_encoder.config.hidden_size), tuple(config.unet_channels), config.layers_per_block,
                       config.norm_num_groups)
    net = FacadeNet(unet=unet, vae=vae, text_encoder=text_encoder.eval().requires_grad_(False), tokenizer=tokenizer,
                    scheduler=training_scheduler(), view_embedding=ViewEmbedding(config.views, config.unet_channels[0]),
                    cross_view=config.cross_view, tau=config.tau)
    if not trained_vae:
        vae.requires_grad_(False)
    return net, trained_vae


def export_building_keys(data: Path) -> tuple:
    """(the WorldSpec, the chunk keys) of a worldstream export (chunks/L/X/Y/) at levels fine enough for buildings."""
    from ....exporters.chunk_mesh import MeshOptions
    from ...keys import ChunkKey
    from ...spec import WorldSpec

    spec = WorldSpec.from_json((data / "world.json").read_text())
    keys = []
    for d in sorted((data / "chunks").glob("*/*/*")):
        try:
            key = ChunkKey(int(d.parent.parent.name), int(d.parent.name), int(d.name))
        except ValueError:
            continue
        if MeshOptions().has_buildings(spec.resolution(key.level)):
            keys.append(key)
    return spec, keys


def facade_blocks(data: str | Path, out: Path, config: FacadeTrainConfig):
    """The training blocks: those under `data`, or rendered from the world of a worldstream export."""
    data = Path(data)
    if data.is_dir() and not any(data.rglob("block.json")) and (data / "world.json").is_file():
        spec, keys = export_building_keys(data)
        target = out / "training" / "blocks"
        if not any(target.rglob("block.json")):
            if not prepare_blocks(spec, keys, target, config.views, config.view_size, config.tau):
                raise TrainingError(f"{data}: no exported chunk at a level with buildings shows any (levels of at most "
                                    "4 m/px)")
        data = target
    blocks = load_blocks(data)
    n, s = blocks[0].views.shape[:2]
    if (n, s) != (config.views, config.view_size):
        raise TrainingError(f"the blocks under {data} hold {n} views of {s} px; the model is set for {config.views} of "
                            f"{config.view_size} px")
    return blocks


def latent_scaling(net: FacadeNet, sampler_blocks) -> float:
    """1 / std of the VAE latents (posterior means) of a fixed batch of blocks (a sampler of its own)."""
    x, _ = BlockSampler(sampler_blocks, seed=12345).batch(min(8, len(sampler_blocks)))
    with torch.no_grad():
        z = net.vae.encode(torch.from_numpy(x).to(net.vae.device)).latent_dist.mode()
    return round(1.0 / max(float(z.float().std()), 1e-6), 6)


def train_facades(data: str | Path, out: str | Path, config: FacadeTrainConfig = FacadeTrainConfig(),
                  resume: bool = False, progress: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume training) a facade model on the blocks of `data`; returns a summary dict."""
    out = Path(out)
    device = default_device()
    refuse_unless_resuming(out, resume)
    blocks = facade_blocks(data, out, config)
    sampler = BlockSampler(blocks, seed=config.seed)
    net, trained_vae = build_net(config)
    vae_steps = config.vae_steps if trained_vae else 0
    parts = {"unet": net.unet, "view_embedding": net.view_embedding, **({"vae": net.vae} if trained_vae else {})}
    vae_params = list(net.vae.parameters()) if trained_vae else []
    model_params = list(net.unet.parameters()) + list(net.view_embedding.parameters())
    opt = torch.optim.AdamW(vae_params + model_params, lr=config.learning_rate, weight_decay=0.0)
    gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    run = TrainingRun(out, parts, opt, gen, sampler.rng, config_dict(config, RUN_LENGTH_FIELDS), resume,
                      config.keep_checkpoints)
    for part in (net.unet, net.vae, net.text_encoder, net.view_embedding):
        part.to(device)
    run.move_optimizer_state(device)
    text = net.encode_prompt(device, torch.float32)
    scheduler, n = net.scheduler, config.views
    counter = {"k": run.start, "scaled": not trained_vae}

    def vae_step(x: torch.Tensor) -> torch.Tensor:
        net.vae.train()
        recon = net.vae.decode(net.vae.encode(x).latent_dist.mode()).sample
        return F.mse_loss(recon, x)

    def diffusion_step(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not counter["scaled"]:  # entering the second phase (straight or resumed): freeze and scale the VAE
            net.vae.eval().requires_grad_(False)
            net.vae.register_to_config(scaling_factor=latent_scaling(net, blocks))
            counter["scaled"] = True
        net.unet.train()
        with torch.no_grad():
            x0 = net.encode(x)
            masked, mask_latent = net.condition(x, mask)
        b = x.shape[0] // n
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen).repeat_interleave(n).to(device)
        noisy = scheduler.add_noise(x0, noise, t)
        pred = net.predict_noise(noisy, t, masked, mask_latent, text.expand(x.shape[0], -1, -1))
        return F.mse_loss(pred.float(), noise)

    def step() -> float:
        counter["k"] += 1
        views, mask = (torch.from_numpy(a).to(device) for a in sampler.batch(config.batch_size))
        loss = vae_step(views) if counter["k"] <= vae_steps else diffusion_step(views, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae_params + model_params, 1.0)
        opt.step()
        return float(loss.detach())

    run.run(config.steps, step, config.log_every, config.checkpoint_every, progress)
    if not counter["scaled"]:
        net.vae.register_to_config(scaling_factor=latent_scaling(net, blocks))
    stats = run.summary_stats()
    diffusion_log = [r["loss"] for r in run.log if r["step"] > vae_steps]
    for part in (net.unet, net.vae, net.text_encoder, net.view_embedding):
        part.to("cpu").eval()
    card = {
        "data": str(Path(data).resolve()), "blocks": len(blocks), "vae_steps": vae_steps, "steps": config.steps,
        "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "vae": f"pretrained, frozen ({config.pretrained})" if config.pretrained else
        f"fresh; {vae_steps} reconstruction steps, then frozen (latent scaling {net.vae.config.scaling_factor:g})",
        "text_encoder": f"pretrained, frozen ({config.pretrained})" if config.pretrained else "in-code tiny CLIP, frozen",
        "loss": "noise-prediction MSE", "final_loss": stats["final_loss"], "wall_seconds": stats["wall_seconds"],
        "device": str(device), "seed": config.seed,
    }
    save_facades(out, net, card)
    return {"out": str(out), "resumed_from": run.start, "steps": config.steps, "vae_steps": vae_steps,
            "first_loss": stats["first_loss"], "final_loss": stats["final_loss"],
            "first_diffusion_loss": diffusion_log[0] if diffusion_log else None,
            "final_diffusion_loss": round(float(np.mean(diffusion_log[-max(1, len(diffusion_log) // 10):])), 5)
            if diffusion_log else None, "seconds": stats["wall_seconds"], "blocks": len(blocks),
            "parameters": sum(p.numel() for p in net.unet.parameters()) + sum(p.numel() for p in net.vae.parameters())}
