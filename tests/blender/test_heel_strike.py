"""Heel strike planted at the floor (issue 27): with Clean Up Feet on, the heel's floor point (under the ankle, on the
ground the rig stands on) stays put from the landing frame on, measured from Blender's own evaluation, on a
Mixamo-named A-pose rig and a Rigify rig generated here; the Action's contact report measures that point and counts
hover only while the foot is flat."""

from __future__ import annotations

import numpy as np
import pytest
import retarget_test_rigs as rigs

from hymotion_addon.core import retarget_feet, retarget_math
from hymotion_addon.scene import retarget, target_rig

SECONDS = 2.0
# The target: 0.2 cm of slide of the heel's floor point on a landing frame (it was 0.62 cm on the Mixamo-named
# rig and 0.35 cm on Rigify, rolling about a point at toe-joint height). Asserted over the whole heel contact, not
# only its first step; in metres, the unit both rigs are built in.
HEEL_SLIDE = 0.002


@pytest.fixture(scope="module")
def rigify_blend(tmp_path_factory):
    """A Rigify rig generated once for the module (about 10 s), saved so each test appends a fresh copy."""
    import bpy
    from blender_helpers import new_empty_file

    new_empty_file()
    armature = rigs.generate_rigify_rig()
    path = tmp_path_factory.mktemp("rigify") / "rigify.blend"
    bpy.data.libraries.write(str(path), {armature}, fake_user=True)
    return str(path), armature.name


def make_rig(kind: str, rigify_blend) -> object:
    if kind == "rigify":
        return rigs.append_object(*rigify_blend)
    return rigs.build_rig("MixamoA", rigs.mixamo_a_pose_bones())


def heel_floor_points(armature, plan, frames: int) -> np.ndarray:
    """Per side, the heel's floor point (F, 3, armature space): under the foot bone's rest head on the ground plane
    (z = 0, where both rigs stand), carried by the evaluated foot bone; computed here independently of the cleanup's
    own foot points."""
    points = np.zeros((2, frames, 3))
    for foot in retarget_feet.plan_feet(plan):
        name = plan.target.names[foot.foot]
        rest = np.array(armature.data.bones[name].matrix_local)
        floor_point = np.array([rest[0, 3], rest[1, 3], 0.0, 1.0])
        offset = np.linalg.inv(rest) @ floor_point
        for frame in range(frames):
            matrix = rigs.world_matrices(armature, [name], frame + 1)[0]  # the rig sits at the origin, unscaled
            points[foot.side, frame] = (matrix @ offset)[:3]
    return points


@pytest.mark.parametrize("kind", ["mixamo", "rigify"])
@pytest.mark.parametrize("gait", ["walk", "run", "turn"])
def test_the_heels_floor_point_stays_put_from_the_landing_frame(scene, rigify_blend, kind, gait):
    scene.render.fps = 30
    armature = make_rig(kind, rigify_blend)
    translation, rotations, _ = rigs.gait_clip(gait, SECONDS)
    mapping = target_rig.detect_mapping(armature)
    plan = target_rig.plan_for(armature, mapping)
    action = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=True)
    frames = translation.shape[0]
    points = heel_floor_points(armature, plan, frames)
    world, positions = retarget_math.source_world(translation, rotations, plan.source_rest)
    contacts = retarget_feet.detect_contacts(positions, world, 30.0, plan.source_rest)
    checked = 0
    for side in range(2):
        for start, stop in retarget_feet.segments(contacts[:, side, 0]):
            track = points[side, start:stop, :2]
            slide = float(np.linalg.norm(np.diff(track, axis=0), axis=-1).sum())
            assert slide <= HEEL_SLIDE, (side, start, stop, slide)
            landing = start + np.flatnonzero(~contacts[start:stop, side, 1])  # heel strike: the ball not down yet
            landing = landing[landing < stop - 1] if landing.size and landing[0] == start else np.array([], int)
            if landing.size:  # rolling about the heel: on the floor (float32 keys over ~1 m: ~1e-6 m)
                assert np.abs(points[side, landing, 2]).max() <= 1e-4, (side, landing)
                checked += 1
    assert checked >= 2
    # The report measures the same point: every heel contact's slide within the same bound, no hover while heel-off.
    for key, (slide, _, hover) in action["hymotion_contacts"].items():
        assert slide <= HEEL_SLIDE and hover <= 0.003, key


def test_a_rig_standing_above_its_ground_plane_keeps_its_toe_level_floor(scene):
    """A rig whose feet are far above z = 0 (its origin elsewhere) stands on its toe level, as before."""
    bones = rigs.mixamo_a_pose_bones()
    for bone in bones:
        bone.head = bone.head + [0.0, 0.0, 0.5]
        bone.tail = bone.tail + [0.0, 0.0, 0.5]
    armature = rigs.build_rig("Raised", bones)
    plan = target_rig.plan_for(armature, target_rig.detect_mapping(armature))
    assert retarget_feet.rig_floor(plan) == pytest.approx(plan.target_toe_level)
    grounded = rigs.build_rig("Grounded", rigs.mixamo_a_pose_bones())
    assert retarget_feet.rig_floor(target_rig.plan_for(grounded, target_rig.detect_mapping(grounded))) == 0.0
