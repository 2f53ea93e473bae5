"""Sparse keys in real Blender: the numpy Bezier evaluator equals Blender's F-curve evaluation, and after the operator
every bone Blender evaluates stays within the tolerance of the dense Action, on the SMPL-X rig and on a foreign one."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from blender_helpers import action_fcurves
from retarget_test_rigs import arp_a_pose_bones, build_rig
from smooth_clips import jump_clip, turn_clip

from hymotion_addon.core import fcurve_eval, sparse_keys
from hymotion_addon.scene import bake, rig, sparse_action
from hymotion_addon.ui import sparse_keys_ops

# Blender evaluates F-curves and poses in float32 (unit roundoff 6e-8): a world position sums a chain of at most ~10
# float32 products over ~2 m (test_bake.py's argument: a few 1e-6 m), and each key's value and handles are stored in
# float32 (a rotation component rounded by 6e-8 moves a point 2 m out by ~1e-7 m). 2e-5 m of slack on top of the
# tolerance is 10x that, for any CPU.
FLOAT32_SLACK = 2e-5
# Rotations: float32 matrices are orthonormal to ~1e-6, an angle of ~1e-4 degrees; 1e-3 degrees is 10x that.
ANGLE_SLACK = 1e-3


@pytest.fixture(scope="module", autouse=True)
def operator():
    registered = [cls for cls in sparse_keys_ops.classes if not cls.is_registered]
    for cls in registered:
        bpy.utils.register_class(cls)
    yield
    for cls in reversed(registered):
        bpy.utils.unregister_class(cls)


def world_poses(armature: bpy.types.Object, frames) -> tuple[np.ndarray, np.ndarray]:
    """Blender's evaluated world heads and tails (F, B, 2, 3) and rotations (F, B, 3, 3) of every pose bone."""
    points, rotations = [], []
    for frame in frames:
        bpy.context.scene.frame_set(int(frame))
        evaluated = armature.evaluated_get(bpy.context.evaluated_depsgraph_get())
        world = np.array(evaluated.matrix_world)
        matrices = np.array([world @ np.array(bone.matrix) for bone in evaluated.pose.bones])
        heads = np.array([tuple(bone.head) for bone in evaluated.pose.bones])
        tails = np.array([tuple(bone.tail) for bone in evaluated.pose.bones])
        points.append(np.stack([heads, tails], axis=1) @ world[:3, :3].T + world[:3, 3])
        rotation = matrices[:, :3, :3]
        rotations.append(rotation / np.linalg.norm(rotation, axis=-2, keepdims=True))
    return np.array(points), np.array(rotations)


def keys_of(action: bpy.types.Action) -> list[list[tuple[float, ...]]]:
    return [[(*key.co, *key.handle_left, *key.handle_right) for key in fcurve.keyframe_points]
            for fcurve in action_fcurves(action)]


