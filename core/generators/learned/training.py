"""Training the cascade denoiser: noise-prediction loss on degraded pairs, checkpoints and resume.

OUT (the models folder the learned backend loads) receives the model in diffusers format and a
model card at the end; OUT/training/ holds log.jsonl (one line per logged step), loss.png and
checkpoints/step-NNNNNNN/ (weights, optimizer, RNG states: a resumed run continues exactly where
the checkpoint stopped). Randomness comes from explicit generators seeded by `seed`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...device import default_device
from ...errors import WorldstreamError
from .degradation import Degradation
from .loss_plot import loss_plot_png
from .model import ResolutionGuidedDenoiser
from .sampling import training_scheduler
from .storage import save_cascade
from .training_data import PairSampler, load_images


class TrainingError(WorldstreamError, ValueError):
    """Training cannot start or resume as asked."""


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


def _checkpoints(out: Path) -> list[Path]:
    root = out / "training" / "checkpoints"
    return sorted(root.glob("step-*[0-9]")) if root.is_dir() else []


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def train_cascade(data: str | Path, out: str | Path, config: TrainConfig = TrainConfig(), resume: bool = False,
                  progress: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume training) a denoiser on the images under `data`; returns a summary dict."""
    out = Path(out)
    device = default_device()
    existing = _checkpoints(out)
    if existing and not resume:
        raise TrainingError(f"{out} already holds training checkpoints; pass --resume to continue them, "
                            "or use another --out")
    images = load_images(data, config.default_mpp, config.sample_size)
    sampler = PairSampler(images, config.sample_size, config.scale_factor, config.octaves, config.degradation,
                          seed=config.seed)
    torch.manual_seed(config.seed)  # weight initialisation
    model = ResolutionGuidedDenoiser(**config.model_kwargs())
    scheduler = training_scheduler()
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    start = 0
    if existing:
        ckpt = existing[-1]
        state = json.loads((ckpt / "state.json").read_text())
        saved = state["config"]
        if saved != _config_dict(config, ignore=RUN_LENGTH_FIELDS):
            raise TrainingError(f"checkpoint {ckpt} was made with a different configuration: {saved}")
        model = ResolutionGuidedDenoiser.from_pretrained(ckpt / "denoiser", local_files_only=True,
                                                         low_cpu_mem_usage=False)
        opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
        blob = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(blob["optimizer"])
        gen.set_state(blob["torch_generator"])
        sampler.rng.bit_generator.state = state["numpy_generator"]
        start = state["step"]
    model.to(device).train()
    for group in opt.state.values():
        for k, v in group.items():
            if torch.is_tensor(v):
                group[k] = v.to(device)
    log_path = out / "training" / "log.jsonl"
    log = _read_log(log_path, start)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("".join(json.dumps(r) + "\n" for r in log))
    alphas = scheduler.alphas_cumprod
    t0 = time.perf_counter()
    wall_before = log[-1]["seconds"] if log else 0.0
    loss_value = float("nan")
    with log_path.open("a") as log_file:
        for step in range(start + 1, config.steps + 1):
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
            loss_value = float(loss.detach())
            if step % config.log_every == 0 or step == config.steps:
                row = {"step": step, "loss": loss_value, "seconds": round(wall_before + time.perf_counter() - t0, 3)}
                log.append(row)
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                if progress:
                    progress(row)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save_checkpoint(out, model, opt, gen, sampler, step, config)
    (out / "training" / "loss.png").write_bytes(loss_plot_png([r["step"] for r in log], [r["loss"] for r in log]))
    recent = [r["loss"] for r in log[-max(1, len(log) // 10):]]
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
        "final_loss": round(float(np.mean(recent)), 5) if recent else None,
        "wall_seconds": log[-1]["seconds"] if log else 0.0,
        "device": str(device), "seed": config.seed,
    }
    save_cascade(out, model.to("cpu").eval(), scheduler, card)
    return {"out": str(out), "resumed_from": start, "steps": config.steps, "first_loss": log[0]["loss"] if log else None,
            "final_loss": card["final_loss"], "seconds": card["wall_seconds"], "images": len(images),
            "parameters": sum(p.numel() for p in model.parameters())}


def _config_dict(config: TrainConfig, ignore: tuple[str, ...] = ()) -> dict:
    d = dataclasses.asdict(config)
    for k in ignore:
        d.pop(k, None)
    return json.loads(json.dumps(d))  # tuples -> lists, as they come back from state.json


def _save_checkpoint(out: Path, model, opt, gen, sampler: PairSampler, step: int, config: TrainConfig) -> None:
    root = out / "training" / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "denoiser")
    torch.save({"optimizer": opt.state_dict(), "torch_generator": gen.get_state()}, tmp / "optimizer.pt")
    state = {"step": step, "numpy_generator": sampler.rng.bit_generator.state,
             "config": _config_dict(config, ignore=RUN_LENGTH_FIELDS)}
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in _checkpoints(out)[:-config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
