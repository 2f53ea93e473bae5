"""Retargeting math in numpy only: the SMPL-X body's motion carried onto any humanoid rig through world space.

Frames and conventions
----------------------
The source is the SMPL-X body in Blender space (Z-up, metres, facing -Y, the character's left at +X), posed by
local quaternions (w, x, y, z) in the model's Y-up frame plus a root translation, as :mod:`hymotion_addon.scene.bake`
takes them. Its rest pose is the T-pose of :mod:`hymotion.shared.skeleton`, where every joint's world rotation is the
identity, so a source joint's world rotation G is also its rotation *relative to its rest*.

The target is any armature, described by its bones' rest matrices in armature space (:class:`TargetSkeleton`). Its
armature space may be Z-up or Y-up (FBX imports), in any unit. :func:`plan_retarget` aligns it once per mapping:

* ``axes`` (Q): the axis permutation that turns the target's armature space into the source's frame (its up and left
  axes found from the mapped bones, snapped to the nearest of the 24 axis-aligned rotations);
* per mapped bone a rest alignment: the smallest rotation that turns the target bone's rest direction (toward the
  bone mapped to the source joint's child, else its own tail) into the source bone's T-pose direction. A-pose arms,
  bent rest knees, rolls and bone axis conventions all end up in this one constant matrix;
* ``scale``: the ratio of leg lengths (hip to knee to ankle at rest, measured the same way on both).

Every frame, a mapped bone's world rotation is then ``Q^T G O (Q B)`` with B its rest matrix and O its rest
alignment: it turns from its aligned rest exactly as the source joint turns from the T-pose, so in world space it
points where its source bone points. Pose-bone (local) rotations follow from the world rotations down the target's
own hierarchy (:func:`solve_keys`), with unmapped bones left at rest. The target's hip joints follow the source's,
scaled by the leg-length ratio (:func:`_anchor_path`, :func:`_hips_positions`); the clip's lowest foot point lands on
the target's floor.

:func:`transfer` computes what every bone should do, :func:`solve_keys` the pose-bone keys that do it. In between,
:func:`.retarget_feet.clean_feet` may plant the feet (the feet live in their own module).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import (
    Y_UP_TO_Z_UP,
    axis_angle_matrix,
    continuous_quaternions,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from hymotion.shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS

from .motion_math import validated_clip

ROOT_MOTION_MODES = ("HIPS", "ROOT_BONE")

_JOINT_INDEX = {name: index for index, name in enumerate(BODY_JOINT_NAMES)}
_PELVIS = _JOINT_INDEX["pelvis"]
LEGS = (
    tuple(_JOINT_INDEX[name] for name in ("left_hip", "left_knee", "left_ankle")),
    tuple(_JOINT_INDEX[name] for name in ("right_hip", "right_knee", "right_ankle")),
)
ANKLES = (_JOINT_INDEX["left_ankle"], _JOINT_INDEX["right_ankle"])
TOES = (_JOINT_INDEX["left_foot"], _JOINT_INDEX["right_foot"])
FOOT_JOINTS = ANKLES + TOES
_HIP_JOINTS = (_JOINT_INDEX["left_hip"], _JOINT_INDEX["right_hip"])
_UP_LANDMARKS = tuple(_JOINT_INDEX[name] for name in ("neck", "head", "spine3", "spine2", "spine1"))
_SIDE_PAIRS = tuple(
    (_JOINT_INDEX[f"left_{name}"], _JOINT_INDEX[f"right_{name}"])
    for name in ("hip", "shoulder", "collar", "knee", "elbow", "ankle", "wrist")
)
_SOURCE_UP = np.array([0.0, 0.0, 1.0])
_SOURCE_LEFT = np.array([1.0, 0.0, 0.0])
_MAX_AXIS_SNAP_DEGREES = 30.0
_MAX_OWN_AXIS_SWING_DEGREES = 45.0
_MIN_DIRECTION = 1e-6
_TAIL_REACH = 0.25  # a child bone whose head is this close to a bone's tail (in bone lengths) continues its chain


@dataclass(frozen=True)
class SourceSkeleton:
    """The source body at rest in Blender space: joint heads and bone tails (22, 3), T-pose, metres."""

    heads: np.ndarray
    tails: np.ndarray

    def direction_children(self) -> tuple[int, ...]:
        """For each joint, the child joint its bone points at (the child whose head is its tail), else -1."""
        children = []
        for joint in range(len(BODY_JOINT_NAMES)):
            found = -1
            for child, parent in enumerate(BODY_PARENTS):
                if parent == joint and np.linalg.norm(self.heads[child] - self.tails[joint]) < 1e-6:
                    found = child
                    break
            children.append(found)
        return tuple(children)


@dataclass(frozen=True)
class TargetSkeleton:
    """A target armature at rest: bone names, parent indices (-1 for none) and 4x4 rest matrices in armature space.

    Bones are in topological order (every parent before its children). ``plain`` says, per bone, whether its pose is
    its parent's pose times its rest offset times its own keys (inherits rotation, no active constraints); where a
    bone the retarget needs is not plain, the bpy side solves against Blender's own evaluation instead.
    """

    names: tuple[str, ...]
    parents: np.ndarray
    rest: np.ndarray
    # None is only what a caller may pass; __post_init__ replaces it (all True, all ones), so they are arrays after.
    plain: np.ndarray = None  # type: ignore[assignment]
    lengths: np.ndarray = None  # type: ignore[assignment]  # bone lengths (head to tail), armature units
    relative_rest: np.ndarray = field(init=False)  # each bone's rest in its parent's rest frame (its own at the top)

    def __post_init__(self) -> None:
        parents = np.asarray(self.parents, dtype=np.int64)
        if any(parent >= index for index, parent in enumerate(parents)):
            raise ValueError("Target bones must be in topological order (each parent before its children).")
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "rest", np.asarray(self.rest, dtype=np.float64))
        plain = np.ones(len(self.names), dtype=bool) if self.plain is None else np.asarray(self.plain, dtype=bool)
        object.__setattr__(self, "plain", plain)
        lengths = np.ones(len(self.names)) if self.lengths is None else np.asarray(self.lengths, dtype=np.float64)
        object.__setattr__(self, "lengths", lengths)
        relative = self.rest.copy()
        has_parent = parents >= 0
        relative[has_parent] = _rigid_inverse(self.rest[parents[has_parent]]) @ self.rest[has_parent]
        object.__setattr__(self, "relative_rest", relative)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def ancestors(self, bone: int) -> list[int]:
        chain = []
        parent = int(self.parents[bone])
        while parent >= 0:
            chain.append(parent)
            parent = int(self.parents[parent])
        return chain


@dataclass(frozen=True)
class RetargetPlan:
    """Everything computed once per (rig, mapping): rest alignment, axes, leg-length scale, the bones to solve."""

    target: TargetSkeleton
    joints: np.ndarray  # (M,) source joint of each mapped bone
    bones: np.ndarray  # (M,) target bone index of each mapped joint
    axes: np.ndarray  # (3, 3) Q: target armature space -> source frame
    aligned_rest: np.ndarray  # (M, 3, 3) O (Q B): each mapped bone's rest, aligned to the T-pose, source frame
    scale: float  # target leg length over source leg length (hip to ankle along the chain, rest)
    hips: int  # target bone index of the pelvis
    anchor_joints: tuple[int, ...]  # source joints whose midpoint the target's matching bones follow (the hips)
    target_anchor: np.ndarray  # (3,) midpoint of the target bones mapped to them at rest, source frame
    root: int  # target bone index carrying ground motion in ROOT_BONE mode, -1 if none
    solve_order: np.ndarray  # target bones whose pose is computed (mapped bones, their ancestors, root)
    source_rest: SourceSkeleton
    target_toe_level: float  # rest height (source-frame z) of the target's lowest mapped foot joint
    source_toe_level: float  # rest height of the source's lowest foot joint
    legs: tuple[tuple[int, int, int], ...]  # (thigh, shin, foot) target bones of the fully mapped legs
    leg_joints: tuple[tuple[int, int, int], ...]
    mapping: dict[str, str] = field(default_factory=dict)  # joint -> bone, followers left out
    ik_controls: tuple[tuple[int, int], ...] = ()  # (IK control, the mapped bone it follows) target indices

    @property
    def needs_evaluation(self) -> bool:
        """Whether some solved bone is not plain (constraints, no inherited rotation), so Blender must evaluate."""
        return not bool(self.target.plain[self.solve_order].all())


@dataclass(frozen=True)
class RetargetResult:
    """The retargeted clip: pose-bone keys and the world (armature-space) matrices they were solved for."""

    keyed_bones: np.ndarray  # (K,) target bone indices that get rotation keys
    rotations: np.ndarray  # (F, K, 4) pose-bone quaternions (w, x, y, z), sign-continuous in time
    location_bones: np.ndarray  # (L,) target bone indices that get location keys
    locations: np.ndarray  # (F, L, 3) pose-bone locations
    desired: np.ndarray  # (F, K, 4, 4) armature-space pose matrices of the keyed bones


@dataclass
class Transfer:
    """Per solved bone, what the frames ask of it (armature space): a world rotation, a position, a ground offset;
    plus the source joints' positions (F, 22, 3) the feet cleanup reads contacts from."""

    rotations: dict[int, np.ndarray]
    positions: dict[int, np.ndarray]
    offsets: dict[int, np.ndarray]
    root_motion: str
    source_positions: np.ndarray
    source_world: np.ndarray  # (F, 22, 3, 3) the source joints' world rotations
    in_place: bool = False


