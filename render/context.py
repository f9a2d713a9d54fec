"""The headless OpenGL context: EGL through moderngl (Mesa llvmpipe on a CPU, the NVIDIA EGL driver
where a GPU is present); no display, no X server."""

from __future__ import annotations

from ..core.errors import WorldstreamError

REQUIRED_GL = 330
DEBIAN_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1"


class RenderError(WorldstreamError, RuntimeError):
    """The renderer cannot run here, or was asked for something it cannot draw."""


def create_context():
    """A standalone moderngl context on EGL (OpenGL >= 3.3 core), or RenderError naming what is
    missing."""
    try:
        import moderngl
    except ImportError as exc:
        raise RenderError(f"the renderer needs the Python package moderngl ({exc}); run ./install.sh "
                          "or pip install moderngl") from exc
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=REQUIRED_GL)
    except Exception as exc:  # noqa: BLE001 - glcontext raises plain Exceptions with the EGL error text
        raise RenderError(f"no headless OpenGL {REQUIRED_GL // 100}.{REQUIRED_GL % 100 // 10} context could be made "
                          f"through EGL ({exc}); on Debian install the packages {DEBIAN_PACKAGES} "
                          "(./install.sh does, as root), or NVIDIA's EGL driver on a GPU machine") from exc
    return ctx


def renderer_name(ctx) -> str:
    """The GL renderer string, e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)'."""
    return str(ctx.info.get("GL_RENDERER", "unknown"))
