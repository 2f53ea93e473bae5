"""The install's progress and endings without Blender (issue 26, points 15 and 17): pip's bytes move the bar (with
--progress-bar=raw where that pip has it, else measured in pip's download folders), the seconds stay in the stage
line while pip unpacks, a reinstall starts at once, a killed pip is explained, and Blender's exit ends the command."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from hymotion_addon.core import backend_setup, command_task, pip_output, task_endings

PIP_23_HELP = """  --progress-bar <progress_bar>
                              Specify whether the progress bar should be used
                              [on, off] (default: on)
  --root-user-action <root_user_action>
"""
PIP_26_HELP = """  --progress-bar <progress_bar>
                              Specify whether the progress bar should be used.
                              In 'auto' mode, --quiet
                              will suppress all progress bars. [auto, on,
                              off, raw] (default: auto)
  --root-user-action <root_user_action>
                              Action if pip is run as a root user [warn,
"""


def test_raw_progress_is_asked_for_only_where_that_pip_offers_it():
    assert pip_output.supports_raw_progress(PIP_26_HELP)
    assert not pip_output.supports_raw_progress(PIP_23_HELP)
    assert not pip_output.supports_raw_progress("")
    here = pip_output.with_raw_progress([sys.executable, "-m", "pip", "install", "torch"])
    assert here[:5] == [sys.executable, "-m", "pip", "install", pip_output.RAW_PROGRESS_OPTION] or here == [
        sys.executable, "-m", "pip", "install", "torch"]


def test_raw_progress_lines_move_the_bar_during_the_torch_download():
    progress = pip_output.PipProgress()
    progress.read("Collecting torch")
    progress.read("  Downloading torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl (190.0 MB)")
    progress.read("Progress 0 of 190000000")
    assert progress.fraction() == 0.0
    progress.read("Progress 95000000 of 190000000")
    assert abs(progress.fraction() - progress.DOWNLOAD_SHARE / 2) < 1e-6
    assert progress.raw


def test_without_raw_progress_the_bytes_in_pips_download_folder_move_the_bar(tmp_path):
    progress = pip_output.PipProgress()
    progress.read("  Downloading torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl (1.0 MB)")
    folder = tmp_path / "pip-unpack-abc123"
    folder.mkdir()
    (folder / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"x" * 250_000)
    progress.saw_files(pip_output.download_folder_bytes(tmp_path))
    assert abs(progress.fraction() - progress.DOWNLOAD_SHARE * 0.25) < 1e-6


def test_the_seconds_stay_in_the_stage_line_while_pip_unpacks_many_packages(tmp_path):
    task = command_task.CommandTask("install", "Installing", [command_task.Step("Installing PyTorch", ["x"])],
                                    tmp_path / "log")
    task._pip.read("Installing collected packages: " + ", ".join(f"package-number-{n}" for n in range(30)))
    assert task.stage.startswith("Installing PyTorch: unpacking and installing 30 packages")
    assert task.stage.endswith(" s") and " · " in task.stage


def test_a_killed_pip_is_explained_as_killed_not_by_its_last_line(tmp_path):
    tail = ["Successfully uninstalled setuptools-65.5.0"]
    message = task_endings.failure_message("Installing PyTorch", -signal.SIGKILL, tail, tmp_path / "install.log")
    assert "killed (SIGKILL)" in message and "lack of memory" in message and "setuptools" not in message
    assert "killed (SIGKILL)" in task_endings.failure_message("Installing PyTorch", 137, tail, Path("log"))
    assert "ended from outside (SIGTERM)" in task_endings.failure_message("x", -signal.SIGTERM, tail, Path("log"))
    said = task_endings.failure_message("Installing PyTorch", 1, [
        "Looking in indexes: https://download.pytorch.org/whl/cpu",
        "ERROR: Could not find a version that satisfies the requirement torch (from versions: none)",
        "ERROR: No matching distribution found for torch"], Path("log"))
    assert "Could not find a version" in said and "No matching distribution" in said and "Looking" not in said


def test_blenders_exit_ends_a_running_commands_process_group(tmp_path):
    task = command_task.CommandTask(
        "install", "Installing",
        [command_task.Step("Waiting", [sys.executable, "-c", "import time; print('started', flush=True); "
                                                            "time.sleep(120)"])],
        tmp_path / "log").start()
    deadline = time.monotonic() + 30
    while (task._process is None or task.last_line != "started") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert task._process is not None
    pid = task._process.pid
    started = time.monotonic()
    task_endings.end_all()  # what atexit runs when Blender closes
    assert task.wait(10) and time.monotonic() - started < task_endings.END_WAIT_S + 5
    assert task.succeeded is False
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_a_reinstall_moves_the_old_environment_aside_at_once_and_removes_it_behind(tmp_path):
    env = tmp_path / "venv"
    (env / "lib").mkdir(parents=True)
    (env / "lib" / "big.bin").write_bytes(b"x" * 1000)
    aside = backend_setup.set_aside_for_removal(env)
    assert aside and not env.exists()
    deadline = time.monotonic() + 10
    while Path(aside).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(aside).exists()
    assert backend_setup.set_aside_for_removal(env) == ""
