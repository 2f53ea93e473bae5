"""The SMPL-X body as the directing correction moves it after decoding (numpy): forward kinematics, two-bone IK on a
limb with a weight per frame, the feet's contacts and soles, and planted feet kept planted while the root moves
(:mod:`.directing` decides what to meet; this module moves the body to meet it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..shared import skeleton
from ..shared.rotations import (
    axis_angle_matrix,
    matrix_to_quaternion,
)
from ..shared.skeleton import FPS
from .motion import ANKLE_SOLE_GAP, FOOT_SOLE_GAP

JOINT_INDEX = {name: index for index, name in enumerate(skeleton.BODY_JOINT_NAMES)}
PIVOT_SOFTNESS = 0.005  # m: a standing foot pivots about its heel or toe, whichever is lower, blended over this
HIPS_WINDOW = 4  # frames: the hips come down early enough for a leg that will need it (and stay down as long)
HIPS_SIGMA = 2.0  # frames: then the drop is smoothed
FOOT_BLEND = 6  # frames over which planting blends in and out around a stance
CONTACT_HEIGHT = 0.03  # m above the floor: a foot this low stands on it (the sole, see motion.GROUND_JOINTS)
CONTACT_GAP = 3  # frames: a stance interrupted for at most 0.1 s is one stance
CONTACT_MIN_FRAMES = 3  # frames: a shorter touch of the floor is no stance
CONTACT_SPEED = 0.5  # m/s over the ground: slower than this a low foot stands (the add-on's retarget uses the same)
IK_REACH = 0.995  # a limb is stretched to at most this share of its length: straight knees and elbows snap
BEND_HINT = 0.05  # of the upper bone: a middle joint closer than this to its limb's line bends partly the rest way
ELBOWS = (JOINT_INDEX["left_elbow"], JOINT_INDEX["right_elbow"])
KNEES = (JOINT_INDEX["left_knee"], JOINT_INDEX["right_knee"])
FEET = ((JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"], JOINT_INDEX["left_ankle"], JOINT_INDEX["left_foot"]),
         (JOINT_INDEX["right_hip"], JOINT_INDEX["right_knee"], JOINT_INDEX["right_ankle"], JOINT_INDEX["right_foot"]))

def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def pose(local: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (F, 22, 3, 3) and joint positions (F, 22, 3) of local rotation matrices and root translation."""
    world = np.empty_like(local)
    positions = np.empty(local.shape[:-2] + (3,))
    for joint, parent in enumerate(skeleton.BODY_PARENTS):
        if parent < 0:
            world[:, joint] = local[:, joint]
            positions[:, joint] = skeleton.BODY_REST_OFFSETS[joint] + translation
        else:
            world[:, joint] = world[:, parent] @ local[:, joint]
            positions[:, joint] = positions[:, parent] + world[:, parent] @ skeleton.BODY_REST_OFFSETS[joint]
    return world, positions


def heading_of(root: np.ndarray) -> np.ndarray:
    """Yaw (F,) of the pelvis's forward axis (+Z at rest) projected on the ground (constraints.heading, per frame)."""
    forward = root[..., :, 2]
    return np.arctan2(forward[..., 0], forward[..., 2])


def yaw_matrix(angle) -> np.ndarray:
    return axis_angle_matrix(np.array([0.0, 1.0, 0.0]), np.asarray(angle, dtype=np.float64))


def wrap_angle(angle: float) -> float:
    return float((angle + math.pi) % (2.0 * math.pi) - math.pi)


def bone_length(joint: int) -> float:
    return float(np.linalg.norm(skeleton.BODY_REST_OFFSETS[joint]))


