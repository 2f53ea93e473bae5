"""Add-on preferences: where the backend's Python is (or installing one), the model, its folder and memory plan,
the licences of the weights, the weights download, the optional SMPL-X body model and the doctor report.

Also the add-on's places on disk: everything it writes lives in the extension's user directory, so an update of the
extension never wipes the backend environment, presets or logs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import bpy

from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.models import enum_items

from ..core import backend_setup, command_task, package_sources
from ..core.backend_manager import BackendConfig
from .text_fit import draw_wrapped

ADDON_PACKAGE = __package__.rsplit(".", 2)[0] if __package__.count(".") >= 2 else __package__.partition(".")[0]
"""The add-on's module name: the extension root that holds hymotion_addon/ (e.g. bl_ext.user_default.hymotion)."""

EXTENSION_ROOT = Path(__file__).resolve().parents[2]
USER_DIR_ENV = "HYMOTION_USER_DIR"
PRESETS_FILE = "presets.json"

MODEL_ITEMS = enum_items()
TORCH_BUILD_ITEMS = [
    (package_sources.AUTO, "Automatic", "CUDA build when an NVIDIA driver is found, else the CPU build (macOS: its "
     "one build)"),
    (package_sources.CPU_BUILD, "CPU", "PyTorch without CUDA, for machines without an NVIDIA GPU (much smaller on "
     "Linux)"),
    (package_sources.CUDA_BUILD, "CUDA", "PyTorch for NVIDIA GPUs"),
]
PLAN_ITEMS = [
    ("auto", "Auto", "Pick the fastest plan that fits the free GPU memory; step down on out-of-memory"),
    ("gpu", "GPU", "Everything on the GPU (fastest, most memory)"),
    ("partial", "Partial", "As many text-encoder layers on the GPU as fit, the rest streamed (8-16 GB cards)"),
    ("stream", "Stream", "Text encoder streamed through the GPU layer by layer (least GPU memory)"),
    ("cpu", "CPU", "No GPU at all (slow)"),
]

LICENCE_SUMMARY = (
    "HY-Motion 1.0 weights (Tencent): Tencent Hunyuan Community License Agreement. It does not apply in the European "
    "Union, the United Kingdom or South Korea: it grants no rights there. Whoever shares the model or its outputs "
    "must pass on a copy of the agreement and keep its notice (\"Tencent Hunyuan is licensed under the Tencent "
    "Hunyuan Community License Agreement\"), and must follow its Acceptable Use Policy; very large services need a "
    "separate licence from Tencent. Read the full text in the tencent/HY-Motion-1.0 model repository.",
    "Qwen3-8B text encoder (Qwen team, Alibaba): Apache License 2.0.",
    "CLIP ViT-L/14 text encoder (OpenAI): MIT License.",
)
OFFLINE_PATH = (
    "Blender's online access is off (Preferences > System > Network), so the add-on downloads nothing. To work "
    "offline, copy the weights into the Model Folder (HY-Motion-1.0-Lite or HY-Motion-1.0, Qwen3-8B and "
    "clip-vit-large-patch14 side by side, as Download Weights leaves them on a machine with internet), or point "
    "Backend Python at a Python that already has the backend and weights."
)


def user_dir() -> Path:
    """The extension's user directory ($HYMOTION_USER_DIR overrides it, e.g. for tests or shared studio setups)."""
    override = os.environ.get(USER_DIR_ENV)
    if override:
        path = Path(override)
    elif ADDON_PACKAGE.startswith("bl_ext."):
        path = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=True))
    else:
        path = Path(bpy.utils.user_resource("CONFIG", path="hymotion", create=True))
    path.mkdir(parents=True, exist_ok=True)
    return path


def venv_dir() -> Path:
    return user_dir() / backend_setup.VENV_FOLDER


def log_path(name: str) -> Path:
    return user_dir() / backend_setup.LOG_FOLDER / f"{name}.log"


