"""Smooth synthetic clips for the sparse-keys tests and benchmark, in numpy only (no Blender): a jump whose feet stay
planted through the crouch and the landing (two-bone IK in the legs' plane), and a turn on the spot. Both are in the
model's frame (Y-up, facing +Z), translation (F, 3) and local joint quaternions (F, 22, 4), as bake.bake_motion takes
them; the walk is tests/blender/retarget_test_rigs.walk_clip. Also the SMPL body as a sparse-keys Rig, so the core can
fit these clips without Blender."""

from __future__ import annotations

import numpy as np

from hymotion.shared.rotations import Y_UP_TO_Z_UP, axis_angle_matrix, matrix_to_quaternion, quaternion_to_matrix
from hymotion.shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS, BODY_REST_OFFSETS, BODY_REST_POSITIONS
from hymotion_addon.core.sparse_keys import Channel, Rig

JOINT = {name: index for index, name in enumerate(BODY_JOINT_NAMES)}
GRAVITY = 9.81


def _quaternions(axis, angle) -> np.ndarray:
    """Quaternions (w >= 0) turning by `angle` (radians, any shape) about a unit `axis`."""
    return matrix_to_quaternion(axis_angle_matrix(np.asarray(axis, dtype=np.float64), np.asarray(angle, dtype=float)))


