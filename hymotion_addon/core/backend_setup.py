"""Setting the backend up from Blender: a virtual environment holding the backend and PyTorch, the weights download
and the doctor report. Each is a list of commands run one after another on a background thread, their output going
to a log file, so Blender's UI only reads a few attributes from a timer and never waits.

The install keeps its outcome in a small file in the extension's user folder (:data:`INSTALL_STATE_FILE`): the
environment counts as installed only once the check step (torch imported, one tiny generation step on the device the
backend will use) has passed and written its findings there; a failed or cancelled install is remembered there too, so
Blender says so after a restart.

Pure Python (no bpy): the operators in hymotion_addon/ui/operators.py start these tasks, its preferences draw their state.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Sequence

from hymotion.shared.errors import bad_request
from hymotion.shared.files import write_text_atomically
from hymotion.shared.processes import own_group, signal_group

VENV_FOLDER = "backend-env"
LOG_FOLDER = "logs"
TEMP_FOLDER = "install-temp"
"""pip's temporary folders during an install (TMPDIR points here), removed when the install ends in any way."""
INSTALL_STATE_FILE = "backend-install.json"
INSTALL_STATE_SCHEMA = "hymotion-install/1"
BACKEND_WHEEL_GLOB = "hymotion-*.whl"
DOCTOR_OK_EXIT_CODES = (0, 1)  # 1 = the report has a FAIL finding, which is still a report to show
STAGE_COLUMNS = 96
_OUTPUT_CHUNK = 4096

INSTALLING, INSTALLED, FAILED, CANCELLED = "installing", "installed", "failed", "cancelled"


def venv_python(env_dir: str | os.PathLike) -> Path:
    """The interpreter of a virtual environment made by ``python -m venv env_dir``."""
    env_dir = Path(env_dir)
    return env_dir / "Scripts" / "python.exe" if os.name == "nt" else env_dir / "bin" / "python"


def backend_package_source(extension_root: str | os.PathLike) -> Path | None:
    """What pip installs: the backend/ sources in a source checkout, else the newest wheel the extension carries."""
    root = Path(extension_root)
    source_dir = root / "backend"
    if (source_dir / "pyproject.toml").is_file():
        return source_dir
    wheels = sorted((root / "wheels").glob(BACKEND_WHEEL_GLOB), key=lambda path: path.stat().st_mtime)
    return wheels[-1] if wheels else None


# --- Extra pip Arguments and online access --------------------------------------------------------------------------


def parse_pip_arguments(text: str, windows: bool = os.name == "nt") -> list[str]:
    """The Extra pip Arguments as a list, split like the system's shell does (on Windows a backslash is part of a
    path, not an escape); bad quoting is a user error with a hint, not a traceback."""
    try:
        arguments = shlex.split(text, posix=not windows)
    except ValueError as error:
        raise bad_request(
            f"Extra pip Arguments cannot be read: {error} in {text.strip()!r}.",
            "Close the quote or remove it; put a path with spaces in one pair of quotes, e.g. "
            "--find-links \"/path/with spaces\".",
        ) from None
    if windows:
        arguments = [argument[1:-1] if len(argument) > 1 and argument[0] == argument[-1] and argument[0] in "\"'"
                     else argument for argument in arguments]
    return arguments


_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_INDEX_OPTIONS = ("--index-url", "-i")


def remote_sources(extra_pip_args: Sequence[str], torch_index_url: str = "") -> list[str]:
    """Where the install's pip calls would reach over the network; empty when it needs no network.

    Every URL whose scheme is not ``file`` counts (an index, ``--find-links https://…``, a ``git+https`` requirement),
    wherever it stands, ``--no-index`` or not: pip still fetches ``--find-links`` pages beside it. pip's default index
    counts unless ``--no-index`` or an ``--index-url`` of the arguments replaces it. pip's own configuration files and
    PIP_* variables are not read here.
    """
    remote = [
        argument for argument in [*extra_pip_args, torch_index_url]
        if any(scheme.lower() != "file" for scheme in _URL_SCHEME.findall(argument))
    ]
    replaces_default_index = any(
        argument == "--no-index" or argument.startswith(_INDEX_OPTIONS) for argument in extra_pip_args
    )
    if not replaces_default_index:
        remote.append("pip's default package index (no --no-index or --index-url in Extra pip Arguments)")
    return remote


# --- which PyTorch build --------------------------------------------------------------------------------------------