def limb_chain(joint: int) -> tuple[int, int, int] | None:
    parent = skeleton.BODY_PARENTS[joint]
    if parent <= 0:  # the pelvis, or a joint hanging from it: only the root can carry it
        return None
    return skeleton.BODY_PARENTS[parent], parent, joint


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest turns (F, 3, 3) carrying directions ``a`` onto ``b`` (F, 3)."""
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    axis = np.cross(a, b)
    sine = np.linalg.norm(axis, axis=-1)
    cosine = np.sum(a * b, axis=-1)
    fallback = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    axis = np.where(sine[..., None] > 1e-9, axis, fallback)
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    return axis_angle_matrix(axis, np.arctan2(sine, cosine))


def two_bone_ik(local, world, positions, chain, goal, weight) -> None:
    """Turn the chain's first two joints (in ``local``, in place) so its end lands on ``goal`` (F, 3), then blend
    from the old pose by ``weight`` (F,: 1 meets the goal, 0 leaves the frame as it was; in between, the two joints'
    world rotations turn part of the way, so a ramp never jumps). The limb is stretched to at most IK_REACH of its
    length (or as straight as it already is)."""
    grand, parent, joint = chain
    upper, lower = bone_length(parent), bone_length(joint)
    a, b, c = positions[:, grand], positions[:, parent], positions[:, joint]
    reach = goal - a
    distance = np.linalg.norm(reach, axis=-1)
    longest = np.maximum(IK_REACH * (upper + lower), np.linalg.norm(c - a, axis=-1))  # never bend a straight limb
    clamped = np.clip(distance, abs(upper - lower) + 1e-6, longest)
    direction = reach / np.maximum(distance, 1e-12)[:, None]
    # The bending plane: a knee bends forward (the thigh's +Z), always: a leg's own plane is noise when it is nearly
    # straight, as it is while the foot stands. Other limbs keep the plane they are in, pushed towards the way they
    # bend at rest (elbows back, the neck forward) the straighter they are, continuously, so it never flips.
    hint = world[:, grand] @ np.array([0.0, 0.0, -1.0 if parent in ELBOWS else 1.0])
    bend = (b - a) - np.sum((b - a) * direction, axis=-1, keepdims=True) * direction
    hint = hint - np.sum(hint * direction, axis=-1, keepdims=True) * direction
    hint = hint / np.maximum(np.linalg.norm(hint, axis=-1, keepdims=True), 1e-12)
    if parent in KNEES:
        bend = hint
    else:
        bend = bend + np.maximum(BEND_HINT * upper - np.linalg.norm(bend, axis=-1, keepdims=True), 0.0) * hint
    bend = bend / np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-12)
    along = (upper**2 - lower**2 + clamped**2) / (2.0 * clamped)
    height = np.sqrt(np.maximum(upper**2 - along**2, 0.0))
    new_b = a + direction * along[:, None] + bend * height[:, None]
    first = rotation_between(b - a, new_b - a)
    turned_c = new_b + (first @ (c - b)[:, :, None])[:, :, 0]
    second = rotation_between(turned_c - new_b, a + direction * clamped[:, None] - new_b)
    weight = np.asarray(weight, dtype=np.float64)
    grand_world = blend_rotations(world[:, grand], first @ world[:, grand], weight)
    parent_world = blend_rotations(world[:, parent], second @ first @ world[:, parent], weight)
    above = skeleton.BODY_PARENTS[grand]
    above_world = world[:, above] if above >= 0 else np.broadcast_to(np.eye(3), grand_world.shape)
    mask = (weight > 0)[:, None, None]
    local[:, grand] = np.where(mask, np.swapaxes(above_world, -1, -2) @ grand_world, local[:, grand])
    local[:, parent] = np.where(mask, np.swapaxes(grand_world, -1, -2) @ parent_world, local[:, parent])


def blend_rotations(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Rotations (F, 3, 3) turned from ``start`` toward ``end`` by ``weight`` (F,) along the shortest arc."""
    relative = end @ np.swapaxes(start, -1, -2)
    q = matrix_to_quaternion(relative)
    angle = 2.0 * np.arctan2(np.linalg.norm(q[..., 1:], axis=-1), q[..., 0])
    axis = q[..., 1:] / np.maximum(np.linalg.norm(q[..., 1:], axis=-1, keepdims=True), 1e-12)
    return axis_angle_matrix(axis, weight * angle) @ start


