"""A task that runs a list of commands in the background (pip, the doctor, a download) in a process group of its
own: it keeps their output for the log, reports progress, and can be cancelled or ended with Blender."""

from __future__ import annotations

import io
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Self

from hymotion.shared.processes import own_group, signal_group

from .pip_output import PipProgress, with_raw_progress, words
from .task_endings import end_with_blender, failure_message

_OUTPUT_CHUNK = 4096
TAIL_LINES = 6
"""The last lines of a step's output kept for its failure message (the log has them all)."""
STAGE_DETAIL_COLUMNS = 72
"""What pip is doing, at most this long in the stage line, so the seconds after it always show."""


@dataclass(frozen=True)
class Step:
    """One command of a task. ``capture_stdout`` keeps stdout apart from the log (for a JSON answer); ``weight`` is
    the step's share of the progress bar (about its share of a typical install's time)."""

    label: str
    command: list[str]
    ok_exit_codes: tuple[int, ...] = (0,)
    capture_stdout: bool = False
    weight: float = 1.0


@dataclass
class CommandTask:
    """Runs ``steps`` in order on a thread; state is read (never written) by Blender's UI thread.

    ``name`` is the key in :data:`tasks` ("install", "download", "doctor"), ``title`` what the user reads. The log
    gets every line of output and the time each step took."""

    name: str
    title: str
    steps: list[Step]
    log_path: Path
    environment: dict[str, str] | None = None
    step_index: int = 0
    last_line: str = ""
    message: str = ""
    stdout: str = ""
    started_at: float = 0.0
    step_started_at: float = 0.0
    finished_at: float | None = None
    succeeded: bool | None = None
    cancelled: bool = False
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _pip: PipProgress = field(default_factory=PipProgress, repr=False)
    _tail: list[str] = field(default_factory=list, repr=False)

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = self.step_started_at = time.monotonic()
        end_with_blender(self)
        self._thread = threading.Thread(target=self._run, name=f"hymotion-{self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self.succeeded is None

    @property
    def step_label(self) -> str:
        return self.steps[min(self.step_index, len(self.steps) - 1)].label if self.steps else ""

    @property
    def stage(self) -> str:
        """What happens now, in whole words: the step, what pip is doing in it, and the seconds it has taken."""
        detail = self._pip.phase or (self.last_line if self.last_line != self.step_label else "")
        seconds = f" · {time.monotonic() - self.step_started_at:.0f} s"  # always shown: a long detail is cut instead
        return (f"{self.step_label}: {words(detail, STAGE_DETAIL_COLUMNS)}" if detail else self.step_label) + seconds

    @property
    def fraction(self) -> float:
        """Share of the work done, for a progress bar: finished steps by weight, plus the current step's share."""
        if self.succeeded:
            return 1.0
        total = sum(step.weight for step in self.steps) or 1.0
        done = sum(step.weight for step in self.steps[: self.step_index])
        current = self.steps[self.step_index].weight if self.step_index < len(self.steps) else 0.0
        return min((done + current * self._step_fraction()) / total, 1.0)

    def _step_fraction(self) -> float:
        return self._pip.fraction()

    def cancel(self) -> None:
        """Stop the running command (and whatever it started); the task then ends as failed with a 'cancelled'
        message."""
        self.cancelled = True
        process = self._process
        if process is not None and process.poll() is None:
            signal_group(process)

    def kill(self) -> None:
        """End the running command and what it started at once (SIGKILL; Blender's exit, after cancel() did not)."""
        process = self._process
        if process is not None and process.poll() is None:
            signal_group(process, kill=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the task finished within ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _run(self) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {self.title}\n")
            timings: list[str] = []
            try:
                self._before(log)
                for index, step in enumerate(self.steps):
                    self.step_index = index
                    if self.cancelled:
                        raise StepFailed(f"{self.title} was cancelled.")
                    started = time.monotonic()
                    try:
                        self._run_step(step, log)
                    finally:
                        seconds = time.monotonic() - started
                        timings.append(f"{step.label} {seconds:.1f} s")
                        log.write(f"---- {step.label}: took {seconds:.1f} s\n")
                self.step_index = len(self.steps)
                self.message = self._after(log, True) or f"{self.title}: done."
                log.write(f"DONE: {self.message}\n")
                self.succeeded = True
            except Exception as error:  # a failed step, or anything unexpected: the task must end either way
                self._fail(log, error)
            finally:
                self.finished_at = time.monotonic()
                log.write(f"==== {self.finished_at - self.started_at:.1f} s in all ({'; '.join(timings)})\n")

    def _fail(self, log: IO[str], error: Exception) -> None:
        self.message = str(error) if isinstance(error, StepFailed) else (
            f"{self.title} stopped by an unexpected error ({error!r}). The log is {self.log_path}")
        log.write(f"FAILED: {self.message}\n")
        try:
            self.message = self._after(log, False) or self.message
        finally:
            self.succeeded = False

    def _before(self, log: IO[str]) -> None:
        """Work before the first step (subclasses)."""

    def _after(self, log: IO[str], succeeded: bool) -> str:
        """Work after the last step or a failure (subclasses); returns the message to show, '' for the default.
        Raising after a success turns the task into a failure."""
        return ""

    def _run_step(self, step: Step, log: IO[str]) -> None:
        log.write(f"---- {step.label}: {shlex.join(step.command)}\n")
        log.flush()
        self.last_line = step.label
        self._tail = []
        self._pip = PipProgress()
        self.step_started_at = time.monotonic()
        pip_step = step.command[1:4] == ["-m", "pip", "install"]
        command = with_raw_progress(step.command, self.environment) if pip_step else step.command
        if command != step.command:
            log.write("---- (with --progress-bar=raw: this pip reports its download bytes)\n")
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if step.capture_stdout else subprocess.STDOUT,
                env=self.environment,
                **own_group(),
            )
        except OSError as error:
            raise StepFailed(f"{step.label} could not start ({error}). Check the Python path; log: {self.log_path}") \
                from None
        if self.cancelled:  # cancel() came between the check before this step and the start of its process
            signal_group(self._process)
        captured: list[bytes] = []
        readers = []
        if step.capture_stdout:
            readers.append(threading.Thread(target=_collect, args=(self._process.stdout, captured), daemon=True))
            readers[-1].start()
            output = self._process.stderr
        else:
            output = self._process.stdout
        # A pipe (stdout=PIPE, or stderr=PIPE where stdout is captured), buffered since bufsize is left at -1.
        assert isinstance(output, io.BufferedReader)
        for line in _lines(output):
            log.write(line + "\n")
            log.flush()
            if line.strip():
                self.last_line = line.strip()
                self._tail = [*self._tail[-(TAIL_LINES - 1):], self.last_line]
                if pip_step:
                    self._pip.read(line)
        code = self._process.wait()
        for reader in readers:
            reader.join()
        self.stdout = b"".join(captured).decode("utf-8", "replace")
        if self.cancelled:
            raise StepFailed(f"{self.title} was cancelled during '{step.label}'.")
        if code not in step.ok_exit_codes:
            raise StepFailed(failure_message(step.label, code, self._tail, self.log_path))


class StepFailed(Exception):
    pass


def _collect(stream: IO[bytes], chunks: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(_OUTPUT_CHUNK), b""):
        chunks.append(chunk)


def _lines(stream: io.BufferedReader) -> Iterator[str]:
    """Lines of a child's output, also split at carriage returns so progress bars show as they move."""
    pending = b""
    for chunk in iter(lambda: stream.read1(_OUTPUT_CHUNK), b""):
        pending += chunk
        *complete, pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")
