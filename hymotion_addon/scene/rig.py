"""The SMPL-X armature the motion is baked onto, built from the shared skeleton table (hymotion.shared.skeleton).

Blender space: Z-up, metres, the character faces -Y, armature origin at the model's origin. Every bone's head sits
at its joint's rest position and no bone is connected to its parent, so the root translation and every rotation
act exactly as in the model's forward kinematics.
"""

from __future__ import annotations

import os

import bpy
import numpy as np
from mathutils import Vector

from hymotion.shared.body_mesh import BodyMesh
from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import y_up_to_z_up
from hymotion.shared.skeleton import BODY_JOINT_NAMES, SMPLX_JOINT_NAMES, SMPLX_PARENTS, SMPLX_REST_POSITIONS

RIG_NAME = "SMPLX"  # the name a new armature gets
RIG_PROPERTY = "hymotion_rig"
RIG_VERSION = 1
BODY_MESH_PROPERTY = "hymotion_rig_mesh"
SMPLX_BODY_PROPERTY = "hymotion_smplx_body"

# Joints with several children point at the one that continues the chain.
_CHAIN_CHILD = {
    "pelvis": "spine1",
    "spine3": "neck",
    "left_wrist": "left_middle1",
    "right_wrist": "right_middle1",
}
# Joints without a chain child: direction in Blender space (Z-up, forward -Y) and length in metres.
_LEAF_BONES = {
    "head": ((0.0, 0.0, 1.0), 0.18),
    "jaw": ((0.0, -0.7, -0.7), 0.06),
    "left_eye_smplhf": ((0.0, -1.0, 0.0), 0.025),
    "right_eye_smplhf": ((0.0, -1.0, 0.0), 0.025),
    "left_foot": ((0.0, -1.0, 0.0), 0.06),
    "right_foot": ((0.0, -1.0, 0.0), 0.06),
}
_FINGERTIP_LENGTH_SCALE = 0.8
_MIN_BONE_LENGTH = 0.005
_FORWARD = Vector((0.0, -1.0, 0.0))
_UP = Vector((0.0, 0.0, 1.0))


def rest_heads() -> np.ndarray:
    """Rest joint positions in Blender space (55, 3), the armature's bone heads."""
    return y_up_to_z_up(SMPLX_REST_POSITIONS)


def rest_tails() -> np.ndarray:
    """Bone tails (55, 3): toward the chain child, else a fixed leaf direction, else continuing the parent bone."""
    heads = rest_heads()
    tails = np.empty_like(heads)
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(SMPLX_PARENTS):
        children.setdefault(parent, []).append(joint)
    for joint, name in enumerate(SMPLX_JOINT_NAMES):
        own_children = children.get(joint, [])
        if name in _CHAIN_CHILD:
            tails[joint] = heads[SMPLX_JOINT_NAMES.index(_CHAIN_CHILD[name])]
        elif name in _LEAF_BONES:
            direction, length = _LEAF_BONES[name]
            tails[joint] = heads[joint] + length * np.asarray(direction) / np.linalg.norm(direction)
        elif len(own_children) == 1:
            tails[joint] = heads[own_children[0]]
        else:
            parent = SMPLX_PARENTS[joint]
            tails[joint] = heads[joint] + _FINGERTIP_LENGTH_SCALE * (heads[joint] - heads[parent])
    short = np.linalg.norm(tails - heads, axis=1) < _MIN_BONE_LENGTH
    tails[short] = heads[short] + np.asarray([0.0, 0.0, _MIN_BONE_LENGTH])
    return tails


def _roll_reference(direction: Vector) -> Vector:
    """The vector a bone's Z axis is aligned to: forward, or up for bones that point (almost) forward."""
    return _UP if abs(direction.normalized().dot(_FORWARD)) > 0.9 else _FORWARD


