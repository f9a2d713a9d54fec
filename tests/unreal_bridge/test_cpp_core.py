"""Build and test the WorldStream plugin's C++ core (unreal_bridge/unreal/WorldStreamCore) with
CMake and ctest: protocol v1 against fixtures from the Python protocol module, REPLACE swaps,
frames, GLB checks on a `worldstream generate` chunk, and a 30 s live flight against
`worldstream serve` on 127.0.0.1 through websocketpp. Skips only when cmake, ctest or a C++
compiler is missing; the live flight alone skips, saying what to install, without websocketpp/Asio.

To save wall time the live flight starts as soon as its own binary is built, and the unit tests
are built and run while it flies (the flight is mostly waiting on its fixed 30 s). The build is
-O1 (the tool's speed does not matter) in a build folder kept between runs in the temporary
directory, one per checkout, so a rerun only recompiles what changed (WORLDSTREAM_CPP_BUILD
overrides the folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "unreal_bridge" / "unreal" / "WorldStreamCore"
LIVE_MISSING = "live_flight will be skipped: "


def _tools_missing() -> str | None:
    for tool in ("cmake", "ctest"):
        if shutil.which(tool) is None:
            return tool
    if not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        return "a C++ compiler (g++)"
    return None


def _generator() -> list[str]:
    """Ninja where installed: it compiles a target's sources while the libraries it links still build."""
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _build_dir() -> Path:
    if os.environ.get("WORLDSTREAM_CPP_BUILD"):
        return Path(os.environ["WORLDSTREAM_CPP_BUILD"])
    tag = hashlib.sha1(f"{CORE}|{sys.executable}|{_generator()}".encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"worldstream-cpp-build-{tag}"


@dataclass(frozen=True)
class CtestRun:
    units: str        # ctest -V output of every group but the live flight
    units_rc: int
    live: str         # ctest -V output of the live flight ("" when it was skipped)
    live_rc: int
    live_skipped: str  # why the live flight did not run ("" when it ran)


def _run(cmd: list[str], env: dict, what: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{what} failed:\n" + done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def ctest_run(tmp_path_factory) -> CtestRun:
    if _tools_missing() is not None:
        pytest.skip(f"C++ core not built: {_tools_missing()} is not installed")
    build = _build_dir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    configured = _run(["cmake", "-S", str(CORE), "-B", str(build), *_generator(), "-DCMAKE_BUILD_TYPE=Release",
                       "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG", f"-DPython3_EXECUTABLE={sys.executable}"],
                      env, "cmake configure")
    missing = next((line.split(LIVE_MISSING, 1)[1] for line in configured.splitlines() if LIVE_MISSING in line), "")
    ctest = ["ctest", "--test-dir", str(build), "--output-on-failure", "-V"]
    flight = log = None
    try:
        if not missing:
            _run(["cmake", "--build", str(build), "-j2", "--target", "live_flight"], env, "building live_flight")
            log = open(tmp_path_factory.mktemp("live") / "ctest.log", "w+")
            flight = subprocess.Popen([*ctest, "-R", "^live_flight$"], stdout=log, stderr=subprocess.STDOUT, text=True,
                                      env=env, start_new_session=True)
        _run(["cmake", "--build", str(build), "-j2"], env, "building the core tests")
        units = subprocess.run([*ctest, "-j2", *(["-E", "^live_flight$"] if flight else [])], capture_output=True,
                               text=True, env=env, timeout=300)
        live, live_rc = "", 0
        if flight is not None:
            live_rc = flight.wait(timeout=300)
            log.seek(0)
            live = log.read()
            flight = None
        return CtestRun(units.stdout + units.stderr, units.returncode, live, live_rc,
                        missing or ("live_flight was not run" if not live else ""))
    finally:
        if flight is not None and flight.poll() is None:  # a failed build: stop the flight and its server
            os.killpg(flight.pid, signal.SIGTERM)
            flight.wait(timeout=30)
        if log is not None:
            log.close()


def _summary(out: str) -> str:
    return "\n".join(line for line in out.splitlines()
                     if "checks passed" in line or " sec" in line or "live flight:" in line
                     or re.match(r"^\d+:   ", line))


def test_cpp_core_builds_and_passes_ctest(ctest_run: CtestRun) -> None:
    print(_summary(ctest_run.units))
    assert ctest_run.units_rc == 0, ctest_run.units[-8000:]
    assert "100% tests passed" in ctest_run.units, ctest_run.units[-4000:]
    for group in ("json", "protocol", "residency", "frames", "fixtures", "glb"):
        assert re.search(rf"^\d+: {group}: \d+ checks passed, 0 failed$", ctest_run.units, re.M), f"group {group} did not run"


def test_cpp_live_flight_against_worldstream_serve(ctest_run: CtestRun) -> None:
    """30 s at 60 m/s against a live `worldstream serve`: ends with every required chunk resident, no hole."""
    if ctest_run.live_skipped:
        pytest.skip(ctest_run.live_skipped)
    print(_summary(ctest_run.live))
    assert ctest_run.live_rc == 0, ctest_run.live[-8000:]
    assert "100% tests passed" in ctest_run.live, ctest_run.live[-4000:]
    assert "complete, no hole" in ctest_run.live, "the live flight did not report full coverage:\n" + _summary(ctest_run.live)


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
