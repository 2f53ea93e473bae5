"""What a stopped ``hymotion-bake`` leaves behind (issue 30, point 7): a SIGKILL cannot be cleaned up after, so its
scratch folder carries its pid and the next run removes it; a Blender stopped while saving leaves ``<out>@``, which
the bake removes however Blender ended. (Ending Blender's process group on a SIGKILL is shared/processes.py's.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from backend_helpers import process_gone
from test_bake_signals import EVENT_TIMEOUT_S, fake_blender_started, start_bake_with_fake_blender

from hymotion import bake
from hymotion.shared.scratch import remove_abandoned, scratch_folder

# Stands in for Blender stopped in the middle of saving: writes "<out>@" (the manifest names out) and fails.
HALF_SAVING_BLENDER = """#!{python}
import json, sys
out = json.load(open(sys.argv[-1]))["out"]
open(out + "@", "wb").write(b"BLENDER-v405 half a file")
sys.exit(3)
"""


def finished_pid() -> int:
    """The pid of a process that has ended and been reaped: no process has it now (until the kernel reuses it)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_scratch_folder_removes_those_of_runs_that_were_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    abandoned = tmp_path / f"{bake.SCRATCH_PREFIX}{finished_pid()}-x1"
    (abandoned / "clips").mkdir(parents=True)
    running = tmp_path / f"{bake.SCRATCH_PREFIX}{os.getppid()}-x2"  # a live process's: kept
    running.mkdir()
    other = tmp_path / "hymotion-farm-123-x3"  # another prefix: not ours to judge
    other.mkdir()
    with scratch_folder(bake.SCRATCH_PREFIX) as folder:
        assert folder.name.startswith(f"{bake.SCRATCH_PREFIX}{os.getpid()}-")
        assert not abandoned.exists() and running.is_dir() and other.is_dir()
    assert not folder.exists()


@pytest.mark.skipif(not Path("/proc").is_dir() or not hasattr(os, "mkfifo"), reason="needs POSIX and /proc")
def test_a_bake_killed_with_sigkill_leaves_a_scratch_folder_the_next_run_removes(tmp_path):
    killed, reader, scratch_root = start_bake_with_fake_blender(tmp_path, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        children, scratch = fake_blender_started(reader)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=EVENT_TIMEOUT_S)
        assert Path(scratch).is_dir(), "nothing runs after a SIGKILL"
        assert remove_abandoned(scratch_root, bake.SCRATCH_PREFIX) == [Path(scratch)]
        assert not list(scratch_root.glob(f"{bake.SCRATCH_PREFIX}*"))
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
        for pid in children:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_blender_stopped_while_saving_leaves_no_half_saved_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fake = tmp_path / "fake-blender"
    fake.write_text(HALF_SAVING_BLENDER.format(python=sys.executable))
    fake.chmod(0o755)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks\n")
    out = tmp_path / "library.blend"
    code = bake.main([str(prompts), "--out", str(out), "--blender", str(fake), "--model", "tiny-random",
                      "--device", "cpu", "--steps", "1", "--duration", "1", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 1 and "exit code 3" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "fake-blender", "prompts.txt", "tmp"]
    assert not list((tmp_path / "tmp").glob(f"{bake.SCRATCH_PREFIX}*")), "the scratch folder is removed too"
