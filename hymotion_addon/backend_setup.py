"""Setting the backend up from Blender: a virtual environment holding the backend and PyTorch, the weights download
and the doctor report. Each is a list of commands run one after another on a background thread, their output going
to a log file, so Blender's UI only reads a few attributes from a timer and never waits.

Pure Python (no bpy): the operators in operators.py start these tasks and the preferences draw their state.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

VENV_FOLDER = "backend-env"
LOG_FOLDER = "logs"
BACKEND_WHEEL_GLOB = "hymotion-*.whl"
DOCTOR_OK_EXIT_CODES = (0, 1)  # 1 = the report has a FAIL finding, which is still a report to show
_OUTPUT_CHUNK = 4096


def venv_python(env_dir: str | os.PathLike) -> Path:
    """The interpreter of a virtual environment made by ``python -m venv env_dir``."""
    env_dir = Path(env_dir)
    return env_dir / "Scripts" / "python.exe" if os.name == "nt" else env_dir / "bin" / "python"


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is installed (its nvidia-smi tool is on PATH): then PyTorch should be a CUDA build."""
    return shutil.which("nvidia-smi") is not None


def backend_package_source(extension_root: str | os.PathLike) -> Path | None:
    """What pip installs: the backend/ sources in a source checkout, else the newest wheel the extension carries."""
    root = Path(extension_root)
    source_dir = root / "backend"
    if (source_dir / "pyproject.toml").is_file():
        return source_dir
    wheels = sorted((root / "wheels").glob(BACKEND_WHEEL_GLOB), key=lambda path: path.stat().st_mtime)
    return wheels[-1] if wheels else None


@dataclass(frozen=True)
class Step:
    """One command of a task. ``capture_stdout`` keeps stdout apart from the log (for a JSON answer)."""

    label: str
    command: list[str]
    ok_exit_codes: tuple[int, ...] = (0,)
    capture_stdout: bool = False


def torch_advice(system: str, nvidia: bool, torch_index_url: str) -> str:
    """What to tell the user about the PyTorch build the install will get; empty when it is the right one.

    pip's default torch for Linux is a CUDA build and for macOS uses Metal; on Windows it is CPU-only, so an NVIDIA
    GPU there needs PyTorch's CUDA wheel index, which the user copies from PyTorch's install page.
    """
    if system == "Windows" and nvidia and not torch_index_url.strip():
        return (
            "This PC has an NVIDIA GPU, but the default PyTorch for Windows runs on the CPU only. Paste the CUDA "
            "wheel index from PyTorch's 'Get started' page into 'PyTorch index' and install again for GPU speed."
        )
    if not nvidia and system in ("Linux", "Windows"):
        return "No NVIDIA GPU found (nvidia-smi is missing): the backend will run on the CPU, which is slow."
    return ""


def install_steps(
    base_python: str,
    env_dir: str | os.PathLike,
    package_source: str | os.PathLike,
    *,
    nvidia: bool,
    torch_index_url: str = "",
    extra_pip_args: Sequence[str] = (),
) -> list[Step]:
    """Create (or reuse) the environment, then install PyTorch, then the backend with its dependencies, then check it.

    PyTorch goes first and on its own so that a CUDA index given by the user applies to torch alone; the backend's
    own install then finds torch already satisfied. ``extra_pip_args`` reach every pip call (e.g. ``--no-index
    --find-links DIR`` on a machine without internet).
    """
    python = str(venv_python(env_dir))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", *extra_pip_args]
    torch_command = [*pip, "torch"]
    if torch_index_url.strip():
        torch_command += ["--index-url", torch_index_url.strip()]
    backend_requirement = f"{Path(package_source).resolve()}[doctor]" if nvidia else str(Path(package_source).resolve())
    return [
        Step("Creating the virtual environment", [base_python, "-m", "venv", str(env_dir)]),
        Step("Installing PyTorch" + (" (CUDA)" if nvidia else ""), torch_command),
        Step("Installing the HY-Motion backend", [*pip, backend_requirement]),
        Step("Checking the backend", [python, "-m", "hymotion.cli", "--version"]),
    ]


def download_steps(python: str, variant: str, model_dir: str = "") -> list[Step]:
    command = [python, "-m", "hymotion.cli", "download", "--variant", variant]
    if model_dir:
        command += ["--model-dir", model_dir]
    return [Step(f"Downloading HY-Motion {variant} and its text encoders", command)]


