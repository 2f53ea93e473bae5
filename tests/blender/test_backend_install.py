"""Install Backend in real Blender, driven the way the button does: the operator starts the install and the add-on's
own timer function is called (background mode has no event loop to call it) until it stops asking to be called.

pip installs tiny stand-in wheels named torch and hymotion, written once per session into a temporary folder and
served from package indexes there (file:// addresses, so nothing is downloaded and the
online-access check lets the install through): a "default index" with the CUDA torch stand-in, a CPU index with the
+cpu one, an index whose torch breaks on import, and backend wheels that succeed, block in the check step, or need a
package no index has. pip's own configuration and PIP_* variables of this machine are switched off for the test.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import textwrap
import time
import zipfile
from pathlib import Path

import addon_utils
import bpy
import pytest
from e2e_helpers import (
    BACKEND_PYTHON,
    PACKAGE_NAME,
    RecordingLayout,
    addon_module,
    addon_preferences,
    clear_scene,
    configure_preferences,
    extension,  # noqa: F401  (fixture)
    load_extension_package,
)

INSTALL_TIMEOUT_S = 180.0  # one install here takes about 10 s (venv 5 s, two tiny pip installs, the check); 18x margin
CANCEL_TIMEOUT_S = 20.0  # cancel = SIGTERM to the check's process group + removing a ~20 MB venv: < 2 s here, 10x
NVIDIA_DRIVER = "NVIDIA driver found (/usr/bin/nvidia-smi)"
BLOCKING_MARK = "stand-in pipeline: waiting to be cancelled"


# --- the stand-in packages ------------------------------------------------------------------------------------------


TORCH_SOURCE = """
__version__ = {version!r}


class version:
    cuda = {cuda!r}


class cuda:
    @staticmethod
    def is_available():
        return False
"""

BROKEN_TORCH_SOURCE = 'raise ImportError("this torch stand-in is broken on purpose")\n'

HYMOTION_FILES = {
    "__init__.py": '__version__ = "0.1.0"\n',
    "shared/__init__.py": "",
    "pipeline/__init__.py": "",
    "shared/jobs.py": """
        class GenerationSettings:
            def __init__(self, prompts, durations, steps=50):
                self.prompts, self.durations, self.steps = prompts, durations, steps
    """,
    "pipeline/loading.py": """
        import sys
        import tempfile
        import time
        from pathlib import Path

        BLOCK = {block}


        class Clip:
            frames = 30


        class Pipeline:
            def generate(self, settings):
                assert settings.steps == 1 and settings.prompts
                if BLOCK:
                    Path(tempfile.gettempdir(), "stand-in-temp-file").write_text("left by a cancelled install")
                    print({mark!r}, file=sys.stderr, flush=True)
                    time.sleep(600)
                yield Clip()

            def describe(self):
                return {{"device": "cpu", "plan": "cpu"}}


        def load_pipeline(model, plan="auto", cache_dir=None):
            assert model == "tiny-random"
            return Pipeline()
    """,
}


def write_wheel(folder: Path, name: str, version: str, files: dict[str, str], dependencies: list[str]) -> Path:
    """A pure-Python wheel of package ``name`` holding ``files``, written by hand: the format is a zip with a
    dist-info folder (METADATA, WHEEL, RECORD), and building it here needs no build tools in either test Python."""
    dist_info = f"{name}-{version}.dist-info"
    contents = {f"{name}/{filename}": textwrap.dedent(text) for filename, text in files.items()}
    contents[f"{dist_info}/METADATA"] = "\n".join(
        ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
         *(f"Requires-Dist: {requirement}" for requirement in dependencies)]) + "\n"
    contents[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in contents.items()]
    contents[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def write_index(folder: Path, wheels: list[Path]) -> str:
    """A package index (the simple layout pip reads) in ``folder`` for ``wheels``; returns its file:// address."""
    for wheel in wheels:
        project = folder / wheel.name.split("-")[0]
        project.mkdir(parents=True, exist_ok=True)
        with open(project / "index.html", "a") as page:
            page.write(f'<a href="{wheel.as_uri()}">{wheel.name}</a>\n')
    return folder.as_uri()


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory):
    """The six stand-in wheels and the package indexes that serve them (built once per session, in milliseconds)."""
    root = tmp_path_factory.mktemp("stand-ins")
    wheels = root / "wheels"
    torch_cuda = write_wheel(wheels, "torch", "2.13.0", {"__init__.py": TORCH_SOURCE.format(version="2.13.0",
                                                                                             cuda="12.8")}, [])
    torch_cpu = write_wheel(wheels, "torch", "2.13.0+cpu", {"__init__.py": TORCH_SOURCE.format(version="2.13.0+cpu",
                                                                                                cuda=None)}, [])
    torch_broken = write_wheel(wheels, "torch", "2.13.0+broken", {"__init__.py": BROKEN_TORCH_SOURCE}, [])
    backends = {}
    for variant, version, block, dependencies in (
        ("ok", "0.1.0", False, []),
        ("blocking", "0.1.0+blocking", True, []),
        ("missing_dependency", "0.1.0+missingdep", False, ["hymotion-missing-dependency"]),
    ):
        loading = HYMOTION_FILES["pipeline/loading.py"].format(block=block, mark=BLOCKING_MARK)
        files = {**HYMOTION_FILES, "pipeline/loading.py": loading}
        backends[variant] = write_wheel(wheels, "hymotion", version, files, dependencies)
    return {
        "default_index": write_index(root / "default-index", [torch_cuda]),
        "cpu_index": write_index(root / "cpu-index", [torch_cpu]),
        "broken_index": write_index(root / "broken-index", [torch_broken]),
        "backend": backends,
    }