AUTO, CPU_BUILD, CUDA_BUILD, DEFAULT_BUILD = "AUTO", "CPU", "CUDA", "DEFAULT"
PROC_NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def detect_nvidia_driver(nvidia_smi: str | None, proc_driver_present: bool) -> str:
    """Why this machine has an NVIDIA driver (its ``nvidia-smi`` tool, Linux's /proc entry), '' when it has none."""
    if nvidia_smi:
        return f"NVIDIA driver found ({nvidia_smi})"
    if proc_driver_present:
        return f"NVIDIA driver found ({PROC_NVIDIA_DRIVER})"
    return ""


def this_machine_nvidia_driver() -> str:
    """:func:`detect_nvidia_driver` for this machine."""
    return detect_nvidia_driver(shutil.which("nvidia-smi"), os.path.exists(PROC_NVIDIA_DRIVER))


def system_name() -> str:
    return platform.system()


@dataclass(frozen=True)
class InstallSize:
    """What an install downloads and takes on disk (environment with PyTorch and the backend), and who measured it."""

    download_gb: float
    disk_gb: float
    source: str


INSTALL_SIZES: dict[tuple[str, str], InstallSize] = {
    ("Linux", CUDA_BUILD): InstallSize(2.7, 5.9, "measured in issue 18: torch 2.13.0 with its CUDA 12 packages"),
    ("Linux", CPU_BUILD): InstallSize(0.3, 1.4, "measured: torch 2.13.0+cpu and the backend, Python 3.11"),
}
"""Measured sizes by (system, build); docs/blender.md carries the same table. Unmeasured pairs have no entry."""


def measured_sizes() -> str:
    """Every measured size in one line, e.g. for a tooltip."""
    return "; ".join(f"{system} {kind} build: {size.download_gb:.1f} GB to download, {size.disk_gb:.1f} GB on disk"
                     for (system, kind), size in INSTALL_SIZES.items())


@dataclass(frozen=True)
class TorchBuild:
    """The PyTorch build an install gets, why, and the package index it comes from ('' = pip's default index).

    ``missing`` is set when the build needs an index the user has not given yet: the install waits for it."""

    kind: str
    reason: str
    index_url: str = ""
    index_setting: str = ""
    missing: str = ""

    @property
    def label(self) -> str:
        return {CPU_BUILD: "CPU build", CUDA_BUILD: "CUDA build"}.get(self.kind, "default build")

    def size(self, system: str) -> InstallSize | None:
        return INSTALL_SIZES.get((system, self.kind))


CPU_INDEX_SETTING = "PyTorch CPU Index"
CUDA_INDEX_SETTING = "PyTorch CUDA Index"
_INDEX_SOURCE = "PyTorch's 'Get Started' page (choose Pip and the compute platform; copy the address after --index-url)"


def choose_torch_build(system: str, nvidia_driver: str, override: str = AUTO, cpu_index_url: str = "",
                       cuda_index_url: str = "") -> TorchBuild:
    """The PyTorch build for a machine: CUDA with an NVIDIA driver, else CPU (macOS: the one default build).

    A pure function of its inputs, so every machine can be tried in a test. pip's default torch is a CUDA build on
    Linux (about 4 GB of it useless without an NVIDIA GPU) and a CPU build on Windows; each build that the default
    index does not serve needs its index URL, which the user copies from PyTorch's site (the add-on names no package
    host itself).
    """
    if system == "Darwin":
        return TorchBuild(DEFAULT_BUILD, "macOS has one PyTorch build (it uses the Metal GPU on Apple silicon).")
    if system not in ("Linux", "Windows"):
        return TorchBuild(DEFAULT_BUILD, f"No CPU/CUDA choice is known for {system or 'this system'}.")
    if override == AUTO:
        kind = CUDA_BUILD if nvidia_driver else CPU_BUILD
        reason = (f"{nvidia_driver}." if nvidia_driver
                  else "No NVIDIA driver found (no nvidia-smi, no /proc/driver/nvidia), so a CUDA build could "
                       "not use a GPU here.")
    else:
        kind = override
        reason = "Chosen in PyTorch Build."
    index_url, setting = (cpu_index_url, CPU_INDEX_SETTING) if kind == CPU_BUILD else (cuda_index_url,
                                                                                        CUDA_INDEX_SETTING)
    index_url = index_url.strip()
    default_serves_it = (system, kind) in (("Linux", CUDA_BUILD), ("Windows", CPU_BUILD))
    missing = ""
    if not index_url and not default_serves_it:
        missing = (f"The {'CPU' if kind == CPU_BUILD else 'CUDA'} build of PyTorch for {system} comes from its own "
                   f"package index. Paste its address into {setting} (Installation Options), from {_INDEX_SOURCE}; "
                   f"or set PyTorch Build to the other build.")
    return TorchBuild(kind, reason, index_url, setting, missing)


