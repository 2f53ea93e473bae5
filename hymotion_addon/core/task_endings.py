"""How a set-up task's command ends when it is not by itself: a failure explained in words (a command killed by a
signal, e.g. for lack of memory, is not explained by pip's last success line), and every running command ended
together with Blender, so no pip keeps writing into the environment after Blender closed (issue 26)."""

from __future__ import annotations

import atexit
import signal
import time
from pathlib import Path
from typing import Protocol

from .pip_output import words

END_WAIT_S = 3.0
"""How long Blender's exit waits for the commands to stop after SIGTERM before it kills them (pip stops within a
second when it is not in the middle of unpacking a large file)."""

FAILURE_COLUMNS = 700
"""Room for a command's error line and its hint (the preferences wrap it)."""
_EXIT_BY_SIGNAL = 128
"""A shell reports a command killed by signal N as exit code 128 + N."""


class EndableTask(Protocol):
    @property
    def running(self) -> bool: ...

    def cancel(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def kill(self) -> None: ...


_tasks: list[EndableTask] = []
_registered = False


def end_with_blender(task: EndableTask) -> None:
    """Remember a started task, so that Blender's exit (atexit) ends its command."""
    global _registered
    _tasks[:] = [*(known for known in _tasks if known.running), task]
    if not _registered:
        atexit.register(end_all)
        _registered = True


def end_all() -> None:
    """Stop every running task's command: SIGTERM to its process group, then SIGKILL after END_WAIT_S."""
    running = [task for task in list(_tasks) if task.running]
    for task in running:
        task.cancel()
    deadline = time.monotonic() + END_WAIT_S
    for task in running:
        if not task.wait(max(deadline - time.monotonic(), 0.0)):
            task.kill()


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def failure_message(label: str, code: int, tail: list[str], log_path: Path) -> str:
    """Why a step failed, in words: killed by a signal (negative exit code, or 128 + N from a shell), else the
    command's own error lines (a 'ERROR:' or 'error:' line and its hint) or its last line."""
    killed = 0
    if code < 0:
        killed = -code
    elif code - _EXIT_BY_SIGNAL in (signal.SIGKILL, signal.SIGTERM):
        killed = code - _EXIT_BY_SIGNAL
    if killed:
        name = signal_name(killed)
        why = ("it was killed (SIGKILL), most often by the system for lack of memory. Close other programs and "
               "press the button again" if killed == signal.SIGKILL else
               f"it was ended from outside ({name}). Press the button again")
        return f"{label} stopped: {why}. The output up to then is in {log_path}"
    errors = [index for index, line in enumerate(tail) if line.lower().startswith("error:") or ": error:" in line]
    said = " ".join(tail[errors[0]:]) if errors else (tail[-1] if tail else "no output")
    return f"{label} failed (exit code {code}): {words(said, FAILURE_COLUMNS)} The whole output is in {log_path}"
