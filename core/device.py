"""Device handling, in one place: every torch tensor the core creates is placed by `default_device`."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """CUDA when present, else CPU; ``WORLDSTREAM_DEVICE`` (e.g. ``cpu``) overrides."""
    forced = os.environ.get("WORLDSTREAM_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def as_tensor(values, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """Any array-like (numpy, list, scalar, tensor) as a tensor of `dtype` on `device`."""
    device = device or default_device()
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    return torch.as_tensor(values, dtype=dtype, device=device)
