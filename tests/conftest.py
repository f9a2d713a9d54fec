"""Shared fixtures: one small world per session (chunks are cached by the World)."""

import pytest
import torch

from worldstream.core import World, WorldSpec

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def spec() -> WorldSpec:
    return WorldSpec(seed=7)


@pytest.fixture(scope="session")
def world(spec) -> World:
    return World(spec, cache_chunks=64)
