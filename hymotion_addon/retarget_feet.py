"""Feet in numpy only: when the source's feet touch the ground, and the two-bone IK that plants the target's feet.

The transfer (:mod:`.retarget_math`) turns the source clip into what each target bone should do; :func:`clean_feet`
then changes the legs of that :class:`~.retarget_math.Transfer` before the keys are solved.

:func:`detect_contacts` finds contacts from the source's foot height and speed. During a contact each ankle is
pinned by two-bone IK (thigh and shin turned in the knee's own bending plane, smooth blend in and out), the hips
lowered first where the leg cannot reach. :func:`contact_drift` measures sliding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .retarget_math import (
    ANKLES,
    FOOT_JOINTS,
    LEGS,
    RetargetPlan,
    Transfer,
    normalized,
    pose_matrices,
    rotation_between,
    source_floor,
)

_IK_REACH = 0.9999
_HIPS_DROP_REACH = 0.995  # the hips come down until the pinned leg reaches with this fraction of its length


@dataclass(frozen=True)
class ContactSettings:
    """When a source foot joint counts as planted, and how pinning blends in and out."""

    height_tolerance: float = 0.05  # metres above the joint's standing height
    speed_tolerance: float = 0.6  # metres per second, horizontal
    min_frames: int = 3
    blend_frames: int = 4


# --- contacts -------------------------------------------------------------------------------------------------------


def detect_contacts(
    positions: np.ndarray, fps: float, source, settings: ContactSettings = ContactSettings()
) -> np.ndarray:
    """Left/right ankle contacts (F, 2) from the source (a SourceSkeleton): near its standing height and slow over
    the ground.

    Gaps of one frame are closed and contacts shorter than `min_frames` dropped, so pinning never flickers.
    """
    floor = source_floor(positions, source)
    toe_level = min(source.heads[joint, 2] for joint in FOOT_JOINTS)
    contacts = np.zeros((positions.shape[0], 2), dtype=bool)
    for side, ankle in enumerate(ANKLES):
        standing = floor + source.heads[ankle, 2] - toe_level
        height = positions[:, ankle, 2] - standing
        speed = _horizontal_speed(positions[:, ankle], fps)
        raw = (height < settings.height_tolerance) & (speed < settings.speed_tolerance)
        contacts[:, side] = _clean_mask(raw, settings.min_frames)
    return contacts


def _horizontal_speed(track: np.ndarray, fps: float) -> np.ndarray:
    if track.shape[0] < 2:
        return np.zeros(track.shape[0])
    velocity = np.gradient(track[:, :2], axis=0) * fps
    return np.linalg.norm(velocity, axis=-1)


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True as (start, stop) half-open frame ranges."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _clean_mask(mask: np.ndarray, min_frames: int) -> np.ndarray:
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


def contact_drift(track: np.ndarray, contacts: np.ndarray) -> float:
    """Mean horizontal distance a point travels per contact frame (units of `track`); 0 for a perfectly planted foot.

    `track` (F, 3) is the point's position in a Z-up frame, `contacts` (F,) marks its contact frames.
    """
    total, steps = 0.0, 0
    for start, stop in segments(np.asarray(contacts, dtype=bool)):
        if stop - start < 2:
            continue
        moves = np.linalg.norm(np.diff(track[start:stop, :2], axis=0), axis=-1)
        total += float(moves.sum())
        steps += stop - start - 1
    return total / steps if steps else 0.0


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


def clean_feet(
    plan: RetargetPlan, wishes: Transfer, fps: float, settings: ContactSettings = ContactSettings()
) -> np.ndarray:
    """Pin each ankle of the target during its source contacts: lower the hips where a leg could not reach its pin,
    then two-bone IK. Changes `wishes` in place; returns the contacts (F, 2: left, right)."""
    contacts = detect_contacts(wishes.source_positions, fps, plan.source_rest, settings)
    posed = pose_matrices(plan, wishes)
    goals = []
    for leg, joints in zip(plan.legs, plan.leg_joints):
        side = 0 if joints == LEGS[0] else 1
        goal = _ankle_goal(plan, posed, leg, contacts[:, side], settings)
        if goal is not None:
            goals.append((leg, *goal))
    if not goals:
        return contacts
    drops = []
    for leg, goal, weight in goals:
        hip, _, ankle = (_in_source_frame(plan, posed, bone) for bone in leg)
        drops.append(hips_drop(hip, ankle, goal, weight, *_leg_lengths(plan, leg)))
    drop = np.max(drops, axis=0)
    if np.any(drop > 0.0):
        wishes.positions[plan.hips] = wishes.positions[plan.hips] - drop[:, None] * plan.axes[2]
        posed = pose_matrices(plan, wishes)
    axes = plan.axes
    for leg, goal, weight in goals:
        thigh, shin, _ = leg
        hip, knee, ankle = (_in_source_frame(plan, posed, bone) for bone in leg)
        thigh_forward = (axes @ wishes.rotations[thigh])[:, :, 2]
        turn_thigh, turn_shin = two_bone_ik(
            hip, knee, ankle, goal, *_leg_lengths(plan, leg), thigh_forward, weight > 0.0
        )
        wishes.rotations[thigh] = axes.T @ turn_thigh @ axes @ wishes.rotations[thigh]
        wishes.rotations[shin] = axes.T @ turn_shin @ axes @ wishes.rotations[shin]
    return contacts


def _in_source_frame(plan: RetargetPlan, posed: dict[int, np.ndarray], bone: int) -> np.ndarray:
    return posed[bone][:, :3, 3] @ plan.axes.T


def _leg_lengths(plan: RetargetPlan, leg: tuple[int, int, int]) -> tuple[float, float]:
    thigh, shin, foot = leg
    heads = plan.target.rest[:, :3, 3]
    return float(np.linalg.norm(heads[shin] - heads[thigh])), float(np.linalg.norm(heads[foot] - heads[shin]))


def _ankle_goal(
    plan: RetargetPlan, posed: dict[int, np.ndarray], leg: tuple[int, int, int], contact: np.ndarray,
    settings: ContactSettings,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the ankle should be (F, 3, source frame) and how strongly (F,): at its contact's mean position, never
    below its standing height, blended in and out around each contact."""
    runs = segments(contact)
    if not runs:
        return None
    foot = leg[2]
    ankle = _in_source_frame(plan, posed, foot)
    standing_height = float((plan.axes @ plan.target.rest[foot, :3, 3])[2])
    pins = np.array([ankle[start:stop].mean(axis=0) for start, stop in runs])
    pins[:, 2] = np.maximum(pins[:, 2], standing_height)
    weight, owner = pin_weights(contact, settings.blend_frames)
    return ankle + weight[:, None] * (pins[np.maximum(owner, 0)] - ankle), weight
