"""Known frames on the animator's own rig (issue 27): Start from Current Pose, In-between and Regenerate take a
mapped rig (Mixamo-named, A-pose) as their target through api.generate / api.regenerate and the operators, driving a
real backend (tiny random model: its motion is noise, so only the pins bring the seams together). At each seam every
mapped bone is within 0.5 cm and 0.5 degrees of the pose it continues from (the issue's target; Blender's float32
evaluation is ~1e-6 m off), channels the mapping does not cover stay as keyed, and bad input changes nothing."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
import retarget_test_rigs as rigs
from e2e_helpers import addon_module, extension, observe_actions  # noqa: F401  (fixtures)
from test_sequence_generate import STEPS, scene  # noqa: F401  (fixture)

SEAM_CM = 0.5
SEAM_DEGREES = 0.5


def mapped_rig(scene):
    """A Mixamo-named A-pose rig walking (the gait clip retargeted onto it), active, with a custom property keyed."""
    retarget = addon_module("scene.retarget")
    armature = rigs.build_rig("MixamoA", rigs.mixamo_a_pose_bones())
    translation, rotations, _ = rigs.gait_clip("walk", 3.0)
    action = retarget.bake_onto_rig(armature, translation, rotations, scene=scene)
    armature["prop"] = 0.0
    armature.keyframe_insert('["prop"]', frame=1)
    bpy.context.view_layer.objects.active = armature
    return armature, action


def mapped_names(armature):
    target_rig = addon_module("scene.target_rig")
    mapping = target_rig.detect_mapping(armature).mapped()
    return list(mapping.values())


def seam_error(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Largest head distance (cm) and rotation angle (degrees) between two sets of bone world matrices."""
    centimetres = float(np.linalg.norm(before[:, :3, 3] - after[:, :3, 3], axis=-1).max() * 100.0)
    relative = np.swapaxes(before[:, :3, :3], -1, -2) @ after[:, :3, :3]
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    return centimetres, float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).max())


def generated_poses(armature, names, frames, add_observer) -> dict:
    """The generated piece's pose at ``frames``, as baked onto the rig (before it is written into the Action)."""
    seen = {}

    def remember(run, made) -> None:
        seen.update({frame: rigs.world_matrices(armature, names, frame) for frame in frames})

    add_observer(remember)
    return seen


def test_start_from_current_pose_on_a_mapped_rig_meets_its_pose(scene):
    api = addon_module("api")
    armature, old = mapped_rig(scene)
    names = mapped_names(armature)
    pose = rigs.world_matrices(armature, names, 40)
    (new,) = api.generate("a person waves", duration=1.0, steps=STEPS, armature=armature, start_from=40,
                          context_frames=5)
    assert new != old and new.frame_range[0] == 40 and armature.animation_data.action == new
    centimetres, degrees = seam_error(pose, rigs.world_matrices(armature, names, 40))
    assert centimetres <= SEAM_CM and degrees <= SEAM_DEGREES, (centimetres, degrees)


def test_in_between_on_a_mapped_rig_meets_both_poses_and_keeps_the_rest(scene, observe_actions):
    armature, action = mapped_rig(scene)
    names = mapped_names(armature)
    poses = {frame: rigs.world_matrices(armature, names, frame) for frame in (20, 60, 80)}
    generated = generated_poses(armature, names, (20, 60), observe_actions)
    prop = [tuple(p.co) for c in addon_module("scene.actions").action_fcurves(action)
            if c.data_path == '["prop"]' for p in c.keyframe_points]
    curves = addon_module("scene.actions").action_fcurves(action)
    outside = {(c.data_path, c.array_index): [tuple(p.co) for p in c.keyframe_points if not 20 < p.co.x < 60]
               for c in curves}
    result = bpy.ops.hymotion.inbetween(prompt="a person turns around", frame_start=20, frame_end=60, steps=STEPS)
    assert result == {"FINISHED"} and armature.animation_data.action == action
    for frame in (20, 60):  # the new piece starts and ends in the rig's poses
        centimetres, degrees = seam_error(poses[frame], generated[frame])
        assert centimetres <= SEAM_CM and degrees <= SEAM_DEGREES, (frame, centimetres, degrees)
    for c in addon_module("scene.actions").action_fcurves(action):  # and the Action keeps its own keys there
        kept = [tuple(p.co) for p in c.keyframe_points if not 20 < p.co.x < 60]
        old = outside[(c.data_path, c.array_index)]
        if c.data_path.endswith("rotation_quaternion") and kept != old:  # at most negated after the range
            old = [(x, -y if x >= 60 else y) for x, y in old]
        assert kept == old, c.data_path
    assert prop == [tuple(p.co) for c in addon_module("scene.actions").action_fcurves(action)
                    if c.data_path == '["prop"]' for p in c.keyframe_points]


def test_regenerate_on_a_mapped_rig_meets_the_frames_on_both_sides(scene, observe_actions):
    api = addon_module("api")
    armature, action = mapped_rig(scene)
    names = mapped_names(armature)
    poses = {frame: rigs.world_matrices(armature, names, frame) for frame in (29, 61)}
    generated = generated_poses(armature, names, (29, 61), observe_actions)
    assert api.regenerate(armature, 30, 60, prompt="a person jumps", steps=STEPS) == action
    for frame, pose in poses.items():
        centimetres, degrees = seam_error(pose, generated[frame])
        assert centimetres <= SEAM_CM and degrees <= SEAM_DEGREES, (frame, centimetres, degrees)


def test_a_rig_whose_legs_are_not_mapped_is_refused_and_nothing_changes(scene):
    api = addon_module("api")
    bones = [bone for bone in rigs.mixamo_a_pose_bones() if "Leg" not in bone.name and "Foot" not in bone.name
             and "Toe" not in bone.name]
    armature = rigs.build_rig("NoLegs", bones)
    actions = len(bpy.data.actions)
    with pytest.raises(api.HyMotionError, match="cannot be read as a pose|leaves out|not mapped|mapping"):
        api.generate("a person waves", duration=1.0, steps=STEPS, armature=armature, start_from=1)
    assert len(bpy.data.actions) == actions


def test_a_rig_with_a_constraint_on_a_mapped_bone_is_refused_naming_it(scene):
    api = addon_module("api")
    armature, _ = mapped_rig(scene)
    constraint = armature.pose.bones["mixamorig:LeftArm"].constraints.new("COPY_ROTATION")
    constraint.target = armature
    constraint.subtarget = "mixamorig:RightArm"
    actions = len(bpy.data.actions)
    with pytest.raises(api.HyMotionError, match="mixamorig:LeftArm"):
        api.generate("a person waves", duration=1.0, steps=STEPS, armature=armature, start_from=10)
    assert len(bpy.data.actions) == actions
