"""Generate and Batch Bake end to end: the operators drive a real backend subprocess (tiny random model) and bake
its results in real Blender. One backend serves the whole module, as it would a Blender session."""

from __future__ import annotations

import functools
import os
import re
import signal
import time

import bpy
import pytest
from blender_helpers import action_fcurves, evaluated_heads
from e2e_helpers import (
    TEST_STEPS,
    addon_module,
    clear_scene,
    extension,  # noqa: F401  (fixture)
    hymotion_actions,
    keyframe_counts,
    observe_actions,  # noqa: F401  (fixture)
)

from hymotion.shared.prompt_guide import suggest_duration
from hymotion.shared.skeleton import BODY_JOINT_NAMES

FCURVES_PER_ACTION = 4 * len(BODY_JOINT_NAMES) + 3
SEEDS_OVER_TWO_BATCHES = "0-4"  # more samples than one CPU batch holds, so results arrive while more are sampling
STEPS_LEFT_TO_INTERRUPT = 30  # the second batch's steps: time for a cancel or a kill to land before it ends


@pytest.fixture
def scene(extension):
    return clear_scene(fps=30)


def backend_pid() -> int:
    return addon_module("core.backend_manager").MANAGER.pid


class FakeEvent:
    def __init__(self, type: str, value: str = "NOTHING") -> None:
        self.type, self.value = type, value


class NoPropertySet:
    def is_property_set(self, name: str) -> bool:
        return False


def modal_operator_class():
    """Stands in for the operator instance Blender keeps during a modal Generate. bpy without a window has no event
    loop, so the test delivers the timer and Esc events itself, to the operator's own methods."""
    generate = addon_module("ui.operators").HYMOTION_OT_generate

    class ModalGenerate:
        modal, show_progress, stop_modal = generate.modal, generate.show_progress, generate.stop_modal
        conclude, remember, value = generate.conclude, generate.remember, generate.value
        spec, duration_for = generate.spec, generate.duration_for

        def __init__(self, context) -> None:
            self.properties = NoPropertySet()
            self.reports: list[tuple[set[str], str]] = []
            self._timer = context.window_manager.event_timer_add(0.1, window=context.window)

        def report(self, kinds, message) -> None:
            self.reports.append((set(kinds), message))

    return ModalGenerate


def test_modal_generate_starts_the_backend_shows_progress_and_esc_keeps_finished_actions(scene):
    """The module's first test: the backend is not running yet, so the modal run also starts it without blocking."""
    generation, manager = addon_module("scene.generation"), addon_module("core.backend_manager").MANAGER
    assert manager.status().state == "STOPPED"
    settings = scene.hymotion
    settings.prompt, settings.duration, settings.seeds = "a person waves", 1.0, SEEDS_OVER_TWO_BATCHES
    settings.steps = STEPS_LEFT_TO_INTERRUPT
    context = bpy.context
    operator = modal_operator_class()(context)
    run = generation.Run(operator.spec(context), addon_module("ui.preferences").backend_config(), scene,
                         scene.collection)
    generation.start_run(run, wait=False)
    assert manager.status().state == "STARTING" and run.job is None
    run.update = functools.partial(type(run).update, run, wait=0.5)  # ticks wait for events instead of spinning
    operator._run = run
    context.window_manager.progress_begin(0.0, 1.0)
    deadline = time.monotonic() + 120

    fractions = []
    while not run.actions:
        assert operator.modal(context, FakeEvent("TIMER")) == {"PASS_THROUGH"} and time.monotonic() < deadline
        fractions.append(run.fraction)
    assert operator.modal(context, FakeEvent("ESC", "PRESS")) == {"RUNNING_MODAL"} and run.cancel_requested
    while (result := operator.modal(context, FakeEvent("TIMER"))) == {"PASS_THROUGH"}:
        assert time.monotonic() < deadline

    assert result == {"FINISHED"} and run.cancelled
    assert fractions == sorted(fractions) and fractions[-1] > 0.15
    kinds, message = operator.reports[-1]
    assert kinds == {"WARNING"} and "cancelled; kept" in message
    assert 1 <= len(hymotion_actions()) < 5
    assert settings.history[0].prompt == "a person waves"


def test_generate_bakes_one_action_per_seed_on_a_new_rig(scene):
    result = bpy.ops.hymotion.generate(prompt="a person walks forward", duration=2.0, seeds="0,1", steps=TEST_STEPS)

    assert result == {"FINISHED"}
    actions = hymotion_actions()
    assert [action.name for action in actions] == ["HYM_walks_forward_s0", "HYM_walks_forward_s1"]
    for seed, action in enumerate(actions):
        assert action["hymotion_prompt"] == "a person walks forward"
        assert action["hymotion_seed"] == seed
        assert action["hymotion_duration"] == pytest.approx(2.0)
        assert action["hymotion_model"] == "tiny-random"
        assert action.use_fake_user
        assert keyframe_counts(action) == {60}
    rigs = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    assert len(rigs) == 1 and rigs[0].animation_data.action == actions[-1]
    assert scene.hymotion.history[0].prompt == "a person walks forward"


def test_generate_with_panel_settings_bakes_onto_the_active_rig(scene):
    rig = addon_module("scene.rig").build_armature(bpy.context)
    settings = scene.hymotion
    settings.prompt, settings.duration, settings.steps = "a person jumps", 0.0, TEST_STEPS
    settings.target, settings.in_place, settings.start_frame = "ACTIVE", True, 10

    assert bpy.ops.hymotion.generate() == {"FINISHED"}

    (action,) = hymotion_actions()
    assert [obj.name for obj in bpy.data.objects] == [rig.name]
    assert rig.animation_data.action == action
    assert action["hymotion_duration"] == pytest.approx(suggest_duration("a person jumps"), abs=1 / 30)
    assert action.frame_range[0] == 10
    assert len(action_fcurves(action)) == FCURVES_PER_ACTION
    rest_pelvis = rig.data.bones["pelvis"].head_local
    for frame in (10, 25, int(action.frame_range[1])):
        (pelvis,) = evaluated_heads(rig, ["pelvis"], frame)
        # in place: no travel; float32 pose evaluation of a rest head under 1 m rounds by ~1e-7, 1e-5 is 100x that
        assert pelvis[:2] == pytest.approx((rest_pelvis.x, rest_pelvis.y), abs=1e-5)


