"""worldstream: unbounded, deterministic 3D worlds generated block by block.

The subpackages live in the repository's top-level folders (see pyproject.toml):
``worldstream.core`` (world model and generators), ``worldstream.exporters``,
``worldstream.unreal_bridge`` and ``worldstream.airsim_adapter``.
"""

__version__ = "0.1.0"