def doctor_steps(python: str, variant: str | None = None, model_dir: str = "", offline: bool = True) -> list[Step]:
    command = [python, "-m", "hymotion.cli", "doctor", "--json"]
    if variant:
        command += ["--variant", variant]
    if model_dir:
        command += ["--model-dir", model_dir]
    if offline:
        command.append("--offline")
    return [Step("Checking this machine", command, ok_exit_codes=DOCTOR_OK_EXIT_CODES, capture_stdout=True)]


tasks: dict[str, CommandTask] = {}
"""This session's setup tasks by name ("install", "download", "doctor"): the latest of each, running or finished."""


def doctor_report() -> str:
    """The text of the last finished doctor run, '' if there is none."""
    task = tasks.get("doctor")
    return doctor_report_text(task.stdout) if task is not None and task.succeeded else ""


def doctor_report_text(stdout: str) -> str:
    """The human report out of ``hymotion doctor --json`` output (schema hymotion-doctor/1)."""
    try:
        report = json.loads(stdout)
        return str(report["report_text"])
    except (ValueError, KeyError, TypeError):
        return "The doctor gave no readable report. Its output:\n" + stdout.strip()[-2000:]


def subprocess_environment() -> dict[str, str]:
    """Blender's environment without the variables that would point another Python at Blender's own libraries."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
    environment["PYTHONNOUSERSITE"] = "1"
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


@dataclass
class CommandTask:
    """Runs ``steps`` in order on a thread; state is read (never written) by Blender's UI thread.

    ``name`` is the key in :data:`tasks` ("install", "download", "doctor"), ``title`` what the user reads."""

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
    finished_at: float | None = None
    succeeded: bool | None = None
    cancelled: bool = False
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> CommandTask:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
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
    def fraction(self) -> float:
        """Share of steps finished, for a progress bar."""
        if self.succeeded:
            return 1.0
        return self.step_index / max(len(self.steps), 1)

    def cancel(self) -> None:
        """Stop the running command; the task then ends as failed with a 'cancelled' message."""
        self.cancelled = True
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the task finished within ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _run(self) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {self.title}\n")
            try:
                for index, step in enumerate(self.steps):
                    self.step_index = index
                    if self.cancelled:
                        raise _StepFailed(f"{self.title} was cancelled.")
                    self._run_step(step, log)
            except _StepFailed as failure:
                self.message = str(failure)
                log.write(f"FAILED: {self.message}\n")
                self.succeeded = False
            else:
                self.step_index = len(self.steps)
                self.message = f"{self.title}: done."
                log.write("DONE\n")
                self.succeeded = True
            finally:
                self.finished_at = time.monotonic()

    def _run_step(self, step: Step, log: IO[str]) -> None:
        log.write(f"---- {step.label}: {' '.join(step.command)}\n")
        log.flush()
        self.last_line = step.label
        try:
            self._process = subprocess.Popen(
                step.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if step.capture_stdout else subprocess.STDOUT,
                env=self.environment,
            )
        except OSError as error:
            raise _StepFailed(f"{step.label} could not start ({error}). Check the Python path; log: {self.log_path}")
        if self.cancelled:  # cancel() came between the check before this step and the start of its process
            self._process.terminate()
        captured: list[bytes] = []
        readers = []
        if step.capture_stdout:
            readers.append(threading.Thread(target=_collect, args=(self._process.stdout, captured), daemon=True))
            readers[-1].start()
            output = self._process.stderr
        else:
            output = self._process.stdout
        for line in _lines(output):
            log.write(line + "\n")
            log.flush()
            if line.strip():
                self.last_line = line.strip()[-200:]
        code = self._process.wait()
        for reader in readers:
            reader.join()
        self.stdout = b"".join(captured).decode("utf-8", "replace")
        if self.cancelled:
            raise _StepFailed(f"{self.title} was cancelled during '{step.label}'.")
        if code not in step.ok_exit_codes:
            raise _StepFailed(
                f"{step.label} failed (exit code {code}): {self.last_line}. The whole output is in {self.log_path}"
            )


class _StepFailed(Exception):
    pass


def _collect(stream: IO[bytes], chunks: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(_OUTPUT_CHUNK), b""):
        chunks.append(chunk)


def _lines(stream: IO[bytes]):
    """Lines of a child's output, also split at carriage returns so progress bars show as they move."""
    pending = b""
    for chunk in iter(lambda: stream.read1(_OUTPUT_CHUNK), b""):
        pending += chunk
        *complete, pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def default_base_python(blender_python: str) -> str:
    """The Python that creates the environment: Blender's own when it is a real interpreter, else python3 on PATH."""
    if Path(blender_python).name.lower().startswith("python"):
        return blender_python
    return shutil.which("python3") or shutil.which("python") or blender_python


def system_name() -> str:
    return platform.system()
