"""Training the height model: the standard noise-prediction loss on (ortho, heights) windows.

OUT receives the model in diffusers format (height_storage.py) and a model card at the end;
OUT/training/ holds the log, loss.png and checkpoints (training_loop.py: `--resume` continues
exactly). The text encoder is frozen (the prompt is fixed). The VAE is either a fresh one whose
encoder is tuned with the loss, or, with `pretrained`, the VAE, text encoder and tokenizer of a
local diffusers folder (such as a Stable Diffusion copy), all frozen; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ...device import default_device
from .height_data import HeightPair, HeightPairSampler, load_height_pairs
from .height_model import HeightNet, fresh_vae, height_unet, tiny_text_encoder, vae_factor
from .height_range import HeightRange, upsample_corners
from .height_storage import save_height
from .sampling import training_scheduler
from .storage import ModelFolderError
from .training import RUN_LENGTH_FIELDS, config_dict
from .training_loop import TrainingError, TrainingRun, refuse_unless_resuming


def check_sizes(config) -> None:
    """Refuse channel counts that are not positive multiples of the norm groups, and run-length or
    size fields below 1, of a height or facade training config."""
    for name in ("vae_channels", "unet_channels"):
        chans = getattr(config, name)
        if not chans or any(c < 1 or c % config.norm_num_groups for c in chans):
            raise TrainingError(f"every {name.replace('_', ' ')} count {list(chans)} must be a positive multiple "
                                f"of the norm groups ({config.norm_num_groups})")
    for name in ("steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints", "latent_channels",
                 "text_hidden", "layers_per_block"):
        if getattr(config, name) < 1:
            raise TrainingError(f"{name} must be >= 1, got {getattr(config, name)}")


@dataclass(frozen=True)
class HeightTrainConfig:
    window: int = 64
    vae_channels: tuple[int, ...] = (32, 32, 32)  # a fresh VAE: 2 ** (len - 1) x downsampling
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    embedding_dim: int = 32
    text_hidden: int = 32  # the in-code CLIP text encoder's width
    min_scale: float = 4.0
    relief_gain: float = 0.1
    pretrained: str | None = None  # local diffusers folder with vae/, text_encoder/, tokenizer/
    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-4
    default_mpp: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.window
        if n < 8 or n & (n - 1):
            raise TrainingError(f"window must be a power of two >= 8, got {n}")
        check_sizes(self)
        if self.embedding_dim < 2 or self.embedding_dim % 2 or self.text_hidden % 2:
            raise TrainingError("embedding_dim and text_hidden must be even and >= 2")
        if not self.learning_rate > 0 or not self.default_mpp > 0:
            raise TrainingError("learning rate and --mpp must be positive")
        HeightRange(self.min_scale, self.relief_gain)  # raises on bad values
        if self.pretrained is None:
            self.check_window(2 ** (len(self.vae_channels) - 1))

    def check_window(self, factor: int) -> None:
        """Refuse a window the VAE's factor and the UNet's downsamplings cannot cut evenly."""
        multiple = max(factor * 2 ** (len(self.unet_channels) - 1), 2 * factor, 4)
        if self.window % multiple:
            raise TrainingError(f"window {self.window} must be a multiple of {multiple} (VAE {factor}x, "
                                f"{len(self.unet_channels)} UNet blocks, half-window stride on whole latents)")


def pretrained_parts(folder: str | Path) -> tuple:
    """(AutoencoderKL, CLIPTextModel, CLIPTokenizer) from a local diffusers folder's vae/,
    text_encoder/ and tokenizer/ (such as a Stable Diffusion copy); nothing is downloaded."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    src = Path(folder)
    try:
        vae = AutoencoderKL.from_pretrained(src / "vae", local_files_only=True, low_cpu_mem_usage=False)
        text_encoder = CLIPTextModel.from_pretrained(src / "text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(src / "tokenizer", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"--pretrained {src}: expected a local diffusers folder with vae/, text_encoder/ "
                               f"and tokenizer/: {exc}") from None
    return vae, text_encoder, tokenizer


def encoder_parts(config, check_factor: Callable[[int], None]) -> tuple:
    """(vae, text_encoder, tokenizer, whether the VAE is trained) for a height or facade training
    config (fields pretrained, seed, text_hidden, vae_channels, latent_channels, norm_num_groups):
    a local diffusers folder's frozen parts, checked by check_factor(the VAE's factor), or tiny
    fresh ones seeded from config.seed."""
    if config.pretrained:
        vae, text_encoder, tokenizer = pretrained_parts(config.pretrained)
        check_factor(vae_factor(vae))
        return vae, text_encoder, tokenizer, False
    text_encoder, tokenizer = tiny_text_encoder(config.text_hidden, config.seed)
    torch.manual_seed(config.seed)
    vae = fresh_vae(tuple(config.vae_channels), config.latent_channels, config.norm_num_groups)
    return vae, text_encoder, tokenizer, True