def test_the_numpy_evaluator_equals_blenders_fcurve_evaluation(scene, rng):
    empty = bpy.data.objects.new("Curves", None)
    scene.collection.objects.link(empty)
    frames = np.cumsum(rng.uniform(1.0, 9.0, size=12))
    for frame in frames:
        empty.keyframe_insert("location", index=0, frame=float(frame))
    fcurve = action_fcurves(empty.animation_data.action)[0]
    points = fcurve.keyframe_points
    gaps = np.diff(frames)
    before = np.concatenate([gaps[:1], gaps])
    after = np.concatenate([gaps, gaps[-1:]])
    # handles from 10 % to 90 % of their segment each: where the two of a segment reach past each other in time,
    # Blender shortens them in proportion, which the evaluator must do too
    left_x = frames - rng.uniform(0.1, 0.9, frames.size) * before
    right_x = frames + rng.uniform(0.1, 0.9, frames.size) * after
    values = rng.normal(size=frames.size)
    modes = rng.choice(["BEZIER", "BEZIER", "LINEAR", "CONSTANT"], size=frames.size)
    for key, point in enumerate(points):
        point.co = (frames[key], values[key])
        point.handle_left_type = point.handle_right_type = "FREE"
        point.handle_left = (left_x[key], values[key] + rng.normal())
        point.handle_right = (right_x[key], values[key] + rng.normal())
        point.interpolation = modes[key]
    at = np.concatenate([np.linspace(frames[0] - 3, frames[-1] + 3, 997), frames, frames + 1e-5])
    expected = np.array([fcurve.evaluate(float(frame)) for frame in at])
    co = np.array([tuple(point.co) for point in points])
    left = np.array([tuple(point.handle_left) for point in points])
    right = np.array([tuple(point.handle_right) for point in points])
    got = fcurve_eval.evaluate_fcurve(co, left, right, np.array([point.interpolation for point in points]), at)
    # values of order 1 through a float32 cubic and its float32 root: ~1e-6 at worst; 1e-5 is 10x that
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_operator_keeps_the_baked_jump_within_tolerance(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    translation, rotations, _ = jump_clip()
    action = bake.bake_motion(armature, translation, rotations)
    frames = np.arange(1, translation.shape[0] + 1)
    dense_points, dense_rotations = world_poses(armature, frames)
    dense_keys = sum(len(fcurve.keyframe_points) for fcurve in action_fcurves(action))

    assert bpy.ops.hymotion.sparse_keys(tolerance=0.5, rotation_tolerance=1.0) == {"FINISHED"}
    points, world_rotations = world_poses(armature, frames)
    assert np.linalg.norm(points - dense_points, axis=-1).max() <= 0.005 + FLOAT32_SLACK
    assert sparse_keys.rotation_angles(world_rotations, dense_rotations).max() <= 1.0 + ANGLE_SLACK
    curves = action_fcurves(action)
    assert sum(len(fcurve.keyframe_points) for fcurve in curves) <= dense_keys / 6
    for fcurve in curves:
        keys = fcurve.keyframe_points
        assert {key.interpolation for key in keys} == {"BEZIER"}
        assert {key.handle_left_type for key in keys} | {key.handle_right_type for key in keys} <= {"ALIGNED", "FREE"}
        assert keys[0].co[0] == 1.0 and keys[-1].co[0] == frames[-1]
    assert armature.animation_data.action == action


def test_a_foreign_rig_in_centimetres_with_euler_bones_stays_within_tolerance(scene):
    scene.render.fps = 24
    armature = build_rig("ARP", arp_a_pose_bones(), y_up_centimetres=True)
    bones = armature.pose.bones
    times = np.arange(1, 61)
    wave = np.sin(times / 60.0 * 2.0 * np.pi)
    animated = ["c_thigh_fk.l", "c_leg_fk.l", "c_arm_fk.r", "c_forearm_fk.r", "c_spine_02.x"]
    for frame, value in zip(times.tolist(), wave.tolist()):
        bones["c_traj"].location = (0.0, 0.0, 60.0 * value)  # armature space is Y-up in cm: 60 cm forward
        bones["c_traj"].keyframe_insert("location", frame=frame)
        for number, name in enumerate(animated):
            bones[name].rotation_euler = (0.8 * value, 0.3 * np.cos(value + number), 0.2 * value * value)
            bones[name].keyframe_insert("rotation_euler", frame=frame)
    bones["c_head.x"].rotation_mode = "QUATERNION"
    for frame, value in zip(times.tolist(), wave.tolist()):
        bones["c_head.x"].rotation_quaternion = (np.cos(0.3 * value), 0.0, np.sin(0.3 * value), 0.0)
        bones["c_head.x"].keyframe_insert("rotation_quaternion", frame=frame)
    action = armature.animation_data.action
    noisy = next(fc for fc in action_fcurves(action) if fc.data_path.endswith('["c_spine_02.x"].rotation_euler'))
    noisy.modifiers.new("NOISE").strength = 0.01  # its keys are not what plays: left alone
    noisy_keys = [tuple(key.co) for key in noisy.keyframe_points]
    dense_points, _ = world_poses(armature, times)

    report = sparse_action.reduce_action(armature, tolerance_cm=0.5)
    points, _ = world_poses(armature, times)
    assert np.linalg.norm(points - dense_points, axis=-1).max() <= 0.005 + FLOAT32_SLACK
    assert report.max_error_cm <= 0.5 and report.curves_left_alone == 1
    assert [tuple(key.co) for key in noisy.keyframe_points] == noisy_keys
    assert report.keys_after <= report.keys_before / 6
    assert "Kept" in report.summary() and "cm" in report.summary()


def test_whole_rig_sharing_keys_every_curve_on_the_same_frames(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    action = bake.bake_motion(armature, *turn_clip())
    assert bpy.ops.hymotion.sparse_keys(share="RIG") == {"FINISHED"}
    assert len({tuple(key.co[0] for key in fcurve.keyframe_points) for fcurve in action_fcurves(action)}) == 1


@pytest.mark.parametrize("setup, kwargs, message", [
    ("empty", {}, "is not an armature"),
    ("nothing", {}, "'None' is not an armature"),
    ("no_action", {}, "has no Action"),
    ("no_keys", {}, "has no keys"),
    ("baked", {"tolerance": 0.0}, "tolerance is 0.0 cm; it must be above zero"),
    ("baked", {"tolerance": -1.0}, "tolerance is -1.0 cm"),
    ("baked", {"rotation_tolerance": 0.0}, "rotation tolerance is 0.0"),
])
def test_bad_input_is_refused_with_a_message_and_nothing_changes(scene, setup, kwargs, message):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    if setup == "empty":
        empty = bpy.data.objects.new("Empty", None)
        scene.collection.objects.link(empty)
        bpy.context.view_layer.objects.active = empty
    elif setup == "nothing":
        bpy.context.view_layer.objects.active = None
    elif setup == "no_keys":
        action = bpy.data.actions.new("Empty Action")
        new_fcurve, slot = bake.fcurve_factory(action, armature)
        new_fcurve('pose.bones["pelvis"].location', 0, "pelvis")
        armature.animation_data_create().action = action
        if slot is not None:
            armature.animation_data.action_slot = slot
    elif setup == "baked":
        bake.bake_motion(armature, *turn_clip())
    before = {action.name: keys_of(action) for action in bpy.data.actions}
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.hymotion.sparse_keys(**kwargs)
    assert {action.name: keys_of(action) for action in bpy.data.actions} == before


def test_an_action_of_another_armature_is_refused(scene):
    scene.render.fps = 30
    first = rig.build_armature(bpy.context, name="First")
    action = bake.bake_motion(first, *turn_clip())
    second = build_rig("Other", arp_a_pose_bones())
    before = keys_of(action)
    with pytest.raises(Exception, match="is not the Action of armature 'Other'"):
        sparse_action.reduce_action(second, action)
    second.animation_data_create().action = action  # assigned anyway: it names bones this rig lacks
    with pytest.raises(Exception, match="animates bones that armature 'Other' lacks"):
        sparse_action.reduce_action(second)
    assert keys_of(action) == before


# --- the Keys setting (Every Frame / Sparse) where keys are written -------------------------------------------------


def assert_sparse(action: bpy.types.Action, frames: int) -> None:
    curves = action_fcurves(action)
    assert sum(len(fcurve.keyframe_points) for fcurve in curves) <= len(curves) * frames / 6
    assert {key.interpolation for fcurve in curves for key in fcurve.keyframe_points} == {"BEZIER"}


def test_baking_with_sparse_keys_and_a_bad_keys_setting(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    translation, rotations, _ = jump_clip()
    assert_sparse(bake.bake_motion(armature, translation, rotations, keys="SPARSE"), translation.shape[0])
    count = len(bpy.data.actions)
    with pytest.raises(Exception, match="Unknown keys setting 'FEW'") as caught:
        bake.bake_motion(armature, translation, rotations, keys="FEW")
    assert caught.value.hint and len(bpy.data.actions) == count


def test_import_clip_and_the_library_bake_take_the_keys_setting(scene, tmp_path):
    from hymotion.shared.bake_job import BakeClip, BakeJob
    from hymotion.shared.skeleton import BODY_JOINT_NAMES
    from hymotion_addon.scene import library_bake, sequence

    scene.render.fps = 30
    translation, rotations = turn_clip()
    clip = tmp_path / "turn.npz"
    np.savez(clip, translation=translation, rotations=rotations, joint_names=np.array(BODY_JOINT_NAMES), fps=30)
    armature = rig.build_armature(bpy.context)
    assert_sparse(sequence.import_clip(clip, armature, keys="SPARSE"), translation.shape[0])
    every = sequence.import_clip(clip, armature)
    assert {len(fcurve.keyframe_points) for fcurve in action_fcurves(every)} == {translation.shape[0]}

    out = tmp_path / "library.blend"
    library_bake.bake_library(BakeJob(
        out=str(out), fps=30, keys="SPARSE",
        clips=(BakeClip(path=str(clip), prompt="a person turns", seed=0, duration=2.5, model="test"),),
    ))
    assert out.is_file()
    (action,) = [action for action in bpy.data.actions if action.get("hymotion_prompt") == "a person turns"]
    assert_sparse(action, translation.shape[0])


def test_retargeting_takes_the_keys_setting(scene):
    from hymotion_addon.scene import retarget

    scene.render.fps = 30
    target = build_rig("ARP", arp_a_pose_bones())
    translation, rotations, _ = jump_clip()
    action = retarget.bake_onto_rig(target, translation, rotations, keys="SPARSE")
    assert_sparse(action, translation.shape[0])
    assert target.animation_data.action == action


def test_hymotion_bake_passes_keys_to_the_job():
    from hymotion.bake import build_parser

    assert build_parser().parse_args(["p.txt", "--out", "x.blend", "--keys", "sparse"]).keys == "sparse"
    assert build_parser().parse_args(["p.txt", "--out", "x.blend"]).keys == "every-frame"


def test_an_imported_action_with_bezier_keys_and_a_flipped_quaternion_stays_within_tolerance(scene):
    """Like a mocap import: auto-clamped Bezier keys every third frame, 24 fps, one bone's quaternions flipping
    hemisphere half-way (the same rotations; Blender interpolates the components across the flip as they are)."""
    scene.render.fps = 24
    armature = rig.build_armature(bpy.context)
    bones = armature.pose.bones
    for frame in range(1, 100, 3):
        for number, name in enumerate(("left_hip", "left_knee", "spine1", "right_shoulder")):
            quaternion = np.array([1.0, 0.3 * np.sin(frame / 9.0 + number), 0.2 * np.cos(frame / 7.0), 0.1])
            quaternion /= np.linalg.norm(quaternion)
            bones[name].rotation_quaternion = -quaternion if name == "spine1" and frame > 50 else quaternion
            bones[name].keyframe_insert("rotation_quaternion", frame=frame)
        bones["pelvis"].location = (0.5 * np.sin(frame / 20.0), 0.0, 0.1 * np.cos(frame / 10.0))
        bones["pelvis"].keyframe_insert("location", frame=frame)
    frames = np.arange(1, 98)
    dense_points, dense_rotations = world_poses(armature, frames)
    report = sparse_action.reduce_action(armature)
    points, rotations = world_poses(armature, frames)
    assert np.linalg.norm(points - dense_points, axis=-1).max() <= 0.005 + FLOAT32_SLACK
    assert sparse_keys.rotation_angles(rotations, dense_rotations).max() <= 1.0 + ANGLE_SLACK
    assert report.keys_after < report.keys_before


def test_constraints_and_other_inheritance_are_named_in_a_warning(scene):
    scene.render.fps = 30
    armature = rig.build_armature(bpy.context)
    bake.bake_motion(armature, *turn_clip())
    assert sparse_action.reduce_action(armature).warning() is None
    armature.pose.bones["head"].constraints.new("COPY_ROTATION")
    armature.data.bones["left_wrist"].use_inherit_rotation = False
    report = sparse_action.reduce_action(armature)
    assert set(report.unseen) == {"head", "left_wrist"}
    assert "2 bone(s) have constraints" in report.warning()
