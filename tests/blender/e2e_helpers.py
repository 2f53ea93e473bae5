"""Helpers for the end-to-end Blender tests: the extension enabled as a real add-on (preferences included), a real
backend subprocess with the tiny model, and a layout stand-in that checks what panels draw.

The backend needs torch, which the Blender 4.2 test environment lacks: it runs with $HYMOTION_TEST_BACKEND_PYTHON,
by default the main environment's Python when it exists, else this one.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import addon_utils
import bpy
import pytest
from blender_helpers import new_empty_file

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_NAME = "hymotion_extension_under_test"
TEST_STEPS = 4
_MAIN_VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
BACKEND_PYTHON = os.environ.get("HYMOTION_TEST_BACKEND_PYTHON") or (
    str(_MAIN_VENV_PYTHON) if _MAIN_VENV_PYTHON.exists() else sys.executable
)


def load_extension_package() -> ModuleType:
    """Import the repository root as a package, the way Blender imports an installed extension."""
    if PACKAGE_NAME in sys.modules:
        return sys.modules[PACKAGE_NAME]
    spec = importlib.util.spec_from_file_location(
        PACKAGE_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = package
    spec.loader.exec_module(package)
    return package


def addon_module(name: str) -> ModuleType:
    """A module of the enabled add-on, e.g. addon_module("scene.generation") (the same objects the operators use)."""
    load_extension_package()
    return importlib.import_module(f"{PACKAGE_NAME}.hymotion_addon.{name}")


def addon_preferences():
    return bpy.context.preferences.addons[PACKAGE_NAME].preferences


@contextlib.contextmanager
def enabled_extension(state_dir: Path, backend_python: str = BACKEND_PYTHON) -> Iterator[ModuleType]:
    """Enable the extension in an empty factory scene, with its state and the backend's caches under state_dir.

    On exit the add-on is disabled, which must stop its backend: the last backend pid is checked to be gone.
    """
    overrides = {"HYMOTION_USER_DIR": str(state_dir / "user"), "HYMOTION_CACHE": str(state_dir / "cache")}
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    new_empty_file()
    package = load_extension_package()
    assert package.__file__ is not None
    # else addon_utils "reloads" it by a name it cannot find
    vars(package)["__time__"] = os.path.getmtime(package.__file__)
    assert addon_utils.enable(PACKAGE_NAME, default_set=True) is not None
    manager = addon_module("core.backend_manager").MANAGER
    try:
        configure_preferences(backend_python)
        yield importlib.import_module(f"{PACKAGE_NAME}.hymotion_addon")
    finally:
        last_pid = manager.pid
        addon_utils.disable(PACKAGE_NAME, default_set=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if last_pid is not None:
            assert not process_exists(last_pid), f"backend {last_pid} still runs after the add-on was disabled"


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    """The extension enabled for a test module, with its own user folder and cache (import this fixture by name)."""
    with enabled_extension(tmp_path_factory.mktemp("hymotion")) as addon:
        yield addon


def configure_preferences(backend_python: str = BACKEND_PYTHON) -> None:
    """Preferences for the tests: every one back at its default, then the tiny model on the CPU plan."""
    preferences = addon_preferences()
    for name in preferences.bl_rna.properties.keys():
        if name not in ("rna_type", "bl_idname"):
            preferences.property_unset(name)
    preferences.backend_python = backend_python
    preferences.model = "tiny-random"
    preferences.plan = "cpu"


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def clear_scene(fps: int = 30) -> bpy.types.Scene:
    """Remove what earlier tests made and reset the panel (without a factory reset, which would disable the add-on)."""
    for collection in (bpy.data.objects, bpy.data.armatures, bpy.data.meshes, bpy.data.actions, bpy.data.texts):
        for block in list(collection):
            collection.remove(block)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    settings = scene.hymotion
    settings.history.clear()
    for name in settings.bl_rna.properties.keys():
        if name not in ("rna_type", "history"):
            settings.property_unset(name)
    return scene


def hymotion_actions() -> list[bpy.types.Action]:
    return sorted((action for action in bpy.data.actions if "hymotion_prompt" in action), key=lambda a: a.name)


def keyframe_counts(action: bpy.types.Action) -> set[int]:
    from blender_helpers import action_fcurves

    return {len(fcurve.keyframe_points) for fcurve in action_fcurves(action)}


@pytest.fixture
def observe_actions():
    """Register a callback in generation.observers for one test (removed afterwards, even on failure)."""
    observers = addon_module("scene.generation").observers
    added = []

    def add(callback) -> None:
        observers.append(callback)
        added.append(callback)

    yield add
    for callback in added:
        observers.remove(callback)


# --- a layout that checks what is drawn -----------------------------------------------------------------------------


_LABEL_ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class OperatorProperties:
    """Stands for the properties object layout.operator() returns: only the operator's own properties may be set."""

    _rna: Any

    def __init__(self, idname: str) -> None:
        object.__setattr__(self, "_rna", operator_rna(idname))

    def __setattr__(self, name: str, value) -> None:
        assert name in self._rna.properties, f"operator {self._rna.identifier} has no property {name!r}"