# --- small rotation helpers -----------------------------------------------------------------------------------------


def normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotations (..., 3, 3) turning directions a into b (..., 3); half turns pick a perpendicular axis."""
    a = normalized(np.asarray(a, dtype=np.float64))
    b = normalized(np.asarray(b, dtype=np.float64))
    axis = np.cross(a, b)
    sine = np.linalg.norm(axis, axis=-1)
    cosine = np.sum(a * b, axis=-1)
    opposite = (sine < 1e-9) & (cosine < 0.0)
    if np.any(opposite):
        helper = np.where(np.abs(a[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        perpendicular = normalized(np.cross(a, helper))
        axis = np.where(opposite[..., None], perpendicular, axis)
        sine = np.where(opposite, 1.0, sine)
    unit_axis = axis / np.maximum(sine, 1e-12)[..., None]
    angle = np.arctan2(sine, cosine)
    return axis_angle_matrix(unit_axis, angle)


def _rigid_inverse(matrices: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 transforms (rotation + translation)."""
    inverse = np.zeros_like(matrices)
    rotation_t = np.swapaxes(matrices[..., :3, :3], -1, -2)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -np.einsum("...ij,...j->...i", rotation_t, matrices[..., :3, 3])
    inverse[..., 3, 3] = 1.0
    return inverse


