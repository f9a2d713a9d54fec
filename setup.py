"""The compiled kernels of core/kernels.c (the rest of the build is in pyproject.toml).

optional=True: where no C compiler is found the install still succeeds and the core uses its
torch paths, which give the same bits (core/kernels.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "worldstream.core._kernels",
    sources=["core/kernels.c"],
    # no fused multiply-adds and no reassociation: the kernels must round like the torch paths
    extra_compile_args=["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math"],
    optional=True,
)])