def operator_rna(idname: str):
    module, _, name = idname.partition(".")
    return getattr(getattr(bpy.ops, module), name).get_rna_type()


class RecordingLayout:
    """A UILayout stand-in: records every call and fails on a property, operator, list or icon that does not exist."""

    def __init__(self, record: list | None = None, placed: list | None = None, boxes: int = 0) -> None:
        self.calls: list[tuple] = record if record is not None else []
        self.placed: list[tuple[str, str, str, int]] = placed if placed is not None else []
        """Every label and progress text with its icon and how many boxes it sits in: (kind, text, icon, boxes)."""
        self.boxes = boxes
        self.parent: RecordingLayout | None = None
        self.disabled: list[str] = []
        """Operators drawn greyed out (in a layout whose ``enabled`` or an outer one's is False)."""
        self.enabled = True
        self.active = True
        self.scale_y = 1.0
        self.use_property_split = False
        self.use_property_decorate = True

    def _child(self, kind: str) -> RecordingLayout:
        self.calls.append((kind,))
        child = RecordingLayout(self.calls, self.placed, self.boxes + (kind == "box"))
        child.parent, child.disabled = self, self.disabled
        return child

    def _greyed(self) -> bool:
        return not self.enabled or (self.parent is not None and self.parent._greyed())

    def row(self, **_options) -> RecordingLayout:
        return self._child("row")

    def column(self, **_options) -> RecordingLayout:
        return self._child("column")

    def box(self) -> RecordingLayout:
        return self._child("box")

    def split(self, **_options) -> RecordingLayout:
        return self._child("split")

    def label(self, text: str = "", icon: str = "NONE", **_options) -> None:
        assert icon in _LABEL_ICONS, f"unknown icon {icon!r}"
        self.calls.append(("label", text, icon))
        self.placed.append(("label", text, icon, self.boxes))

    def prop(self, data, property_name: str, icon: str = "NONE", **_options) -> None:
        assert property_name in data.bl_rna.properties, f"{data.bl_rna.identifier} has no property {property_name!r}"
        assert icon in _LABEL_ICONS, f"unknown icon {icon!r}"
        self.calls.append(("prop", property_name))

    def operator(self, idname: str, text: str = "", icon: str = "NONE", **_options) -> OperatorProperties:
        assert icon in _LABEL_ICONS, f"unknown icon {icon!r}"
        self.calls.append(("operator", idname, text))
        self.placed.append(("operator", idname, icon, self.boxes))
        if self._greyed():
            self.disabled.append(idname)
        return OperatorProperties(idname)

    def menu(self, menu: str, text: str = "", icon: str = "NONE") -> None:
        assert isinstance(getattr(bpy.types, menu, None), type), f"menu {menu} is not registered"
        assert icon in _LABEL_ICONS, f"unknown icon {icon!r}"
        self.calls.append(("menu", menu))

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:
        assert 0.0 <= factor <= 1.0, factor
        self.calls.append(("progress", factor, text))
        self.placed.append(("progress", text, "NONE", self.boxes))

    def template_list(self, list_type: str, list_id: str, data, property_name: str, active_data, active_property: str,
                      **_options) -> None:
        assert isinstance(getattr(bpy.types, list_type, None), type), f"UIList {list_type} is not registered"
        assert property_name in data.bl_rna.properties and active_property in active_data.bl_rna.properties
        self.calls.append(("template_list", list_type))

    def texts(self) -> list[str]:
        return [call[1] for call in self.calls if call[0] in ("label", "progress")]

    def operators(self) -> list[str]:
        return [call[1] for call in self.calls if call[0] in ("operator", "menu")]

    def text(self) -> str:
        """Every label joined by spaces, so a wrapped paragraph reads as it was written."""
        return " ".join(self.texts())


@pytest.fixture
def ui_scene(extension):
    """An emptied scene with the test preferences; afterwards no run is shown and no backend runs."""
    scene = clear_scene()
    yield scene
    addon_module("scene.generation").active_run = None
    addon_module("core.backend_manager").MANAGER.shutdown()
    configure_preferences()
