"""The web viewer shipped with the package, in headless Chromium against a real server on loopback."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests import browser
from worldstream.core import ChunkKey
from worldstream.unreal_bridge.lod import ancestors

SKY = np.array([0x9C, 0xC3, 0xE6])


def test_viewer_files_are_served_from_the_package_without_any_cdn(server):
    base = f"http://127.0.0.1:{server}"
    page = urllib.request.urlopen(f"{base}/viewer/").read().decode()
    assert "importmap" in page and "http" not in page.split("<body>")[0].replace('http-equiv', '')
    js = urllib.request.urlopen(f"{base}/viewer/viewer.js").read().decode()
    assert "from 'three'" in js and "https://" not in js
    three = urllib.request.urlopen(f"{base}/viewer/vendor/three/build/three.module.js")
    assert three.headers["Content-Type"].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/viewer/../server.py")
    assert err.value.code == 404


@pytest.mark.skipif(browser.chromium() is None, reason="chromium is not installed (./install.sh installs it)")
def test_viewer_streams_terrain_in_headless_chromium_with_zero_errors(server, tmp_path):
    url = f"http://127.0.0.1:{server}/viewer/?fly=path&speed=60&agl=150"
    state, png = browser.open_page(url, ready_js="window.viewerStatus && viewerStatus.meshes >= 12 && viewerStatus.frames > 60"
                                   " && viewerStatus.stats !== null && Object.keys(viewerStatus.levels).length >= 2", state_js="window.viewerStatus", timeout=150)
    (tmp_path / "viewer.png").write_bytes(png)
    print(f"screenshot: {tmp_path / 'viewer.png'}")
    assert state is not None, "the page never ran its script"
    assert state["errors"] == []
    assert state["connected"] and state["chunks"] >= 12 and state["meshes"] >= 12
    assert sum(state["levels"].values()) == state["resident"] and len(state["levels"]) >= 2  # several LODs at once
    assert state["stats"]["client"]["sent_chunks"] > 0 and state["stats"]["client"]["required"] > 0
    assert state["agl"] is not None and 20 < state["agl"] < 400  # the path follows the ground
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    lower = image[image.shape[0] // 2:]
    not_sky = np.abs(lower - SKY).sum(axis=2) > 40
    assert not_sky.mean() > 0.5, f"only {not_sky.mean():.0%} of the lower half shows terrain"
    assert lower[not_sky].std(axis=0).mean() > 4.0  # textured and lit, not a flat fill
    drawn = [ChunkKey.parse(k) for k in state["drawn"]]
    assert len(drawn) == state["meshes"] - state["hidden"] > 0
    for k in drawn:  # REPLACE refinement on the client: no drawn chunk lies over another
        assert not any(a in drawn for a in ancestors(k)), k
