"""The resolution-guided conditional denoiser, built on diffusers components.

The low-resolution condition goes through its own small convolutional encoder, is upsampled to
the target size and concatenated with the noisy image, together with the condition itself
upsampled bilinearly (as SR3 does: the network then only has to learn the detail); the target resolution (continuous metres per
pixel) gets a sinusoidal embedding of log2(m/px) and an MLP, and enters the UNet as its "class"
embedding (`class_embed_type="identity"`), which diffusers adds to the timestep embedding, so it
modulates every residual block's normalisation. Saved and loaded as a diffusers model (config.json
+ diffusion_pytorch_model.safetensors).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def resolution_embedding(metres_per_pixel: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) float m/px -> (B, dim) float32: sines and cosines of log2(m/px) at frequencies from
    1/16 to 8 cycles per octave, so resolutions an octave apart (one quadtree level) and far
    outside the training range both stay distinguishable."""
    if dim % 2:
        raise ValueError(f"resolution embedding dim must be even, got {dim}")
    x = torch.log2(metres_per_pixel.to(torch.float32)).reshape(-1, 1)
    half = dim // 2
    freqs = math.pi * torch.pow(2.0, torch.linspace(-4.0, 3.0, half, device=x.device)).reshape(1, -1)
    return torch.cat([torch.sin(x * freqs), torch.cos(x * freqs)], dim=1)


class ResolutionGuidedDenoiser(ModelMixin, ConfigMixin):
    """Predicts the noise in `sample` given the low-resolution `condition` and the target m/px.

    sample_size: window side in pixels; scale_factor: condition is sample_size / scale_factor
    pixels (2: one quadtree level, 4: as in the MetaEarth papers); channels: image channels.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, sample_size: int = 64, channels: int = 3, scale_factor: int = 2,
                 condition_channels: int = 32, block_out_channels: tuple[int, ...] = (64, 128, 256),
                 layers_per_block: int = 2, norm_num_groups: int = 32, resolution_embedding_dim: int = 64,
                 attention: bool = False):
        super().__init__()
        if sample_size % scale_factor:
            raise ValueError(f"sample_size {sample_size} must be a multiple of scale_factor {scale_factor}")
        time_dim = block_out_channels[0] * 4
        cc = condition_channels
        self.condition_encoder = nn.Sequential(
            nn.Conv2d(channels, cc, 3, padding=1), nn.SiLU(),
            nn.Conv2d(cc, cc, 3, padding=1), nn.SiLU(),
            nn.Conv2d(cc, cc, 3, padding=1),
        )
        self.resolution_mlp = nn.Sequential(
            nn.Linear(resolution_embedding_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        depth = len(block_out_channels)
        down = ["AttnDownBlock2D" if attention and k == depth - 1 else "DownBlock2D" for k in range(depth)]
        up = ["AttnUpBlock2D" if attention and k == 0 else "UpBlock2D" for k in range(depth)]
        self.unet = UNet2DModel(
            sample_size=sample_size, in_channels=2 * channels + cc, out_channels=channels,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=norm_num_groups,
            class_embed_type="identity", add_attention=attention)

    @property
    def scale_factor(self) -> int:
        return self.config.scale_factor

    @property
    def channels(self) -> int:
        return self.config.channels

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, condition: torch.Tensor,
                metres_per_pixel: torch.Tensor) -> torch.Tensor:
        """sample (B, C, n, n), condition (B, C, n/f, n/f), timestep (B,) or scalar, m/px (B,)
        -> predicted noise (B, C, n, n)."""
        condition = condition.to(self.dtype)
        size = sample.shape[-2:]
        features = F.interpolate(self.condition_encoder(condition), size=size, mode="bilinear", align_corners=False)
        upsampled = F.interpolate(condition, size=size, mode="bilinear", align_corners=False)
        emb = self.resolution_mlp(resolution_embedding(metres_per_pixel, self.config.resolution_embedding_dim)
                                  .to(self.dtype))
        return self.unet(torch.cat([sample.to(self.dtype), upsampled, features], dim=1), timestep, class_labels=emb).sample