def build_net(config: HeightTrainConfig) -> tuple[HeightNet, bool]:
    """(a fresh HeightNet, whether its VAE is trained) for `config`."""
    vae, text_encoder, tokenizer, trained_vae = encoder_parts(config, config.check_window)
    torch.manual_seed(config.seed + 2)
    unet = height_unet(config.window, vae_factor(vae), int(vae.config.latent_channels),
                       int(text_encoder.config.hidden_size), tuple(config.unet_channels), config.layers_per_block,
                       config.norm_num_groups, config.embedding_dim)
    net = HeightNet(unet=unet, vae=vae, text_encoder=text_encoder.eval().requires_grad_(False), tokenizer=tokenizer,
                    scheduler=training_scheduler(), height_range=HeightRange(config.min_scale, config.relief_gain),
                    embedding_dim=config.embedding_dim)
    if not trained_vae:
        vae.requires_grad_(False)
    return net, trained_vae


def clipped_fraction(net: HeightNet, pairs: list[HeightPair], window: int, windows: int = 64) -> float:
    """Fraction of height samples in `windows` random training windows that the range scheme clips
    (|h - ref| > scale); drawn by a sampler of their own, so the training draw is not disturbed."""
    _, heights, coarse, _ = HeightPairSampler(pairs, window, seed=12345).batch(windows)
    h, c = torch.from_numpy(heights), torch.from_numpy(coarse)
    raw = (h - upsample_corners(c)) / net.height_range.scale(c)
    return round(float((raw.abs() > 1.0).float().mean()), 6)


def train_height(data: str | Path, out: str | Path, config: HeightTrainConfig = HeightTrainConfig(),
                 resume: bool = False, progress: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume training) a height model on the pairs under `data`; returns a summary dict."""
    out = Path(out)
    device = default_device()
    refuse_unless_resuming(out, resume)
    pairs = load_height_pairs(data, config.default_mpp, config.window)
    sampler = HeightPairSampler(pairs, config.window, seed=config.seed)
    net, trained_vae = build_net(config)
    parts = {"unet": net.unet, **({"vae": net.vae} if trained_vae else {})}
    params = list(net.unet.parameters()) + (list(net.vae.encoder.parameters()) + list(net.vae.quant_conv.parameters())
                                            if trained_vae else [])
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    run = TrainingRun(out, parts, opt, gen, sampler.rng, config_dict(config, RUN_LENGTH_FIELDS), resume,
                      config.keep_checkpoints)
    net.unet.to(device).train()
    net.vae.to(device).train(trained_vae)
    net.text_encoder.to(device)
    run.move_optimizer_state(device)
    text = net.encode_prompt(device, torch.float32)
    scheduler = net.scheduler

    def step() -> float:
        ortho, heights, coarse, mpp = (torch.from_numpy(a).to(device) for a in sampler.batch(config.batch_size))
        b = ortho.shape[0]
        x0 = net.to_latent(net.height_range.normalise(heights, coarse))
        reference = net.reference_latent(coarse)
        cls = net.class_input(mpp, net.height_range.scale(coarse).reshape(b))
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen).to(device)
        noisy = scheduler.add_noise(x0, noise, t)
        pred = net.predict_noise(noisy, t, net.encode_ortho(ortho), reference, text.expand(b, -1, -1), cls)
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss.detach())

    run.run(config.steps, step, config.log_every, config.checkpoint_every, progress)
    stats = run.summary_stats()
    for part in (net.unet, net.vae, net.text_encoder):
        part.to("cpu").eval()
    card = {
        "data": str(Path(data).resolve()), "pairs": len(pairs),
        "sources": sorted({p.source for p in pairs}),
        "resolutions": [f"{r:g}" for r in sampler.resolutions],
        "dem": "given" if all(p.has_dem for p in pairs) else "the DSM stands in where a pair has no DEM",
        "vae": f"pretrained, frozen ({config.pretrained})" if config.pretrained else "fresh; encoder tuned with the loss",
        "text_encoder": f"pretrained, frozen ({config.pretrained})" if config.pretrained else "in-code tiny CLIP, frozen",
        "steps": config.steps, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "loss": "noise-prediction MSE", "final_loss": stats["final_loss"],
        "clipped_fraction": clipped_fraction(net, pairs, config.window), "wall_seconds": stats["wall_seconds"],
        "device": str(device), "seed": config.seed,
    }
    save_height(out, net, card)
    return {"out": str(out), "resumed_from": run.start, "steps": config.steps, "first_loss": stats["first_loss"],
            "final_loss": stats["final_loss"], "seconds": stats["wall_seconds"], "pairs": len(pairs),
            "clipped_fraction": card["clipped_fraction"],
            "parameters": sum(p.numel() for p in net.unet.parameters()) + sum(p.numel() for p in net.vae.encoder.parameters())}
