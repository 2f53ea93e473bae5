"""Issue 26, "the first hour in a real Blender window": what an animator meets from the install to the first
Actions, each point checked in real bpy (the label widths are in test_text_fit.py)."""

from __future__ import annotations

import bpy
import pytest
from e2e_helpers import (
    RecordingLayout,
    addon_module,
    addon_preferences,
    extension,  # noqa: F401  (fixture)
    ui_scene,  # noqa: F401  (fixture)
)

from hymotion.shared.errors import HyMotionError


@pytest.fixture
def scene(ui_scene):
    return ui_scene


def finished_run(scene, error: HyMotionError | None = None):
    generation, preferences = addon_module("scene.generation"), addon_module("ui.preferences")
    spec = generation.RunSpec([generation.Clip("a person waves", 2.0)], seeds=[0], cfg=5.0, steps=10, smoothing=True)
    run = generation.Run(spec, preferences.backend_config(), scene, scene.collection)
    run._finish(error)
    return run


# --- point 1: the result line ---------------------------------------------------------------------------------------


def test_a_finished_runs_summary_keeps_the_time_it_took(scene, monkeypatch):
    generation = addon_module("scene.generation")
    clock = [100.0]
    monkeypatch.setattr(generation.time, "monotonic", lambda: clock[0])
    spec = generation.RunSpec([generation.Clip("a person waves", 2.0)], seeds=[0], cfg=5.0, steps=10, smoothing=True)
    run = generation.Run(spec, addon_module("ui.preferences").backend_config(), scene, scene.collection)
    run.started_at = 100.0  # (its default factory is the real clock, bound when the class was made)
    clock[0] = 128.7
    run._finish(None)
    first = run.summary()
    clock[0] = 200.0
    assert run.summary() == first and "28.7 s" in first


def test_a_run_that_made_nothing_says_so_instead_of_after_0_of_1(scene):
    error = HyMotionError("model_missing", "The weights are missing.", "Press Download Weights.")
    summary = finished_run(scene, error).summary()
    assert "after 0" not in summary and summary.startswith("HY-Motion made nothing: The weights are missing.")
