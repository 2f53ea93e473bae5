"""The backend starts when the sidebar opens (preference "Start the Backend When the Panel Opens"): the main panel's
first draw only schedules a timer, the timer starts the backend with the model preloaded and without blocking, the
panel shows the stage, nothing starts twice, and the first Generate reuses that backend (real tiny backend).

bpy as a module has no event loop, so the tests call the timer functions themselves, as Blender's loop would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from e2e_helpers import (
    TEST_STEPS,
    RecordingLayout,
    addon_module,
    addon_preferences,
    clear_scene,
    configure_preferences,
    extension,  # noqa: F401  (fixture)
    hymotion_actions,
)

START_TIMEOUT_S = 120.0


@pytest.fixture
def scene(extension):
    scene = clear_scene()
    yield scene
    addon_module("ui.panels").cancel_early_start()
    addon_module("scene.generation").active_run = None
    addon_module("core.backend_manager").MANAGER.shutdown()
    configure_preferences()


def manager():
    return addon_module("core.backend_manager").MANAGER


def draw_main_panel() -> RecordingLayout:
    """The main panel's own draw, as Blender calls it when the sidebar shows it."""
    layout = RecordingLayout()
    addon_module("ui.panels").HYMOTION_PT_main.draw(SimpleNamespace(layout=layout), bpy.context)
    return layout


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_preference_is_on_by_default_and_says_what_it_costs(scene):
    preferences = addon_preferences()
    assert preferences.start_backend_early is True
    description = preferences.bl_rna.properties["start_backend_early"].description
    assert "GPU memory" in description and "first Generate" in description and "Stop Backend" in description


def test_the_first_draw_schedules_one_start_and_starts_nothing_itself(scene):
    panels = addon_module("ui.panels")
    draw_main_panel()
    draw_main_panel()

    assert bpy.app.timers.is_registered(panels.start_backend_early)
    assert manager().status().state == "STOPPED" and manager().pid is None


@pytest.mark.parametrize("setting", ["preference off", "not installed"])
def test_nothing_is_scheduled_when_the_preference_is_off_or_no_backend_is_installed(scene, setting):
    if setting == "preference off":
        addon_preferences().start_backend_early = False
    else:
        addon_preferences().backend_python = ""
    draw_main_panel()

    assert not bpy.app.timers.is_registered(addon_module("ui.panels").start_backend_early)


def test_the_early_start_preloads_the_model_and_the_first_generate_reuses_that_backend(scene):
    panels = addon_module("ui.panels")
    draw_main_panel()
    panels.start_backend_early()  # the timer's tick

    assert manager().status().state == "STARTING"
    assert "Backend: starting…" in draw_main_panel().texts()
    assert bpy.app.timers.is_registered(panels.redraw_while_starting)
    manager().wait_started(START_TIMEOUT_S)
    pid = manager().pid
    assert manager().status().state == "READY" and "--preload" in command_line(pid)
    manager().wait_preloaded(START_TIMEOUT_S)
    status = manager().status()
    assert not status.loading and not status.preload_failed
    assert any(text.startswith("Backend: ready") for text in draw_main_panel().texts())
    assert panels.redraw_while_starting() is None  # the redraw timer ends once the model is ready

    panels.start_backend_early()  # a second tick (or a second window's panel) starts nothing
    assert manager().pid == pid

    assert bpy.ops.hymotion.generate(prompt="a person waves", duration=1.0, steps=TEST_STEPS) == {"FINISHED"}
    assert len(hymotion_actions()) == 1 and manager().pid == pid


def test_the_panel_shows_the_loading_stage_and_a_failed_preload(scene, monkeypatch):
    manager().ensure_started(addon_module("ui.preferences").backend_config(), wait=True)
    ready = manager().status()

    monkeypatch.setattr(manager(), "status", lambda: dataclasses.replace(ready, loading=True))
    assert "Backend: loading the model… (tiny-random)" in draw_main_panel().text()

    monkeypatch.setattr(manager(), "status", lambda: dataclasses.replace(ready, preload_failed=True))
    text = draw_main_panel().text()
    assert "Backend: ready" in text and "did not load ahead of time; Generate loads it and says why" in text
