"""What the renderer tests share: one renderer (an EGL context) per test module, or a skip that
says which package is missing."""

import pytest

from worldstream.render import Renderer, RenderError


@pytest.fixture(scope="module")
def renderer():
    try:
        r = Renderer()
    except RenderError as exc:
        pytest.skip(str(exc))
    yield r
    r.close()
