"""Deterministic DDIM (eta = 0) sampling of facade views, and a chunk's learned facade views.

A block's initial latent noise comes from a torch generator seeded by the world seed and the
building id (`hashing.salt`), so a building's views are a pure function of (seed, building, its
renders, weights) whatever the order chunks are made in. The painted views keep the render's
pixels outside the vertical-face mask (inpainting); `render.bake` carries them onto the atlas.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ...device import fixed_cpu_threads
from ...errors import GeneratorError
from ...hashing import salt
from .facade_model import FacadeNet
from .height_sampling import prepare_sampling

FACADE_NOISE_TAG = 0x66616364  # "facd"


def block_noise_seed(seed: int, building: int) -> int:
    """The torch generator seed of a building's initial latents."""
    return salt(seed, FACADE_NOISE_TAG, building & 0xFFFFFFFF, building >> 32)


class FacadePainter:
    """`steps` DDIM steps with eta = 0 over a block's views. The UNet runs on `device` in `dtype`
    (float16 on CUDA); VAE and text encoder in float32."""

    def __init__(self, net: FacadeNet, steps: int = 20, device: torch.device | None = None,
                 dtype: torch.dtype | None = None):
        if steps < 1:
            raise GeneratorError(f"facade sampling steps must be >= 1, got {steps}")
        self.net, self.steps = net, steps
        self.device, self.dtype, self.text, self.scheduler = prepare_sampling(net, steps, device, dtype,
                                                                              net.view_embedding)

    @torch.no_grad()
    def paint(self, views: np.ndarray, mask: np.ndarray, noise_seed: int) -> np.ndarray:
        """views (N, S, S, 3) uint8 renders, mask (N, S, S) bool vertical faces -> (N, S, S, 3) uint8:
        the views with their masked pixels painted by the model."""
        net = self.net
        n, s = views.shape[:2]
        if (n, s) != (net.views, net.view_size) or mask.shape != views.shape[:3]:
            raise GeneratorError(f"the facade model paints {net.views} views of {net.view_size} px, got views "
                                 f"{views.shape} and mask {mask.shape}")
        x = torch.from_numpy(views.astype(np.float32).transpose(0, 3, 1, 2) * (2.0 / 255.0) - 1.0).to(self.device)
        m = torch.from_numpy(mask.astype(np.float32))[:, None].to(self.device)
        f = net.factor
        gen = torch.Generator(device="cpu").manual_seed(noise_seed)
        z = torch.randn((n, net.latent_channels, s // f, s // f), generator=gen).to(self.device)
        with fixed_cpu_threads(self.device):
            masked, mask_latent = net.condition(x, m)
            text = self.text.expand(n, -1, -1)
            z = z * self.scheduler.init_noise_sigma
            for t in self.scheduler.timesteps:
                eps = net.predict_noise(z, t, masked, mask_latent, text).to(torch.float32)
                z = self.scheduler.step(eps, t, z, eta=0.0).prev_sample
            painted = net.decode(z).float().cpu().numpy()
        painted = np.clip(np.rint((painted.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return np.where(mask[..., None], painted, views)


def chunk_facade_views(painter: FacadePainter, renderer, chunk, spec) -> tuple:
    """The learned views of every building a chunk's mesh draws: a tuple of render.multiview.BlockViews
    (frames with the painted colours and the coarse mesh's depth), in mesh order."""
    from ....exporters.chunk_mesh import chunk_mesh
    from ....render import RenderChunk
    from ....render.multiview import BlockViews, render_ring, vertical_mask

    mesh = chunk_mesh(chunk, spec)
    if not mesh.buildings:
        return ()
    rc = RenderChunk.from_mesh(chunk, mesh)
    out = []
    net = painter.net
    for b in mesh.buildings:
        frames = render_ring(renderer, rc, b, net.views, net.view_size)
        mask = np.stack([vertical_mask(f, net.tau) for f in frames])
        if not mask.any():
            continue
        painted = painter.paint(np.stack([f.scene for f in frames]), mask, block_noise_seed(spec.seed, int(b.id)))
        out.append(BlockViews(int(b.id), tuple(dataclasses.replace(f, scene=p, normals=None)
                                               for f, p in zip(frames, painted))))
    return tuple(out)
