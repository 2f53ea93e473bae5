"""Baking in real Blender: what the evaluated armature does must equal numpy forward kinematics of the same clip."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from addon_helpers import random_unit_quaternions
from blender_helpers import action_fcurves, evaluated_heads

from hymotion.shared.errors import BAD_REQUEST, HyMotionError
from hymotion.shared.rotations import y_up_to_z_up
from hymotion.shared.skeleton import BODY_JOINT_NAMES, SMPLX_JOINT_NAMES, forward_kinematics
from hymotion_addon.core import motion_math
from hymotion_addon.scene import bake, rig
from hymotion_addon.scene.actions import uses_slotted_actions

# Blender stores keys and evaluates poses in float32 (unit roundoff 6e-8). A world position is a chain of at most 8
# float32 rotation products (pelvis to wrist) applied to offsets, plus a translation of up to ~2 m here: at most
# ~8 x 1.2e-7 x 2 m = 2e-6 m of rounding. 1e-4 m keeps 50x margin, independent of the CPU.
FK_TOLERANCE = 1e-4
# Rest heads and matrices: float32 copies of values under 2 m, rounded once or twice (<= 2.4e-7); 1e-5 is 40x that.
REST_TOLERANCE = 1e-5


def random_clip(rng, frames: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(scale=0.5, size=(frames, 3)), random_unit_quaternions(rng, (frames, len(BODY_JOINT_NAMES)))


def expected_heads(translation: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    return y_up_to_z_up(forward_kinematics(rotations, translation))


def test_baked_pose_matches_numpy_forward_kinematics(scene, rng):
    scene.render.fps = 30
    translation, rotations = random_clip(rng, 12)
    armature = rig.build_armature(bpy.context)
    bake.bake_motion(armature, translation, rotations)
    expected = expected_heads(translation, rotations)
    for frame in (0, 3, 6, 11):
        heads = evaluated_heads(armature, BODY_JOINT_NAMES, frame + 1)
        np.testing.assert_allclose(heads, expected[frame], atol=FK_TOLERANCE)


def test_forward_kinematics_hold_at_a_start_frame_and_with_a_moved_armature(scene, rng):
    scene.render.fps = 30
    translation, rotations = random_clip(rng, 6)
    armature = rig.build_armature(bpy.context)
    armature.location = (2.0, -1.0, 0.5)
    bake.bake_motion(armature, translation, rotations, start_frame=-3)
    expected = expected_heads(translation, rotations) + np.array([2.0, -1.0, 0.5])
    for frame in (0, 5):
        np.testing.assert_allclose(
            evaluated_heads(armature, BODY_JOINT_NAMES, frame - 3), expected[frame], atol=FK_TOLERANCE
        )


def test_identity_rotations_give_the_rest_pose(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    rotations = np.zeros((3, len(BODY_JOINT_NAMES), 4))
    rotations[..., 0] = 1.0
    bake.bake_motion(armature, np.zeros((3, 3)), rotations)
    heads = evaluated_heads(armature, SMPLX_JOINT_NAMES, 2)
    np.testing.assert_allclose(heads, rig.rest_heads(), atol=REST_TOLERANCE)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = armature.evaluated_get(depsgraph)
    for name in SMPLX_JOINT_NAMES:
        np.testing.assert_allclose(
            np.array(evaluated.pose.bones[name].matrix), np.array(armature.data.bones[name].matrix_local),
            atol=REST_TOLERANCE,
        )


def test_resampling_to_24_fps_keeps_duration_and_endpoints(scene, rng):
    assert scene.render.fps == 24
    frame_range = (scene.frame_start, scene.frame_end)
    translation, rotations = random_clip(rng, 31)  # 30 intervals at 30 fps: the last 24 fps frame lands on the last
    armature = rig.build_armature(bpy.context)
    action = bake.bake_motion(armature, translation, rotations)

    assert {len(fcurve.keyframe_points) for fcurve in action_fcurves(action)} == {25}
    assert tuple(action.frame_range) == (1.0, 25.0)
    expected = expected_heads(translation, rotations)
    np.testing.assert_allclose(evaluated_heads(armature, BODY_JOINT_NAMES, 1), expected[0], atol=FK_TOLERANCE)
    np.testing.assert_allclose(evaluated_heads(armature, BODY_JOINT_NAMES, 25), expected[30], atol=FK_TOLERANCE)
    # 24 fps frame 3 is 2/24 s = source frame 2.5.
    halfway = motion_math.slerp(rotations[2], rotations[3], np.full(len(BODY_JOINT_NAMES), 0.5))
    expected_mid = expected_heads((translation[2:3] + translation[3:4]) / 2, halfway[None])[0]
    np.testing.assert_allclose(evaluated_heads(armature, BODY_JOINT_NAMES, 3), expected_mid, atol=FK_TOLERANCE)
    assert (scene.render.fps, scene.render.fps_base) == (24, 1.0)
    assert (scene.frame_start, scene.frame_end) == frame_range


def test_set_scene_fps_switches_the_scene_to_30_and_keeps_every_frame(scene, rng):
    scene.render.fps_base = 1.001
    translation, rotations = random_clip(rng, 9)
    armature = rig.build_armature(bpy.context)
    action = bake.bake_motion(armature, translation, rotations, fps_mode="SET_SCENE_FPS")
    assert (scene.render.fps, scene.render.fps_base) == (30, 1.0)
    assert {len(fcurve.keyframe_points) for fcurve in action_fcurves(action)} == {9}
    np.testing.assert_allclose(
        evaluated_heads(armature, BODY_JOINT_NAMES, 5), expected_heads(translation, rotations)[4], atol=FK_TOLERANCE
    )


def test_in_place_removes_horizontal_root_motion_and_keeps_height(scene, rng):
    scene.render.fps = 30
    translation, rotations = random_clip(rng, 5)
    translation[:, 0] += np.linspace(0.0, 3.0, 5)
    armature = rig.build_armature(bpy.context)
    bake.bake_motion(armature, translation, rotations, in_place=True)
    grounded = translation.copy()
    grounded[:, [0, 2]] = 0.0
    expected = expected_heads(grounded, rotations)
    for frame in range(5):
        heads = evaluated_heads(armature, BODY_JOINT_NAMES, frame + 1)
        np.testing.assert_allclose(heads, expected[frame], atol=FK_TOLERANCE)
        np.testing.assert_allclose(heads[0, :2], rig.rest_heads()[0, :2], atol=REST_TOLERANCE)
        assert heads[0, 2] == pytest.approx(rig.rest_heads()[0, 2] + translation[frame, 1], abs=REST_TOLERANCE)


def test_action_is_named_tagged_keyed_linearly_and_assigned(scene, rng):
    scene.render.fps = 30
    translation, rotations = random_clip(rng, 8)
    rotations[1::2] *= -1.0  # same rotations, flipped signs: the keys must still be continuous
    armature = rig.build_armature(bpy.context)
    action = bake.bake_motion(
        armature, translation, rotations, prompt="A person jumps twice!", seed=7, model="HY-Motion-1.0-Lite"
    )
    assert action.name == "HYM_jumps_twice_s7"
    assert action["hymotion_prompt"] == "A person jumps twice!"
    assert action["hymotion_seed"] == 7
    assert action["hymotion_duration"] == pytest.approx(8 / 30, abs=1e-3)
    assert action["hymotion_model"] == "HY-Motion-1.0-Lite"
    assert armature.animation_data.action == action

    fcurves = action_fcurves(action)
    assert len(fcurves) == 4 * len(BODY_JOINT_NAMES) + 3
    assert {fcurve.group.name for fcurve in fcurves} == set(BODY_JOINT_NAMES)
    assert {(fc.data_path, fc.array_index) for fc in fcurves if fc.data_path.endswith(".location")} == {
        ('pose.bones["pelvis"].location', index) for index in range(3)
    }
    for fcurve in fcurves:
        assert {key.interpolation for key in fcurve.keyframe_points} == {"LINEAR"}
        assert [key.co[0] for key in fcurve.keyframe_points] == list(range(1, 9))
    left_knee = np.array([
        [fc.keyframe_points[k].co[1] for k in range(8)]
        for fc in sorted(fcurves, key=lambda fc: fc.array_index)
        if fc.data_path == 'pose.bones["left_knee"].rotation_quaternion'
    ]).T
    assert (np.sum(left_knee[1:] * left_knee[:-1], axis=1) >= 0.0).all()

    explicit = bake.bake_motion(armature, translation, rotations, prompt="x", duration=4.5, name="Custom")
    assert explicit.name == "Custom" and explicit["hymotion_duration"] == 4.5


def test_slotted_actions_are_used_exactly_where_blender_has_them(scene, rng):
    scene.render.fps = 30
    translation, rotations = random_clip(rng, 2)
    armature = rig.build_armature(bpy.context)
    action = bake.bake_motion(armature, translation, rotations)
    assert uses_slotted_actions() == (bpy.app.version >= (4, 4, 0))
    if uses_slotted_actions():
        assert len(action.slots) == 1 and armature.animation_data.action_slot == action.slots[0]
    else:
        assert len(action.fcurves) == 4 * len(BODY_JOINT_NAMES) + 3


@pytest.mark.parametrize(
    "translation_shape, rotation_shape, kwargs, message",
    [
        ((4, 3), (4, 21, 4), {}, "expected \\(frames, 22, 4\\)"),
        ((3, 3), (4, 22, 4), {}, "expected \\(4, 3\\)"),
        ((4, 3), (4, 22, 4), {"fps_mode": "FASTER"}, "Unknown fps mode"),
        ((4, 3), (4, 22, 4), {"start_frame": 1.5}, "not a whole number"),
    ],
)
def test_bad_clips_are_refused_with_a_hint_and_leave_nothing_behind(
    scene, rng, translation_shape, rotation_shape, kwargs, message
):
    armature = rig.build_armature(bpy.context)
    rotations = random_unit_quaternions(rng, rotation_shape[:-1])
    with pytest.raises(HyMotionError, match=message) as caught:
        bake.bake_motion(armature, np.zeros(translation_shape), rotations, **kwargs)
    assert caught.value.code == BAD_REQUEST and caught.value.hint
    assert len(bpy.data.actions) == 0 and scene.render.fps == 24


def test_only_hymotion_armatures_take_clips(scene, rng):
    foreign = bpy.data.objects.new("Foreign", bpy.data.armatures.new("Foreign"))
    scene.collection.objects.link(foreign)
    translation, rotations = random_clip(rng, 2)
    with pytest.raises(HyMotionError, match="lacks bones pelvis"):
        bake.bake_motion(foreign, translation, rotations)
    with pytest.raises(HyMotionError, match="not an armature"):
        bake.bake_motion(bpy.data.objects.new("Empty", None), translation, rotations)


def constant_clip(frames: int, height: float) -> tuple[np.ndarray, np.ndarray]:
    rotations = np.zeros((frames, len(BODY_JOINT_NAMES), 4))
    rotations[..., 0] = 1.0
    return np.tile([0.0, height, 0.0], (frames, 1)), rotations


def pelvis_height(armature: bpy.types.Object, frame: int) -> float:
    return float(evaluated_heads(armature, ["pelvis"], frame)[0, 2] - rig.rest_heads()[0, 2])


def test_nla_sequence_lays_strips_end_to_end_on_one_track(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    first = bake.bake_motion(armature, *constant_clip(10, 1.0), seed=1)
    first_strip = bake.push_to_nla(armature, first, mode="SEQUENCE")
    second = bake.bake_motion(armature, *constant_clip(10, 2.0), seed=2)
    second_strip = bake.push_to_nla(armature, second, mode="SEQUENCE")

    anim_data = armature.animation_data
    assert anim_data.action is None
    assert len(anim_data.nla_tracks) == 1 and len(anim_data.nla_tracks[0].strips) == 2
    assert anim_data.nla_tracks[0].name == bake.NLA_TRACK_NAME
    assert (first_strip.frame_start, first_strip.frame_end) == (1.0, 10.0)
    assert (second_strip.frame_start, second_strip.frame_end) == (11.0, 20.0)
    assert pelvis_height(armature, 10) == pytest.approx(1.0, abs=REST_TOLERANCE)
    assert pelvis_height(armature, 11) == pytest.approx(2.0, abs=REST_TOLERANCE)


def test_nla_stack_puts_each_action_on_its_own_track(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    strips = []
    for seed, height in enumerate((1.0, 2.0, 3.0)):
        action = bake.bake_motion(armature, *constant_clip(6, height), seed=seed, start_frame=5)
        strips.append(bake.push_to_nla(armature, action, mode="STACK"))
    tracks = armature.animation_data.nla_tracks
    assert len(tracks) == 3 and all(len(track.strips) == 1 for track in tracks)
    assert [track.name for track in tracks] == [strip.action.name for strip in strips]
    assert [strip.frame_start for strip in strips] == [5.0, 5.0, 5.0]
    assert pelvis_height(armature, 7) == pytest.approx(3.0, abs=REST_TOLERANCE)  # the top track wins
    with pytest.raises(HyMotionError, match="Unknown NLA mode"):
        bake.push_to_nla(armature, bpy.data.actions[0], mode="SIDEWAYS")