# --- what an install runs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One command of a task. ``capture_stdout`` keeps stdout apart from the log (for a JSON answer); ``weight`` is
    the step's share of the progress bar (about its share of a typical install's time)."""

    label: str
    command: list[str]
    ok_exit_codes: tuple[int, ...] = (0,)
    capture_stdout: bool = False
    weight: float = 1.0


CHECK_PROMPT = "a person walks forward"
CHECK_PROGRAM = """
import json, platform, sys, tempfile
answer, sys.stdout = sys.stdout, sys.stderr
import torch
import hymotion
from hymotion.shared.jobs import GenerationSettings
from hymotion.pipeline.sampling import load_pipeline
with tempfile.TemporaryDirectory() as cache:
    pipeline = load_pipeline("tiny-random", plan="auto", cache_dir=cache)
    settings = GenerationSettings(prompts=[sys.argv[1]], durations=[1.0], steps=1)
    frames = [clip.frames for clip in pipeline.generate(settings)]
    placement = pipeline.describe()
json.dump({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda or "",
           "gpu_visible": torch.cuda.is_available(), "hymotion": hymotion.__version__,
           "device": placement["device"], "plan": placement["plan"], "frames": frames}, answer)
"""
"""The check step, run by the environment's Python: a broken torch or backend fails here, not at the first Generate.
It prints one JSON object (the versions and the device the tiny model ran on) and nothing else on stdout."""


def check_step(python: str) -> Step:
    return Step("Checking PyTorch and the backend", [python, "-c", CHECK_PROGRAM, CHECK_PROMPT],
                capture_stdout=True, weight=0.05)


def install_steps(
    base_python: str,
    env_dir: str | os.PathLike,
    package_source: str | os.PathLike,
    build: TorchBuild,
    extra_pip_args: Sequence[str] = (),
) -> list[Step]:
    """Create the environment, then install PyTorch, then the backend with its dependencies, then check it.

    PyTorch goes first and on its own so that the build's index applies to torch alone (its ``--index-url`` comes
    last, so it wins over one in ``extra_pip_args``); the backend's own install then finds torch already satisfied.
    ``extra_pip_args`` reach every pip call (e.g. ``--no-index --find-links DIR`` on a machine without internet).
    The weights are the shares of the issue-18 timing (environment 9 s, PyTorch 92 s, backend 49 s, check < 1 s).
    """
    python = str(venv_python(env_dir))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", *extra_pip_args]
    torch_command = [*pip, "torch"]
    if build.index_url:
        torch_command += ["--index-url", build.index_url]
    package = str(Path(package_source).resolve())
    backend_requirement = f"{package}[doctor]" if build.kind == CUDA_BUILD else package
    return [
        Step("Creating the virtual environment", [base_python, "-m", "venv", str(env_dir)], weight=0.06),
        Step(f"Installing PyTorch ({build.label})", torch_command, weight=0.6),
        Step("Installing the HY-Motion backend", [*pip, backend_requirement], weight=0.32),
        check_step(python),
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


# --- what pip is doing, in words ------------------------------------------------------------------------------------


_SIZE_UNITS = {"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
_COLLECTING = re.compile(r"^Collecting (\S+)")
_DOWNLOADING = re.compile(r"^Downloading (\S+) \(([\d.]+) (kB|KB|MB|GB)\)")
_PROCESSING = re.compile(r"^Processing (\S+)")
_BYTES_BAR = re.compile(r"([\d.]+)/([\d.]+) (kB|KB|MB|GB)")
_INSTALLING = re.compile(r"^Installing collected packages: (.+)")


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
        elif (match := _BYTES_BAR.search(text)) and self.current_bytes:
            total = float(match.group(2)) * _SIZE_UNITS[match.group(3)]
            self.current_done = min(float(match.group(1)) * _SIZE_UNITS[match.group(3)], total)

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


def _site_packages_names(env_dir: Path) -> set[str]:
    """Normalised names of the distributions installed in an environment (their *.dist-info folders)."""
    names = set()
    for folder in [*env_dir.glob("lib/python*/site-packages"), env_dir / "Lib" / "site-packages"]:
        if folder.is_dir():
            names.update(_normalise(entry.name.split("-")[0]) for entry in os.scandir(folder)
                         if entry.name.endswith(".dist-info"))
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- running the steps ----------------------------------------------------------------------------------------------


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

    def start(self) -> CommandTask:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = self.step_started_at = time.monotonic()
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
        seconds = time.monotonic() - self.step_started_at
        return words(f"{self.step_label}: {detail} · {seconds:.0f} s" if detail else
                     f"{self.step_label} · {seconds:.0f} s")

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
                        raise _StepFailed(f"{self.title} was cancelled.")
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
        self.message = str(error) if isinstance(error, _StepFailed) else (
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
        self._pip = PipProgress()
        self.step_started_at = time.monotonic()
        try:
            self._process = subprocess.Popen(
                step.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if step.capture_stdout else subprocess.STDOUT,
                env=self.environment,
                **own_group(),
            )
        except OSError as error:
            raise _StepFailed(f"{step.label} could not start ({error}). Check the Python path; log: {self.log_path}")
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
        pip_step = step.command[1:4] == ["-m", "pip", "install"]
        for line in _lines(output):
            log.write(line + "\n")
            log.flush()
            if line.strip():
                self.last_line = line.strip()
                if pip_step:
                    self._pip.read(line)
        code = self._process.wait()
        for reader in readers:
            reader.join()
        self.stdout = b"".join(captured).decode("utf-8", "replace")
        if self.cancelled:
            raise _StepFailed(f"{self.title} was cancelled during '{step.label}'.")
        if code not in step.ok_exit_codes:
            raise _StepFailed(
                f"{step.label} failed (exit code {code}): {words(self.last_line, 300)}. The whole output is in "
                f"{self.log_path}"
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


# --- the install and its remembered outcome -------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallRecord:
    """The outcome of the last install, kept in the user folder: ``state`` is installing / installed / failed /
    cancelled; ``versions`` (installed only) are what the check step found: python, torch, cuda, hymotion, device."""

    state: str
    message: str
    env_dir: str
    log_path: str
    build: str = ""
    versions: dict = field(default_factory=dict)
    time: str = ""
    schema: str = INSTALL_STATE_SCHEMA

    @property
    def summary(self) -> str:
        """The versions in one line, e.g. 'Python 3.11.7, torch 2.13.0+cpu, hymotion 0.1.0; checked on cpu'."""
        found = self.versions
        torch = found.get("torch", "?") + (f" (CUDA {found['cuda']})" if found.get("cuda") else "")
        return (f"Python {found.get('python', '?')}, torch {torch}, hymotion {found.get('hymotion', '?')}; "
                f"checked on {found.get('device', '?')}")


def read_install_record(user_dir: str | os.PathLike) -> InstallRecord | None:
    """The last install's outcome, or None when there was none (or its file is unreadable, which counts as none)."""
    try:
        data = json.loads((Path(user_dir) / INSTALL_STATE_FILE).read_text(encoding="utf-8"))
        if data.get("schema") != INSTALL_STATE_SCHEMA:
            return None
        return InstallRecord(**{key: data[key] for key in InstallRecord.__dataclass_fields__ if key in data})
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def write_install_record(user_dir: str | os.PathLike, record: InstallRecord) -> None:
    """Replace the record in one step (temporary file, then rename), so a crash never leaves half of one."""
    write_text_atomically(Path(user_dir) / INSTALL_STATE_FILE,
                          json.dumps({**asdict(record), "time": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))


def installed_python(user_dir: str | os.PathLike, env_dir: str | os.PathLike) -> Path | None:
    """The environment's Python when its install passed the check (and the environment is still there), else None."""
    record = read_install_record(user_dir)
    python = venv_python(env_dir)
    if record is None or record.state != INSTALLED or Path(record.env_dir) != Path(env_dir) or not python.is_file():
        return None
    return python


def check_findings(stdout: str) -> dict:
    """The check step's JSON answer; a check that answered nothing readable failed."""
    try:
        found = json.loads(stdout.strip().splitlines()[-1])
        if not isinstance(found, dict) or not {"python", "torch", "hymotion", "device"} <= set(found):
            raise ValueError(found)
        return found
    except (ValueError, IndexError):
        raise _StepFailed(f"The check gave no readable answer: {words(stdout, 200)!r}.") from None


@dataclass
class InstallTask(CommandTask):
    """The backend install: starts from an empty environment folder, keeps pip's temporary files in its own folder,
    and leaves its outcome in the user folder (:class:`InstallRecord`).

    Success = the check step passed; its findings are the record. A failure keeps the environment for diagnosis
    (the next install replaces it); Cancel removes the environment and pip's temporary files."""

    user_dir: Path = Path()
    env_dir: Path = Path()
    build: TorchBuild | None = None
    findings: dict = field(default_factory=dict)

    @property
    def temp_dir(self) -> Path:
        return self.user_dir / TEMP_FOLDER

    def start(self) -> InstallTask:
        environment = dict(self.environment if self.environment is not None else os.environ)
        for name in ("TMPDIR", "TEMP", "TMP"):
            environment[name] = str(self.temp_dir)
        environment["HF_HUB_OFFLINE"] = "1"  # the check runs the tiny model, which needs nothing from the Hub
        self.environment = environment
        self._record(INSTALLING, f"{self.title} started.")
        return super().start()

    def _step_fraction(self) -> float:
        installing = self._pip.installing
        if not installing:
            return self._pip.fraction()
        present = _site_packages_names(self.env_dir)
        return self._pip.fraction(sum(_normalise(name) in present for name in installing))

    def _record(self, state: str, message: str) -> None:
        write_install_record(self.user_dir, InstallRecord(
            state, message, str(self.env_dir), str(self.log_path), self.build.kind if self.build else "",
            self.findings,
        ))

    def _before(self, log: IO[str]) -> None:
        for folder, what in ((self.env_dir, "the previous environment"), (self.temp_dir, "old temporary files")):
            if folder.exists():
                started = time.monotonic()
                log.write(f"---- Removing {what}: {folder}\n")
                self.last_line = f"Removing {what}"
                left = _remove(folder)
                if left:
                    raise _StepFailed(f"Could not remove {what} at {folder} ({left}). Close programs that use it, "
                                      f"or delete the folder, then install again.")
                log.write(f"---- Removing {what}: took {time.monotonic() - started:.1f} s\n")
        self.temp_dir.mkdir(parents=True)

    def _after(self, log: IO[str], succeeded: bool) -> str:
        temp_left = _remove(self.temp_dir)
        if succeeded:
            self.findings = check_findings(self.stdout)
            record = InstallRecord(INSTALLED, "", str(self.env_dir), str(self.log_path), "", self.findings)
            message = f"Backend installed: {record.summary}." + self._device_note()
            log.write(f"CHECK: {json.dumps(self.findings)}\n")
            self._record(INSTALLED, message)
            return message
        if self.cancelled:
            env_left = _remove(self.env_dir)
            left = [f"{folder} ({why})" for folder, why in ((self.env_dir, env_left), (self.temp_dir, temp_left))
                    if why]
            message = ("Install cancelled. " + (f"Could not remove: {'; '.join(left)}; delete it by hand."
                                                if left else "The partial environment and pip's temporary files "
                                                "were removed."))
        else:
            message = (f"{self.message} The unfinished environment stays at {self.env_dir} for a look; Install "
                       f"Backend starts it anew." + (f" Temporary files left at {self.temp_dir}." if temp_left
                                                     else ""))
        log.write(f"{message}\n")
        self._record(CANCELLED if self.cancelled else FAILED, message)
        return message

    def _device_note(self) -> str:
        if self.build is not None and self.build.kind == CUDA_BUILD and not self.findings.get("gpu_visible"):
            return (" The CUDA build is installed but PyTorch sees no GPU: update the NVIDIA driver, or install "
                    "the CPU build (PyTorch Build).")
        return ""


def _remove(folder: Path) -> str:
    """Delete a folder tree; '' when it is gone, else why not."""
    if not folder.exists():
        return ""
    try:
        shutil.rmtree(folder)
    except OSError as error:
        return error.strerror or str(error)
    return ""


def start_install(
    user_dir: str | os.PathLike,
    env_dir: str | os.PathLike,
    log_path: str | os.PathLike,
    base_python: str,
    package_source: str | os.PathLike,
    build: TorchBuild,
    extra_pip_args: Sequence[str],
) -> InstallTask:
    """Start the install on its thread and make it this session's "install" task."""
    task = InstallTask(
        "install", "Installing the backend",
        install_steps(base_python, env_dir, package_source, build, extra_pip_args),
        Path(log_path), subprocess_environment(), user_dir=Path(user_dir), env_dir=Path(env_dir), build=build,
    )
    tasks["install"] = task.start()
    return task


def default_base_python(blender_python: str) -> str:
    """The Python that creates the environment: Blender's own when it is a real interpreter, else python3 on PATH."""
    if Path(blender_python).name.lower().startswith("python"):
        return blender_python
    return shutil.which("python3") or shutil.which("python") or blender_python

