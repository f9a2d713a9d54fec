"""Device handling, in one place: every torch tensor the core creates is placed by `default_device`."""

from __future__ import annotations

import os
from contextlib import contextmanager

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


def inference_dtype(device: torch.device) -> torch.dtype:
    """Weights' dtype for inference: float16 on CUDA, float32 elsewhere (CPU half is slow and
    partly unsupported); ``WORLDSTREAM_DTYPE=float32`` forces full precision everywhere."""
    forced = os.environ.get("WORLDSTREAM_DTYPE")
    if forced:
        return getattr(torch, forced)
    return torch.float16 if device.type == "cuda" else torch.float32


def place_module(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """`module` moved to `device` and cast to `dtype`, cast only when it is not in `dtype` already
    (diffusers models warn on every dtype cast)."""
    module = module.to(device=device)
    return module if module.dtype == dtype else module.to(dtype=dtype)


@contextmanager
def fixed_cpu_threads(device: torch.device, threads: int = 1):
    """Run CPU float work on a fixed number of intra-op threads, then restore the count.

    CPU kernels (oneDNN convolutions, reductions) split their sums by thread count, so the same
    input gives different last bits with 1 or 2 threads; results meant to be byte-identical in any
    process (generated worlds) are computed with `threads` threads whatever the process set.
    Parallelism on the CPU comes from worker processes instead. No effect for other devices."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
