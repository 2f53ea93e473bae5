"""What pip is doing, in words: its output lines turned into a stage, a package and a fraction for the install bar."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

STAGE_COLUMNS = 96

_SIZE_UNITS = {"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


_COLLECTING = re.compile(r"^Collecting (\S+)")


_DOWNLOADING = re.compile(r"^Downloading (\S+) \(([\d.]+) (kB|KB|MB|GB)\)")


_PROCESSING = re.compile(r"^Processing (\S+)")


_BYTES_BAR = re.compile(r"([\d.]+)/([\d.]+) (kB|KB|MB|GB)")


_INSTALLING = re.compile(r"^Installing collected packages: (.+)")


_RAW_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
"""pip's --progress-bar=raw line: bytes of the current download so far, and its size."""

RAW_PROGRESS_OPTION = "--progress-bar=raw"
_raw_support: dict[str, bool] = {}


def supports_raw_progress(install_help: str) -> bool:
    """Whether a pip's ``pip install --help`` offers --progress-bar raw (pip 23, which Blender's Python brings,
    does not: it prints only its last bar line into a pipe, so the bar cannot move with the bytes)."""
    start = install_help.find("--progress-bar")
    if start < 0:
        return False
    block = install_help[start + 1:]
    following = re.search(r"\n\s*-", block)  # the next option's line
    choices = re.search(r"\[([^\]]*)\]", block[: following.start()] if following else block)
    return choices is not None and "raw" in re.split(r"[\s,]+", choices.group(1))


def with_raw_progress(command: list[str], environment: dict[str, str] | None = None) -> list[str]:
    """A ``python -m pip install ...`` command with --progress-bar=raw when that pip has it (asked once per
    Python: its install --help); else the command as it was."""
    python = command[0]
    if python not in _raw_support:
        try:
            answer = subprocess.run([python, "-m", "pip", "install", "--help"], capture_output=True, text=True,
                                    timeout=60, env=environment, stdin=subprocess.DEVNULL)
            _raw_support[python] = answer.returncode == 0 and supports_raw_progress(answer.stdout)
        except (OSError, subprocess.SubprocessError):
            _raw_support[python] = False
        if not _raw_support[python]:
            _raw_support.pop(python)  # ask again next time: the environment's pip may be upgraded meanwhile
            return command
    return [*command[:4], RAW_PROGRESS_OPTION, *command[4:]]


def _project(filename: str) -> str:
    """'torch' out of 'torch-2.13.0+cpu-cp311-….whl' or a path to it."""
    return Path(filename).name.split("-")[0]


@dataclass
class PipProgress:
    """Reads pip's output lines into a phase in whole words and a fraction of the step.

    Up to 60 % of a pip step is finding and downloading, moved by the bytes pip announces and reports (finished
    downloads, and the current one when pip draws its bar); unpacking and installing is the rest, moved by the
    packages whose metadata folder has appeared in site-packages (pip prints nothing while it unpacks)."""

    phase: str = ""
    announced_bytes: float = 0.0
    finished_bytes: float = 0.0
    current_bytes: float = 0.0
    current_done: float = 0.0
    installing: list[str] = field(default_factory=list)
    succeeded: bool = False
    shown: float = 0.0
    raw: bool = False
    """pip reports its bytes (--progress-bar=raw); else :meth:`saw_files` measures them on disk."""

    DOWNLOAD_SHARE = 0.6

    def read(self, line: str) -> None:
        text = line.strip()
        if match := _DOWNLOADING.match(text):
            if match.group(1).endswith(".metadata"):
                return
            size = float(match.group(2)) * _SIZE_UNITS[match.group(3)]
            self._finish_download()
            self.current_bytes, self.current_done = size, 0.0
            self.announced_bytes += size
            self.phase = f"downloading {_project(match.group(1))} ({match.group(2)} {match.group(3)})"
        elif match := _COLLECTING.match(text):
            self._finish_download()
            self.phase = f"finding {match.group(1)}"
        elif match := _PROCESSING.match(text):
            self._finish_download()
            self.phase = f"reading {_project(match.group(1))}"
        elif match := _INSTALLING.match(text):
            self._finish_download()
            self.installing = [name.strip() for name in match.group(1).split(",") if name.strip()]
            count = len(self.installing)
            self.phase = (f"unpacking and installing {count} package{'s' if count != 1 else ''} "
                          f"({', '.join(self.installing)}); pip is silent meanwhile")
        elif text.startswith("Successfully installed"):
            self.succeeded = True
        elif match := _RAW_PROGRESS.match(text):
            self.raw = True
            done, total = float(match.group(1)), float(match.group(2))
            if not self.current_bytes and total:
                self.current_bytes = total
                self.announced_bytes += total
            self.current_done = min(done, self.current_bytes)
        elif (match := _BYTES_BAR.search(text)) and self.current_bytes:
            total = float(match.group(2)) * _SIZE_UNITS[match.group(3)]
            self.current_done = min(float(match.group(1)) * _SIZE_UNITS[match.group(3)], total)

    def saw_files(self, downloaded: float) -> None:
        """Bytes pip has written so far into its download folders (every download of this step, finished or not):
        moves the current download's share when pip does not report its bytes itself."""
        if self.current_bytes and not self.raw:
            self.current_done = min(max(downloaded - self.finished_bytes, self.current_done), self.current_bytes)

    def _finish_download(self) -> None:
        if self.current_bytes:
            self.finished_bytes += self.current_bytes
            self.current_bytes = self.current_done = 0.0

    def fraction(self, installed_count: int = 0) -> float:
        """The step's share done; never moves back (a newly announced download grows the total)."""
        if self.succeeded:
            return 1.0
        if self.installing:
            share = min(installed_count, len(self.installing)) / len(self.installing)
            raw = self.DOWNLOAD_SHARE + (1.0 - self.DOWNLOAD_SHARE) * share
        elif self.announced_bytes:
            downloaded = self.finished_bytes + self.current_done
            raw = self.DOWNLOAD_SHARE * min(downloaded / self.announced_bytes, 1.0)
        else:
            raw = 0.0
        self.shown = max(self.shown, raw)
        return self.shown


def words(text: str, columns: int = STAGE_COLUMNS) -> str:
    """``text`` on one line of at most ``columns`` characters, cut between words, never inside one."""
    return textwrap.shorten(" ".join(text.split()), columns, placeholder=" …") if text.strip() else ""


def download_folder_bytes(temp_dir: Path) -> float:
    """Bytes in pip's download folders (``pip-unpack-*`` under its temporary folder), where pip writes each file
    while it downloads it; 0 when there are none."""
    total = 0.0
    for folder in temp_dir.glob("pip-unpack-*"):
        try:
            total += sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
        except OSError:  # pip removed the folder meanwhile
            continue
    return total


def site_packages_names(env_dir: Path) -> set[str]:
    """Normalised names of the distributions installed in an environment (their *.dist-info folders)."""
    names: set[str] = set()
    for folder in [*env_dir.glob("lib/python*/site-packages"), env_dir / "Lib" / "site-packages"]:
        if folder.is_dir():
            names.update(normalised_name(entry.name.split("-")[0]) for entry in os.scandir(folder)
                         if entry.name.endswith(".dist-info"))
    return names


def normalised_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