@pytest.fixture
def machine(extension, stand_ins, tmp_path, monkeypatch):
    """A fresh user folder, Linux without an NVIDIA driver, pip isolated, and preferences that install from the
    stand-in indexes. ``machine(backend=…, driver=…)`` sets the backend wheel the extension carries and the driver
    (and the preferences again, e.g. after the add-on was registered anew)."""
    sources = addon_module("core.package_sources")
    preferences = addon_module("ui.preferences")
    monkeypatch.setenv("HYMOTION_USER_DIR", str(tmp_path / "user"))
    for name in [key for key in os.environ if key.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setattr(sources, "system_name", lambda: "Linux")
    clear_scene()

    def configure(backend: str = "ok", driver: str = "") -> None:
        prefs = addon_preferences()
        prefs.backend_python = ""
        prefs.extra_pip_args = f"--index-url {stand_ins['default_index']}"
        prefs.torch_cpu_index_url = stand_ins["cpu_index"]
        prefs.torch_cuda_index_url = ""  # Linux's CUDA torch then comes from the (stand-in) default index
        root = tmp_path / f"extension-{backend}"
        (root / "wheels").mkdir(parents=True, exist_ok=True)
        wheel = stand_ins["backend"][backend]
        (root / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
        monkeypatch.setattr(preferences, "EXTENSION_ROOT", root)
        monkeypatch.setattr(sources, "this_machine_nvidia_driver", lambda: driver)

    configure()
    yield configure
    task = addon_module("core.backend_setup").tasks.pop("install", None)
    if task is not None and task.running:
        task.cancel()
        task.wait(CANCEL_TIMEOUT_S)
    configure_preferences()


def press_install_and_run_the_timer(on_tick=None):
    """Press Install Backend, then call the add-on's timer function until it returns None (nothing left to watch),
    as Blender's event loop would; returns the task and the (fraction, stage) pairs seen on the way."""
    setup, operators = addon_module("core.backend_setup"), addon_module("ui.operators")
    assert bpy.ops.hymotion.install_backend() == {"FINISHED"}
    task = setup.tasks["install"]
    seen = []
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while operators._watch_setup_tasks() is not None:
        seen.append((task.fraction, task.stage))
        if on_tick is not None:
            on_tick(task)
        assert time.monotonic() < deadline, f"the install did not end in {INSTALL_TIMEOUT_S} s: {task.stage}"
        task.wait(operators.SETUP_POLL_S)
    return task, seen


def preferences_text() -> str:
    layout = RecordingLayout()
    addon_module("ui.preferences").draw_preferences(layout, addon_preferences())
    return layout.text()


def panel_text() -> str:
    layout = RecordingLayout()
    addon_module("ui.panels").draw_backend_state(layout, bpy.context, detailed=True)
    return layout.text()


# --- installs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["", NVIDIA_DRIVER], ids=["no-nvidia-driver", "nvidia-driver"])
def test_install_picks_the_build_from_the_driver_and_counts_as_installed_only_after_the_check(machine, driver):
    machine(driver=driver)
    preferences = addon_module("ui.preferences")
    setup = addon_module("core.backend_setup")
    expected_build = "CUDA build" if driver else "CPU build"
    before = preferences_text()
    assert f"PyTorch: {expected_build}" in before and (driver or "No NVIDIA driver found") in before
    task, seen = press_install_and_run_the_timer()
    assert task.succeeded, task.message
    record = preferences.install_record()
    assert record.state == setup.INSTALLED
    assert record.versions["torch"] == ("2.13.0" if driver else "2.13.0+cpu")
    assert record.versions["cuda"] == ("12.8" if driver else "")
    assert (record.versions["hymotion"], record.versions["device"]) == ("0.1.0", "cpu")
    assert preferences.backend_config().python == str(setup.venv_python(preferences.venv_dir()))
    assert f"Installed: Python {record.versions['python']}, torch {record.versions['torch']}" in preferences_text()
    assert ("PyTorch sees no GPU" in task.message) == bool(driver)  # the CUDA stand-in reports no visible GPU
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and task.fraction == 1.0
    step_labels = tuple(step.label for step in task.steps)
    assert all(stage.startswith(step_labels) for _, stage in seen)
    log = task.log_path.read_text()
    for label in step_labels:
        assert re.search(rf"^---- {re.escape(label)}: took \d+\.\d s$", log, re.MULTILINE), label
    assert " s in all (" in log
    assert not (preferences.user_dir() / setup.TEMP_FOLDER).exists()


def test_a_failed_install_never_looks_installed_and_says_so_after_a_restart(machine):
    """The backend's install fails (it needs a package no index has): not installed, before and after a restart;
    the next install starts from an empty environment folder."""
    machine(backend="missing_dependency")
    preferences = addon_module("ui.preferences")
    setup = addon_module("core.backend_setup")
    task, _ = press_install_and_run_the_timer()
    assert task.succeeded is False
    assert task.message.startswith("Installing the HY-Motion backend failed") and str(task.log_path) in task.message
    assert setup.venv_python(preferences.venv_dir()).is_file()  # the environment exists, yet it is not installed
    assert preferences.backend_config() is None
    assert "Backend: install failed" in panel_text()
    with pytest.raises(RuntimeError, match="backend is not installed"):
        bpy.ops.hymotion.generate(prompt="a person waves")

    setup.tasks.clear()  # a restart: this session's memory is gone, the add-on registers anew
    addon_utils.disable(PACKAGE_NAME, default_set=True)
    load_extension_package().__time__ = os.path.getmtime(load_extension_package().__file__)
    assert addon_utils.enable(PACKAGE_NAME, default_set=True) is not None
    machine(backend="missing_dependency")  # the preferences as the user had them
    assert preferences.backend_config() is None
    text = preferences_text()
    assert "The last install failed" in text and "Installing the HY-Motion backend failed" in text
    assert "Backend: install failed" in panel_text()
    layout = RecordingLayout()
    preferences.draw_preferences(layout, addon_preferences())
    assert ("operator", "hymotion.open_log", "Open Install Log") in layout.calls

    machine(backend="ok")
    leftover = preferences.venv_dir() / "left-by-the-failed-install"
    leftover.write_text("")
    task, _ = press_install_and_run_the_timer()
    assert task.succeeded, task.message
    assert not leftover.exists() and preferences.install_record().state == setup.INSTALLED


def test_a_torch_that_breaks_on_import_fails_the_check(machine, stand_ins):
    addon_preferences().torch_cpu_index_url = stand_ins["broken_index"]
    task, _ = press_install_and_run_the_timer()
    assert task.succeeded is False
    assert task.message.startswith("Checking PyTorch and the backend failed")
    assert "this torch stand-in is broken on purpose" in task.message
    assert addon_module("ui.preferences").backend_config() is None


def test_cancel_stops_the_install_and_removes_the_environment_and_temporary_files(machine):
    machine(backend="blocking")
    preferences = addon_module("ui.preferences")
    setup = addon_module("core.backend_setup")
    cancelled_at = []

    def cancel_once_the_check_blocks(task) -> None:
        if not cancelled_at and task.log_path.is_file() and BLOCKING_MARK in task.log_path.read_text():
            stand_in_temp_file = preferences.user_dir() / setup.TEMP_FOLDER / "stand-in-temp-file"
            assert stand_in_temp_file.is_file()  # the install's commands keep their temporary files in its folder
            assert bpy.ops.hymotion.cancel_setup_task(task="install") == {"FINISHED"}
            cancelled_at.append(time.monotonic())

    task, _ = press_install_and_run_the_timer(cancel_once_the_check_blocks)
    assert cancelled_at and time.monotonic() - cancelled_at[0] < CANCEL_TIMEOUT_S
    assert task.succeeded is False and task.cancelled
    assert task.message == "Install cancelled. The partial environment and pip's temporary files were removed."
    assert not preferences.venv_dir().exists() and not (preferences.user_dir() / setup.TEMP_FOLDER).exists()
    assert preferences.install_record().state == setup.CANCELLED
    assert "The last install was cancelled" in preferences_text() and "Backend: install cancelled" in panel_text()


# --- what is checked before anything runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("arguments, message", [
    ("--no-index --find-links https://example.invalid/wheels", "online access is off"),
    ("--find-links /local/wheels", "pip's default package index"),
    ('--no-index --find-links "/unclosed', "Extra pip Arguments cannot be read: No closing quotation"),
])
def test_install_refuses_remote_sources_offline_and_bad_quoting_before_writing_anything(machine, arguments, message):
    if bpy.app.online_access:
        pytest.skip("Blender runs with online access here")
    addon_preferences().extra_pip_args = arguments
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.hymotion.install_backend()
    preferences = addon_module("ui.preferences")
    assert "install" not in addon_module("core.backend_setup").tasks
    assert preferences.install_record() is None and not preferences.venv_dir().exists()