def _target_collection(context_or_collection: bpy.types.Context | bpy.types.Collection) -> bpy.types.Collection:
    if isinstance(context_or_collection, bpy.types.Collection):
        collection = context_or_collection
    else:
        collection = context_or_collection.collection or context_or_collection.scene.collection
    if not _is_editable_in_view_layer(collection, bpy.context.view_layer):
        raise ValueError(
            f"Collection '{collection.name}' is not part of the active view layer (or is excluded from it), so bones "
            "cannot be created in it. Pass a collection of the current scene that is enabled in the view layer."
        )
    return collection


def _is_editable_in_view_layer(collection: bpy.types.Collection, view_layer: bpy.types.ViewLayer) -> bool:
    pending = [view_layer.layer_collection]
    while pending:
        layer_collection = pending.pop()
        if layer_collection.exclude:
            continue
        if layer_collection.collection == collection:
            return True
        pending.extend(layer_collection.children)
    return False


def build_armature(
    context_or_collection: bpy.types.Context | bpy.types.Collection,
    name: str = RIG_NAME,
    with_mesh: bool = False,
) -> bpy.types.Object:
    """Create the 55-bone SMPL-X armature object, linked to the given (or the context's) collection.

    The new armature becomes the active, selected object, as with Blender's own Add menu. With `with_mesh`, a
    simple box-per-bone body deformed by the armature is added as its child, so the motion is visible without any
    licensed body model.
    """
    collection = _target_collection(context_or_collection)
    armature_data = bpy.data.armatures.new(name)
    armature_data.display_type = "OCTAHEDRAL"
    armature = bpy.data.objects.new(name, armature_data)
    armature.show_in_front = True
    armature[RIG_PROPERTY] = RIG_VERSION
    collection.objects.link(armature)
    _add_bones(armature)
    for pose_bone in armature.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    if with_mesh:
        build_body_mesh(armature, collection)
    return armature


def _add_bones(armature: bpy.types.Object) -> None:
    """Create the edit bones; needs edit mode, entered and left here with the previous mode and selection restored."""
    view_layer = bpy.context.view_layer
    if bpy.context.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for selected in list(bpy.context.selected_objects):
        selected.select_set(False)
    view_layer.objects.active = armature
    armature.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        heads, tails = rest_heads(), rest_tails()
        edit_bones = armature.data.edit_bones
        for joint, name in enumerate(SMPLX_JOINT_NAMES):
            bone = edit_bones.new(name)
            bone.head = Vector(heads[joint])
            bone.tail = Vector(tails[joint])
            bone.align_roll(_roll_reference(bone.tail - bone.head))
            parent = SMPLX_PARENTS[joint]
            if parent >= 0:
                bone.parent = edit_bones[SMPLX_JOINT_NAMES[parent]]
            bone.use_connect = False
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")


def is_hymotion_armature(obj: bpy.types.Object | None) -> bool:
    """Whether obj is an armature this add-on built (marked, and with every body bone the bake drives)."""
    if obj is None or obj.type != "ARMATURE" or RIG_PROPERTY not in obj:
        return False
    bones = obj.data.bones
    return all(name in bones for name in BODY_JOINT_NAMES)


def require_hymotion_armature(obj: bpy.types.Object | None, hint: str) -> bpy.types.Object:
    """``obj`` if it is an armature this add-on built; else a bad request that says what ``obj`` is instead (nothing
    selected, not an armature, or which body bones it lacks), with the caller's ``hint`` on what to do."""
    if is_hymotion_armature(obj):
        return obj
    if obj is None:
        raise bad_request("No object is selected, and this needs the SMPL-X armature made by HY-Motion.", hint)
    if obj.type != "ARMATURE":
        detail = f"it is a {obj.type.lower()}, not an armature"
    else:
        missing = [name for name in BODY_JOINT_NAMES if name not in obj.data.bones]
        detail = f"it lacks bones {', '.join(missing[:4])}" if missing else "it was not built by HY-Motion"
    raise bad_request(f"'{obj.name}' is not an SMPL-X armature made by HY-Motion ({detail}).", hint)


