"""The scripting API (hymotion_addon.api.generate) against a real backend with the tiny model."""

from __future__ import annotations

import bpy
import pytest
from blender_helpers import action_fcurves
from e2e_helpers import TEST_STEPS, addon_module, clear_scene, enabled_extension, hymotion_actions, keyframe_counts

from hymotion.shared.errors import HyMotionError


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with enabled_extension(tmp_path_factory.mktemp("hymotion")):
        yield addon_module("api")


@pytest.fixture
def scene(api):
    return clear_scene(fps=30)


def test_generate_returns_the_actions_in_prompt_then_seed_order(api, scene):
    seen = []
    actions = api.generate(
        ["a person walks", "a person jumps"], duration=[1.5, 2.0], seeds=(0, 1), steps=TEST_STEPS,
        on_action=lambda run, action: seen.append(action.name),
    )

    assert [action.name for action in actions] == [
        "HYM_walks_s0", "HYM_walks_s1", "HYM_jumps_s0", "HYM_jumps_s1"
    ]
    assert seen == [action.name for action in actions]
    assert [keyframe_counts(action) for action in actions] == [{45}, {45}, {60}, {60}]
    assert all(isinstance(action, bpy.types.Action) and action.use_fake_user for action in actions)
    assert len([obj for obj in bpy.data.objects if obj.type == "ARMATURE"]) == 1


def test_generate_onto_a_given_armature_and_the_nla(api, scene):
    rig = addon_module("scene.rig").build_armature(bpy.context)

    (action,) = api.generate("a person waves", duration=1.0, seeds="7", steps=TEST_STEPS, armature=rig,
                             nla_layout="STACK", start_frame=5)

    assert action["hymotion_seed"] == 7
    assert [obj.name for obj in bpy.data.objects] == [rig.name]
    (track,) = rig.animation_data.nla_tracks
    assert [(strip.action, strip.frame_start) for strip in track.strips] == [(action, 5.0)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prompts": []}, "prompts must be"),
        ({"prompts": "a person waves", "duration": 50.0}, "Duration 50 s is outside"),
        ({"prompts": ["a", "b"], "duration": [1.0]}, "Got 1 durations for 2 prompts"),
        ({"prompts": "a person waves", "seeds": "one"}, "Seed 'one' is not an integer"),
        ({"prompts": "a person waves", "steps": 0}, "steps must be an integer >= 1"),
        ({"prompts": "  "}, "Prompt 1 is empty"),
    ],
)
def test_bad_arguments_raise_a_clear_error_before_anything_is_generated(api, scene, arguments, message):
    with pytest.raises(HyMotionError, match=message) as raised:
        api.generate(**arguments)
    assert raised.value.code == "bad_request"
    assert hymotion_actions() == []


def test_an_armature_not_made_by_hymotion_is_refused(api, scene):
    other = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    with pytest.raises(HyMotionError, match="'Rig' is not an SMPL-X armature made by HY-Motion"):
        api.generate("a person waves", armature=other)


def test_a_timeout_cancels_the_job_and_raises(api, scene):
    with pytest.raises(api.GenerationError, match="No complete result within 0 s") as raised:
        api.generate("a person runs", duration=1.0, steps=1000, timeout=0)
    assert raised.value.code == "cancelled" and raised.value.actions == []
    assert api.generate("a person runs", duration=1.0, steps=TEST_STEPS)[0].name == "HYM_runs_s0"


def test_a_failing_callback_stops_the_run_and_keeps_what_was_made(api, scene):
    def refuse(run, action):
        raise ValueError("no more")

    with pytest.raises(api.GenerationError, match="callback .* failed: ValueError") as raised:
        api.generate("a person bows", duration=1.0, seeds="0-2", steps=TEST_STEPS, on_action=refuse)
    assert [action.name for action in raised.value.actions] == ["HYM_bows_s0"]
    assert hymotion_actions() == raised.value.actions



def test_generate_with_sparse_keys_writes_bezier_keys(api, scene):
    (action,) = api.generate("a person waves", duration=1.0, steps=TEST_STEPS, keys="SPARSE")
    assert {key.interpolation for fcurve in action_fcurves(action) for key in fcurve.keyframe_points} == {"BEZIER"}
    with pytest.raises(HyMotionError, match="Unknown keys setting"):
        api.generate("a person waves", keys="SOME")
