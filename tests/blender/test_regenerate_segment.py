"""Regenerate a segment in real Blender (issue 27): the sidebar's Regenerate Segment on the preview range or two
frames, and api.regenerate, driving a real backend process (tiny random model, 2 steps): only the range changes,
every key outside it stays bit for bit, the frames on both sides are the new motion's pinned ends. Tolerances as in
test_sequence_generate.py."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from blender_helpers import action_fcurves, evaluated_heads
from e2e_helpers import RecordingLayout, addon_module, extension, hymotion_actions  # noqa: F401  (fixture)
from test_sequence_generate import POSITION_TOLERANCE, STEPS, keyed_rig, scene  # noqa: F401  (fixture)

from hymotion.shared.skeleton import BODY_JOINT_NAMES


def all_keys(action) -> dict[tuple[str, int], np.ndarray]:
    return {(c.data_path, c.array_index): np.array([tuple(p.co) for p in c.keyframe_points])
            for c in action_fcurves(action)}


def assert_only_the_range_changed(before, after, first, last):
    """Outside the range every key is the old one bit for bit, except that a bone's quaternion keys after the range
    may all be negated exactly (q and -q are the same rotation): the in-between's writer turns them to the sign the
    new motion arrives with, so no interpolation passes through a flipped sign at the seam."""
    assert before.keys() == after.keys()
    changed = 0
    for channel, old in before.items():
        new = after[channel]
        outside = (old[:, 0] < first) | (old[:, 0] > last)
        np.testing.assert_array_equal(new[:, 0], old[:, 0])  # a key on every frame, as before
        same = np.array_equal(new[outside], old[outside])
        if not same and channel[0].endswith("rotation_quaternion"):
            after_range = old[:, 0] > last
            negated = old.copy()
            negated[after_range, 1] = -old[after_range, 1]
            same = np.array_equal(new[outside], negated[outside])
        assert same, channel
        inside = ~outside
        changed += not np.allclose(new[inside, 1], old[inside, 1], atol=1e-4)
    assert changed > len(before) // 2


def test_regenerate_segment_on_the_preview_range_keeps_every_key_outside_it(scene):
    armature, action = keyed_rig(scene)
    action["hymotion_prompt"] = "a person walks"
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = 20, 40
    before = all_keys(action)
    poses = {frame: evaluated_heads(armature, BODY_JOINT_NAMES, frame) for frame in (19, 41)}

    assert bpy.ops.hymotion.regenerate_segment(seed=3, steps=STEPS) == {"FINISHED"}

    assert hymotion_actions() == [action] and armature.animation_data.action == action
    assert_only_the_range_changed(before, all_keys(action), 20, 40)
    for frame, pose in poses.items():  # the pinned neighbours hold the same pose
        np.testing.assert_allclose(evaluated_heads(armature, BODY_JOINT_NAMES, frame), pose, atol=POSITION_TOLERANCE)


def test_api_regenerate_at_the_start_of_the_action_pins_only_the_frame_after(scene):
    api = addon_module("api")
    armature, action = keyed_rig(scene)
    before = all_keys(action)
    after_range = evaluated_heads(armature, BODY_JOINT_NAMES, 26)
    assert api.regenerate(armature, 1, 25, prompt="a person waves", steps=STEPS) == action
    assert_only_the_range_changed(before, all_keys(action), 1, 25)
    np.testing.assert_allclose(evaluated_heads(armature, BODY_JOINT_NAMES, 26), after_range, atol=POSITION_TOLERANCE)


@pytest.mark.parametrize(("first", "last", "words"), [(50, 70, "not inside"), (30, 20, "not inside"),
                                                      (1, 60, "all of the Action"), (20, 24, "the model makes")])
def test_bad_ranges_are_refused_and_nothing_changes(scene, first, last, words):
    armature, action = keyed_rig(scene)
    before = all_keys(action)
    with pytest.raises(RuntimeError, match=words):
        bpy.ops.hymotion.regenerate_segment(prompt="a person turns", frame_start=first, frame_end=last, steps=STEPS)
    assert hymotion_actions() == [action]
    after = all_keys(action)
    assert all(np.array_equal(before[channel], after[channel]) for channel in before)


def test_no_prompt_anywhere_is_refused(scene):
    api = addon_module("api")
    armature, _ = keyed_rig(scene)
    with pytest.raises(api.HyMotionError, match="holds no prompt"):
        api.regenerate(armature, 20, 40)


def test_the_section_offers_regenerate_segment(scene):
    layout = RecordingLayout()
    addon_module("ui.sequence_ops").draw_sequence(layout, bpy.context)
    assert "hymotion.regenerate_segment" in layout.operators()