def presets_path() -> Path:
    return user_dir() / PRESETS_FILE


def addon_preferences(context: bpy.types.Context | None = None) -> HYMOTION_AddonPreferences | None:
    """This add-on's preferences, or None when it runs without being enabled as an add-on (e.g. imported alone)."""
    addon = (context or bpy.context).preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


def backend_python(preferences: HYMOTION_AddonPreferences | None) -> str:
    """The Python that runs the backend: the one set in the preferences, else the installed environment's (only once
    its install passed the check), else ''."""
    if preferences is not None and preferences.backend_python.strip():
        return bpy.path.abspath(preferences.backend_python.strip())
    installed = backend_setup.installed_python(user_dir(), venv_dir())
    return str(installed) if installed is not None else ""


def install_record() -> backend_setup.InstallRecord | None:
    """The last install's outcome, as the user folder remembers it across restarts."""
    return backend_setup.read_install_record(user_dir())


def torch_build(preferences: HYMOTION_AddonPreferences) -> package_sources.TorchBuild:
    """The PyTorch build Install Backend would get on this machine with these preferences."""
    return package_sources.choose_torch_build(
        package_sources.system_name(), package_sources.this_machine_nvidia_driver(), preferences.torch_build,
        preferences.torch_cpu_index_url, preferences.torch_cuda_index_url,
    )


def size_text(build: package_sources.TorchBuild) -> str:
    """'about 0.3 GB to download, 1.4 GB on disk', or the measured sizes when this machine's pair is not measured."""
    size = build.size(package_sources.system_name())
    if size is None:
        return f"size not measured for this system yet; measured: {package_sources.measured_sizes()}"
    return f"about {size.download_gb:.1f} GB to download, {size.disk_gb:.1f} GB on disk"


def install_inputs(
    preferences: HYMOTION_AddonPreferences, online_access: bool
) -> tuple[list[str], package_sources.TorchBuild, Path]:
    """The install's pip arguments, PyTorch build and backend package; a HyMotionError (message + hint) says what
    stops the install, which the preferences also show before the button is pressed."""
    extra = package_sources.parse_pip_arguments(preferences.extra_pip_args)
    build = torch_build(preferences)
    if build.bad_address:
        raise bad_request(build.bad_address, build.missing)
    if "--no-index" in extra:  # an offline install takes torch from its folder of wheels, not from an index
        build = dataclasses.replace(build, index_url="", missing="")
    remote = package_sources.remote_sources(extra, build.index_url)
    if remote and not online_access:
        raise bad_request(
            "Install Backend downloads PyTorch and the backend's dependencies, but Blender's online access is off "
            f"(it would reach {'; '.join(remote)}).",
            "Turn on Allow Online Access (Preferences > System > Network). Without internet: put the wheels of torch "
            "and the backend's dependencies in a folder and set Extra pip Arguments (Installation Options) to "
            "'--no-index --find-links FOLDER', or set Backend Python to a Python that has the backend.",
        )
    if build.missing:
        raise bad_request(f"PyTorch's {build.label} needs its package index. {build.reason}", build.missing)
    source = backend_setup.backend_package_source(EXTENSION_ROOT)
    if source is None:
        raise bad_request(f"No backend package found in {EXTENSION_ROOT / 'wheels'}.",
                          "Reinstall the extension; its wheels/ folder must hold the hymotion wheel.")
    return extra, build, source


def start_backend_install(preferences: HYMOTION_AddonPreferences, online_access: bool) -> backend_setup.InstallTask:
    """Start Install Backend, or raise the HyMotionError that stops it (see :func:`install_inputs`)."""
    extra, build, source = install_inputs(preferences, online_access)
    return backend_setup.start_install(user_dir(), venv_dir(), log_path("install"), base_python(preferences),
                                       source, build, extra)


