"""High-order degradation: realistic low-resolution conditions made from high-resolution crops.

As in Real-ESRGAN and MetaEarth, the classical chain (blur, resize, noise, JPEG) is applied twice
with random strengths before the final resize to the condition size, so the model learns to
refine imperfect coarse inputs, as the cascade's own coarser levels are. Randomness comes only from
the explicit numpy Generator passed in.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

_RESAMPLE = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.BOX)


@dataclass(frozen=True)
class Degradation:
    """Ranges the strengths are drawn from, per round."""

    rounds: int = 2
    blur_sigma: tuple[float, float] = (0.2, 1.5)  # input pixels
    resize: tuple[float, float] = (0.6, 1.2)  # intermediate scale
    noise_sigma: tuple[float, float] = (0.0, 0.04)  # of the [0, 1] range
    jpeg_quality: tuple[int, int] = (50, 95)

    def describe(self) -> str:
        return (f"{self.rounds} rounds of blur sigma {self.blur_sigma} px, resize x{self.resize}, "
                f"Gaussian noise sigma {self.noise_sigma}, JPEG quality {self.jpeg_quality}; then resize")


def _resize(img: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    pil = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8))
    out = pil.resize((width, height), _RESAMPLE[rng.integers(len(_RESAMPLE))])
    return np.asarray(out, dtype=np.float32) / 255.0


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255.0


def degrade(hr: np.ndarray, scale_factor: int, rng: np.random.Generator, params: Degradation = Degradation()
            ) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] -> (H / f, W / f, 3) float32 in [0, 1]."""
    h, w = hr.shape[:2]
    if h % scale_factor or w % scale_factor:
        raise ValueError(f"image {h}x{w} is not a multiple of the scale factor {scale_factor}")
    img = hr.astype(np.float32)
    for _ in range(params.rounds):
        sigma = rng.uniform(*params.blur_sigma)
        img = np.stack([gaussian_filter(img[..., c], sigma, mode="reflect") for c in range(3)], axis=-1)
        s = rng.uniform(*params.resize)
        img = _resize(img, max(4, round(img.shape[0] * s)), max(4, round(img.shape[1] * s)), rng)
        sigma_n = rng.uniform(*params.noise_sigma)
        if rng.random() < 0.4:  # grey noise: the same in every channel
            img = img + rng.normal(0.0, sigma_n, img.shape[:2] + (1,)).astype(np.float32)
        else:
            img = img + rng.normal(0.0, sigma_n, img.shape).astype(np.float32)
        img = _jpeg(np.clip(img, 0.0, 1.0), rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1))
    return _resize(img, h // scale_factor, w // scale_factor, rng)
