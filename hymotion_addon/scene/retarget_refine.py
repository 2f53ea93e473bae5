"""The retarget's last step, done by Blender itself: the keyed pose is evaluated, the bones that still point away from
the source (IK chains, rolls onto hinges) are corrected and keyed again, until the evaluated rig matches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import bpy
import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import (
    axis_angle_matrix,
    continuous_quaternions,
    matrix_to_quaternion,
    quaternion_to_matrix,
)

from ..core import retarget_math
from .target_rig import active_constraints, orthonormal

if TYPE_CHECKING:  # retarget imports this module
    from .retarget import KeyWriter

_REFINE_TOLERANCE = 1e-4  # radians (and armature units for locations); keys are float32


_MAX_REFINE_PASSES = 16


def pose_matrices(scene: bpy.types.Scene, armature: bpy.types.Object, frames: np.ndarray) -> np.ndarray:
    """Evaluated armature-space pose matrices (F, bones, 4, 4) at each frame, in pose-bone order."""
    count = len(armature.pose.bones)
    matrices = np.empty((frames.size, count, 4, 4))
    flat = np.empty(count * 16, dtype=np.float32)
    for row, frame in enumerate(frames):
        scene.frame_set(int(frame))
        depsgraph = bpy.context.evaluated_depsgraph_get()
        armature.evaluated_get(depsgraph).pose.bones.foreach_get("matrix", flat)
        matrices[row] = flat.reshape(count, 4, 4).transpose(0, 2, 1)
    return matrices


@dataclass(frozen=True)
class _IkChain:
    """A two-bone IK chain whose root is a keyed control (Rigify's upper_arm_ik, thigh_ik), as pose-bone indices."""

    root: int
    root_parent: int
    tip: int  # the IK constraint's owner (Rigify's MCH-forearm_ik): only its starting pose is keyed
    target: int  # the IK target bone
    tip_follows: int  # the keyed bone whose pose the tip should take (the FK forearm or shin)


def _ik_chains(armature: bpy.types.Object, keyed: list[str]) -> list[_IkChain]:
    """Two-bone IK chains rooted at a keyed bone, with a keyed bone at rest where the tip is (its FK twin).

    Blender's IK starts from the chain's keyed pose and stops as soon as the tip reaches the target, so keying the
    chain exactly as FK poses those bones makes the IK's result FK's pose. Without those keys the IK starts from
    the tip's rest bend and shortens the limb partly by IK stretch instead of bending, which turns the limb away
    from FK by several degrees."""
    index = {pose_bone.name: number for number, pose_bone in enumerate(armature.pose.bones)}
    bones = armature.data.bones
    chains = []
    for pose_bone in armature.pose.bones:
        for constraint in active_constraints(pose_bone):
            if constraint.type != "IK" or constraint.target != armature or constraint.chain_count != 2:
                continue
            root = pose_bone.parent
            twin = next((name for name in keyed if _same_rest(bones[name], pose_bone.bone)), None)
            if root is None or root.name not in keyed or root.parent is None or twin is None:
                continue
            if constraint.subtarget in index:
                chains.append(_IkChain(
                    index[root.name], index[root.parent.name], index[pose_bone.name], index[constraint.subtarget],
                    index[twin],
                ))
    return chains


def _same_rest(bone: bpy.types.Bone, other: bpy.types.Bone) -> bool:
    """Whether two bones sit in the same place at rest (Rigify builds its FK and IK chains as copies of one)."""
    return bool(np.allclose(bone.matrix_local, other.matrix_local, atol=1e-4 * max(bone.length, 1e-3)))


def _roll_onto_hinge(root: np.ndarray, hinge: np.ndarray, tip_direction: np.ndarray) -> np.ndarray:
    """The root rotations (F, 3, 3) rolled about their own Y axis, as little as possible, so that the tip's hinge
    axis (`hinge`, the tip's X axis in the root's frame: Blender's IK bends Rigify's forearm and shin about X only)
    is perpendicular to the tip's wanted direction, i.e. the tip can point there by bending alone.

    Rolling about Y keeps the root pointing where it did. With the root's Y axis u and the hinge axis v(psi) turned
    by psi about u, the condition v(psi) . f = 0 reads A cos psi + B sin psi = -C; the smaller of its two solutions
    is taken. A straight limb (f along u) keeps its roll."""
    axis = root[:, :, 1]
    hinge_now = root @ hinge
    along = np.sum(hinge_now * axis, axis=-1, keepdims=True) * axis
    across = hinge_now - along
    a = np.sum(across * tip_direction, axis=-1)
    b = np.sum(np.cross(axis, across) * tip_direction, axis=-1)
    c = np.sum(along * tip_direction, axis=-1)
    reach = np.hypot(a, b)
    offset = np.arccos(np.clip(-c / np.maximum(reach, 1e-12), -1.0, 1.0))
    centre = np.arctan2(b, a)
    candidates = np.stack([centre + offset, centre - offset], axis=-1)
    candidates = (candidates + np.pi) % (2.0 * np.pi) - np.pi
    roll = np.take_along_axis(candidates, np.argmin(np.abs(candidates), axis=-1)[:, None], axis=-1)[:, 0]
    roll = np.where(reach > 1e-6, roll, 0.0)
    return axis_angle_matrix(axis, roll) @ root


def refine_with_blender(
    scene: bpy.types.Scene,
    armature: bpy.types.Object,
    plan: retarget_math.RetargetPlan,
    result: retarget_math.RetargetResult,
    writer: KeyWriter,
) -> None:
    """Correct the keys against Blender's evaluation where constraints sit between mapped bones.

    A keyed bone's evaluated matrix is M = P B, with B its keys and P whatever its parents and their constraints make
    of its rest. Each pass reads M, takes P = M B^-1 and sets B = P^-1 D for the wanted matrix D (rotation for every
    keyed bone, position too for the hips, the root and IK controls). Bones whose parents are already right come out
    right, so one pass settles one more hierarchy level. The root of an IK chain is the exception: Blender's
    evaluated matrix is the IK's result, so P is its parent's evaluated pose times its rest offset, and its chain's
    starting pose is keyed as FK (see :func:`_ik_chains`).
    """
    if scene != bpy.context.scene:
        raise bad_request(
            f"'{armature.name}' has constraints between its mapped bones, which only the active scene can evaluate.",
            "Make the scene holding the rig the active scene and retarget again.",
        )
    names = plan.target.names
    pose_bones = armature.pose.bones
    pose_index = {pose_bone.name: number for number, pose_bone in enumerate(pose_bones)}
    keyed_bones = result.keyed_bones.tolist()
    keyed = [pose_index[names[bone]] for bone in keyed_bones]
    columns = {int(bone): column for column, bone in enumerate(keyed_bones)}
    pose_columns = {pose: column for column, pose in enumerate(keyed)}
    location_slots = {int(bone): slot for slot, bone in enumerate(result.location_bones)}
    # A bone without 'Local Location' (Rigify's IK controls) moves along its parent's axes, not its own rest axes.
    location_axes = {
        bone: np.eye(3) if armature.data.bones[names[bone]].use_local_location
        else plan.target.relative_rest[bone, :3, :3]
        for bone in location_slots
    }
    rotations = result.rotations.copy()
    locations = result.locations.copy()
    desired = result.desired.copy()
    rest = plan.target.rest
    followers = [  # IK controls follow where Blender puts their limb bones, which numpy's rest chain cannot tell
        (columns[control], columns[followed], np.linalg.inv(rest[followed]) @ rest[control])
        for control, followed in plan.ik_controls
    ]
    for control, followed, offset in followers:  # turned as their limb bone is wanted; placed where it evaluates
        desired[:, control] = result.desired[:, followed] @ offset
    chains = _ik_chains(armature, [names[bone] for bone in keyed_bones])
    rest_pose = np.array([np.array(pose_bone.bone.matrix_local) for pose_bone in pose_bones])
    for chain in chains:
        _key_ik_chain_start(chain, desired, pose_columns, rest_pose, writer, pose_bones[chain.tip].name)
    keyed_children = [  # plain bones whose parent is keyed: their parent's pose is known before Blender evaluates it
        (column, pose_columns[pose_index[pose_bones[pose].parent.name]], plan.target.relative_rest[keyed_bones[column]])
        for column, pose in enumerate(keyed)
        if pose_bones[pose].parent is not None and pose_index[pose_bones[pose].parent.name] in pose_columns
        and plan.target.plain[keyed_bones[column]] and pose not in {chain.root for chain in chains}
    ]
    frames = writer.frames
    original_frame = scene.frame_current
    window_manager = bpy.context.window_manager
    window_manager.progress_begin(0, _MAX_REFINE_PASSES)
    try:
        for number in range(_MAX_REFINE_PASSES):
            window_manager.progress_update(number)
            basis = np.zeros(desired.shape)
            basis[..., :3, :3] = quaternion_to_matrix(rotations)
            basis[..., 3, 3] = 1.0
            for bone, slot in location_slots.items():
                basis[:, columns[bone], :3, 3] = locations[:, slot] @ location_axes[bone]
            every_bone = pose_matrices(scene, armature, frames)
            evaluated = every_bone[:, keyed]
            for control, followed, offset in followers:
                desired[:, control, :3, 3] = evaluated[:, followed, :3, 3] + (
                    result.desired[:, followed, :3, :3] @ offset[:3, 3]
                )
            parent_like = evaluated @ np.linalg.inv(basis)
            for chain in chains:
                parent_like[:, pose_columns[chain.root]] = every_bone[:, chain.root_parent] @ (
                    np.linalg.inv(rest_pose[chain.root_parent]) @ rest_pose[chain.root]
                )
            for column, parent_column, relative_rest in keyed_children:
                parent_like[:, column] = desired[:, parent_column] @ relative_rest
            parent_rotation = orthonormal(parent_like[..., :3, :3])
            new_rotation = np.swapaxes(parent_rotation, -1, -2) @ desired[..., :3, :3]
            new_quaternions = continuous_quaternions(matrix_to_quaternion(new_rotation))
            worst = _largest_turn(new_quaternions, rotations)
            new_locations = locations.copy()
            for bone, slot in location_slots.items():
                solved = np.linalg.inv(parent_like[:, columns[bone]]) @ desired[:, columns[bone]]
                new_locations[:, slot] = solved[:, :3, 3] @ location_axes[bone].T
            moved = float(np.max(np.abs(new_locations - locations))) if location_slots else 0.0
            if worst < _REFINE_TOLERANCE and moved < _REFINE_TOLERANCE:
                break
            rotations, locations = new_quaternions, new_locations
            for slot, bone in enumerate(keyed_bones):
                writer.rotation(names[bone], rotations[:, slot])
            for bone, slot in location_slots.items():
                writer.location(names[bone], locations[:, slot])
            writer.armature.animation_data.action.update_tag()
    finally:
        window_manager.progress_end()
        scene.frame_set(original_frame)


def _key_ik_chain_start(
    chain: _IkChain,
    desired: np.ndarray,
    pose_columns: dict[int, int],
    rest_pose: np.ndarray,
    writer: KeyWriter,
    tip_name: str,
) -> None:
    """Roll the chain root's wanted rotation onto the tip's hinge and key the tip's starting pose as its FK twin's.

    Both come from wanted rotations only (the FK twin's and the root's), never from Blender's evaluation, so they
    are solved once, before the passes. Taken from the evaluated FK twin instead, they change with its float noise
    every pass, and the roll amplifies that noise by 1 / sin(bend): on Rigify's nearly straight arms (1.7 degrees at
    the elbow in the test gaits) about 34 times, over the passes' tolerance, so the solve never settled (the turn ran
    all 16 passes)."""
    column = pose_columns[chain.root]
    tip_wanted = desired[:, pose_columns[chain.tip_follows], :3, :3] @ (
        np.linalg.inv(rest_pose[chain.tip_follows]) @ rest_pose[chain.tip]
    )[:3, :3]
    tip_in_root = np.linalg.inv(rest_pose[chain.root]) @ rest_pose[chain.tip]
    desired[:, column, :3, :3] = _roll_onto_hinge(desired[:, column, :3, :3], tip_in_root[:3, 0], tip_wanted[:, :, 1])
    tip_parent = orthonormal(desired[:, column, :3, :3] @ tip_in_root[:3, :3])
    writer.rotation(tip_name, continuous_quaternions(matrix_to_quaternion(
        np.swapaxes(tip_parent, -1, -2) @ tip_wanted
    )))


def _largest_turn(quaternions: np.ndarray, before: np.ndarray) -> float:
    """The largest rotation angle (radians) between two sets of unit quaternions."""
    change = np.abs(np.sum(quaternions * before, axis=-1))
    return float(np.max(2.0 * np.arccos(np.clip(change, 0.0, 1.0))))
