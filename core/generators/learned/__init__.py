"""The learned backend: a resolution-guided diffusion cascade sampled on an unbounded window grid.

Importing this package registers the `learned` generator; it needs diffusers (a dependency).
"""

from . import generator  # noqa: F401  (registers "learned")