def eased(times: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """A curve through (time, value) points, smoothstep between them: still at every point (a turning point where
    the values turn back), smooth (continuous speed) everywhere."""
    at = np.array([p[0] for p in points])
    values = np.array([p[1] for p in points])
    segment = np.clip(np.searchsorted(at, times, side="right") - 1, 0, len(at) - 2)
    s = np.clip((times - at[segment]) / (at[segment + 1] - at[segment]), 0.0, 1.0)
    return values[segment] + (values[segment + 1] - values[segment]) * s * s * (3.0 - 2.0 * s)


def _hermite(s: np.ndarray, start: float, end: float, start_slope: float, end_slope: float, span: float):
    return ((2 * s**3 - 3 * s**2 + 1) * start + (s**3 - 2 * s**2 + s) * span * start_slope
            + (-2 * s**3 + 3 * s**2) * end + (s**3 - s**2) * span * end_slope)


def _rotate_x(angle: float, vector: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([vector[0], c * vector[1] - s * vector[2], s * vector[1] + c * vector[2]])


def _leg_angles(height_change: float, side: str, guess: np.ndarray) -> np.ndarray:
    """Hip and knee angles about the model's x axis that keep the ankle where it stands at rest while the hip joint
    is `height_change` higher (below zero: a crouch); Newton's method from `guess`."""
    knee = BODY_REST_OFFSETS[JOINT[f"{side}_knee"]]
    ankle = BODY_REST_OFFSETS[JOINT[f"{side}_ankle"]]
    goal = (knee + ankle) - np.array([0.0, height_change, 0.0])
    angles = guess.copy()

    def reach(a):
        return _rotate_x(a[0], knee + _rotate_x(a[1], ankle))[1:]

    for _ in range(30):
        error = reach(angles) - goal[1:]
        if np.abs(error).max() < 1e-13:
            break
        jacobian = np.empty((2, 2))
        for column in range(2):
            step = np.zeros(2)
            step[column] = 1e-7
            jacobian[:, column] = (reach(angles + step) - reach(angles - step)) / 2e-7
        angles = angles - np.linalg.solve(jacobian, error)
    return angles


def jump_clip(fps: float = 30.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A standing jump (2.4 s): crouch with the arms swung back, take off, fly 0.5 s with the knees tucked and the
    arms up, land where it took off, absorb, stand. The feet do not move while on the ground (the legs are solved by
    IK onto the standing ankles, the feet kept level), and the pelvis's height is smooth across take-off and landing.
    Returns translation, rotations and the frames on the ground (F,)."""
    times = np.arange(int(round(2.4 * fps))) / fps
    takeoff, landing = 1.0, 1.5
    launch = GRAVITY * (landing - takeoff) / 2.0
    height = np.zeros(times.size)
    crouch = (times >= 0.2) & (times < 0.8)
    height[crouch] = eased(times[crouch], [(0.2, 0.0), (0.8, -0.18)])
    height[times >= 0.8] = -0.18
    rise = (times >= 0.8) & (times < takeoff)
    height[rise] = _hermite((times[rise] - 0.8) / 0.2, -0.18, 0.0, 0.0, launch, 0.2)
    flight = (times >= takeoff) & (times < landing)
    airborne = times[flight] - takeoff
    height[flight] = launch * airborne - GRAVITY * airborne**2 / 2.0
    absorb = (times >= landing) & (times < 1.8)
    height[absorb] = _hermite((times[absorb] - landing) / 0.3, 0.0, -0.12, -launch, 0.0, 0.3)
    stand = times >= 1.8
    height[stand] = eased(times[stand], [(1.8, -0.12), (2.4, 0.0)])
    on_ground = ~flight

    rotations = np.zeros((times.size, len(BODY_JOINT_NAMES), 4))
    rotations[..., 0] = 1.0
    tuck = np.where(flight, np.sin(np.pi * (times - takeoff) / (landing - takeoff)), 0.0)
    for side in ("left", "right"):
        guess = np.zeros(2)
        for frame in range(times.size):
            if on_ground[frame]:
                guess = _leg_angles(min(height[frame], 0.0), side, guess)
                hip, knee = guess
            else:
                hip, knee = -0.5 * tuck[frame], 0.9 * tuck[frame]
            rotations[frame, JOINT[f"{side}_hip"]] = _quaternions([1, 0, 0], hip)
            rotations[frame, JOINT[f"{side}_knee"]] = _quaternions([1, 0, 0], knee)
            rotations[frame, JOINT[f"{side}_ankle"]] = _quaternions([1, 0, 0], -(hip + knee))  # the foot stays level
    swing = eased(times, [(0.0, 0.0), (0.75, 0.7), (1.25, -2.2), (1.7, -0.3), (2.4, 0.0)])
    raise_sideways = eased(times, [(0.0, 1.2), (0.75, 1.0), (1.25, 0.4), (2.4, 1.2)])
    for side, sign in (("left", 1.0), ("right", -1.0)):
        down = _quaternions([0, 0, 1], -sign * raise_sideways)  # the arms hang down from a T-pose
        forward = _quaternions([1, 0, 0], swing)
        rotations[:, JOINT[f"{side}_shoulder"]] = matrix_to_quaternion(
            quaternion_to_matrix(forward) @ quaternion_to_matrix(down)
        )
        rotations[:, JOINT[f"{side}_elbow"]] = _quaternions([0, 1, 0], sign * eased(
            times, [(0.0, 0.2), (0.75, 0.6), (1.25, 0.1), (2.4, 0.2)]))
    lean = eased(times, [(0.0, 0.0), (0.75, 0.35), (1.1, -0.05), (1.7, 0.25), (2.4, 0.0)])
    for spine in ("spine1", "spine2", "spine3"):
        rotations[:, JOINT[spine]] = _quaternions([1, 0, 0], lean / 3.0)
    rotations[:, JOINT["head"]] = _quaternions([1, 0, 0], -0.6 * lean)
    translation = np.zeros((times.size, 3))
    translation[:, 1] = height
    return translation, rotations, on_ground


def turn_clip(fps: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """A 90-degree turn to the left on the spot (2.5 s): the head leads, the chest follows, the pelvis last; small
    steps (knees lift in turn), the arms swing out and settle."""
    times = np.arange(int(round(2.5 * fps))) / fps
    rotations = np.zeros((times.size, len(BODY_JOINT_NAMES), 4))
    rotations[..., 0] = 1.0
    quarter = np.pi / 2
    pelvis = eased(times, [(0.0, 0.0), (0.5, 0.0), (2.1, quarter), (2.5, quarter)])
    chest = eased(times, [(0.0, 0.0), (0.3, 0.0), (1.3, 0.75 * quarter), (2.2, quarter), (2.5, quarter)])
    head = eased(times, [(0.0, 0.0), (0.2, 0.0), (0.9, 0.9 * quarter), (1.8, 1.1 * quarter), (2.5, quarter)])
    rotations[:, JOINT["pelvis"]] = _quaternions([0, 1, 0], pelvis)
    rotations[:, JOINT["spine3"]] = _quaternions([0, 1, 0], chest - pelvis)
    rotations[:, JOINT["head"]] = _quaternions([0, 1, 0], head - chest)
    for side, sign, start in (("left", 1.0, 0.6), ("right", -1.0, 1.2)):
        lift = eased(times, [(0.0, 0.0), (start, 0.0), (start + 0.3, 1.0), (start + 0.6, 0.0), (2.5, 0.0)])
        rotations[:, JOINT[f"{side}_hip"]] = _quaternions([1, 0, 0], -0.5 * lift)
        rotations[:, JOINT[f"{side}_knee"]] = _quaternions([1, 0, 0], 1.0 * lift)
        rotations[:, JOINT[f"{side}_ankle"]] = _quaternions([1, 0, 0], -0.5 * lift)
        out = eased(times, [(0.0, 1.2), (0.8, 0.9 if sign > 0 else 1.0), (1.6, 1.1), (2.5, 1.2)])
        rotations[:, JOINT[f"{side}_shoulder"]] = _quaternions([0, 0, 1], -sign * out)
    translation = np.zeros((times.size, 3))
    translation[:, 1] = -0.03 * eased(times, [(0.0, 0.0), (0.9, 1.0), (1.5, 0.0), (1.9, 1.0), (2.5, 0.0)])
    return translation, rotations


# --- the SMPL body as the sparse-keys core sees it ------------------------------------------------------------------


def smpl_rig() -> Rig:
    """The 22 body joints as bones of a Rig: rest frames unrotated at the joints (model frame), a bone's tail 10 cm
    along its own +Y, the world Z-up (the model's Y-up turned as Blender shows it)."""
    rest = np.tile(np.eye(4), (len(BODY_JOINT_NAMES), 1, 1))
    rest[:, :3, 3] = BODY_REST_POSITIONS
    world = np.eye(4)
    world[:3, :3] = Y_UP_TO_Z_UP
    return Rig(tuple(BODY_JOINT_NAMES), tuple(BODY_PARENTS), rest, np.full(len(BODY_JOINT_NAMES), 0.1),
               ("QUATERNION",) * len(BODY_JOINT_NAMES), world)


def clip_channels(translation: np.ndarray, rotations: np.ndarray) -> tuple[list[Channel], np.ndarray]:
    """A model-frame clip as the channels of :func:`smpl_rig`: the pelvis's location, every joint's quaternion."""
    channels = [Channel(0, "location", index) for index in range(3)]
    columns = [translation[:, index] for index in range(3)]
    for joint in range(len(BODY_JOINT_NAMES)):
        for index in range(4):
            channels.append(Channel(joint, "rotation_quaternion", index))
            columns.append(rotations[:, joint, index])
    return channels, np.stack(columns, axis=1)
