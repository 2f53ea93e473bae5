"""`hymotion-bake` stopped by SIGTERM or Ctrl-C (SIGINT) while Blender runs: Blender and whatever it started end
with it, and its scratch folder (the clips and the job manifest) is removed."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from backend_helpers import process_gone

from hymotion.bake import SCRATCH_PREFIX

EVENT_TIMEOUT_S = 120.0
# Stands in for Blender: starts a child of its own (as Blender's helpers would), reports both pids and the manifest's
# folder through the FIFO the test named, then waits to be killed.
FAKE_BLENDER = """#!{python}
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.environ["HYMOTION_TEST_FIFO"], "w") as fifo:
    fifo.write(f"{{os.getpid()}} {{helper.pid}} {{os.path.dirname(sys.argv[-1])}}\\n")
time.sleep(600)
"""


def start_bake_with_fake_blender(tmp_path: Path, stderr: int) -> tuple[subprocess.Popen, int, Path]:
    """hymotion-bake on one prompt with the tiny model and FAKE_BLENDER, its scratch folders under tmp_path/tmp;
    returns the process, the read end of the FIFO the fake Blender writes its pid to once started, and that folder."""
    fake = tmp_path / "fake-blender"
    fake.write_text(FAKE_BLENDER.format(python=sys.executable))
    fake.chmod(0o755)
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks\n")
    environment = {
        **os.environ, "HYMOTION_TEST_FIFO": str(fifo), "TMPDIR": str(scratch_root),
        "HYMOTION_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
    }
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    bake = subprocess.Popen(
        [sys.executable, "-m", "hymotion.bake", str(prompts), "--out", str(tmp_path / "library.blend"),
         "--blender", str(fake), "--model", "tiny-random", "--device", "cpu", "--steps", "1", "--duration", "1"],
        env=environment, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
    )
    return bake, reader, scratch_root


def fake_blender_started(reader: int) -> tuple[list[int], str]:
    """Wait (bounded) for the fake Blender's line on the FIFO: the pids of it and its child, and its scratch folder."""
    with selectors.DefaultSelector() as selector, os.fdopen(reader, "r") as started:
        selector.register(started, selectors.EVENT_READ)
        assert selector.select(EVENT_TIMEOUT_S), "the fake Blender never started"
        blender_pid, helper_pid, scratch = started.readline().split()
    return [int(blender_pid), int(helper_pid)], scratch


@pytest.mark.skipif(not Path("/proc").is_dir() or not hasattr(os, "mkfifo"), reason="needs POSIX and /proc")
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_bake_ends_its_blender_and_removes_its_scratch_folder(tmp_path, number) -> None:
    bake, reader, scratch_root = start_bake_with_fake_blender(tmp_path, stderr=subprocess.PIPE)
    children: list[int] = []
    try:
        children, scratch = fake_blender_started(reader)
        assert Path(scratch).parent == scratch_root and Path(scratch).is_dir()
        bake.send_signal(number)
        _, stderr = bake.communicate(timeout=EVENT_TIMEOUT_S)
        assert bake.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert all(map(process_gone, children)), "Blender and its child end with hymotion-bake"
        # Only the bake's own folders count: torch may leave its compile cache (torchinductor_<user>) in TMPDIR.
        assert not list(scratch_root.glob(f"{SCRATCH_PREFIX}*")), "the scratch folder is removed"
    finally:
        if bake.poll() is None:
            bake.kill()
            bake.communicate()
        for pid in children:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
