"""Deterministic DDIM (eta = 0) sampling of height windows: a `cascade.WindowModel` over a HeightNet.

In the cascade's terms a height window's condition is the coarser level's heights under it
(2 x n/2 x n/2 metres: DEM, DSM) and its guide is the window's ortho (3 x n x n in [-1, 1]).
Its initial noise lives on the VAE's latent grid (one noise pixel per f x f output pixels, 2 f^2
channels), cut from the level's global field like every other window's, so overlapping windows
start from identical latents.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from ...device import default_device, fixed_cpu_threads, inference_dtype, place_module
from ...errors import GeneratorError
from .height_model import HEIGHT_CHANNELS, HeightNet


def prepare_sampling(net, steps: int, device: torch.device | None, dtype: torch.dtype | None,
                     *more_unet_modules: torch.nn.Module) -> tuple:
    """(device, dtype, prompt encoding, DDIM scheduler set to `steps`) for sampling a height or
    facade net: the text encoder runs once on the CPU in float32, the UNet (and more_unet_modules)
    go to `device` in `dtype` (default: float16 on CUDA), the VAE in float32."""
    device = device or default_device()
    dtype = dtype or inference_dtype(device)
    with torch.no_grad(), fixed_cpu_threads(torch.device("cpu")):
        place_module(net.text_encoder, torch.device("cpu"), torch.float32)
        text = net.encode_prompt(device, dtype)
    for module in (net.unet, *more_unet_modules):
        place_module(module, device, dtype).eval()
    place_module(net.vae, device, torch.float32).eval()
    scheduler = DDIMScheduler.from_config(net.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    return device, dtype, text, scheduler


class HeightWindowModel:
    """A `cascade.WindowModel` for heights: `steps` DDIM steps with eta = 0, so a window is a pure
    function of its initial noise, its coarser heights, its ortho and the resolution.

    The UNet runs on `device` in `dtype` (float16 on CUDA); the VAE encoder and the text encoder in
    float32. Output: metres, float32, with DSM >= DEM.
    """

    channels = len(HEIGHT_CHANNELS)
    scale_factor = 2  # conditioned on the level above

    def __init__(self, net: HeightNet, steps: int = 20, device: torch.device | None = None,
                 dtype: torch.dtype | None = None):
        if steps < 1:
            raise GeneratorError(f"height sampling steps must be >= 1, got {steps}")
        self.net = net
        self.device, self.dtype, self.text, self.scheduler = prepare_sampling(net, steps, device, dtype)
        self.steps = steps
        self.noise_cell = net.factor
        self.noise_channels = net.latent_channels
        self.window = net.window

    @property
    def window_multiple(self) -> int:
        """Latents halve once per UNet block after the first, and the half-window stride must hold
        whole latent pixels and whole coarser samples."""
        f = self.net.factor
        return max(f * 2 ** (len(self.net.unet.config.block_out_channels) - 1), 2 * f, 2 * self.scale_factor)

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, condition: torch.Tensor, resolution: float,
               guide: torch.Tensor | None = None) -> torch.Tensor:
        """noise (B, 2 f^2, n/f, n/f), condition (B, 2, n/2, n/2) metres, guide (B, 3, n, n) ortho in
        [-1, 1], target m/px -> (B, 2, n, n) float32 metres on the CPU (DEM, DSM)."""
        if guide is None:
            raise GeneratorError("a height window needs its ortho (the cascade's guide)")
        net, b = self.net, noise.shape[0]
        coarse = condition.to(device=self.device, dtype=torch.float32)
        with fixed_cpu_threads(self.device):
            ortho = net.encode_ortho(guide.to(device=self.device, dtype=torch.float32))
            reference = net.reference_latent(coarse)
            scale = net.height_range.scale(coarse).reshape(b)
            mpp = torch.full((b,), float(resolution), device=self.device)
            cls = net.class_input(mpp, scale)
            text = self.text.expand(b, -1, -1)
            x = noise.to(device=self.device, dtype=torch.float32) * self.scheduler.init_noise_sigma
            for t in self.scheduler.timesteps:
                eps = net.predict_noise(x, t, ortho, reference, text, cls).to(torch.float32)
                x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
            heights = net.height_range.metres(net.from_latent(x), coarse)
        dem, dsm = heights[:, :1], heights[:, 1:]
        return torch.cat([dem, torch.maximum(dsm, dem)], dim=1).cpu()
