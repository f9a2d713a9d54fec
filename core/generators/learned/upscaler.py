"""An off-the-shelf image-conditioned upscaler in diffusers format as a cascade window model.

A `StableDiffusionUpscalePipeline` folder that a user has on disk (for example
stabilityai/stable-diffusion-x4-upscaler, copied there by hand) is loaded with `local_files_only`
and sampled the way the cascade samples its own models: deterministic DDIM (eta = 0) with the
folder's scheduler settings, one window at a time, from noise the cascade cuts out of its global
position-hashed field. The pipeline's two random draws both come from that field: the latent noise,
and the noise that augments the low-resolution condition at `noise_level`. In this pipeline the
latents lie on the condition's own pixel grid (they are concatenated channel-wise), so one field
cell per condition pixel carries both: the first `latent_channels` channels start the latents and
the last 3 noise the condition. The VAE then decodes a window to `scale_factor` times its size and
the cascade blends decoded windows. The model knows no metres per pixel; a text prompt (default
empty) with optional classifier-free guidance stands in for the scene description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...device import default_device, fixed_cpu_threads, inference_dtype, place_module
from .storage import ModelFolderError, read_index

UPSCALER_CLASS = "StableDiffusionUpscalePipeline"


class UpscalerWindowModel:
    """A `cascade.WindowModel` over a diffusers StableDiffusionUpscalePipeline.

    steps: DDIM steps; noise_level: the condition's noise augmentation (the pipeline's default is
    20, at most its max_noise_level); prompt / guidance_scale: text conditioning, guidance only when
    guidance_scale > 1 (against the empty prompt). The UNet runs in `dtype` (float16 on CUDA); the
    VAE always decodes in float32 (the x4 upscaler's VAE overflows in float16).
    """

    def __init__(self, pipeline: Any, steps: int = 20, noise_level: int = 20, prompt: str = "",
                 guidance_scale: float = 1.0, device: torch.device | None = None, dtype: torch.dtype | None = None):
        from diffusers import DDIMScheduler

        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        max_level = int(getattr(pipeline.config, "max_noise_level", 350))
        if not 0 <= noise_level <= max_level:
            raise ModelFolderError(f"noise_level must be in [0, {max_level}] for this upscaler, got {noise_level}")
        if guidance_scale < 1.0:
            raise ModelFolderError(f"guidance_scale must be >= 1 (1: no guidance), got {guidance_scale}")
        self.device = device or default_device()
        self.dtype = dtype or inference_dtype(self.device)
        self.latent_channels = int(pipeline.vae.config.latent_channels)
        image_channels = int(pipeline.unet.config.in_channels) - self.latent_channels
        if image_channels != 3:
            raise ModelFolderError(f"the upscaler's UNet takes {pipeline.unet.config.in_channels} channels: expected "
                                   f"{self.latent_channels} latent + 3 image channels")
        self.scale_factor = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
        self.channels = 3
        self.noise_cell = self.scale_factor
        self.noise_channels = self.latent_channels + image_channels
        self.window = int(pipeline.unet.config.sample_size) * self.scale_factor
        # latents (n / f) halve once per UNet block after the first; the stride (n / 2) holds whole latents
        self.window_multiple = max(self.scale_factor * 2 ** (len(pipeline.unet.config.block_out_channels) - 1),
                                   2 * self.scale_factor)
        self.guided = guidance_scale > 1.0
        self.guidance_scale = float(guidance_scale)
        with torch.no_grad(), fixed_cpu_threads(torch.device("cpu")):
            place_module(pipeline.text_encoder, torch.device("cpu"), torch.float32)
            positive, negative = pipeline.encode_prompt(prompt, torch.device("cpu"), 1, self.guided, "")
        embeds = torch.cat([negative, positive]) if self.guided else positive
        self.prompt_embeds = embeds.to(device=self.device, dtype=self.dtype)
        self.unet = place_module(pipeline.unet, self.device, self.dtype).eval()
        self.vae = place_module(pipeline.vae, self.device, torch.float32).eval()
        self.vae_scaling = float(pipeline.vae.config.scaling_factor)
        self.augment = pipeline.low_res_scheduler
        self.noise_level = int(noise_level)
        self.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        self.scheduler.set_timesteps(steps, device=self.device)
        self.steps = steps

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, condition: torch.Tensor, resolution: float) -> torch.Tensor:
        """noise (B, latent_channels + 3, m, m), condition (B, 3, m, m) in [-1, 1] -> (B, 3, f m, f m)
        float32 CPU in [-1, 1]. `resolution` is ignored: the upscaler has no m/px input."""
        b = noise.shape[0]
        noise = noise.to(device=self.device, dtype=torch.float32)
        levels = torch.full((b,), self.noise_level, dtype=torch.long, device=self.device)
        image = self.augment.add_noise(condition.to(device=self.device, dtype=torch.float32),
                                       noise[:, self.latent_channels:], levels).to(self.dtype)
        latents = noise[:, :self.latent_channels] * self.scheduler.init_noise_sigma
        copies = 2 if self.guided else 1
        embeds = self.prompt_embeds.repeat_interleave(b, dim=0)
        image, class_labels = image.repeat(copies, 1, 1, 1), levels.repeat(copies)
        with fixed_cpu_threads(self.device):
            for t in self.scheduler.timesteps:
                x = self.scheduler.scale_model_input(latents, t).repeat(copies, 1, 1, 1).to(self.dtype)
                pred = self.unet(torch.cat([x, image], dim=1), t, encoder_hidden_states=embeds,
                                 class_labels=class_labels).sample.to(torch.float32)
                if self.guided:
                    uncond, text = pred.chunk(2)
                    pred = uncond + self.guidance_scale * (text - uncond)
                latents = self.scheduler.step(pred, t, latents, eta=0.0).prev_sample
            # one window at a time: the x4 VAE decoding a 512-px window in float32 can take gigabytes
            decoded = [self.vae.decode(z[None] / self.vae_scaling).sample for z in latents]
        return torch.cat(decoded).to(torch.float32).clamp(-1.0, 1.0).cpu()


def load_upscaler(folder: str | Path, **options: Any) -> UpscalerWindowModel:
    """An `UpscalerWindowModel` from a local StableDiffusionUpscalePipeline folder; options go to it.
    Nothing is downloaded: a folder missing a part is refused with the loader's reason."""
    folder = Path(folder)
    index = read_index(folder)
    if index.get("_class_name") != UPSCALER_CLASS:
        raise ModelFolderError(f"{folder} holds a {index.get('_class_name')!r}, not a {UPSCALER_CLASS}")
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise ModelFolderError(f"an upscaler folder needs the transformers package ({exc}); "
                               "install worldstream with its dependencies (./install.sh)") from None
    from diffusers.utils import logging as diffusers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its import warns that torchvision (unused here) is missing
    try:
        from diffusers import StableDiffusionUpscalePipeline
    finally:
        transformers_logging.set_verbosity(verbosity)
    diffusers_logging.disable_progress_bar()  # loading bars would interleave with worldstream's output
    transformers_logging.disable_progress_bar()
    try:
        pipeline = StableDiffusionUpscalePipeline.from_pretrained(folder, local_files_only=True,
                                                                  low_cpu_mem_usage=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFolderError(f"could not load the upscaler in {folder}: {exc}") from None
    return UpscalerWindowModel(pipeline, **options)
