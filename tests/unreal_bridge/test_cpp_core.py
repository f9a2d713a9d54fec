"""Build and test the WorldStream plugin's C++ core (unreal_bridge/unreal/WorldStreamCore) with
CMake and ctest: protocol v1 against fixtures from the Python protocol module, REPLACE swaps,
frames, GLB checks on a `worldstream generate` chunk, and a 30 s live flight against
`worldstream serve` on 127.0.0.1. Skips only when cmake, ctest or a C++ compiler is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "unreal_bridge" / "unreal" / "WorldStreamCore"


def _tools_missing() -> str | None:
    for tool in ("cmake", "ctest"):
        if shutil.which(tool) is None:
            return tool
    if not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        return "a C++ compiler (g++)"
    return None


@pytest.mark.skipif(_tools_missing() is not None, reason=f"C++ core not built: {_tools_missing()} is not installed")
def test_cpp_core_builds_and_passes_ctest(tmp_path: Path) -> None:
    build = tmp_path / "build"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    subprocess.run(["cmake", "-S", str(CORE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DPython3_EXECUTABLE={sys.executable}"], check=True, capture_output=True, text=True, env=env)
    made = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-4000:]
    tested = subprocess.run(["ctest", "--test-dir", str(build), "-j2", "--output-on-failure", "-V"],
                            capture_output=True, text=True, env=env, timeout=300)
    out = tested.stdout + tested.stderr
    figures = [line for line in out.splitlines() if "live flight:" in line or line.split(": ", 1)[-1].startswith("  ")]
    print("\n".join(line for line in out.splitlines() if "checks passed" in line or " sec" in line) + "\n"
          + "\n".join(figures))
    assert tested.returncode == 0, out[-8000:]
    assert "100% tests passed" in out, out[-4000:]
    assert "no hole" in out, "the live flight did not report full coverage:\n" + "\n".join(figures)


def test_airsim_settings_writes_the_plugin_ini_consistently(tmp_path: Path) -> None:
    """`worldstream airsim settings --unreal-ini`: the plugin's PlayerStart stands on the world origin,
    which is settings.json's OriginGeopoint, and the server URL / token are passed through."""
    import json

    from worldstream.cli import main

    ini, settings = tmp_path / "DefaultGame.ini", tmp_path / "settings.json"
    assert main(["airsim", "settings", "--seed", "7", "--chunk-size", "64", "--num-levels", "5", "--out", str(settings),
                 "--unreal-ini", str(ini), "--server", "ws://127.0.0.1:9000/", "--token", "s3cret"]) == 0
    lines = ini.read_text().splitlines()
    assert lines[0] == "[/Script/WorldStream.WorldStreamSubsystem]"
    assert "ServerUrl=ws://127.0.0.1:9000/" in lines and "Token=s3cret" in lines
    assert "PlayerStartEnu=(X=0.000000,Y=0.000000,Z=0.000000)" in lines
    doc = json.loads(settings.read_text())
    origin = doc["worldstream"]["world"]["origin"]
    assert doc["OriginGeopoint"] == {"Latitude": origin["lat"], "Longitude": origin["lon"], "Altitude": origin["alt"]}
