"""The SMPL-X body skinned to the rig: its vertex groups, its place on the rig, its deformation, the operator."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from e2e_helpers import addon_preferences, clear_scene, extension  # noqa: F401  (fixture)

from hymotion.shared.body_mesh import BodyMesh, load_smplx_body
from hymotion.shared.skeleton import NUM_SMPLX_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS, SMPLX_REST_POSITIONS
from hymotion_addon.scene import rig

BODY_OFFSET = np.array([0.01, -0.15, 0.005])  # the synthetic body's joints sit this far from the rig's (Y-up)
SCATTERED_PER_JOINT = 4

# Vertex weights are float32 in Blender (a value in [0, 1] rounds by <= 6e-8): 1e-6 is 16x that. Joint and posed
# vertex positions are float32 values under 2 m after one or two matrix products (<= ~5e-7 m): 1e-5 is 20x that.
WEIGHT_TOLERANCE = 1e-6
POSITION_TOLERANCE = 1e-5


def write_smplx_model(path, rng: np.random.Generator) -> None:
    """An .npz with SMPL-X's layout: its first 55 vertices are the joints themselves (an identity regressor), the
    others scattered around each joint and weighted to it and its parent."""
    joints = SMPLX_REST_POSITIONS + BODY_OFFSET
    owner = np.repeat(np.arange(NUM_SMPLX_JOINTS), SCATTERED_PER_JOINT)
    template = np.concatenate([joints, joints[owner] + rng.normal(scale=0.02, size=(len(owner), 3))])
    weights = np.eye(len(template), NUM_SMPLX_JOINTS)
    scattered = np.arange(NUM_SMPLX_JOINTS, len(template))
    share = rng.uniform(0.3, 1.0, size=len(owner))
    weights[scattered, owner] = share
    weights[scattered, np.maximum(np.asarray(SMPLX_PARENTS)[owner], 0)] += 1.0 - share
    faces = np.arange(len(template) // 3 * 3).reshape(-1, 3)
    kintree = np.array([SMPLX_PARENTS, range(NUM_SMPLX_JOINTS)], dtype=np.int64)
    np.savez(path, v_template=template, f=faces, weights=weights, J_regressor=np.eye(NUM_SMPLX_JOINTS, len(template)),
             kintree_table=kintree)


@pytest.fixture
def scene(extension):
    yield clear_scene()
    addon_preferences().property_unset("smplx_model_file")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    write_smplx_model(path, np.random.default_rng(3))
    return path


@pytest.fixture
def body_file(tmp_path, model_file):
    return load_smplx_body(model_file).save(tmp_path / "body.npz")


def vertex_weights(mesh_object: bpy.types.Object, index: int) -> dict[str, float]:
    groups = mesh_object.vertex_groups
    return {groups[element.group].name: element.weight for element in mesh_object.data.vertices[index].groups}


def test_the_body_is_skinned_to_every_bone_with_the_models_weights(scene, body_file):
    armature = rig.build_armature(bpy.context)
    body = BodyMesh.load(body_file)
    mesh_object = rig.add_body_mesh(armature, body_file)

    assert len(mesh_object.data.vertices) == len(body.vertices)
    assert len(mesh_object.data.polygons) == len(body.faces)
    assert mesh_object.parent == armature and mesh_object[rig.SMPLX_BODY_PROPERTY]
    assert [(m.type, m.object) for m in mesh_object.modifiers] == [("ARMATURE", armature)]
    assert [group.name for group in mesh_object.vertex_groups] == list(SMPLX_JOINT_NAMES)
    for index in (0, 30, NUM_SMPLX_JOINTS, 100, len(body.vertices) - 1):
        expected = {SMPLX_JOINT_NAMES[j]: body.weights[index, j] for j in np.flatnonzero(body.weights[index])}
        actual = vertex_weights(mesh_object, index)
        assert actual.keys() == expected.keys()
        np.testing.assert_allclose([actual[name] for name in expected], list(expected.values()), atol=WEIGHT_TOLERANCE)


def test_the_bodys_pelvis_sits_on_the_rigs_pelvis(scene, body_file):
    armature = rig.build_armature(bpy.context)
    mesh_object = rig.add_body_mesh(armature, body_file)
    body_joints = np.array([tuple(mesh_object.data.vertices[j].co) for j in range(NUM_SMPLX_JOINTS)])
    rig_heads = np.array([tuple(armature.data.bones[name].head_local) for name in SMPLX_JOINT_NAMES])
    # The synthetic body is the rig's skeleton moved by BODY_OFFSET: with the pelvis aligned, every joint is.
    np.testing.assert_allclose(body_joints, rig_heads, atol=POSITION_TOLERANCE)


def test_posing_a_bone_moves_its_vertices_by_linear_blend_skinning(scene, body_file):
    armature = rig.build_armature(bpy.context)
    body = BodyMesh.load(body_file)
    mesh_object = rig.add_body_mesh(armature, body)
    armature.pose.bones["left_shoulder"].rotation_quaternion = (0.7071068, 0.0, 0.0, 0.7071068)
    armature.pose.bones["spine2"].rotation_quaternion = (0.9659258, 0.2588190, 0.0, 0.0)
    rest = np.array([tuple(vertex.co) for vertex in mesh_object.data.vertices])

    depsgraph = bpy.context.evaluated_depsgraph_get()
    posed = np.array([tuple(vertex.co) for vertex in mesh_object.evaluated_get(depsgraph).data.vertices])
    pose_bones = armature.evaluated_get(depsgraph).pose.bones
    skinning = np.stack([np.array(pose_bones[name].matrix) @ np.linalg.inv(np.array(pose_bones[name].bone.matrix_local))
                         for name in SMPLX_JOINT_NAMES])
    rest_h = np.concatenate([rest, np.ones((len(rest), 1))], axis=1)
    expected = np.einsum("vj,jab,vb->va", body.weights.astype(np.float64), skinning, rest_h)[:, :3]
    np.testing.assert_allclose(posed, expected, atol=POSITION_TOLERANCE)

    moved = np.linalg.norm(posed - rest, axis=1) > 1e-4
    left_elbow = SMPLX_JOINT_NAMES.index("left_elbow")
    right_leg = [SMPLX_JOINT_NAMES.index(name) for name in ("right_knee", "right_ankle", "right_foot")]
    assert moved[body.weights[:, left_elbow] > 0].all()
    assert not moved[body.weights[:, right_leg].sum(axis=1) > 0.999].any()


def test_the_operator_adds_the_body_from_the_preferences_file(scene, model_file):
    armature = rig.build_armature(bpy.context)
    addon_preferences().smplx_model_file = str(model_file)
    assert bpy.ops.hymotion.add_smplx_body() == {"FINISHED"}
    (mesh_object,) = [obj for obj in armature.children if rig.SMPLX_BODY_PROPERTY in obj]
    assert len(mesh_object.data.vertices) == NUM_SMPLX_JOINTS * (1 + SCATTERED_PER_JOINT)


def test_the_operator_says_what_is_missing(scene, tmp_path):
    with pytest.raises(RuntimeError,
                       match="No object is selected, and this needs the SMPL-X armature made by HY-Motion"):
        bpy.ops.hymotion.add_smplx_body()
    rig.build_armature(bpy.context)
    with pytest.raises(RuntimeError, match="(?s)No SMPL-X model file is set.*SMPL-X Model File"):
        bpy.ops.hymotion.add_smplx_body()
    with pytest.raises(RuntimeError, match="(?s)does not exist.*SMPLX_NEUTRAL.npz"):
        bpy.ops.hymotion.add_smplx_body(filepath=str(tmp_path / "absent.npz"))
    assert not any(obj.type == "MESH" for obj in bpy.data.objects)
