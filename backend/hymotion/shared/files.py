"""The one atomic write: a file appears whole under its name or not at all.

Every writer goes through a scratch file in the same folder whose name is unique to that writer
(``.<stem>.<random>.partial<suffix>``), flushed and synced to disk, then renamed over the real name with
``os.replace``, and the folder itself is synced so the rename survives a power cut. Two writers of one file (two
farm workers encoding one prompt into the shared embeddings folder, two Blenders saving presets) never share a scratch
file, so the last rename wins with a whole file and readers see the old file or a new whole one. A kill can leave a
hidden ``*.partial*`` file beside the real one, never a truncated file under the real name
(hymotion.farm.planning.remove_partial_files sweeps them).

Standard library only: the add-on imports it in Blender.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

PARTIAL_MARK = ".partial"  # in the name of a file still being written: ".<stem>.<random>.partial<suffix>"


def scratch_path(path: Path) -> Path:
    """A name beside ``path`` that no other writer uses; it keeps the suffix, since some writers (np.savez given a
    name, Blender's save) choose the format from it."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex}{PARTIAL_MARK}{path.suffix}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch path for the caller (or a program it runs) to fill; on a clean exit the scratch file is
    synced and renamed over ``path``, on any error it is removed. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_path(path)
    try:
        yield scratch
        _sync_file(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    _sync_folder(path.parent)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a binary handle to the scratch file, then publish it as ``path`` (see :func:`replacing`).
    The file gets the permissions a plain ``open()`` gives (the umask's)."""
    with replacing(path) as scratch:
        with open(scratch, "xb") as handle:
            write(handle)
    return Path(path)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomically(path, lambda handle: handle.write(data))


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8 (newlines as given, on every system)."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def _sync_file(path: Path) -> None:
    """Flush the file's data to disk before the rename, so a power cut cannot leave the new name on an empty file."""
    with open(path, "r+b" if os.name == "nt" else "rb") as handle:  # Windows syncs only a handle open for writing
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; systems that cannot open or sync a folder (Windows) are left as they are."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
