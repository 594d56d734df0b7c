"""Atomic writes: what a killed writer leaves beside its target is gone after the next write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import REPO

from reranktune.io import atomic_dir, atomic_path

KILLED_WRITER = """
import sys, time
from reranktune.io import atomic_dir, atomic_path
with atomic_dir(sys.argv[1]) as tmp, atomic_path(sys.argv[2]) as tmp_file:
    (tmp / "half-written").write_text("x")
    tmp_file.write_text("half")
    print("inside", flush=True)
    time.sleep(60)
"""


def _kill_mid_write(folder, file) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(folder), str(file)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert proc.stdout.readline().strip() == "inside"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    folder, file = tmp_path / "data" / "prep", tmp_path / "metrics" / "prep.json"
    _kill_mid_write(folder, file)
    assert (
        len(list(folder.parent.glob(".prep.*"))) == 1
        and len(list(file.parent.glob(".prep.json.*"))) == 1
    )
    legacy = folder.parent / ".prep.k3j2x9ab"  # a leftover named before the pid was in the name
    legacy.mkdir()
    old = folder.parent / ".prep.old"  # killed between the two renames of the swap
    old.mkdir()

    with atomic_dir(folder) as tmp:
        (tmp / "train.json").write_text("{}")
    with atomic_path(file) as tmp:
        tmp.write_text("{}")

    assert sorted(p.name for p in folder.parent.iterdir()) == ["prep"]
    assert sorted(p.name for p in file.parent.iterdir()) == ["prep.json"]


def test_a_live_writers_temporary_folder_is_left_alone(tmp_path):
    folder = tmp_path / "prep"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".prep.{sleeper.pid}.abcd_123"
        live.mkdir()
        other_target = tmp_path / ".prep.x.999999.abcd_123"  # a temporary of the target "prep.x"
        other_target.mkdir()
        with atomic_dir(folder):
            pass
        assert live.exists() and other_target.exists()
    finally:
        sleeper.kill()
        sleeper.wait(10)
    # the pid is gone now: the next write takes the folder away
    with atomic_dir(folder):
        pass
    assert not live.exists() and other_target.exists()
