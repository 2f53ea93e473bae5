"""The SMPL-X armature: names, hierarchy and rest pose straight from hymotion.shared.skeleton, in Blender's Z-up
space."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from hymotion.shared.rotations import y_up_to_z_up
from hymotion.shared.skeleton import SMPLX_JOINT_NAMES, SMPLX_PARENTS, SMPLX_REST_POSITIONS
from hymotion_addon.scene import rig

# The rig is float32 data built from float64 tables: a head or tail is one rounding of a value under 2 m (<= 1.2e-7 m).
# Rest heads against the table and posed points (one float32 matrix product more): 1e-5 keeps >= 40x margin. A tail
# and the head it is copied to: the same float32 value, 1e-6 allows only rounding. Two rigs built the same way: the
# same float32 arithmetic, so equal to 1e-7 (less than one ulp at 1).
REST_TOLERANCE = 1e-5
SAME_VALUE = 1e-6
SAME_ARITHMETIC = 1e-7


def test_armature_has_every_smplx_joint_with_its_parent(scene):
    armature = rig.build_armature(bpy.context)
    bones = armature.data.bones
    assert len(bones) == 55
    assert sorted(bone.name for bone in bones) == sorted(SMPLX_JOINT_NAMES)
    for name, parent in zip(SMPLX_JOINT_NAMES, SMPLX_PARENTS):
        expected_parent = SMPLX_JOINT_NAMES[parent] if parent >= 0 else None
        assert (bones[name].parent.name if bones[name].parent else None) == expected_parent
        assert not bones[name].use_connect


def test_bone_heads_sit_at_the_rest_joints_in_z_up(scene):
    armature = rig.build_armature(bpy.context)
    expected = y_up_to_z_up(SMPLX_REST_POSITIONS)
    heads = np.array([tuple(armature.data.bones[name].head_local) for name in SMPLX_JOINT_NAMES])
    np.testing.assert_allclose(heads, expected, atol=REST_TOLERANCE)
    # Z-up and facing -Y: the head is above the pelvis, the toes are in front (-Y) of the ankles.
    bones = armature.data.bones
    assert bones["head"].head_local.z > bones["pelvis"].head_local.z + 0.5
    assert bones["left_foot"].head_local.y < bones["left_ankle"].head_local.y


def test_tails_follow_the_chain_and_rolls_are_deterministic(scene):
    first = rig.build_armature(bpy.context, name="A")
    second = rig.build_armature(bpy.context, name="B")
    bones = first.data.bones
    np.testing.assert_allclose(bones["left_knee"].tail_local, bones["left_ankle"].head_local, atol=SAME_VALUE)
    np.testing.assert_allclose(bones["pelvis"].tail_local, bones["spine1"].head_local, atol=SAME_VALUE)
    np.testing.assert_allclose(bones["left_wrist"].tail_local, bones["left_middle1"].head_local, atol=SAME_VALUE)
    assert min(bone.length for bone in bones) >= 0.005
    for name in SMPLX_JOINT_NAMES:
        np.testing.assert_allclose(
            np.array(bones[name].matrix_local), np.array(second.data.bones[name].matrix_local), atol=SAME_ARITHMETIC
        )


def test_armature_is_marked_and_recognised(scene):
    armature = rig.build_armature(bpy.context)
    assert rig.is_hymotion_armature(armature)
    assert armature.data.display_type in {"OCTAHEDRAL", "STICK"} and armature.show_in_front
    assert all(pose_bone.rotation_mode == "QUATERNION" for pose_bone in armature.pose.bones)
    assert bpy.context.view_layer.objects.active == armature

    foreign = bpy.data.objects.new("Foreign", bpy.data.armatures.new("Foreign"))
    assert not rig.is_hymotion_armature(foreign)
    assert not rig.is_hymotion_armature(bpy.data.objects.new("Empty", None))
    assert not rig.is_hymotion_armature(None)


def test_armature_goes_into_the_given_collection(scene):
    collection = bpy.data.collections.new("Characters")
    scene.collection.children.link(collection)
    armature = rig.build_armature(collection, name="Actor")
    assert armature.name in collection.objects and armature.name not in scene.collection.objects


def test_collection_outside_the_view_layer_is_refused_before_anything_is_made(scene):
    orphan = bpy.data.collections.new("NotInScene")
    with pytest.raises(ValueError, match="not part of the active view layer"):
        rig.build_armature(orphan)
    assert len(bpy.data.armatures) == 0 and len(bpy.data.objects) == 0


def test_body_mesh_boxes_follow_their_bones(scene):
    armature = rig.build_armature(bpy.context, with_mesh=True)
    (body,) = [obj for obj in bpy.data.objects if obj.type == "MESH"]
    assert body.parent == armature and body[rig.BODY_MESH_PROPERTY]
    assert body.modifiers[0].type == "ARMATURE" and body.modifiers[0].object == armature
    assert sorted(group.name for group in body.vertex_groups) == sorted(SMPLX_JOINT_NAMES)
    assert all(len(vertex.groups) == 1 for vertex in body.data.vertices)

    pose_bone = armature.pose.bones["left_shoulder"]
    pose_bone.rotation_quaternion = (0.7071068, 0.0, 0.0, 0.7071068)
    group_index = body.vertex_groups["left_wrist"].index
    wrist_vertices = [v.index for v in body.data.vertices if v.groups[0].group == group_index]
    rest = np.array([tuple(body.data.vertices[i].co) for i in wrist_vertices])

    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated_mesh = body.evaluated_get(depsgraph).data
    posed = np.array([tuple(evaluated_mesh.vertices[i].co) for i in wrist_vertices])
    evaluated_bone = armature.evaluated_get(depsgraph).pose.bones["left_wrist"]
    skinning = np.array(evaluated_bone.matrix) @ np.linalg.inv(np.array(armature.data.bones["left_wrist"].matrix_local))
    expected = rest @ skinning[:3, :3].T + skinning[:3, 3]
    assert np.abs(posed - rest).max() > 0.1
    np.testing.assert_allclose(posed, expected, atol=REST_TOLERANCE)