def test_an_install_missing_its_torch_index_is_refused_with_what_to_paste(machine):
    addon_preferences().torch_cpu_index_url = ""
    assert "Paste its address into PyTorch CPU Index" in preferences_text()
    with pytest.raises(RuntimeError, match="(?s)needs its package index.*PyTorch CPU Index"):
        bpy.ops.hymotion.install_backend()


def test_the_tooltip_gives_this_machines_build_and_the_measured_sizes(machine):
    tooltip = addon_module("ui.preferences").install_tooltip()
    assert "This machine gets PyTorch's CPU build: about 0.3 GB to download, 1.4 GB on disk" in tooltip
    assert "Allow Online Access" in tooltip and "Linux CUDA build: 2.7 GB to download, 5.9 GB on disk" in tooltip
    assert addon_module("ui.operators").HYMOTION_OT_install_backend.description(bpy.context, None) == tooltip


def test_the_check_program_runs_the_real_backend_and_reports_versions_and_device(tmp_path):
    """The stand-ins mimic the backend's API that the check step uses; this runs it on the real one."""
    setup = addon_module("core.backend_setup")
    environment = {**os.environ, "HYMOTION_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([BACKEND_PYTHON, "-c", setup.CHECK_PROGRAM, setup.CHECK_PROMPT], capture_output=True,
                            text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    found = setup.check_findings(result.stdout)
    assert found["device"] == "cpu" and found["frames"] == [30] and found["torch"].startswith("2.")
