"""`generate --ray` on a local Ray cluster on loopback: the same bytes as a local run, even when a
worker is killed mid-run (Ray retries its batch), no finished chunk redone on a rerun, and clear
errors for a bad address or an unwritable store."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'worldstream[ray]'; install.sh does)")

REGION = ["--seed", "5", "--center", "300,-200", "--radius", "300", "--levels", "5:6", "--format", "glb,sidecars"]


def generate(out: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "worldstream", "generate", *REGION, "--out", str(out), "--quiet", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out_text, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return err


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def ray_task_pids() -> list[int]:
    """Processes running a batch: Ray names a worker's process after the task it runs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ray::export_batch" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_ray_export_matches_a_local_run_even_when_a_worker_dies_and_resumes_without_redoing(tmp_path):
    local, distributed = tmp_path / "local", tmp_path / "ray"
    reference = generate(local, wait=False)  # the local run, beside the cluster's start-up and the Ray run
    proc = generate(distributed, "--ray", "--workers", "2", "--ray-batch", "2", wait=False)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pids = ray_task_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)  # a worker dies in the middle of a batch
            killed = pids[0]
        time.sleep(0.05)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert killed is not None, "no Ray task was seen running"
    _, local_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, local_err
    expected = tree(local)
    assert len(expected) > 60 and tree(distributed) == expected  # byte-identical, every file
    again = generate(distributed, "--ray", "--workers", "2")
    assert ", 0 already done" not in again and "wrote 0 chunks" in again  # nothing redone
    assert tree(distributed) == expected


def test_a_bad_ray_address_or_an_unwritable_store_is_a_clear_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    t = time.monotonic()
    # the two independent runs start together
    bad_address, unwritable = (
        subprocess.Popen([sys.executable, "-m", "worldstream", "generate", *REGION, "--out", out, *ray],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for out, ray in ((str(tmp_path / "x"), ["--ray", "127.0.0.1:9"]), (str(blocked / "store"), ["--ray"])))
    _, err = bad_address.communicate(timeout=120)
    assert bad_address.returncode != 0 and "no Ray cluster at 127.0.0.1:9" in err and "Traceback" not in err, err
    assert time.monotonic() - t < 60
    _, err = unwritable.communicate(timeout=120)
    assert unwritable.returncode != 0 and "Traceback" not in err and "cannot create the output folder" in err, err


def test_ray_compressed_export_equals_the_local_compressed_export_byte_for_byte(tmp_path):
    """`generate --ray --compress`: the Ray tasks get the run's MeshOptions, so each compressed
    mesh.glb (meshopt + WebP) is the local `--compress` run's, byte for byte."""
    pytest.importorskip("meshopt", reason="--compress needs meshopt (pip install 'worldstream[compress]')")
    region = ["--levels", "5:6", "--radius", "150", "--format", "glb", "--compress"]  # these override REGION's
    local, distributed = tmp_path / "local", tmp_path / "ray"
    reference = generate(local, *region, wait=False)
    err = generate(distributed, *region, "--ray", "--workers", "2")
    _, local_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, local_err
    expected = tree(local)
    glbs = [p for p in expected if p.endswith("mesh.glb")]
    assert len(glbs) >= 4, expected
    assert tree(distributed) == expected, err
    data = (local / glbs[0]).read_bytes()
    assert b"EXT_meshopt_compression" in data[:20 + int.from_bytes(data[12:16], "little")]  # compressed indeed