def _box_half_width(length: float) -> float:
    return float(np.clip(0.18 * length, 0.006, 0.045))


def build_body_mesh(armature: bpy.types.Object, collection: bpy.types.Collection) -> bpy.types.Object:
    """A box per bone, each rigidly bound to its bone (one vertex group each) through an Armature modifier."""
    bones = armature.data.bones
    corner_signs = np.array(
        [(sx, sy, sz) for sy in (0.0, 1.0) for sz in (-1.0, 1.0) for sx in (-1.0, 1.0)], dtype=np.float64
    )
    box_faces = np.array(
        [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)], dtype=np.int32
    )
    vertices = np.empty((len(bones), 8, 3))
    for index, bone in enumerate(bones):
        half_width = _box_half_width(bone.length)
        local = corner_signs * np.array([half_width, bone.length, half_width])
        rest = np.array(bone.matrix_local)
        vertices[index] = local @ rest[:3, :3].T + rest[:3, 3]
    faces = (box_faces[None] + 8 * np.arange(len(bones))[:, None, None]).reshape(-1, 4)

    body = _deformed_mesh_object(armature, f"{armature.name}_body", vertices.reshape(-1, 3), faces, collection)
    body[BODY_MESH_PROPERTY] = RIG_VERSION
    for index, bone in enumerate(bones):
        group = body.vertex_groups.new(name=bone.name)
        group.add(list(range(8 * index, 8 * index + 8)), 1.0, "REPLACE")
    return body


def add_body_mesh(armature: bpy.types.Object, body: BodyMesh | str | os.PathLike) -> bpy.types.Object:
    """The SMPL-X body (a BodyMesh, or a file from ``hymotion body-mesh``) skinned to the armature, as its child.

    The rig's proportions come from HY-Motion's skeleton, the body's from the SMPL-X model: their joints differ by a
    few centimetres. The body is moved so that its pelvis sits on the rig's pelvis; each vertex then follows its
    SMPL-X joints' bones with the model's own weights (one vertex group per bone).
    """
    if not isinstance(body, BodyMesh):
        body = BodyMesh.load(body)
    pelvis_shift = SMPLX_REST_POSITIONS[0] - body.joints[0]
    vertices = y_up_to_z_up(body.vertices + pelvis_shift)
    collection = armature.users_collection[0] if armature.users_collection else bpy.context.scene.collection
    mesh_object = _deformed_mesh_object(armature, f"{armature.name}_smplx_body", vertices, body.faces, collection)
    mesh_object.data.polygons.foreach_set("use_smooth", np.ones(len(body.faces), dtype=bool))
    mesh_object[SMPLX_BODY_PROPERTY] = RIG_VERSION
    for joint, name in enumerate(SMPLX_JOINT_NAMES):
        group = mesh_object.vertex_groups.new(name=name)
        weighted = np.flatnonzero(body.weights[:, joint])
        # Blender sets one weight on many vertices per call: one call per distinct weight of this joint.
        values, value_index = np.unique(body.weights[weighted, joint], return_inverse=True)
        runs = np.split(weighted[np.argsort(value_index, kind="stable")], np.cumsum(np.bincount(value_index))[:-1])
        for value, run in zip(values, runs):
            group.add(run.tolist(), float(value), "REPLACE")
    return mesh_object


def _deformed_mesh_object(
    armature: bpy.types.Object, name: str, vertices: np.ndarray, faces: np.ndarray, collection: bpy.types.Collection
) -> bpy.types.Object:
    """A mesh object (faces all of one size) parented to the armature and deformed by it through a modifier."""
    corners = faces.shape[1]
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1))
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).reshape(-1))
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, corners, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(faces), corners, dtype=np.int32))
    mesh.update()
    mesh.validate()

    mesh_object = bpy.data.objects.new(name, mesh)
    collection.objects.link(mesh_object)
    mesh_object.parent = armature
    modifier = mesh_object.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    return mesh_object
