"""The retarget run backwards (issue 27), numpy only: a mapped rig's pose read as the SMPL-X body's pose in model
space, so known frames (continue, in-between, regenerate) can start from or end in what is on the animator's rig.

The forward transfer (:mod:`.retarget_math`) gives a mapped bone the armature-space rotation ``Q^T G O`` (G the
source joint's world rotation, O its rest alignment) and puts the target's anchor (the midpoint of the bones mapped
to the hip joints) at ``anchor_rest + scale * (anchor_source - standing)``, ``standing`` the source's rest anchor on
the clip's floor. Backwards, per mapped joint ``G = Q M O^T`` from the bone's pose matrix M; a joint the mapping
leaves out turns with its parent (an identity local rotation); the pelvis is placed so that the source's anchor is
``standing + (anchor_target - anchor_rest) / scale``, with the floor fixed at :data:`CONTINUITY_FLOOR` (the source's
own rest toe level: the rig standing on its floor reads as the body standing on the model's). Retargeting the
result forward with that same floor gives every mapped bone back its rotation exactly and the anchor its position,
so a piece generated from the read pose meets the rig's pose at the seam; every piece shares the floor and anchor.
"""

from __future__ import annotations

import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import Y_UP_TO_Z_UP, matrix_to_quaternion
from hymotion.shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS, NUM_BODY_JOINTS

from .retarget_math import LEGS, RetargetPlan

# Joints a pose cannot be read without: the legs whole (the feet and the floor) and the spine's base (the body's
# heading and lean); the rest of the spine, arms and head turn with their parents when left out.
REQUIRED_JOINTS = ("pelvis", "spine1") + tuple(BODY_JOINT_NAMES[joint] for leg in LEGS for joint in leg)


def check_readable(plan: RetargetPlan, rig_name: str) -> None:
    """Refuse a mapping that leaves out the legs or the spine's base, naming what is missing."""
    mapped = {BODY_JOINT_NAMES[joint] for joint in plan.joints.tolist()}
    missing = [joint for joint in REQUIRED_JOINTS if joint not in mapped]
    if missing:
        raise bad_request(
            f"'{rig_name}' cannot be read as a pose: its mapping leaves out {', '.join(missing)}.",
            "Map the pelvis, spine1 and both legs (hip, knee, ankle) in the Retarget panel's mapping, then try again.",
        )


def continuity_floor(plan: RetargetPlan) -> float:
    """The source floor every piece on one rig shares: the source's rest toe level (the rig's floor, read back)."""
    return float(plan.source_toe_level)


def source_pose(plan: RetargetPlan, matrices: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The SMPL-X pose (model space: translation (F, 3), local rotations (F, 22, 4) w x y z) whose forward retarget
    onto this rig, with :func:`continuity_floor`, gives back the mapped bones' rotations in ``matrices`` (target
    bone index -> (F, 4, 4) armature-space pose matrices of every mapped bone) and their anchor's position."""
    axes = plan.axes
    first = next(iter(matrices.values()))
    frames = first.shape[0]
    world = np.broadcast_to(np.eye(3), (frames, NUM_BODY_JOINTS, 3, 3)).copy()
    mapped = np.zeros(NUM_BODY_JOINTS, dtype=bool)
    for slot, (joint, bone) in enumerate(zip(plan.joints.tolist(), plan.bones.tolist())):
        if bone not in matrices:
            raise bad_request(f"No pose was read for bone {plan.target.names[bone]}.", "Read every mapped bone.")
        rotation = axes @ np.asarray(matrices[bone], dtype=np.float64)[:, :3, :3] @ plan.aligned_rest[slot].T
        world[:, joint] = _orthonormal(rotation)
        mapped[joint] = True
    for joint, parent in enumerate(BODY_PARENTS):
        if not mapped[joint] and parent >= 0:
            world[:, joint] = world[:, parent]
    local = world.copy()
    for joint, parent in enumerate(BODY_PARENTS):
        if parent >= 0:
            local[:, joint] = np.swapaxes(world[:, parent], -1, -2) @ world[:, joint]
    quaternions = matrix_to_quaternion(local)  # Blender axes: C R C^T
    rotations = np.concatenate([quaternions[..., :1], quaternions[..., 1:] @ Y_UP_TO_Z_UP], axis=-1)  # R

    source = plan.source_rest
    positions = np.empty((frames, NUM_BODY_JOINTS, 3))  # FK with the pelvis on its rest head
    for joint, parent in enumerate(BODY_PARENTS):
        if parent < 0:
            positions[:, joint] = source.heads[joint]
        else:
            positions[:, joint] = positions[:, parent] + world[:, parent] @ (source.heads[joint] - source.heads[parent])
    joints = list(plan.anchor_joints)
    anchor_bones = [int(plan.bones[plan.joints.tolist().index(joint)]) for joint in joints]
    anchor_target = np.mean([np.asarray(matrices[bone], dtype=np.float64)[:, :3, 3] for bone in anchor_bones],
                            axis=0) @ axes.T
    standing = source.heads[joints].mean(axis=0)
    standing[2] += continuity_floor(plan) - plan.source_toe_level
    anchor_source = standing + (anchor_target - plan.target_anchor) / plan.scale
    root_offset = anchor_source - positions[:, joints].mean(axis=1)  # Blender frame
    translation = root_offset @ Y_UP_TO_Z_UP  # model frame: C^T t
    return translation, rotations


def _orthonormal(matrices: np.ndarray) -> np.ndarray:
    """The nearest rotations (polar decomposition): Blender's float32 pose matrices are orthonormal to ~1e-6 only,
    and a scaled bone's matrix carries its scale."""
    left, _, right = np.linalg.svd(np.asarray(matrices, dtype=np.float64))
    return np.einsum("...ij,...jk->...ik", left, right)