def install_tooltip() -> str:
    """Install Backend's tooltip: what it does and what it costs on this machine."""
    preferences = addon_preferences()
    build_line = ""
    if preferences is not None:
        build = torch_build(preferences)
        build_line = f" This machine gets PyTorch's {build.label}: {size_text(build)}."
    return ("Create a Python environment in the extension's folder and install PyTorch and the HY-Motion backend into "
            "it (runs in the background; needs Allow Online Access unless Extra pip Arguments point at a folder of "
            f"wheels).{build_line} Measured: {package_sources.measured_sizes()}")


def backend_config(context: bpy.types.Context | None = None) -> BackendConfig | None:
    """How to start the backend, from the preferences; None when no backend is installed or configured."""
    preferences = addon_preferences(context)
    python = backend_python(preferences)
    if not python:
        return None
    if preferences is None:
        return BackendConfig(python=python)
    model_dir = model_folder(preferences)
    return BackendConfig(python=python, model=preferences.model, model_dir=model_dir, plan=preferences.plan)


VARIANT_FOLDER_NAMES = ("HY-Motion-1.0-Lite", "HY-Motion-1.0")
"""The model's own folders inside a Model Folder (as hymotion.weights names them)."""


def model_folder(preferences: HYMOTION_AddonPreferences) -> str:
    """The Model Folder as the backend gets it: '' for the Hugging Face cache; a folder chosen one level too deep
    (HY-Motion-1.0-Lite itself, likely for someone who already has the weights) means its parent."""
    if not preferences.model_dir.strip():
        return ""
    folder = Path(bpy.path.abspath(preferences.model_dir.strip())).resolve()
    return str(folder.parent if folder.name in VARIANT_FOLDER_NAMES else folder)


def not_installed_error() -> HyMotionError:
    """What Generate says without a backend: after a failed install, that it failed, why, and where its log is."""
    record = install_record()
    if record is not None and record.state in (backend_setup.FAILED, backend_setup.INSTALLING):
        what = "did not finish" if record.state == backend_setup.INSTALLING else "failed"
        reason = record.message.strip() or "no reason recorded"
        return bad_request(
            f"The HY-Motion backend is not installed: the last install {what} ({reason}).",
            f"Open Preferences > Add-ons > HY-Motion: its Backend box says what to change, and Open Install Log shows "
            f"the log ({record.log_path}). Then press Install Backend again.",
        )
    return bad_request(
        "The HY-Motion backend is not installed.",
        "Open Preferences > Add-ons > HY-Motion and press Install Backend, or set Backend Python to a Python that "
        "has the backend.",
    )


def base_python(preferences: HYMOTION_AddonPreferences) -> str:
    if preferences.base_python.strip():
        return bpy.path.abspath(preferences.base_python.strip())
    return backend_setup.default_base_python(sys.executable)


def draw_task(layout: bpy.types.UILayout, task: command_task.CommandTask | None) -> None:
    """A setup task's progress bar and stage (in whole words) while it runs, its outcome after (in a box)."""
    if task is None:
        return
    if task.running:
        layout.progress(factor=task.fraction, type="BAR", text=f"{task.fraction:.0%}")
        draw_wrapped(layout, task.stage, boxes=1)
        layout.operator("hymotion.cancel_setup_task", icon="CANCEL").task = task.name
    elif task.succeeded:
        draw_wrapped(layout, task.message, icon="CHECKMARK", boxes=1)
    else:
        draw_wrapped(layout, task.message, icon="ERROR", boxes=1)
    if task.log_path.exists():
        layout.operator("hymotion.open_log", icon="TEXT").filepath = str(task.log_path)


def clean_index_setting(preferences: HYMOTION_AddonPreferences, name: str) -> None:
    """A PyTorch index field, cleaned as it is pasted (the address out of a whole pip command, https:// added);
    what is not an address stays as typed, and the Backend box says what is wrong with it."""
    setting = package_sources.CPU_INDEX_SETTING if "cpu" in name else package_sources.CUDA_INDEX_SETTING
    try:
        cleaned = package_sources.clean_index_address(getattr(preferences, name), setting)
    except HyMotionError:
        return
    if cleaned != getattr(preferences, name):
        setattr(preferences, name, cleaned)


