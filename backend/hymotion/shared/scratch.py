"""Scratch folders that a killed run cannot leave behind for good, and the half-saved ``.blend@`` that Blender leaves
when stopped while saving (issue 30, point 7).

A SIGKILL gives a process no chance to clean up, so each scratch folder carries its owner's pid in its name
(``<prefix><pid>-<random>``), and the next run with that prefix removes the folders whose owner is gone. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Blender saves to "<file>@" and renames it over "<file>" when the save is complete.
BLENDER_SAVE_SUFFIX = "@"


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A fresh folder in the temporary folder, removed on the way out (also by Ctrl-C or SIGTERM unwinding); the
    folders of this prefix that killed runs left are removed first."""
    root = Path(tempfile.gettempdir())
    remove_abandoned(root, prefix)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_abandoned(root: Path, prefix: str) -> list[Path]:
    """Remove ``root``'s folders named ``<prefix><pid>-…`` whose process no longer runs; returns them."""
    removed = []
    for folder in root.glob(f"{prefix}*-*"):
        pid_text = folder.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or not folder.is_dir() or folder.is_symlink() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process (or no way to tell): leave its folder alone
    return True


def remove_blender_save_leftover(out: Path) -> None:
    """Remove the ``<out>@`` a Blender stopped in the middle of saving ``out`` leaves (the complete file, if any, is
    ``out`` itself)."""
    Path(f"{out}{BLENDER_SAVE_SUFFIX}").unlink(missing_ok=True)
