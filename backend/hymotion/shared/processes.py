"""Child processes in a process group of their own, and ending the whole group: the one way the backend's commands
(hymotion-bake's Blender, the farm's bake task) and the add-on (the backend service, the installer's steps) start a
child, so that stopping it also stops everything it started and a Ctrl-C in a terminal reaches only us.

Standard library only: the add-on imports it in Blender.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any


def own_group(hide_window: bool = False) -> dict[str, Any]:
    """Popen options that start the child in its own process group (POSIX: a new session, whose id is the child's
    pid; Windows: a new process group, with no console window when ``hide_window``)."""
    if sys.platform != "win32":
        return {"start_new_session": True}
    flags = subprocess.CREATE_NEW_PROCESS_GROUP | (subprocess.CREATE_NO_WINDOW if hide_window else 0)
    return {"creationflags": flags}


def signal_group(process: subprocess.Popen, kill: bool = False) -> None:
    """SIGTERM (``kill``: SIGKILL) to the child's whole group; on Windows terminate(), which ends the child.

    Only while the child runs: once it is reaped, its pid (the group's id) may belong to another process."""
    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        elif kill:
            process.kill()
        else:
            process.terminate()
    except ProcessLookupError:
        pass


def end_group(process: subprocess.Popen, grace_s: float = 0.0) -> int:
    """End the child's group and reap the child: SIGTERM first when ``grace_s`` > 0 (time to clean up), then
    SIGKILL to whatever is left; returns its exit code. No zombie, no orphan."""
    if grace_s > 0:
        signal_group(process)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    signal_group(process, kill=True)
    return process.wait()
