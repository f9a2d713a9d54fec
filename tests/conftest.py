"""Shared fixtures: one small world per session (chunks are cached by the World), one chunk store on
disk for the processes that serve or simulate that world, and the benchmark short forms that check
correctness only, started early in the background.

The suite runs in parallel (pytest-xdist; pyproject's addopts say `-n auto --dist loadgroup`): one
worker per core, at most MAX_WORKERS (WORLDSTREAM_TEST_WORKERS overrides; `-n 0` runs serially).
Tests that share an expensive fixture stay on one worker (`xdist_group_of`)."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from worldstream.core import World, WorldSpec

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
MAX_WORKERS = 4  # more workers would each build the session fixtures again for little gain
IN_WORKER = "PYTEST_XDIST_WORKER" in os.environ


def pytest_xdist_auto_num_workers(config) -> int | None:
    """Workers for `-n auto`: WORLDSTREAM_TEST_WORKERS, else one per usable core, at most MAX_WORKERS
    (None: xdist's own rule, e.g. PYTEST_XDIST_AUTO_NUM_WORKERS)."""
    wanted = os.environ.get("WORLDSTREAM_TEST_WORKERS")
    if wanted:
        if not wanted.isdigit():
            raise pytest.UsageError(f"WORLDSTREAM_TEST_WORKERS must be a whole number of workers, got {wanted!r}")
        return int(wanted)
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


# Packages whose tests share a package- or session-scoped process or dataset (the simulator, the built
# dataset): each runs on one worker, so that fixture is built once.
SHARED_FIXTURE_PACKAGES = ("airsim_adapter", "dataset")
# Tests outside those packages that read the simulator package's chunk store (warm chunks)
SIMULATOR_STORE_TESTS = {"test_sim_benchmark_prints_its_real_time_factor": "airsim_adapter"}


def xdist_group_of(item) -> str | None:
    """The worker group of a test: its package where the package shares a fixture, its module where the
    module has module-scoped fixtures, else None (scheduled alone)."""
    parts = Path(str(item.fspath)).relative_to(TESTS).parts
    if item.originalname in SIMULATOR_STORE_TESTS:
        return SIMULATOR_STORE_TESTS[item.originalname]
    if parts[0] in SHARED_FIXTURE_PACKAGES:
        return parts[0]
    if parts[-1] == "test_benchmarks_short.py":
        return None  # each one its own subprocess
    return "/".join(parts)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Marks every test with its worker group (read by xdist's --dist loadgroup)."""
    for item in items:
        group = xdist_group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))

# Benchmark short forms (tests/test_benchmarks_short.py) whose assertions are about correctness only
# (bytes, orderings) and that print no speed target: they run one after another in one background
# lane from the session's start, on the core that the session's many single-threaded tests leave
# idle, and their tests only wait for the output. The benchmarks that print speed figures run in
# their tests, alone, as before.
BACKGROUND_BENCHES = {
    "test_seams_benchmark_orders_the_three_tilings": ("bench_seams.py",),
    "test_determinism_benchmark_finds_zero_differing_bytes": ("bench_determinism.py",),
}


def bench_command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / script), "--quick", *args]


class BackgroundBenches:
    """Runs the selected background benchmarks one after another in a thread; result(test) waits for
    one: (returncode, stdout, stderr)."""

    def __init__(self, wanted: list[str]):
        self._done = {name: threading.Event() for name in wanted}
        self._results: dict[str, tuple[int, str, str]] = {}
        self._proc: subprocess.Popen | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(wanted,), daemon=True)
        self._thread.start()

    def _run(self, wanted: list[str]) -> None:
        for name in wanted:
            try:
                if self._stopped:
                    break
                self._proc = subprocess.Popen(bench_command(*BACKGROUND_BENCHES[name]), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
                out, err = self._proc.communicate()
                self._results[name] = (self._proc.returncode, out, err)
            except Exception as exc:  # noqa: BLE001 - reported by the test that waits for it
                self._results[name] = (-1, "", f"could not run {name}'s benchmark: {exc!r}")
            finally:
                self._done[name].set()

    def has(self, test: str) -> bool:
        return test in self._done

    def result(self, test: str, timeout: float = 3600.0) -> tuple[int, str, str]:
        assert self._done[test].wait(timeout), f"{test}: its background benchmark did not finish in {timeout:.0f} s"
        return self._results[test]

    def stop(self) -> None:
        self._stopped = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._thread.join(30)


@pytest.fixture(scope="session", autouse=True)
def background_benches(request):
    """The session's background benchmark lane (see BACKGROUND_BENCHES), started when the session's
    first test starts, only for the background benchmarks whose tests were collected."""
    selected = {item.name for item in request.session.items}
    # in a parallel run the workers already keep every core busy: those tests run their benchmark inline
    lane = BackgroundBenches([] if IN_WORKER else [name for name in BACKGROUND_BENCHES if name in selected])
    yield lane
    lane.stop()


@pytest.fixture(scope="session")
def spec() -> WorldSpec:
    return WorldSpec(seed=7)


@pytest.fixture(scope="session")
def world(spec) -> World:
    return World(spec, cache_chunks=64)


@pytest.fixture(scope="session")
def world_store(tmp_path_factory, spec) -> Path:
    """A chunk disk cache (exporters.store format) of the session's world, for `worldstream sim` and
    `serve --cache` processes of that world: chunks one of them generated the next reads back,
    verified by their recorded SHA-256, instead of generating them again."""
    return tmp_path_factory.mktemp("world-store")