def sole_heights(positions: np.ndarray, floor: float | None = None) -> np.ndarray:
    """(F, 2) height of each foot's sole above ``floor`` (default: the clip's lowest sole), left then right: the
    lower of the ankle and the toe joint less their rest-pose gap to the sole (motion.GROUND_JOINTS)."""
    soles = np.stack([np.minimum(positions[:, ankle, 1] - ANKLE_SOLE_GAP, positions[:, foot, 1] - FOOT_SOLE_GAP)
                      for _, _, ankle, foot in FEET], axis=-1)
    return soles - (soles.min() if floor is None else floor)


def foot_contacts(positions: np.ndarray, floor: float | None = None) -> np.ndarray:
    """(F, 2) bool: the foot stands on the floor: its sole within CONTACT_HEIGHT of it and its ankle or toe moving
    slower than CONTACT_SPEED over the ground (the slower of the steps into and out of the frame). Both are needed: a
    foot low but sweeping forward is leaving or landing, not standing. benchmarks/constraints.py measures skating on
    the frames this finds in the result."""
    low = sole_heights(positions, floor) < CONTACT_HEIGHT
    slow = np.zeros_like(low)
    for side, (_, _, ankle, foot) in enumerate(FEET):
        steps = np.linalg.norm(np.diff(positions[:, [ankle, foot]][..., [0, 2]], axis=0), axis=-1).min(axis=-1) * FPS
        if len(steps):
            slow[:, side] = np.minimum(np.append(steps[:1], steps), np.append(steps, steps[-1:])) < CONTACT_SPEED
    return np.stack([_cleaned(mask) for mask in (low & slow).T], axis=-1) if len(low) else low & slow