# --- source motion --------------------------------------------------------------------------------------------------


def source_world(
    translation: np.ndarray, rotations: np.ndarray, source: SourceSkeleton
) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (F, 22, 3, 3) and joint positions (F, 22, 3) of the source body, Blender space.

    The same forward kinematics as :func:`hymotion.shared.skeleton.forward_kinematics`, with the rotations kept and the
    model-to-Blender axis change applied once (C R C^T on every local rotation).
    """
    quaternions = np.asarray(rotations, dtype=np.float64)
    blender_axes = np.concatenate([quaternions[..., :1], quaternions[..., 1:] @ Y_UP_TO_Z_UP.T], axis=-1)
    local = quaternion_to_matrix(blender_axes)  # C R C^T: a conjugated quaternion keeps w and turns its vector part
    frames = local.shape[0]
    world = np.empty_like(local)
    positions = np.empty((frames, len(BODY_PARENTS), 3))
    root_offset = np.asarray(translation, dtype=np.float64) @ Y_UP_TO_Z_UP.T
    for joint, parent in enumerate(BODY_PARENTS):
        if parent < 0:
            world[:, joint] = local[:, joint]
            positions[:, joint] = source.heads[joint] + root_offset
        else:
            world[:, joint] = world[:, parent] @ local[:, joint]
            offset = source.heads[joint] - source.heads[parent]
            positions[:, joint] = positions[:, parent] + world[:, parent] @ offset
    return world, positions


# --- planning -------------------------------------------------------------------------------------------------------


def plan_retarget(
    source: SourceSkeleton,
    target: TargetSkeleton,
    mapping: dict[str, str],
    root_bone: str | None = None,
    followers: dict[str, str] | None = None,
    ik_controls: dict[str, str] | None = None,
) -> RetargetPlan:
    """Rest alignment for a rig and mapping (source joint name -> target bone name), computed once.

    `root_bone` names the bone that carries the ground motion in ROOT_BONE mode (it must not be a mapped bone).
    `followers` ({bone: source joint}) are extra bones that turn like a joint already mapped to another bone, for
    rigs that split one body part over two controls (Rigify's hips region hangs from its own FK bone).
    `ik_controls` ({bone: source joint}) are IK targets and poles that follow the bone mapped to that joint.
    """
    pairs = [(joint, bone) for joint, bone in mapping.items() if bone]
    primary = dict(pairs)
    extra = [
        (joint, bone) for bone, joint in (followers or {}).items()
        if joint in primary and bone in target.names and bone not in primary.values()
    ]
    check_mapping(pairs, target.names)
    pairs.sort(key=lambda pair: _JOINT_INDEX[pair[0]])
    bone_of_joint = {_JOINT_INDEX[joint]: target.index(bone) for joint, bone in pairs}
    pairs += sorted(extra, key=lambda pair: _JOINT_INDEX[pair[0]])
    joints = np.array([_JOINT_INDEX[joint] for joint, _ in pairs])
    bones = np.array([target.index(bone) for _, bone in pairs])
    heads = target.rest[:, :3, 3]

    axes = _axis_alignment(heads, bone_of_joint)
    heads_q = heads @ axes.T
    rest_q = axes @ target.rest[:, :3, :3]

    direction_child = source.direction_children()
    aligned_by_joint: dict[int, np.ndarray] = {}
    aligned = np.empty((len(joints), 3, 3))
    followers_from = len(primary)
    for slot, (joint, bone) in enumerate(zip(joints, bones)):
        alignment = _rest_alignment(
            source, target, joint, bone, bone_of_joint, direction_child[joint], heads_q, rest_q, aligned_by_joint,
            follower=slot >= followers_from,
        )
        aligned_by_joint.setdefault(joint, alignment)
        aligned[slot] = alignment @ rest_q[bone]

    hips = bone_of_joint[_PELVIS]
    source_toe_level = float(min(source.heads[joint, 2] for joint in FOOT_JOINTS))
    target_toe_level = _target_toe_level(heads_q, bone_of_joint)
    scale = _leg_length_ratio(source, heads_q, bone_of_joint)
    if scale is None:  # no whole leg mapped: hip heights above the feet stand in for leg lengths
        scale = (heads_q[hips, 2] - target_toe_level) / (source.heads[_PELVIS, 2] - source_toe_level)
    if not np.isfinite(scale) or scale <= 1e-6:
        raise bad_request(
            "The rig's hips are not above its feet, so the motion cannot be scaled to it.",
            "Check the mapping of the pelvis, ankle and foot bones (the rig should stand upright in its rest pose).",
        )
    anchor_joints = tuple(joint for joint in _HIP_JOINTS if joint in bone_of_joint)
    if len(anchor_joints) < len(_HIP_JOINTS):
        anchor_joints = (_PELVIS,)
    anchor_bones = [bone_of_joint[joint] for joint in anchor_joints]

    root = _root_index(target, root_bone, bone_of_joint)
    controls = tuple(
        (target.index(control), bone_of_joint[_JOINT_INDEX[joint]])
        for control, joint in sorted((ik_controls or {}).items())
        if control in target.names and _JOINT_INDEX.get(joint) in bone_of_joint
    )
    needed = set(bones.tolist())
    for bone in list(needed) + ([root] if root >= 0 else []) + [control for control, _ in controls]:
        needed.add(bone)
        needed.update(target.ancestors(bone))
    legs: list[tuple[int, int, int]] = []
    leg_joints: list[tuple[int, int, int]] = []
    for thigh, shin, foot in LEGS:
        if all(joint in bone_of_joint for joint in (thigh, shin, foot)):
            legs.append((bone_of_joint[thigh], bone_of_joint[shin], bone_of_joint[foot]))
            leg_joints.append((thigh, shin, foot))
    return RetargetPlan(
        target=target,
        joints=joints,
        bones=bones,
        axes=axes,
        aligned_rest=aligned,
        scale=float(scale),
        hips=hips,
        anchor_joints=anchor_joints,
        target_anchor=heads_q[anchor_bones].mean(axis=0),
        root=root,
        solve_order=np.array(sorted(needed)),
        source_rest=source,
        target_toe_level=target_toe_level,
        source_toe_level=source_toe_level,
        legs=tuple(legs),
        leg_joints=tuple(leg_joints),
        mapping=primary,
        ik_controls=controls,
    )


def _target_toe_level(heads_q: np.ndarray, bone_of_joint: dict[int, int]) -> float:
    """Rest height (source-frame z) at which the target's feet stand: its lowest mapped foot joint."""
    mapped = [joint for joint in FOOT_JOINTS if joint in bone_of_joint]
    if not mapped:
        return 0.0
    return float(min(heads_q[bone_of_joint[joint], 2] for joint in mapped))


def _leg_length_ratio(source: SourceSkeleton, heads_q: np.ndarray, bone_of_joint: dict[int, int]) -> float | None:
    """Target leg length over the source's, each the hip-to-knee plus knee-to-ankle distance at rest, averaged over
    the legs mapped whole; None when no leg is. Measured the same way on both, so it does not depend on where a rig
    puts its hips bone."""
    ratios = []
    for leg in LEGS:
        if all(joint in bone_of_joint for joint in leg):
            target = [heads_q[bone_of_joint[joint]] for joint in leg]
            rest = [source.heads[joint] for joint in leg]
            ratios.append(_chain_length(target) / _chain_length(rest))
    return float(np.mean(ratios)) if ratios else None


def _chain_length(points: list[np.ndarray]) -> float:
    return float(sum(np.linalg.norm(b - a) for a, b in zip(points, points[1:])))


def _root_index(target: TargetSkeleton, root_bone: str | None, bone_of_joint: dict[int, int]) -> int:
    """Target index of the bone carrying ground motion in ROOT_BONE mode, -1 for none; refused if it is mapped."""
    if not root_bone:
        return -1
    if root_bone not in target.names:
        raise bad_request(f"The rig has no bone named '{root_bone}' for root motion.", "Pick the rig's root bone.")
    root = target.index(root_bone)
    if root in bone_of_joint.values():
        raise bad_request(
            f"Bone '{root_bone}' is mapped to a body joint, so it cannot also carry the root motion.",
            "Pick the bone above the hips (often called 'root'), or use root motion on the hips.",
        )
    return root


def check_mapping(pairs: list[tuple[str, str]], bone_names) -> None:
    """Refuse a mapping (source joint, target bone) pairs that cannot be retargeted, saying what to fix."""
    unknown_joints = [joint for joint, _ in pairs if joint not in _JOINT_INDEX]
    if unknown_joints:
        raise bad_request(
            f"Unknown source joints in the bone mapping: {', '.join(unknown_joints)}.",
            f"Map only the SMPL-X body joints: {', '.join(BODY_JOINT_NAMES)}.",
        )
    missing = [bone for _, bone in pairs if bone not in bone_names]
    if missing:
        raise bad_request(
            f"The bone mapping names bones the rig does not have: {', '.join(missing[:5])}.",
            "Run Detect Mapping again or fix those entries in the mapping list.",
        )
    bones_used = [bone for _, bone in pairs]
    doubles = sorted({bone for bone in bones_used if bones_used.count(bone) > 1})
    if doubles:
        raise bad_request(
            f"Bones mapped to more than one source joint: {', '.join(doubles)}.",
            "Give every target bone at most one source joint.",
        )
    if not any(joint == "pelvis" for joint, _ in pairs):
        raise bad_request(
            "The bone mapping has no bone for the pelvis, so the body cannot be placed.",
            "Map the rig's hips (pelvis) bone, e.g. 'Hips', 'pelvis' or Rigify's 'torso'.",
        )


def _rest_alignment(
    source: SourceSkeleton,
    target: TargetSkeleton,
    joint: int,
    bone: int,
    bone_of_joint: dict[int, int],
    child: int,
    heads_q: np.ndarray,
    rest_q: np.ndarray,
    aligned_by_joint: dict[int, np.ndarray],
    follower: bool = False,
) -> np.ndarray:
    """O for one mapped bone: the rotation that brings its rest (source frame) to the source's T-pose.

    Where the bone mapped to the source joint's child hangs below this bone, or starts at its tail (Rigify's upper
    arm, which hangs from helper bones beside the shoulder control), the segment between their heads is
    turned onto the source segment (fixing A-poses, bent rest knees, leaning spines whatever the bone's own axes).
    Otherwise (a leaf like the hand or head, or a control like Rigify's torso whose children hang elsewhere) the bone
    takes its parent joint's alignment, plus a swing of its own Y axis when that axis already points within 45 degrees
    of the source bone (a hand bone along the forearm), and never a larger one (a torso control pointing backward
    stays as it is). A follower (a second bone of the joint) only counts children that hang below it: it turns with
    its joint's own bone, whose chain the child continues.
    """
    source_direction = source.tails[joint] - source.heads[joint]
    continues = child >= 0 and child in bone_of_joint and (
        bone in target.ancestors(bone_of_joint[child])
        if follower else _points_at(target, heads_q, rest_q, bone, bone_of_joint[child])
    )
    if continues:
        segment = heads_q[bone_of_joint[child]] - heads_q[bone]
        if np.linalg.norm(segment) > _MIN_DIRECTION:
            return rotation_between(segment, source_direction)
    parent_joint = BODY_PARENTS[joint]
    inherited = aligned_by_joint.get(parent_joint, np.eye(3))
    own_axis = inherited @ rest_q[bone][:, 1]
    cosine = np.dot(normalized(own_axis), normalized(source_direction))
    if cosine >= np.cos(np.radians(_MAX_OWN_AXIS_SWING_DEGREES)):
        return rotation_between(own_axis, source_direction) @ inherited
    return inherited


def _points_at(target: TargetSkeleton, heads_q: np.ndarray, rest_q: np.ndarray, bone: int, child: int) -> bool:
    """Whether `child` continues `bone`'s chain: it hangs below it, or its head lies within a quarter of the bone's
    length of the bone's tail (so the bone points at it, within about 15 degrees)."""
    if bone in target.ancestors(child):
        return True
    tail = heads_q[bone] + rest_q[bone][:, 1] * target.lengths[bone]
    return bool(np.linalg.norm(heads_q[child] - tail) < _TAIL_REACH * target.lengths[bone])


def _axis_alignment(heads: np.ndarray, bone_of_joint: dict[int, int]) -> np.ndarray:
    """Q: the rotation taking the target's armature axes to the source's (up +Z, the character's left +X).

    Up runs from the hips to the upper body, left from right to left limbs. The estimate is snapped to the nearest
    axis-aligned rotation when it lies within 30 degrees of one (as every rig built or imported normally does), so a
    slightly leaning rest pose never tilts the whole motion.
    """
    pelvis = bone_of_joint[_PELVIS]
    up = next(
        (heads[bone_of_joint[joint]] - heads[pelvis] for joint in _UP_LANDMARKS if joint in bone_of_joint), None
    )
    left = next(
        (
            heads[bone_of_joint[left_joint]] - heads[bone_of_joint[right_joint]]
            for left_joint, right_joint in _SIDE_PAIRS
            if left_joint in bone_of_joint and right_joint in bone_of_joint
        ),
        None,
    )
    if up is None or left is None or np.linalg.norm(up) < _MIN_DIRECTION or np.linalg.norm(left) < _MIN_DIRECTION:
        return np.eye(3)
    up = normalized(up)
    left = normalized(left - np.dot(left, up) * up)
    target_frame = np.stack([left, np.cross(up, left), up], axis=1)
    source_frame = np.stack([_SOURCE_LEFT, np.cross(_SOURCE_UP, _SOURCE_LEFT), _SOURCE_UP], axis=1)
    estimate = source_frame @ target_frame.T
    snapped = np.zeros((3, 3))
    columns = np.argmax(np.abs(estimate), axis=1)
    snapped[np.arange(3), columns] = np.sign(estimate[np.arange(3), columns])
    is_rotation = len(set(columns.tolist())) == 3 and np.linalg.det(snapped) > 0.5
    if is_rotation:
        cosine = np.clip((np.trace(snapped.T @ estimate) - 1.0) / 2.0, -1.0, 1.0)
        if np.degrees(np.arccos(cosine)) <= _MAX_AXIS_SNAP_DEGREES:
            return snapped
    return estimate


# --- retargeting ----------------------------------------------------------------------------------------------------


def transfer(
    plan: RetargetPlan,
    translation: np.ndarray,
    rotations: np.ndarray,
    *,
    in_place: bool = False,
    root_motion: str = "HIPS",
    floor: float | None = None,
) -> Transfer:
    """What every solved bone of the target should do, from a source clip (translation (F, 3), rotations
    (F, 22, 4), model frame): mapped bones turn like their source joints, the hips follow the scaled pelvis.

    root_motion 'HIPS' puts all motion on the hips bone; 'ROOT_BONE' moves the plan's root bone along the ground
    (horizontal part of the hips' motion) and leaves the hips the rest. `in_place` drops the horizontal motion.
    `floor` (source-frame height) is the source floor that lands on the target's; None: the clip's own lowest foot
    point (:func:`source_floor`). A piece that continues motion already on the rig passes the floor the rig's pose
    was read with (:mod:`.rig_pose`), so every piece shares one floor and one anchor.
    """
    if root_motion not in ROOT_MOTION_MODES:
        raise bad_request(f"Unknown root motion mode {root_motion!r}.", f"Use one of {', '.join(ROOT_MOTION_MODES)}.")
    if root_motion == "ROOT_BONE" and plan.root < 0:
        raise bad_request(
            "Root motion on a root bone was asked for, but no root bone is set for this rig.",
            "Pick the rig's root bone (the bone above the hips), or put the root motion on the hips.",
        )
    translation, rotations = validated_clip(translation, rotations)
    world, positions = source_world(translation, rotations, plan.source_rest)
    mapped_world = plan.axes.T @ world[:, plan.joints] @ plan.aligned_rest

    rotations_by_bone = {int(bone): mapped_world[:, slot] for slot, bone in enumerate(plan.bones)}
    wishes = Transfer(
        rotations=rotations_by_bone,
        positions={},
        offsets={},
        root_motion=root_motion,
        source_positions=positions,
        source_world=world,
        in_place=in_place,
    )
    hips_q = _hips_positions(plan, wishes, _anchor_path(plan, positions, floor))
    if in_place:
        hips_q[:, :2] = (plan.axes @ plan.target.rest[plan.hips, :3, 3])[:2]
    set_hips_path(plan, wishes, hips_q)
    return wishes


def set_hips_path(plan: RetargetPlan, wishes: Transfer, hips_q: np.ndarray) -> None:
    """Put the hips bone at `hips_q` (F, 3, source frame); in ROOT_BONE mode the root bone carries its horizontal
    travel from the rest spot (the hips keep their absolute place, so they move with the root)."""
    frames = hips_q.shape[0]
    wishes.positions[plan.hips] = hips_q @ plan.axes
    ground_motion = np.zeros((frames, 3))
    if wishes.root_motion == "ROOT_BONE":
        ground_motion[:, :2] = hips_q[:, :2] - (plan.axes @ plan.target.rest[plan.hips, :3, 3])[:2]
    if plan.root >= 0:
        wishes.offsets[plan.root] = ground_motion @ plan.axes


def _anchor_path(plan: RetargetPlan, positions: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Where the target's hip joints (the anchor: the midpoint of its thighs) go (F, 3, source frame): the source's,
    scaled by the leg-length ratio about the rest pose:

        anchor_target(t) = anchor_target_rest + scale * (anchor_source(t) - anchor_source_standing)

    where the source's standing anchor is its rest anchor, set on the clip's floor (or on ``floor``)."""
    source = plan.source_rest
    joints = list(plan.anchor_joints)
    anchor = positions[:, joints].mean(axis=1)
    standing = source.heads[joints].mean(axis=0)
    standing[2] += (source_floor(positions, source) if floor is None else floor) - plan.source_toe_level
    return plan.target_anchor + plan.scale * (anchor - standing)


def _hips_positions(plan: RetargetPlan, wishes: Transfer, anchor_q: np.ndarray) -> np.ndarray:
    """Where the hips bone goes (F, 3, source frame) so that the target's anchor bones, posed as `wishes` turns
    them, have their midpoint at `anchor_q`.

    The anchor's offset from the hips bone is read from the pose with the hips bone at its rest spot (moving the hips
    bone moves the bones below it rigidly), not from the rest pose: where bones between the hips bone and the thighs
    turn too (Rigify's thighs hang from `spine_fk`, which the rest alignment turns 4.7 degrees from the `torso`
    pivot), the thighs sit elsewhere than their rest offset says (9 mm on Rigify), and as the body turns that offset
    turns with it (Rigify's 90-degree turn fell 0.10 % short of the formula's stride)."""
    frames = anchor_q.shape[0]
    wishes.positions[plan.hips] = np.broadcast_to(plan.target.rest[plan.hips, :3, 3], (frames, 3))
    posed = pose_matrices(plan, wishes)
    anchor_bones = [int(plan.bones[list(plan.joints).index(joint)]) for joint in plan.anchor_joints]
    offset = np.mean([posed[bone][:, :3, 3] for bone in anchor_bones], axis=0) - posed[plan.hips][:, :3, 3]
    return anchor_q - offset @ plan.axes.T


def solve_keys(plan: RetargetPlan, wishes: Transfer) -> RetargetResult:
    """Pose-bone keys (rotations for every mapped bone, locations for the hips and root) that give the transfer's
    armature-space poses down the target's own hierarchy."""
    keyed = _keyed_bones(plan, wishes.root_motion)
    posed = pose_matrices(plan, wishes)
    rest = plan.target.rest
    for control, followed in plan.ik_controls:  # keeps its rest offset to the bone it follows
        posed[control] = posed[followed] @ (_rigid_inverse(rest[followed]) @ rest[control])
    bases = _bases(plan, posed, keyed)
    location_bones = np.array(
        [plan.hips] + ([plan.root] if wishes.root_motion == "ROOT_BONE" else [])
        + [control for control, _ in plan.ik_controls]
    )
    order = {bone: slot for slot, bone in enumerate(keyed)}
    rotation_keys = continuous_quaternions(matrix_to_quaternion(bases[:, :, :3, :3]))
    locations = np.stack([bases[:, order[bone], :3, 3] for bone in location_bones], axis=1)
    desired_keyed = np.stack([posed[bone] for bone in keyed], axis=1)
    return RetargetResult(
        keyed_bones=np.array(keyed),
        rotations=rotation_keys,
        location_bones=location_bones,
        locations=locations,
        desired=desired_keyed,
    )


def source_floor(positions: np.ndarray, source: SourceSkeleton) -> float:
    """Height at which the source's lowest foot joint stands: the clip's lowest foot point, as a toe height."""
    toe_level = min(source.heads[joint, 2] for joint in FOOT_JOINTS)
    standing = np.array([source.heads[joint, 2] - toe_level for joint in FOOT_JOINTS])
    return float(np.min(positions[:, list(FOOT_JOINTS), 2] - standing))


def _keyed_bones(plan: RetargetPlan, root_motion: str) -> list[int]:
    keyed = plan.bones.tolist() + [control for control, _ in plan.ik_controls]
    if root_motion == "ROOT_BONE":
        keyed.append(plan.root)
    return sorted(keyed)


def pose_matrices(plan: RetargetPlan, wishes: Transfer) -> dict[int, np.ndarray]:
    """Armature-space pose matrices (F, 4, 4) of every solved bone, down the hierarchy, unmapped bones at rest."""
    target = plan.target
    frames = wishes.positions[plan.hips].shape[0]
    posed: dict[int, np.ndarray] = {}
    for bone in plan.solve_order.tolist():
        parent = int(target.parents[bone])
        if parent >= 0:
            matrix = posed[parent] @ target.relative_rest[bone]
        else:
            matrix = np.broadcast_to(target.rest[bone], (frames, 4, 4)).copy()
        if bone in wishes.rotations:
            matrix[:, :3, :3] = wishes.rotations[bone]
        if bone in wishes.positions:
            matrix[:, :3, 3] = wishes.positions[bone]
        if bone in wishes.offsets:
            matrix[:, :3, 3] += wishes.offsets[bone]
        posed[bone] = matrix
    return posed


def _bases(plan: RetargetPlan, posed: dict[int, np.ndarray], keyed: list[int]) -> np.ndarray:
    """Pose-bone basis matrices (F, K, 4, 4): each bone's pose against its parent's pose times its rest offset."""
    target = plan.target
    bases = np.empty((posed[keyed[0]].shape[0], len(keyed), 4, 4))
    for slot, bone in enumerate(keyed):
        parent = int(target.parents[bone])
        if parent >= 0:
            unposed = posed[parent] @ target.relative_rest[bone]
        else:
            unposed = np.broadcast_to(target.rest[bone], posed[bone].shape)
        bases[:, slot] = _rigid_inverse(unposed) @ posed[bone]
    return bases


