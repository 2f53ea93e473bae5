"""Feet in numpy only: where the source's heels and toes touch the ground, and planting the target's feet there.

The transfer (:mod:`.retarget_math`) turns the source clip into what each target bone should do, the hips on the
source's path scaled by the leg-length ratio. Then one of two things plants the target's feet before the keys are
solved: :func:`clean_feet` (Clean Up Feet, the default) changes the legs of that :class:`~.retarget_math.Transfer` by
IK and leaves the hips' ground path as scaled; without it, :func:`follow_planted_feet` moves the hips along the ground
so that the target's own feet, turned exactly like the source's, stay where they touch as far as a smooth path allows
(one banded least-squares solve over the clip, :func:`smooth_hips_path`).

Contacts (:func:`detect_contacts`) are found separately for the heel (a point under the ankle, on the floor at rest)
and the ball of the foot (the toe joint), from their height over the clip's floor and their speed. Their overlap
gives each stance its phases: heel-strike (heel only), flat (both), heel-off (ball only), then toe-off.

Planting (:func:`clean_feet`): each stance gets one anchor, a flat foot placement (ankle position and heading) fitted
to the transferred foot. During the stance the foot keeps the source's pitch and roll, turned to the anchor's heading
and levelled while both heel and ball touch; it pivots about whichever of its pinned heel and ball is lower, so it
rolls about the heel at heel-strike and about the toe at heel-off, and the toe bone lies flat while the ball is down.
Outside stances, heel, ball and toe tip are lifted above the floor where the transfer would push them through it.
Two-bone IK (thigh and shin, knee in its own bending plane) brings the ankle to its goal, the hips lowered first where a
leg cannot reach; the weights blend in and out over a few frames. :func:`measure_contacts` reports per contact how far
the planted point slid, how deep any foot point went below the floor and how high the planted point hovered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hymotion.shared.rotations import axis_angle_matrix, matrix_to_quaternion, quaternion_to_matrix
from hymotion.shared.skeleton import BODY_JOINT_NAMES

from .motion_math import slerp
from .retarget_math import (
    LEGS,
    TOES,
    RetargetPlan,
    Transfer,
    normalized,
    pose_matrices,
    rotation_between,
    set_hips_path,
    source_floor,
)

_IK_REACH = 0.9999
_HIPS_DROP_REACH = 0.995  # the hips come down until the pinned leg reaches with this fraction of its length
_SOURCE_FORWARD = np.array([0.0, -1.0, 0.0])
POINTS = ("heel", "ball")
# A rig stands on its armature's ground plane (z = 0 at rest, Blender's and every exporter's convention) when its
# lowest foot joint is at most this far above it, as a multiple of the leg-length ratio (target units per source
# metre): a toe joint sits 1.5-5 cm over the ground on the rigs the project knows (Rigify 1.7 cm, Mixamo-style
# 3-3.5 cm); 15 cm is three times the highest and less than an ankle's height, so a rig whose origin is elsewhere
# (at its hips, below a platform) is not mistaken for one standing there.
_MAX_TOE_HEIGHT = 0.15
# A piece continuing motion already on the rig keeps the transferred pose (the rig's own, read back) on its pinned
# frames and takes the cleanup's changes in over this many frames beside them: the backend's own ramp for pinned
# frames (pipeline/known_frames.RAMP_FRAMES, 0.2 s), so the seam is blended over the same span on both sides.
SEAM_RAMP_FRAMES = 6
_PHASE_FLOOR = 1e-3  # a contact's share at its very first frame: only breaks ties where no contact is settled yet


@dataclass(frozen=True)
class ContactSettings:
    """When a source heel or ball counts as planted, and how pinning blends in and out."""

    height_tolerance: float = 0.02  # metres above the point's standing height
    speed_tolerance: float = 0.5  # metres per second, horizontal
    min_frames: int = 3
    blend_frames: int = 4
    flat_blend_frames: int = 2  # the foot levels out over this many frames where heel and ball both touch
    # levelled fully below the first sole tilt, not above the second
    flat_tilt_degrees: tuple[float, float] = (3.0, 8.0)
    # How long the hips take to change the speed the planted feet ask of them (:func:`follow_planted_feet`, cleanup
    # off, where every bone keeps its source turn and the path alone keeps feet put): 0.1 s, the weight-acceptance
    # time after heel strike, over which a body really changes its speed; a sudden wish J (m/s) then adds at most
    # about J / (2 x 0.1 s) of acceleration: 2.5 m/s^2 (a walker's fore-aft ground force, 0.25 g) for the J = 0.5 m/s
    # of a leg about 6 % off the source's proportions at heel strike.
    hips_settle_seconds: float = 0.1
    hips_anchor_seconds: float = 10.0  # the path drifts freely from the scaled one over this long, not over more


@dataclass(frozen=True)
class ContactReport:
    """One contact of one foot point (heel or ball), measured on the result: the planted point's horizontal travel
    over the contact (slide), the deepest any point of that foot went below the floor during it (penetration), the
    planted point's highest height above its floor level during it (hover); target units."""

    side: str
    point: str
    start: int
    stop: int
    slide: float
    penetration: float
    hover: float