def test_generate_with_the_panels_sparse_keys_setting_writes_bezier_keys(scene):
    scene.hymotion.prompt, scene.hymotion.duration, scene.hymotion.steps = "a person waves", 1.0, TEST_STEPS
    scene.hymotion.keys = "SPARSE"
    assert bpy.ops.hymotion.generate() == {"FINISHED"}
    (action,) = hymotion_actions()
    assert {key.interpolation for fcurve in action_fcurves(action) for key in fcurve.keyframe_points} == {"BEZIER"}


def test_cancel_keeps_the_finished_actions(scene, observe_actions):
    observe_actions(lambda run, action: run.cancel())
    pid = backend_pid()

    result = bpy.ops.hymotion.generate(
        prompt="a person waves", duration=1.0, seeds=SEEDS_OVER_TWO_BATCHES, steps=STEPS_LEFT_TO_INTERRUPT
    )

    run = addon_module("scene.generation").active_run
    assert result == {"FINISHED"} and run.cancelled
    kept = hymotion_actions()
    assert 1 <= len(kept) < 5
    assert all(keyframe_counts(action) == {30} for action in kept)
    assert backend_pid() == pid and addon_module("core.backend_manager").MANAGER.status().state == "READY"


def test_killed_backend_is_reported_earlier_actions_stay_and_the_next_run_restarts_it(scene, observe_actions):
    assert bpy.ops.hymotion.generate(prompt="a person sits down", duration=1.0, steps=TEST_STEPS) == {"FINISHED"}
    (earlier,) = hymotion_actions()
    killed = backend_pid()
    kills = []

    def kill_once(run, action):
        if not kills:
            kills.append(killed)
            os.kill(killed, signal.SIGKILL)

    observe_actions(kill_once)

    with pytest.raises(RuntimeError, match="killed by signal SIGKILL"):
        bpy.ops.hymotion.generate(
            prompt="a person kicks", duration=1.0, seeds=SEEDS_OVER_TWO_BATCHES, steps=STEPS_LEFT_TO_INTERRUPT
        )

    assert earlier.name in bpy.data.actions and keyframe_counts(earlier) == {30}
    made_before_the_kill = [action for action in hymotion_actions() if action != earlier]
    assert 1 <= len(made_before_the_kill) < 5
    status = addon_module("core.backend_manager").MANAGER.status()
    assert status.state == "ERROR" and status.error.code == "backend_died"
    assert status.error.hint.startswith("Generate again: the backend restarts by itself.")

    assert bpy.ops.hymotion.generate(prompt="a person stands up", duration=1.0, steps=TEST_STEPS) == {"FINISHED"}
    assert backend_pid() != killed
    assert "HYM_stands_up_s0" in bpy.data.actions


PROMPT_LIST = "a person walks\n4.5 | a person jumps twice\n# a comment line\n\na person waves\n"


@pytest.mark.parametrize("layout", ["SEQUENCE", "STACK"])
def test_batch_bake_from_a_text_block_makes_one_nla_strip_per_line(scene, layout):
    text = bpy.data.texts.new("prompts.txt")
    text.write(PROMPT_LIST)
    settings = scene.hymotion
    settings.batch_source, settings.batch_text, settings.nla_layout = "TEXT", text, layout
    settings.duration, settings.steps, settings.seeds = 2.0, TEST_STEPS, "3,4"

    assert bpy.ops.hymotion.batch_bake() == {"FINISHED"}

    by_prompt = {action["hymotion_prompt"]: action for action in hymotion_actions()}
    assert sorted(by_prompt) == ["a person jumps twice", "a person walks", "a person waves"]
    assert [by_prompt[p]["hymotion_duration"] for p in ("a person walks", "a person jumps twice", "a person waves")] \
        == pytest.approx([2.0, 4.5, 2.0])
    assert {action["hymotion_seed"] for action in by_prompt.values()} == {3}
    (rig,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    tracks = rig.animation_data.nla_tracks
    strips = [(strip.action["hymotion_prompt"], strip.frame_start, strip.frame_end) for track in tracks
              for strip in track.strips]
    assert rig.animation_data.action is None
    if layout == "SEQUENCE":
        assert len(tracks) == 1
        assert [prompt for prompt, _, _ in strips] == ["a person walks", "a person jumps twice", "a person waves"]
        for (_, _, end), (_, next_start, _) in zip(strips, strips[1:]):
            assert next_start == end + 1
    else:
        assert len(tracks) == 3
        assert {start for _, start, _ in strips} == {1.0}


@pytest.mark.parametrize("line, words", [
    ("99 | a person runs", "Duration 99 s is outside"),
    ("4,5 | a person runs", "'4,5' before '|' is not a duration in seconds"),  # issue 26, point 18
])
def test_batch_bake_reports_a_bad_line_and_generates_nothing(scene, line, words):
    text = bpy.data.texts.new("bad prompts")
    text.write(f"a person walks\n{line}\n")
    with pytest.raises(RuntimeError, match=re.escape(f"line 2: {words}")):
        bpy.ops.hymotion.batch_bake(source="TEXT", text=text.name)
    assert hymotion_actions() == []