def update_cpu_index(preferences: HYMOTION_AddonPreferences, _context: bpy.types.Context) -> None:
    """The CPU index field's update callback (a named function: a lambda made while Blender evaluates the class's
    annotations cannot see this module's names when it runs)."""
    clean_index_setting(preferences, "torch_cpu_index_url")


def update_cuda_index(preferences: HYMOTION_AddonPreferences, _context: bpy.types.Context) -> None:
    """The CUDA index field's update callback."""
    clean_index_setting(preferences, "torch_cuda_index_url")


class HYMOTION_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend_python: bpy.props.StringProperty(
        name="Backend Python",
        description="A Python interpreter that has the HY-Motion backend installed. Leave empty to use the one "
        "'Install Backend' creates in the extension's folder",
        subtype="FILE_PATH",
    )
    base_python: bpy.props.StringProperty(
        name="Python for the Environment",
        description="The Python that creates the backend's environment (empty: Blender's own Python)",
        subtype="FILE_PATH",
    )
    torch_build: bpy.props.EnumProperty(
        name="PyTorch Build",
        items=TORCH_BUILD_ITEMS,
        default=package_sources.AUTO,
        description="Which PyTorch Install Backend gets",
    )
    torch_cpu_index_url: bpy.props.StringProperty(
        name=package_sources.CPU_INDEX_SETTING,
        description="Package index of PyTorch's CPU build (PyTorch's own, from its 'Get Started' page: Compute "
        "Platform CPU, the address after --index-url; a pasted whole pip3 install command works too). Used on "
        "Linux without an NVIDIA GPU, where the default PyTorch is the much larger CUDA build",
        default=package_sources.PYTORCH_CPU_INDEX,
        update=update_cpu_index,
    )
    torch_cuda_index_url: bpy.props.StringProperty(
        name=package_sources.CUDA_INDEX_SETTING,
        description="Package index of PyTorch's CUDA build (PyTorch's own, from its 'Get Started' page: the "
        "address after --index-url; its last part picks the CUDA version: " + ", ".join(
            f"{version} {url.rsplit('/', 1)[-1]}" for version, url in package_sources.PYTORCH_CUDA_INDEXES.items())
        + "). Needed on Windows with an NVIDIA GPU, where the default PyTorch is CPU-only",
        default=package_sources.PYTORCH_CUDA_INDEX,
        update=update_cuda_index,
    )
    extra_pip_args: bpy.props.StringProperty(
        name="Extra pip Arguments",
        description="Added to every pip call, e.g. '--no-index --find-links /path/to/wheels' on a machine "
        "without internet",
    )
    model: bpy.props.EnumProperty(name="Model", items=MODEL_ITEMS, default="lite")
    model_dir: bpy.props.StringProperty(
        name="Model Folder",
        description="Where the weights are (empty: the Hugging Face cache, where 'Download Weights' puts them)",
        subtype="DIR_PATH",
    )
    plan: bpy.props.EnumProperty(name="Memory Plan", items=PLAN_ITEMS, default="auto")
    start_backend_early: bpy.props.BoolProperty(
        name="Start the Backend When the Panel Opens",
        description="When the HY-Motion sidebar is first shown in a session, start the backend and load the model "
        "into GPU memory (RAM on the CPU plan) ahead of the first Generate, so that click does not wait for it. The "
        "model then holds that memory while Blender runs; Stop Backend frees it",
        default=True,
    )
    licences_accepted: bpy.props.BoolProperty(
        name="I have read and accept these licences",
        description="Needed once before the weights are downloaded",
        default=False,
    )
    show_setup_options: bpy.props.BoolProperty(name="Installation Options", default=False)
    smplx_model_file: bpy.props.StringProperty(
        name="SMPL-X Model File",
        description="Your SMPLX_NEUTRAL.npz from the SMPL-X project site (free registration; its licence applies). "
        "'Add SMPL-X Body' skins this body to the active HY-Motion armature",
        subtype="FILE_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        draw_preferences(self.layout, self)


def draw_preferences(layout: bpy.types.UILayout, preferences: HYMOTION_AddonPreferences) -> None:
    """The preferences page (a function of the layout, so it can be checked without a window). Every section is a
    box, so every text in it is drawn with ``boxes=1``."""
    _draw_backend(layout.box(), preferences)
    _draw_model(layout.box(), preferences)
    _draw_weights(layout.box(), preferences)
    _draw_body_model(layout.box(), preferences)
    _draw_doctor(layout.box())


def _draw_backend(box: bpy.types.UILayout, preferences: HYMOTION_AddonPreferences) -> None:
    draw_wrapped(box, "Backend", icon="CONSOLE", boxes=1)
    box.prop(preferences, "backend_python")
    task = backend_setup.tasks.get("install")
    running = task is not None and task.running
    python = backend_python(preferences)
    record = install_record()
    if preferences.backend_python.strip():
        draw_wrapped(box, f"Runs with {python}", icon="CHECKMARK", boxes=1)
    elif python and record is not None:
        draw_wrapped(box, f"Installed: {record.summary}. Runs with {python}", icon="CHECKMARK", boxes=1)
    elif not running and record is not None and record.state != backend_setup.INSTALLED:
        _draw_unfinished_install(box, record)
    elif not running:
        draw_wrapped(box, "No backend yet: press Install Backend (PyTorch and the backend go into their own "
                     "environment in the extension's folder), or set Backend Python.", icon="INFO", boxes=1)
    # With a backend that runs, what an install would need is no longer news: it shows under Installation Options.
    has_backend = bool(python)
    build = torch_build(preferences)
    if not has_backend or preferences.show_setup_options:
        draw_wrapped(box, f"PyTorch: {build.label} ({size_text(build)}). {build.reason}", icon="INFO", boxes=1)
        try:
            install_inputs(preferences, bpy.app.online_access)
        except HyMotionError as blocker:
            draw_wrapped(box, f"{blocker.message} {blocker.hint}", icon="ERROR", boxes=1)
    row = box.row()
    row.enabled = not running
    row.operator("hymotion.install_backend", text="Reinstall Backend" if has_backend else "Install Backend",
                 icon="IMPORT")
    if running:
        draw_task(box, task)
    toggle = box.row()
    toggle.alignment = "LEFT"  # a disclosure triangle and its label, as Blender's own sub-sections
    toggle.prop(preferences, "show_setup_options", icon="TRIA_DOWN" if preferences.show_setup_options else "TRIA_RIGHT",
                emboss=False)
    if preferences.show_setup_options:
        column = box.column()
        column.use_property_split = True
        column.use_property_decorate = False
        column.prop(preferences, "torch_build")
        column.prop(preferences, "torch_cpu_index_url")
        column.prop(preferences, "torch_cuda_index_url")
        column.prop(preferences, "base_python")
        column.prop(preferences, "extra_pip_args")
        draw_wrapped(box, f"Environment: {venv_dir()}", boxes=1)


def _draw_unfinished_install(box: bpy.types.UILayout, record: backend_setup.InstallRecord) -> None:
    """A failed, cancelled or interrupted install, as remembered in the user folder (also after a restart)."""
    if record.state == backend_setup.INSTALLING:
        text = (f"The last install did not finish (Blender was closed during it, {record.time}). Press Install "
                "Backend to start it anew.")
    else:
        outcome = "failed" if record.state == backend_setup.FAILED else "was cancelled"
        text = f"The last install {outcome} ({record.time}): {record.message}"
    draw_wrapped(box, text, icon="ERROR", boxes=1)
    if Path(record.log_path).is_file():
        box.operator("hymotion.open_log", text="Open Install Log", icon="TEXT").filepath = record.log_path


def _draw_model(box: bpy.types.UILayout, preferences: HYMOTION_AddonPreferences) -> None:
    draw_wrapped(box, "Model", icon="ARMATURE_DATA", boxes=1)
    box.prop(preferences, "model")
    box.prop(preferences, "model_dir")
    chosen = Path(bpy.path.abspath(preferences.model_dir.strip())) if preferences.model_dir.strip() else None
    if chosen is not None and chosen.resolve().name in VARIANT_FOLDER_NAMES:
        draw_wrapped(box, f"This is the {chosen.resolve().name} folder itself: its parent folder, "
                     f"{model_folder(preferences)}, is used (Qwen3-8B and clip-vit-large-patch14 sit there beside "
                     "it).", icon="INFO", boxes=1)
    box.prop(preferences, "plan")
    box.prop(preferences, "start_backend_early")
    if preferences.model == "tiny-random":
        draw_wrapped(box, "The tiny model has random weights: its motion is noise (for testing).", icon="ERROR",
                     boxes=1)


def download_blocker(preferences: HYMOTION_AddonPreferences, online_access: bool) -> str:
    """Why Download Weights is greyed out now, in words that name the setting to change; '' when it can run."""
    if preferences.model == "tiny-random":
        return "The Tiny model needs no download (its weights are random). Choose Lite or Standard in Model."
    if not preferences.licences_accepted:
        return "Tick 'I have read and accept these licences' above to download the weights."
    if not online_access:
        return "Downloading needs Allow Online Access (Preferences > System > Network)."
    return ""


def _draw_weights(box: bpy.types.UILayout, preferences: HYMOTION_AddonPreferences) -> None:
    draw_wrapped(box, "Weights and Licences", icon="INFO", boxes=1)
    for paragraph in LICENCE_SUMMARY:
        draw_wrapped(box, paragraph, boxes=1)
    box.prop(preferences, "licences_accepted")
    if not bpy.app.online_access:
        draw_wrapped(box, OFFLINE_PATH, icon="INTERNET_OFFLINE", boxes=1)
    task = backend_setup.tasks.get("download")
    blocker = download_blocker(preferences, bpy.app.online_access)
    row = box.row()
    row.enabled = not blocker and (task is None or not task.running)
    row.operator("hymotion.download_weights", icon="IMPORT")
    if blocker:
        draw_wrapped(box, blocker, icon="INFO", boxes=1)
    draw_task(box, task)


def _draw_body_model(box: bpy.types.UILayout, preferences: HYMOTION_AddonPreferences) -> None:
    draw_wrapped(box, "Body Model (optional)", icon="OUTLINER_OB_ARMATURE", boxes=1)
    draw_wrapped(box, "To see the motion on a real body, download SMPL-X from its project site (free registration, "
                 "its own licence) and choose SMPLX_NEUTRAL.npz. Select a HY-Motion armature, then press Add SMPL-X "
                 "Body.", boxes=1)
    box.prop(preferences, "smplx_model_file")
    box.operator("hymotion.add_smplx_body", icon="OUTLINER_OB_MESH")


def _draw_doctor(box: bpy.types.UILayout) -> None:
    draw_wrapped(box, "Doctor", icon="HELP", boxes=1)
    task = backend_setup.tasks.get("doctor")
    row = box.row()
    row.enabled = task is None or not task.running
    row.operator("hymotion.doctor", icon="VIEWZOOM")
    report = backend_setup.doctor_report()
    if task is not None and not task.succeeded:
        draw_task(box, task)
    if report:
        column = box.box().column(align=True)
        for line in report.splitlines():
            draw_wrapped(column, line, boxes=2)
        box.operator("hymotion.copy_doctor_report", icon="COPYDOWN")


classes = (HYMOTION_AddonPreferences,)
