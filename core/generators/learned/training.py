"""Training the cascade denoiser: noise-prediction loss on degraded pairs, checkpoints and resume.

OUT (the models folder the learned backend loads) receives the model in diffusers format and a
model card at the end; OUT/training/ holds log.jsonl (one line per logged step), loss.png and
checkpoints/step-NNNNNNN/ (weights, optimizer, RNG states: a resumed run continues exactly where
the checkpoint stopped). Randomness comes from explicit generators seeded by `seed`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ...device import default_device
from .degradation import Degradation
from .model import ResolutionGuidedDenoiser
from .sampling import training_scheduler
from .storage import save_cascade
from .training_data import PairSampler, load_images
from .training_loop import TrainingError, TrainingRun, refuse_unless_resuming

__all__ = ["TrainConfig", "TrainingError", "config_dict", "p2_weights", "train_cascade"]


@dataclass(frozen=True)
class TrainConfig:
    sample_size: int = 64
    scale_factor: int = 2
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    condition_channels: int = 16
    norm_num_groups: int = 8
    resolution_embedding_dim: int = 32
    attention: bool = False
    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-4
    p2_gamma: float = 0.0  # P2 weighting (Choi et al. 2022): 0 = the plain loss, 1 = their default
    p2_k: float = 1.0
    octaves: int = 2
    default_mpp: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 2
    seed: int = 0
    degradation: Degradation = field(default_factory=Degradation)

    def __post_init__(self) -> None:
        f, n = self.scale_factor, self.sample_size
        if f not in (2, 4):
            raise TrainingError(f"scale factor must be 2 or 4, got {f}")
        if n < 8 or n % (2 * f) or n & (n - 1):
            raise TrainingError(f"window must be a power of two >= 8 and a multiple of {2 * f}, got {n}")
        if not self.block_out_channels or any(c < 1 or c % self.norm_num_groups for c in self.block_out_channels):
            raise TrainingError(f"every block channel count {list(self.block_out_channels)} must be a positive "
                                f"multiple of the norm groups ({self.norm_num_groups})")
        if n >> (len(self.block_out_channels) - 1) < 2:
            raise TrainingError(f"{len(self.block_out_channels)} UNet blocks downsample a {n} px window below 2 px")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints", "condition_channels"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0 or self.p2_gamma < 0 or not self.default_mpp > 0 or self.octaves < 0:
            raise TrainingError("learning rate and --mpp must be positive, --p2-gamma and --octaves >= 0")

    def model_kwargs(self) -> dict:
        return dict(sample_size=self.sample_size, scale_factor=self.scale_factor,
                    block_out_channels=tuple(self.block_out_channels), layers_per_block=self.layers_per_block,
                    condition_channels=self.condition_channels, norm_num_groups=self.norm_num_groups,
                    resolution_embedding_dim=self.resolution_embedding_dim, attention=self.attention)


RUN_LENGTH_FIELDS = ("steps", "checkpoint_every", "log_every", "keep_checkpoints")  # a resume may change these


def p2_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float, k: float) -> torch.Tensor:
    """(B,) loss weights 1 / (k + SNR(t))**gamma; all ones when gamma = 0."""
    if gamma == 0:
        return torch.ones(t.shape, dtype=torch.float32, device=t.device)
    ac = alphas_cumprod.to(t.device)[t]
    return (k + ac / (1.0 - ac)) ** -gamma


def train_cascade(data: str | Path, out: str | Path, config: TrainConfig = TrainConfig(), resume: bool = False,
                  progress: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume training) a denoiser on the images under `data`; returns a summary dict."""
    out = Path(out)
    device = default_device()
    refuse_unless_resuming(out, resume)
    images = load_images(data, config.default_mpp, config.sample_size)
    sampler = PairSampler(images, config.sample_size, config.scale_factor, config.octaves, config.degradation,
                          seed=config.seed)
    torch.manual_seed(config.seed)  # weight initialisation
    model = ResolutionGuidedDenoiser(**config.model_kwargs())
    scheduler = training_scheduler()
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    run = TrainingRun(out, {"denoiser": model}, opt, gen, sampler.rng, config_dict(config, RUN_LENGTH_FIELDS),
                      resume, config.keep_checkpoints)
    model.to(device).train()
    run.move_optimizer_state(device)
    alphas = scheduler.alphas_cumprod

    def step() -> float:
        hr, lr, mpp = sampler.batch(config.batch_size)
        x0 = torch.from_numpy(hr).to(device)
        cond = torch.from_numpy(lr).to(device)
        res = torch.from_numpy(mpp).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(device)
        noisy = scheduler.add_noise(x0, noise, t)
        pred = model(noisy, t, cond, res)
        per_sample = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * p2_weights(alphas, t, config.p2_gamma, config.p2_k)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    run.run(config.steps, step, config.log_every, config.checkpoint_every, progress)
    stats = run.summary_stats()
    card = {
        "data": str(Path(data).resolve()),
        "images": len(images),
        "image_resolutions": sorted({f"{im.metres_per_pixel:g} m/px ({im.resolution_source})" for im in images}),
        "target_resolutions": [f"{r:g}" for r in sampler.target_resolutions],
        "degradation": config.degradation.describe(),
        "steps": config.steps, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "loss": "noise-prediction MSE" + (f", P2-weighted (gamma {config.p2_gamma}, k {config.p2_k})"
                                          if config.p2_gamma else ""),
        "p2_gamma": config.p2_gamma,
        "final_loss": stats["final_loss"], "wall_seconds": stats["wall_seconds"],
        "device": str(device), "seed": config.seed,
    }
    save_cascade(out, model.to("cpu").eval(), scheduler, card)
    return {"out": str(out), "resumed_from": run.start, "steps": config.steps, "first_loss": stats["first_loss"],
            "final_loss": card["final_loss"], "seconds": card["wall_seconds"], "images": len(images),
            "parameters": sum(p.numel() for p in model.parameters())}


def config_dict(config, ignore: tuple[str, ...] = ()) -> dict:
    """A training configuration dataclass as JSON values (tuples as lists, as state.json gives them
    back), without the `ignore` fields."""
    d = dataclasses.asdict(config)
    for k in ignore:
        d.pop(k, None)
    return json.loads(json.dumps(d))