# --- contacts -------------------------------------------------------------------------------------------------------


def source_foot_points(positions: np.ndarray, world: np.ndarray, source) -> np.ndarray:
    """Heel and ball positions (F, 2 sides, 2 points, 3) of the source body (a SourceSkeleton): the ball is the toe
    joint, the heel the point under the ankle at the toe joint's rest height, carried by the ankle's rotation."""
    points = np.empty((positions.shape[0], 2, 2, 3))
    toe_level = min(source.heads[toe, 2] for toe in TOES)
    for side, (_, _, ankle) in enumerate(LEGS):
        heel_offset = np.array([0.0, 0.0, toe_level - source.heads[ankle, 2]])  # T-pose: world rotation is identity
        points[:, side, 0] = positions[:, ankle] + world[:, ankle] @ heel_offset
        points[:, side, 1] = positions[:, TOES[side]]
    return points


def detect_contacts(
    positions: np.ndarray, world: np.ndarray, fps: float, source, settings: ContactSettings = ContactSettings()
) -> np.ndarray:
    """Heel and ball contacts (F, 2 sides, 2 points: heel, ball) of the source: the point near the clip's floor and
    slow over the ground. Gaps of one frame are closed and contacts shorter than `min_frames` dropped, so pinning
    never flickers."""
    points = source_foot_points(positions, world, source)
    heights = _heights(points, positions, source)
    contacts = np.zeros(points.shape[:3], dtype=bool)
    for side in range(2):
        for point in range(2):
            speed = horizontal_speed(points[:, side, point], fps)
            raw = (heights[:, side, point] < settings.height_tolerance) & (speed < settings.speed_tolerance)
            contacts[:, side, point] = clean_mask(raw, settings.min_frames)
    return contacts


def _heights(points: np.ndarray, positions: np.ndarray, source) -> np.ndarray:
    """Heights (F, 2, 2) of the source's heels and balls (`points`, from :func:`source_foot_points`) over where each
    stands at rest on the clip's floor."""
    toe_level = min(source.heads[toe, 2] for toe in TOES)
    standing = np.array([[0.0, source.heads[toe, 2] - toe_level] for toe in TOES])
    return points[..., 2] - source_floor(positions, source) - standing


def horizontal_speed(track: np.ndarray, fps: float) -> np.ndarray:
    """Per frame, the slower of the steps into and out of it: a point that lands (or lifts) is slow on that frame."""
    if track.shape[0] < 2:
        return np.zeros(track.shape[0])
    steps = np.linalg.norm(np.diff(track[:, :2], axis=0), axis=-1) * fps
    return np.minimum(np.append(steps[:1], steps), np.append(steps, steps[-1:]))


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True as (start, stop) half-open frame ranges."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def clean_mask(mask: np.ndarray, min_frames: int) -> np.ndarray:
    cleaned = mask.copy()
    gaps = segments(~cleaned)
    for start, stop in gaps:
        if stop - start == 1 and start > 0 and stop < len(cleaned):
            cleaned[start:stop] = True
    for start, stop in segments(cleaned):
        if stop - start < min_frames:
            cleaned[start:stop] = False
    return cleaned


