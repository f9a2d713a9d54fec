"""Deterministic DDIM (eta = 0) sampling of windows with a diffusers scheduler."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from ...device import default_device, fixed_cpu_threads, inference_dtype, place_module
from .model import ResolutionGuidedDenoiser


def training_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """The noise schedule models are trained and sampled with: linear betas, epsilon prediction,
    "trailing" timestep spacing so a few inference steps still start from pure noise."""
    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear",
                         prediction_type="epsilon", clip_sample=True, timestep_spacing="trailing")


class DDIMWindowModel:
    """A `cascade.WindowModel`: `steps` DDIM steps with eta = 0, so a window is a pure function of
    its initial noise, its condition and the target resolution.

    The weights run on `device` (default: core.device.default_device) in `dtype` (float16 on
    CUDA); the sample itself is carried in float32 between steps.
    """

    def __init__(self, denoiser: ResolutionGuidedDenoiser, scheduler: DDIMScheduler, steps: int = 20,
                 device: torch.device | None = None, dtype: torch.dtype | None = None):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.device = device or default_device()
        self.dtype = dtype or inference_dtype(self.device)
        self.denoiser = place_module(denoiser, self.device, self.dtype).eval()
        self.scheduler = DDIMScheduler.from_config(scheduler.config)
        self.scheduler.set_timesteps(steps, device=self.device)
        self.steps = steps

    @property
    def channels(self) -> int:
        return self.denoiser.channels

    @property
    def scale_factor(self) -> int:
        return self.denoiser.scale_factor

    @property
    def noise_channels(self) -> int:
        return self.denoiser.channels

    noise_cell = 1  # denoises pixels: one noise value per output pixel and channel

    @property
    def window_multiple(self) -> int:
        """The UNet halves the window once per block after the first; the stride (n / 2) must hold
        whole condition pixels."""
        return max(2 ** (len(self.denoiser.config.block_out_channels) - 1), 2 * self.scale_factor)

    @property
    def window(self) -> int:
        return self.denoiser.config.sample_size

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, condition: torch.Tensor, resolution: float) -> torch.Tensor:
        """noise (B, C, n, n), condition (B, C, n/f, n/f) in [-1, 1] -> (B, C, n, n) float32 CPU."""
        x = noise.to(device=self.device, dtype=torch.float32) * self.scheduler.init_noise_sigma
        cond = condition.to(device=self.device, dtype=self.dtype)
        mpp = torch.full((x.shape[0],), float(resolution), device=self.device)
        with fixed_cpu_threads(self.device):
            for t in self.scheduler.timesteps:
                eps = self.denoiser(x, t, cond, mpp).to(torch.float32)
                x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x.clamp(-1.0, 1.0).cpu()