def _cleaned(mask: np.ndarray) -> np.ndarray:
    """A contact mask without flicker: gaps of up to CONTACT_GAP frames inside a stance closed, then stances shorter
    than CONTACT_MIN_FRAMES dropped (planting a foot for a frame or two, or letting it go for as long, pops)."""
    mask = mask.copy()
    for start, stop in _segments(~mask):
        if stop - start <= CONTACT_GAP and start > 0 and stop < len(mask):
            mask[start:stop] = True
    for start, stop in _segments(mask):
        if stop - start < CONTACT_MIN_FRAMES:
            mask[start:stop] = False
    return mask


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open (start, stop) frame ranges where ``mask`` holds."""
    changes = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]])))
    return [(int(start), int(stop)) for start, stop in changes.reshape(-1, 2)]


@dataclass
class FootPlan:
    """Where one leg's ankle must be (``goal`` (F, 3), world) and turned (``rotation`` (F, 3, 3), world) to keep its
    foot planted, and how much (``weight`` (F,): 1 in a stance, fading out around it)."""

    side: int
    goal: np.ndarray
    rotation: np.ndarray
    weight: np.ndarray


def plan_feet(local, translation, stances, fixed: Sequence[int] = ()) -> list[FootPlan]:
    """For each foot that stood on the ground in the decoded clip (``stances`` (F, 2)): the ankle held over each
    stance at its corrected place at the stance's middle frame (or at a ``fixed`` frame inside it: a pinned pose stays
    as it is), height as corrected, the foot's heading held too (pitch and roll as decoded). Outside a stance the
    correction its nearest stance frame needed fades out over FOOT_BLEND frames."""
    frames = len(translation)
    index = np.arange(frames)
    world, positions = pose(local, translation)
    plans = []
    for side, (_, _, ankle, toe) in enumerate(FEET):
        runs = _segments(stances[:, side])
        if not runs:
            continue
        anchor = np.full(frames, -1)
        for start, stop in runs:
            inside = [frame for frame in fixed if start <= frame < stop]
            anchor[start:stop] = inside[0] if inside else (start + stop - 1) // 2
        standing = np.flatnonzero(anchor >= 0)
        nearest = standing[np.argmin(np.abs(index[:, None] - standing[None, :]), axis=1)]
        weight = smoothstep(1.0 - np.abs(index - nearest) / (FOOT_BLEND + 1.0))
        # The foot turns back about the vertical as far as it turned since the anchor (a heading correction turns
        # planted feet with the body); its pitch and roll stay as decoded, so heel and toe still roll on the floor.
        turn = heading_of(world[anchor[nearest], ankle]) - heading_of(world[nearest, ankle])
        rotation = yaw_matrix(turn) @ world[:, ankle]
        # It pivots about its lower end: the heel (under the ankle) stays where it stood at the anchor, or the toe
        # does, blended by which is lower (over PIVOT_SOFTNESS of height), so it rolls off the toe without sliding.
        toe_offset = rotation @ skeleton.BODY_REST_OFFSETS[toe]
        heel_height = positions[:, ankle, 1] - ANKLE_SOLE_GAP
        toe_height = positions[:, toe, 1] - FOOT_SOLE_GAP
        on_toe = 1.0 / (1.0 + np.exp(-np.clip((heel_height - toe_height) / PIVOT_SOFTNESS, -50.0, 50.0)))
        stand = ((1.0 - on_toe)[:, None] * positions[anchor[nearest], ankle]
                 + on_toe[:, None] * (positions[anchor[nearest], toe] - toe_offset))
        slide = stand[nearest] - positions[nearest, ankle]  # what each stance frame needs
        goal = positions[:, ankle].copy()
        goal[:, [0, 2]] += slide[:, [0, 2]]
        plans.append(FootPlan(side, goal, rotation, weight))
    return plans


def lower_hips(local, translation, plans: list[FootPlan], fixed: Sequence[int] = ()) -> None:
    """Lower the root (in place) where a planted leg cannot reach its goal: by what the leg at IK_REACH of its
    length lacks vertically, taken as the largest over HIPS_WINDOW frames around and smoothed (Gaussian, HIPS_SIGMA
    frames), so the body sinks and rises smoothly, never below what a frame needs; not at all on a ``fixed`` frame
    (a pinned pose), fading in over HIPS_WINDOW frames beside it."""
    if not plans:
        return
    _, positions = pose(local, translation)
    need = np.zeros(len(translation))
    for plan in plans:
        hip, knee, ankle, _ = FEET[plan.side]
        reach = IK_REACH * (bone_length(knee) + bone_length(ankle))
        horizontal = np.linalg.norm(plan.goal[:, [0, 2]] - positions[:, hip, [0, 2]], axis=-1)
        vertical = positions[:, hip, 1] - plan.goal[:, 1]
        allowed = np.sqrt(np.maximum(reach**2 - horizontal**2, 0.0))
        need = np.maximum(need, np.where(plan.weight > 0, np.maximum(vertical - allowed, 0.0), 0.0))
    if not need.any():
        return
    padded = np.pad(need, HIPS_WINDOW, mode="edge")
    widest = np.max([padded[k : k + len(need)] for k in range(2 * HIPS_WINDOW + 1)], axis=0)
    offsets = np.arange(-HIPS_WINDOW, HIPS_WINDOW + 1)
    kernel = np.exp(-0.5 * (offsets / HIPS_SIGMA) ** 2)
    padded = np.pad(widest, HIPS_WINDOW, mode="edge")
    drop = np.convolve(padded, kernel / kernel.sum(), mode="valid")
    drop = np.maximum(drop, need)
    for frame in fixed:
        drop *= smoothstep(np.abs(np.arange(len(drop)) - frame) / (HIPS_WINDOW + 1.0))
    translation[:, 1] -= drop


def plant_feet(local, translation, plans: list[FootPlan], held) -> None:
    """Two-bone IK of each planned leg onto its goal, blended by its weight, the foot turned as planned; ``held``
    (F, 2): where a target drives the leg instead (it wins)."""
    for plan in plans:
        hip, knee, ankle, _ = FEET[plan.side]
        weight = plan.weight * (1.0 - held[:, plan.side])
        active = weight > 0
        if not active.any():
            continue
        world, positions = pose(local, translation)
        two_bone_ik(local, world, positions, (hip, knee, ankle), plan.goal, weight)
        world, _ = pose(local, translation)
        rotation = blend_rotations(world[:, ankle], plan.rotation, weight)
        local[:, ankle] = np.where(active[:, None, None], np.swapaxes(world[:, knee], -1, -2) @ rotation,
                                   local[:, ankle])
