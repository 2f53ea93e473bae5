"""Motion files appear whole or not at all: a process killed at a random moment while it writes clips leaves no
truncated .npz or .json under a clip's name (docs/protocol.md's reliability section quotes KILLS and the count)."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from hymotion.pipeline.motion import MotionClip

KILLS = 30
FORMATS = ("npz", "json")
REPLY_TIMEOUT_S = 60.0
# A clip far longer than the model makes (360 frames), so that writing it takes tens of milliseconds and most kills
# land inside a write, where a plain open()+write() leaves a truncated file.
FRAMES = {"npz": 5_000, "json": 1_000}
# When to kill, after the writer has started: spans several writes of either format.
KILL_AFTER_S = (0.02, 0.25)

# Imports once, then forks one writer per round, so 30 rounds cost 30 forks instead of 30 interpreter start-ups. A
# writer saves clips under new names until it is killed (or its parent is gone, or it has written MAX_WRITES files).
WRITER_HOST = """
import os, sys
from pathlib import Path
import numpy as np
from hymotion.pipeline.motion import MotionClip
MAX_WRITES = 200
host = os.getpid()
for command in sys.stdin:
    folder, fmt, frames = command.split()
    pid = os.fork()
    if pid == 0:
        rng = np.random.default_rng(0)
        frames = int(frames)
        clip = MotionClip(rng.normal(size=(frames, 3)), rng.normal(size=(frames, 22, 4)),
                          rng.normal(size=(frames, 22, 3)), prompt="a person walks", seed=0, duration=1.0)
        for n in range(MAX_WRITES):
            if os.getppid() != host:
                break
            clip.save(Path(folder) / f"clip_{n}.{fmt}", fmt)
        os._exit(0)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


class WriterHost:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER_HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=os.environ,
        )
        assert self.process.stdin and self.process.stdout
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)

    def reply(self) -> str:
        assert self.selector.select(REPLY_TIMEOUT_S), "the writer host did not answer"
        return self.stdout.readline().strip()

    def start_writer(self, folder: Path, fmt: str) -> int:
        self.stdin.write(f"{folder} {fmt} {FRAMES[fmt]}\n")
        self.stdin.flush()
        return int(self.reply())

    def close(self) -> None:
        self.stdin.close()
        assert self.process.wait(REPLY_TIMEOUT_S) == 0
        self.stdout.close()


@pytest.fixture
def writer_host() -> Iterator[WriterHost]:
    host = WriterHost()
    yield host
    host.close()


def _readable(path: Path) -> bool:
    try:
        clip = MotionClip.load(path)
    except Exception:  # noqa: BLE001 - any failure to read the file back means it was cut short
        return False
    return clip.rotations.shape[1:] == (22, 4) and clip.frames == len(clip.positions)


def test_killing_a_writer_at_random_moments_leaves_no_truncated_clip(writer_host, tmp_path) -> None:
    chooser = random.Random(17)
    truncated, written, interrupted = 0, 0, 0
    for round_number in range(KILLS):
        fmt = FORMATS[round_number % len(FORMATS)]
        folder = tmp_path / f"round{round_number}"
        folder.mkdir()
        pid = writer_host.start_writer(folder, fmt)
        # Not a wait for the process: the random moment of the kill, drawn from a fixed seed.
        threading.Event().wait(chooser.uniform(*KILL_AFTER_S))
        os.kill(pid, signal.SIGKILL)
        assert writer_host.reply() == "reaped"
        clips = sorted(folder.glob(f"clip_*.{fmt}"))
        truncated += sum(not _readable(path) for path in clips)
        written += len(clips)
        interrupted += bool(list(folder.glob(".*.partial*")))  # hymotion.shared.files.scratch_path
    assert truncated == 0, f"{truncated} of {written} clips were cut short by {KILLS} kills"
    assert written > KILLS, "the writers got to write"
    # About 40% of the kills land inside a write (12-13 of 30 measured); a quarter of that still shows that killed
    # writes leave only their hidden scratch file.
    assert interrupted >= KILLS // 10, f"only {interrupted} kills landed inside a write; the test would prove nothing"


def test_a_failed_write_leaves_the_previous_file_and_no_scratch(tmp_path) -> None:
    path = tmp_path / "clip.npz"
    clip = MotionClip(np.zeros((30, 3)), np.tile([1.0, 0, 0, 0], (30, 22, 1)), np.zeros((30, 22, 3)), prompt="old")
    clip.save(path)

    class Unsavable(MotionClip):
        def arrays(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        Unsavable(clip.translation, clip.rotations, clip.positions, prompt="new").save(path)
    assert MotionClip.load(path).prompt == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npz"]


def test_a_saved_clip_has_the_permissions_of_a_plain_file(tmp_path) -> None:
    if not hasattr(os, "fchmod"):
        pytest.skip("POSIX permissions only")
    path = MotionClip(np.zeros((30, 3)), np.zeros((30, 22, 4)), np.zeros((30, 22, 3))).save(tmp_path / "c.json", "json")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_the_kill_figures_quoted_in_the_docs_match_the_test() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"{KILLS} kills survived, 0 files lost" in text