def pin_weights(mask: np.ndarray, blend_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: pin weight (1 in a contact, smoothstep down over `blend_frames` outside) and its segment index."""
    frames = mask.shape[0]
    weight = np.zeros(frames)
    owner = np.full(frames, -1)
    index = np.arange(frames)
    for number, (start, stop) in enumerate(segments(mask)):
        distance = np.maximum(np.maximum(start - index, index - (stop - 1)), 0)
        ramp = np.clip(1.0 - distance / (blend_frames + 1.0), 0.0, 1.0)
        ramp = ramp * ramp * (3.0 - 2.0 * ramp)
        better = ramp > weight
        weight = np.where(better, ramp, weight)
        owner = np.where(better, number, owner)
    return weight, owner


# --- the hips follow the target's planted feet ------------------------------------------------------------------


def follow_planted_feet(
    plan: RetargetPlan, wishes: Transfer, fps: float, settings: ContactSettings = ContactSettings(),
    pinned: tuple[int, ...] = (),
) -> np.ndarray:
    """Move the hips horizontally so that, with every bone turned exactly like the source, the target's own planted
    heels and balls stay put, without jerks; height and rotations are left alone. For Clean Up Feet off only: with
    it on, the IK of :func:`clean_feet` plants the feet and the hips keep the leg-length-scaled path.

    The path is the one (:func:`smooth_hips_path`) that best keeps every planted point put and the hips' acceleration
    low. Per frame step, each heel or ball contact asks for the hips step that keeps that point of the target's FK
    foot where it is (and, as its phase ramps in and out, that moves it as the source's point moves, scaled); it
    counts with its pin weight times the square of its phase (:func:`contact_phase`: 0 at a contact's first and last
    frame, 1 a few frames in) times its confidence (:func:`_confidence`: on the floor and still). Off the ground
    (weight 1 - the largest pin weight) the hips ask for the transfer's step (the source's, scaled by the leg-length
    ratio). The hips change their speed over the settings' ``hips_settle_seconds`` where the feet ask for a sudden
    change. Nothing changes in place (`in_place`).
    Changes `wishes` in place; returns the source contacts (F, 2 sides, 2 points: heel, ball)."""
    contacts = detect_contacts(wishes.source_positions, wishes.source_world, fps, plan.source_rest, settings)
    feet = plan_feet(plan)
    if wishes.in_place or not feet or contacts.shape[0] < 3:
        return contacts
    hips = wishes.positions[plan.hips] @ plan.axes.T
    tracks = foot_point_tracks(plan, pose_matrices(plan, wishes), feet)
    source_points = source_foot_points(wishes.source_positions, wishes.source_world, plan.source_rest)
    heights = _heights(source_points, wishes.source_positions, plan.source_rest)
    steps, weights, pins = [], [], []
    for foot in feet:
        for point in range(len(POINTS)):
            mask = contacts[:, foot.side, point]
            if not mask.any():
                continue
            phase = _midpoints(contact_phase(mask, settings.blend_frames))
            offset = tracks[foot.side][:, point, :2] - hips[:, :2]  # from the hips: the bones' rotations alone
            scaled = plan.scale * np.diff(source_points[:, foot.side, point, :2], axis=0)
            steps.append((1.0 - phase)[:, None] * scaled - np.diff(offset, axis=0))
            pin = _midpoints(pin_weights(mask, settings.blend_frames)[0])
            sure = _confidence(heights[:, foot.side, point], source_points[:, foot.side, point], fps, settings)
            weights.append(pin * phase**2 * _midpoints(sure))
            pins.append(pin)
    if not steps:
        return contacts
    free = np.diff(hips[:, :2], axis=0)
    steps.append(free)
    weights.append(1.0 - np.max(pins, axis=0))
    scaled = hips[:, :2].copy()
    hips[:, :2] = smooth_hips_path(
        hips[:, :2],
        np.array(steps),
        np.array(weights),
        (settings.hips_settle_seconds * fps) ** 2,
        (settings.hips_anchor_seconds * fps) ** -2,
    )
    keep = seam_weights(hips.shape[0], pinned)[:, None]  # on a seam the hips are where the rig's pose has them
    hips[:, :2] = hips[:, :2] + keep * (scaled - hips[:, :2])
    set_hips_path(plan, wishes, hips)
    return contacts


def smooth_hips_path(
    scaled: np.ndarray, steps: np.ndarray, weights: np.ndarray, stiffness: float, anchor: float
) -> np.ndarray:
    """The path h (F, 2) that minimises, over the whole clip, with d = h - scaled the change made to the scaled path,

        sum_c sum_t weights[c, t] |h(t+1) - h(t) - steps[c, t]|^2     (each wish for a step: a planted point's slide)
        + stiffness * sum_t |d(t+1) - 2 d(t) + d(t-1)|^2              (the acceleration added, per frame squared)
        + anchor * sum_t |d(t)|^2                                     (a weak pull towards the scaled path)

    `steps` (C, F-1, 2) and `weights` (C, F-1) per wish. The source's own accelerations (a take-off, a turn) are not
    penalised; where the wishes change suddenly, the change spreads over about sqrt(stiffness / weight) frames. The
    normal equations in d are one symmetric pentadiagonal system shared by both axes, solved in O(F)."""
    frames = scaled.shape[0]
    total = weights.sum(axis=0)
    wanted = np.einsum("cf,cfd->fd", weights, steps - np.diff(scaled, axis=0)[None])
    diagonal = np.full(frames, anchor)
    diagonal[1:] += total
    diagonal[:-1] += total
    first = -total.copy()
    second = np.full(frames - 2, stiffness)
    diagonal[:-2] += second
    diagonal[1:-1] += 4.0 * second
    diagonal[2:] += second
    first[:-1] -= 2.0 * second
    first[1:] -= 2.0 * second
    right = np.zeros_like(scaled)
    right[1:] += wanted
    right[:-1] -= wanted
    return scaled + _solve_pentadiagonal(diagonal, first, second, right)


def _solve_pentadiagonal(
    diagonal: np.ndarray, first: np.ndarray, second: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Solve A x = right (F, columns) for a symmetric positive definite A given by its main, first and second
    diagonals: banded Cholesky, A = L L^T, in O(F) (numpy has no banded solver; a dense one costs O(F^3))."""
    size = diagonal.shape[0]
    a0, a1, a2 = diagonal.tolist(), first.tolist() + [0.0], second.tolist() + [0.0, 0.0]
    # L[i, i], L[i + 1, i], L[i + 2, i] at list index i + 2; two leading zeros stand for the rows above the first
    l0, l1, l2 = [1.0] * (size + 2), [0.0] * (size + 2), [0.0] * (size + 2)
    for i in range(size):
        k = i + 2
        l0[k] = (a0[i] - l1[k - 1] ** 2 - l2[k - 2] ** 2) ** 0.5
        l1[k] = (a1[i] - l2[k - 1] * l1[k - 1]) / l0[k]
        l2[k] = a2[i] / l0[k]
    solution = np.empty_like(right)
    for column in range(right.shape[1]):
        y = [0.0] * (size + 2)
        for i, value in enumerate(right[:, column].tolist()):
            k = i + 2
            y[k] = (value - l1[k - 1] * y[k - 1] - l2[k - 2] * y[k - 2]) / l0[k]
        x = [0.0] * (size + 2)
        for i in range(size - 1, -1, -1):
            x[i] = (y[i + 2] - l1[i + 2] * x[i + 1] - l2[i + 2] * x[i + 2]) / l0[i + 2]
        solution[:, column] = x[:size]
    return solution


def contact_phase(mask: np.ndarray, ramp_frames: int) -> np.ndarray:
    """Per frame, how far inside its contact a point is (F,): 0 outside a contact, rising by smoothstep to 1 over its
    first `ramp_frames` + 1 frames and falling back to 0 over its last; a contact running into the clip's start or
    end has no ramp there."""
    frames = mask.shape[0]
    phase = np.zeros(frames)
    index = np.arange(frames)
    for start, stop in segments(mask):
        inside = index[start:stop]
        since = inside - start + 1 if start > 0 else np.full(inside.size, np.inf)
        until = stop - inside if stop < frames else np.full(inside.size, np.inf)
        ramp = np.clip(np.minimum(since, until) / (ramp_frames + 1.0), 0.0, 1.0)
        phase[start:stop] = ramp * ramp * (3.0 - 2.0 * ramp)
    return phase


def _confidence(heights: np.ndarray, track: np.ndarray, fps: float, settings: ContactSettings) -> np.ndarray:
    """How surely a source point is planted, per frame (F,): 1 on the floor and still, falling linearly to 0 at the
    contact thresholds of height and horizontal speed."""
    low = np.clip(1.0 - heights / settings.height_tolerance, 0.0, 1.0)
    still = np.clip(1.0 - horizontal_speed(track, fps) / settings.speed_tolerance, 0.0, 1.0)
    return low * still


def _midpoints(values: np.ndarray) -> np.ndarray:
    """Per frame step (F - 1,), the mean of the values at its two ends."""
    return 0.5 * (values[1:] + values[:-1])


# --- leg IK ---------------------------------------------------------------------------------------------------------


def hips_drop(
    hip: np.ndarray, ankle: np.ndarray, goal: np.ndarray, weight: np.ndarray, upper: float, lower: float
) -> np.ndarray:
    """How far (F,) the hips must come down so the leg reaches its goal: with a slightly bent knee, or as straight as
    the source already had it (a goal the leg reaches as it is never moves the hips). Positions (F, 3), Z up."""
    reach = np.maximum(_HIPS_DROP_REACH * (upper + lower), np.linalg.norm(ankle - hip, axis=-1))
    horizontal = np.linalg.norm(goal[:, :2] - hip[:, :2], axis=-1)
    vertical = hip[:, 2] - goal[:, 2]
    allowed = np.sqrt(np.maximum(reach**2 - horizontal**2, 0.0))
    return np.where(weight > 0.0, np.maximum(vertical - allowed, 0.0), 0.0)


def two_bone_ik(
    hip: np.ndarray,
    knee: np.ndarray,
    ankle: np.ndarray,
    goal: np.ndarray,
    upper: float,
    lower: float,
    thigh_forward: np.ndarray,
    active: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """World-space turns (F, 3, 3) of thigh and shin that bring the ankle onto `goal`, the knee in its own bending
    plane (`thigh_forward` decides where the leg is straight); identity where not `active`."""
    reach = goal - hip
    distance = np.linalg.norm(reach, axis=-1)
    longest = np.maximum(_IK_REACH * (upper + lower), np.linalg.norm(ankle - hip, axis=-1))  # no bend forced
    clamped = np.clip(distance, abs(upper - lower) + 1e-6, longest)
    direction = reach / np.maximum(distance, 1e-12)[:, None]
    goal = hip + direction * clamped[:, None]

    bend = knee - hip
    bend = bend - np.sum(bend * direction, axis=-1, keepdims=True) * direction
    fallback = thigh_forward - np.sum(thigh_forward * direction, axis=-1, keepdims=True) * direction
    bend = normalized(np.where(np.linalg.norm(bend, axis=-1, keepdims=True) > 1e-6, bend, fallback))
    along = (upper**2 - lower**2 + clamped**2) / (2.0 * clamped)
    height = np.sqrt(np.maximum(upper**2 - along**2, 0.0))
    new_knee = hip + direction * along[:, None] + bend * height[:, None]

    turn_thigh = rotation_between(knee - hip, new_knee - hip)
    turned_shin = (turn_thigh @ (ankle - knee)[:, :, None])[:, :, 0]
    turn_shin = rotation_between(turned_shin, goal - new_knee) @ turn_thigh
    mask = np.asarray(active, dtype=bool)[:, None, None]
    identity = np.eye(3)
    return np.where(mask, turn_thigh, identity), np.where(mask, turn_shin, identity)


# --- planting the target's feet -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Foot:
    """One target leg for planting: its bones, lengths, and the foot's contact points at rest.

    Offsets are in the bones' own frames (heel and ball in the foot bone's, the toe tip in the toe bone's); floors
    are the points' rest heights in the source frame (a rig stands on its floor at rest). The heel is the heel's
    floor point: under the ankle on the rig's floor (:func:`rig_floor`), the point a landing foot rolls about, so
    pinning it keeps the part of the heel that touches the ground in place."""

    side: int
    thigh: int
    shin: int
    foot: int
    toe: int  # -1 where the toe joint is not mapped (the ball is then the heel)
    slot: int  # the foot bone's slot in the plan's mapped bones
    upper: float
    lower: float
    heel: np.ndarray
    ball: np.ndarray
    tip: np.ndarray
    floors: np.ndarray  # (3,) heel, ball, tip


def rig_floor(plan: RetargetPlan) -> float:
    """The height (source frame, target units) of the floor the rig stands on at rest: its ground plane (0) when its
    lowest foot joint is just above it (see ``_MAX_TOE_HEIGHT``), else that joint's height (the feet then stand on a
    floor at toe-joint level, as before issue 27)."""
    toe_level = float(plan.target_toe_level)
    return 0.0 if 0.0 <= toe_level <= _MAX_TOE_HEIGHT * float(plan.scale) else toe_level


def plan_feet(plan: RetargetPlan) -> list[Foot]:
    """The plan's fully mapped legs as :class:`Foot` records."""
    target, axes = plan.target, plan.axes
    heads = target.rest[:, :3, 3] @ axes.T
    rest = axes @ target.rest[:, :3, :3]
    floor = rig_floor(plan)
    feet = []
    for leg, joints in zip(plan.legs, plan.leg_joints):
        side = LEGS.index(joints)
        thigh, shin, foot = leg
        toe_name = plan.mapping.get(BODY_JOINT_NAMES[TOES[side]])
        toe = target.index(toe_name) if toe_name else -1
        heel = np.array([heads[foot, 0], heads[foot, 1], floor])
        ball = heads[toe] if toe >= 0 else heel
        tip = ball + (rest[toe][:, 1] * target.lengths[toe] if toe >= 0 else 0.0)
        feet.append(Foot(
            side=side, thigh=thigh, shin=shin, foot=foot, toe=toe,
            slot=int(np.flatnonzero(plan.bones == foot)[0]),
            upper=float(np.linalg.norm(heads[shin] - heads[thigh])),
            lower=float(np.linalg.norm(heads[foot] - heads[shin])),
            heel=rest[foot].T @ (heel - heads[foot]),
            ball=rest[foot].T @ (ball - heads[foot]),
            tip=np.array([0.0, target.lengths[toe] if toe >= 0 else 0.0, 0.0]),
            floors=np.array([heel[2], ball[2], tip[2]]),
        ))
    return feet


def clean_feet(
    plan: RetargetPlan, wishes: Transfer, fps: float, settings: ContactSettings = ContactSettings(),
    pinned: tuple[int, ...] = (),
) -> np.ndarray:
    """Plant the target's feet where the source's heels and balls touch (see the module docstring). Changes `wishes`
    in place; returns the source contacts (F, 2 sides, 2 points: heel, ball). A stance that holds one of the
    `pinned` frames (a piece's seam with the motion already on the rig) is anchored where the foot is on that frame,
    so the foot stays where the old motion put it."""
    contacts = detect_contacts(wishes.source_positions, wishes.source_world, fps, plan.source_rest, settings)
    feet = plan_feet(plan)
    if not feet:
        return contacts
    axes = plan.axes
    posed = pose_matrices(plan, wishes)
    planted = []
    for foot in feet:
        ankle = posed[foot.foot][:, :3, 3] @ axes.T
        rotation = axes @ wishes.rotations[foot.foot]
        toe_rotation = axes @ wishes.rotations[foot.toe] if foot.toe >= 0 else None
        planted.append((foot, *_plant(plan, foot, ankle, rotation, toe_rotation, contacts[:, foot.side], settings,
                                      pinned)))
    keep = seam_weights(len(contacts), pinned)
    if pinned:  # on a seam the transferred pose (the rig's own there) stays; the cleanup comes in beside it
        planted = [(foot, *_seam_blended(plan, foot, posed, wishes, keep, goal, active, foot_rotation, toe_rotation))
                   for foot, goal, active, foot_rotation, toe_rotation in planted]
    drops = []
    for foot, goal, active, _, _ in planted:
        hip, ankle = (posed[bone][:, :3, 3] @ axes.T for bone in (foot.thigh, foot.foot))
        drops.append(hips_drop(hip, ankle, goal, active, foot.upper, foot.lower))
    drop = np.max(drops, axis=0) * (1.0 - keep)
    if np.any(drop > 0.0):
        wishes.positions[plan.hips] = wishes.positions[plan.hips] - drop[:, None] * axes[2]
        posed = pose_matrices(plan, wishes)
    for foot, goal, active, foot_rotation, toe_rotation in planted:
        hip, knee, ankle = (posed[bone][:, :3, 3] @ axes.T for bone in (foot.thigh, foot.shin, foot.foot))
        thigh_forward = (axes @ wishes.rotations[foot.thigh])[:, :, 2]
        turn_thigh, turn_shin = two_bone_ik(hip, knee, ankle, goal, foot.upper, foot.lower, thigh_forward, active)
        wishes.rotations[foot.thigh] = axes.T @ turn_thigh @ axes @ wishes.rotations[foot.thigh]
        wishes.rotations[foot.shin] = axes.T @ turn_shin @ axes @ wishes.rotations[foot.shin]
        wishes.rotations[foot.foot] = axes.T @ foot_rotation
        if foot.toe >= 0:
            wishes.rotations[foot.toe] = axes.T @ toe_rotation
    return contacts


def _plant(
    plan: RetargetPlan,
    foot: Foot,
    ankle: np.ndarray,
    rotation: np.ndarray,
    toe_rotation: np.ndarray | None,
    contact: np.ndarray,
    settings: ContactSettings,
    pinned: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Ankle goal (F, 3), where IK acts (F,), foot and toe world rotations (F, 3, 3), source frame, for one foot
    whose heel and ball contacts are `contact` (F, 2)."""
    rest = plan.axes @ plan.target.rest[:, :3, :3]
    foot_rest = rest[foot.foot]
    stance = contact.any(axis=1)
    weight, owner = pin_weights(stance, settings.blend_frames)
    flat, _ = pin_weights(contact.all(axis=1), settings.flat_blend_frames)
    source_like = rotation @ np.swapaxes(plan.aligned_rest[foot.slot], -1, -2)  # the source ankle's turn from rest
    heading = _heading(source_like)
    tilt = axis_angle_matrix(np.array([0.0, 0.0, 1.0]), -heading) @ source_like
    identity = np.broadcast_to(np.eye(3), tilt.shape)
    tilt_degrees = np.degrees(np.arccos(np.clip(tilt[:, 2, 2], -1.0, 1.0)))  # the sole's angle to the floor
    nearly_level = np.clip((settings.flat_tilt_degrees[1] - tilt_degrees) / np.ptp(settings.flat_tilt_degrees), 0, 1)
    tilt = _blend(tilt, identity, flat * nearly_level)  # level while heel and ball both touch, the sole nearly flat

    anchor_heading, anchor_ankle = _anchors(stance, contact, heading, ankle, pinned)
    anchor_ankle[:, 2] = (plan.target.rest[foot.foot, :3, 3] @ plan.axes.T)[2]
    stance_index = np.maximum(owner, 0)
    turn = axis_angle_matrix(np.array([0.0, 0.0, 1.0]), anchor_heading[stance_index])
    planted = turn @ tilt @ foot_rest
    flat_foot = turn @ foot_rest
    ankle_at_rest = anchor_ankle[stance_index]
    heel_pin = ankle_at_rest + flat_foot @ foot.heel
    ball_pin = ankle_at_rest + flat_foot @ foot.ball
    by_heel = heel_pin - planted @ foot.heel
    by_ball = ball_pin - planted @ foot.ball
    pivoted = np.where((by_heel[:, 2] >= by_ball[:, 2])[:, None], by_heel, by_ball)  # the lower point carries it

    nearest = _nearest_in(stance)  # outside a stance, the correction its last (or first) frame needed fades out
    goal = ankle + weight[:, None] * (pivoted - ankle)[nearest]
    correction = planted @ np.swapaxes(rotation, -1, -2)
    foot_rotation = _blend(identity, correction[nearest], weight) @ rotation
    new_toe = None
    if toe_rotation is not None:
        ball_down = contact[:, 1]
        toe_down, _ = pin_weights(ball_down, settings.blend_frames)
        toe_correction = (turn @ rest[foot.toe]) @ np.swapaxes(toe_rotation, -1, -2)
        new_toe = _blend(identity, toe_correction[_nearest_in(ball_down)], toe_down) @ toe_rotation
    lift = _below_floor(foot, goal, foot_rotation, new_toe)
    goal[:, 2] += lift
    return goal, (weight > 0.0) | (lift > 0.0), foot_rotation, new_toe


def seam_weights(frames: int, pinned: tuple[int, ...], ramp: int = SEAM_RAMP_FRAMES) -> np.ndarray:
    """Per frame (F,): 1 on a pinned frame, falling linearly to 0 over ``ramp`` frames beside it; 0 without pins."""
    weight = np.zeros(frames)
    index = np.arange(frames)
    for frame in pinned:
        weight = np.maximum(weight, np.clip(1.0 - np.abs(index - frame) / (ramp + 1.0), 0.0, 1.0))
    return weight


def _seam_blended(plan, foot, posed, wishes, keep, goal, active, foot_rotation, toe_rotation):
    """One foot's planting, moved back toward the transferred pose by ``keep`` (1 on a seam)."""
    ankle = posed[foot.foot][:, :3, 3] @ plan.axes.T
    rotation = plan.axes @ wishes.rotations[foot.foot]
    goal = goal + keep[:, None] * (ankle - goal)
    foot_rotation = _blend(foot_rotation, rotation, keep)
    if toe_rotation is not None:
        toe_rotation = _blend(toe_rotation, plan.axes @ wishes.rotations[foot.toe], keep)
    # Beside a seam the source was pulled toward the pinned pose, which may take a foot below the floor: lifted
    # again (on the seam itself the pose is the rig's, on or above its floor: 1e-6 of float noise is left alone).
    lift = _below_floor(foot, goal, foot_rotation, toe_rotation)
    lift = np.where(lift > 1e-6, lift, 0.0)
    goal[:, 2] += lift
    return goal, (active & (keep < 1.0)) | (lift > 0.0), foot_rotation, toe_rotation


def _nearest_in(mask: np.ndarray) -> np.ndarray:
    """For every frame, the nearest frame where `mask` holds (itself where it does; 0 where it never does)."""
    inside = np.flatnonzero(mask)
    if inside.size == 0:
        return np.zeros(mask.shape[0], dtype=np.int64)
    frames = np.arange(mask.shape[0])
    after = np.clip(np.searchsorted(inside, frames), 0, inside.size - 1)
    before = np.clip(after - 1, 0, inside.size - 1)
    closer_before = np.abs(frames - inside[before]) < np.abs(inside[after] - frames)
    return np.where(closer_before, inside[before], inside[after])


def _heading(rotations: np.ndarray) -> np.ndarray:
    """Heading angle (F,) about +Z of the direction the source's foot faces (-Y at rest)."""
    forward = rotations @ _SOURCE_FORWARD
    return np.arctan2(forward[:, 0], -forward[:, 1])


def _anchors(
    stance: np.ndarray, contact: np.ndarray, heading: np.ndarray, ankle: np.ndarray, pinned: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Per stance: the heading and ankle position of its flat foot, averaged over the frames where heel and ball
    both touch (over the whole stance when they never do); a stance holding a `pinned` frame takes that frame's."""
    runs = segments(stance)
    headings = np.zeros(max(len(runs), 1))
    positions = np.zeros((max(len(runs), 1), 3))
    for number, (start, stop) in enumerate(runs):
        frames = np.arange(start, stop)
        both = frames[contact[start:stop].all(axis=1)]
        chosen = both if both.size else frames
        held = [frame for frame in pinned if start <= frame < stop]
        if held:
            chosen = np.array(held[:1])
        headings[number] = np.arctan2(np.sin(heading[chosen]).mean(), np.cos(heading[chosen]).mean())
        positions[number] = ankle[chosen].mean(axis=0)
    return headings, positions


def _blend(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Rotations (F, 3, 3) turned from `start` toward `end` by `weight` (F,), along the shortest arc."""
    mixed = slerp(matrix_to_quaternion(start), matrix_to_quaternion(end), weight)
    return quaternion_to_matrix(mixed)


def _below_floor(
    foot: Foot, ankle: np.ndarray, rotation: np.ndarray, toe_rotation: np.ndarray | None
) -> np.ndarray:
    """How far (F,) the ankle must rise so that no point of the foot (heel, ball, toe tip) is below the floor."""
    heights = _points(foot, ankle, rotation, toe_rotation)[..., 2]
    return np.maximum(np.max(foot.floors - heights, axis=1), 0.0)


def _points(foot: Foot, ankle: np.ndarray, rotation: np.ndarray, toe_rotation: np.ndarray | None) -> np.ndarray:
    """Heel, ball and toe tip (F, 3, 3) of a foot whose ankle is at `ankle` turned by `rotation` (source frame)."""
    heel = ankle + rotation @ foot.heel
    ball = ankle + rotation @ foot.ball
    tip = ball + (toe_rotation @ foot.tip if toe_rotation is not None else 0.0)
    return np.stack([heel, ball, tip], axis=1)


def foot_point_tracks(
    plan: RetargetPlan, matrices: dict[int, np.ndarray], feet: list[Foot] | None = None
) -> dict[int, np.ndarray]:
    """Per side, heel, ball and toe tip (F, 3, 3, source frame) from armature-space pose matrices (F, 4, 4) of the
    foot and toe bones (from numpy or from Blender's evaluation)."""
    tracks = {}
    for foot in feet if feet is not None else plan_feet(plan):
        ankle = matrices[foot.foot][:, :3, 3] @ plan.axes.T
        rotation = plan.axes @ matrices[foot.foot][:, :3, :3]
        toe = plan.axes @ matrices[foot.toe][:, :3, :3] if foot.toe >= 0 else None
        tracks[foot.side] = _points(foot, ankle, rotation, toe)
    return tracks


def measure_contacts(
    plan: RetargetPlan, matrices: dict[int, np.ndarray], contacts: np.ndarray
) -> list[ContactReport]:
    """Slide, penetration and hover of every heel and ball contact (see :class:`ContactReport`), measured on the
    target's foot points from pose matrices as :func:`foot_point_tracks` takes them: the slide of the heel's floor
    point (what touches the ground); the hover only while the foot is flat (heel and ball both down on the source),
    and then as the height of the foot's lower planted point: a foot rolling onto its ball as the heel lifts (the
    detector still counts a heel within 2 cm as down) rests on the ball, so nothing hovers."""
    reports = []
    feet = {foot.side: foot for foot in plan_feet(plan)}
    for side, points in foot_point_tracks(plan, matrices, list(feet.values())).items():
        depth = np.max(feet[side].floors - points[..., 2], axis=1)
        flat = contacts[:, side].all(axis=1)
        resting = np.min(points[:, :2, 2] - feet[side].floors[:2], axis=1)  # the lower of heel and ball
        for point, name in enumerate(POINTS):
            track = points[:, point]
            for start, stop in segments(contacts[:, side, point]):
                steps = np.linalg.norm(np.diff(track[start:stop, :2], axis=0), axis=-1)
                lifted = resting[start:stop][flat[start:stop]]
                reports.append(ContactReport(
                    side=("left", "right")[side],
                    point=name,
                    start=start,
                    stop=stop,
                    slide=float(steps.sum()),
                    penetration=float(max(depth[start:stop].max(), 0.0)),
                    hover=float(max(lifted.max(), 0.0)) if lifted.size else 0.0,
                ))
    return reports
