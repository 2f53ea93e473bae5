"""Setting the backend up from Blender: a virtual environment holding the backend and PyTorch, the weights download
and the doctor report. Each is a list of commands run one after another on a background thread, their output going
to a log file, so Blender's UI only reads a few attributes from a timer and never waits.

The install keeps its outcome in a small file in the extension's user folder (:data:`INSTALL_STATE_FILE`): the
environment counts as installed only once the check step (torch imported, one tiny generation step on the device the
backend will use) has passed and written its findings there; a failed or cancelled install is remembered there too, so
Blender says so after a restart.

Pure Python (no bpy): the operators in hymotion_addon/ui/operators.py start these tasks, its preferences draw their
state.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Sequence

from hymotion.shared.files import write_text_atomically

from .command_task import CommandTask, Step, StepFailed
from .package_sources import CUDA_BUILD, TorchBuild
from .pip_output import download_folder_bytes, normalised_name, site_packages_names, words

VENV_FOLDER = "backend-env"
LOG_FOLDER = "logs"
TEMP_FOLDER = "install-temp"
"""pip's temporary folders during an install (TMPDIR points here), removed when the install ends in any way."""
INSTALL_STATE_FILE = "backend-install.json"
INSTALL_STATE_SCHEMA = "hymotion-install/1"
BACKEND_WHEEL_GLOB = "hymotion-*.whl"
DOCTOR_OK_EXIT_CODES = (0, 1)  # 1 = the report has a FAIL finding, which is still a report to show

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


# --- which PyTorch build --------------------------------------------------------------------------------------------


"""Measured sizes by (system, build); docs/blender.md carries the same table. Unmeasured pairs have no entry."""


# --- what an install runs -------------------------------------------------------------------------------------------




CHECK_PROMPT = "a person walks forward"
CHECK_PROGRAM = """
import json, platform, sys, tempfile
answer, sys.stdout = sys.stdout, sys.stderr
import torch
import hymotion
from hymotion.shared.jobs import GenerationSettings
from hymotion.pipeline.loading import load_pipeline
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


# --- running the steps ----------------------------------------------------------------------------------------------


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
        raise StepFailed(f"The check gave no readable answer: {words(stdout, 200)!r}.") from None


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
            self._pip.saw_files(download_folder_bytes(self.temp_dir))
            return self._pip.fraction()
        present = site_packages_names(self.env_dir)
        return self._pip.fraction(sum(normalised_name(name) in present for name in installing))

    def _record(self, state: str, message: str) -> None:
        write_install_record(self.user_dir, InstallRecord(
            state, message, str(self.env_dir), str(self.log_path), self.build.kind if self.build else "",
            self.findings,
        ))

    def _before(self, log: IO[str]) -> None:
        set_aside = set_aside_for_removal(self.env_dir)
        if set_aside:
            log.write(f"---- The previous environment is removed in the background: {set_aside}\n")
        for folder, what in ((self.env_dir, "the previous environment"), (self.temp_dir, "old temporary files")):
            if folder.exists():
                started = time.monotonic()
                log.write(f"---- Removing {what}: {folder}\n")
                self.last_line = f"Removing {what}"
                left = _remove(folder)
                if left:
                    raise StepFailed(f"Could not remove {what} at {folder} ({left}). Close programs that use it, "
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


SET_ASIDE_SUFFIX = ".old-"


def set_aside_for_removal(folder: Path) -> str:
    """Move a folder out of the way at once (a rename) and delete it, and any left by an earlier install, on a
    background thread: a reinstall starts at once instead of first spending half a minute deleting a 5 GB
    environment with its bar at 0 %. Returns where the folder went, '' when it was not there or cannot be moved
    (then the caller deletes it in place)."""
    leftovers = sorted(folder.parent.glob(f"{folder.name}{SET_ASIDE_SUFFIX}*")) if folder.parent.is_dir() else []
    target = ""
    if folder.exists():
        aside = folder.with_name(f"{folder.name}{SET_ASIDE_SUFFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.replace(folder, aside)
            leftovers.append(aside)
            target = str(aside)
        except OSError:  # e.g. a file in it is open on Windows
            pass
    if leftovers:
        threading.Thread(target=_remove_each, args=(leftovers,), name="hymotion-remove-old-env", daemon=True).start()
    return target


def _remove_each(folders: list[Path]) -> None:
    for folder in folders:
        _remove(folder)


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

