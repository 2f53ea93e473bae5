"""Directing a generation: a root path (waypoints, optionally with heading) and joint targets, met exactly.

numpy only. Two halves, both driven by one :class:`Directions`:

1. **Partial pins on the flow path** (:meth:`Directions.latent_groups`). The known-frames mechanism of
   ``constraints`` pins every channel of a frame; a direction pins some channels of some frames: the root's
   horizontal translation (channels 0 and 2) at each waypoint, the root's heading (the horizontal part of the pelvis's
   x axis, rot6d channels 3 and 7: cos ψ and −sin ψ for an upright body) where one is asked for, and a joint's
   position (its three channels among the 66 position features) over a target's frames. Between pinned frames the
   correction put back each step is spread: along the path by a clamped cubic spline of the corrections at the
   waypoints (C2 between them, held beyond the first and last, so a sparse path bends the walk smoothly instead of
   pulling it to each waypoint and back), around a target by a smoothstep ramp. The model then makes a motion that
   already goes where it is asked.
2. **An exact correction after decoding** (:meth:`Directions.correct`, world frame, output frames): the root's heading
   turned and its path shifted by the same kind of spline of what is still missing at the waypoints (exact there),
   then the feet that stood on the ground in the decoded clip planned to stay where they stood (pivoting about the
   lower of heel and toe, their heading held) and the hips lowered where a planted leg cannot reach, then the root
   moved where a target's limb cannot reach and two-bone IK on each target's chain with a ramp around its frames,
   then the planted legs solved (turning and shifting the root slides the feet; a target on a leg wins). The foot
   cleanup follows the add-on's retarget (hymotion_addon/core/retarget_feet.py), which the backend may not import.

Conventions (docs/directing.md): model frames at 30 fps; metres; the output's world frame, Y up; yaw in degrees about
+Y, 0 facing +Z, 90 facing +X; a clip that continues nothing starts with the pelvis at the horizontal origin facing
+Z, so a path without a frame-0 waypoint gets one there (position only).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..shared import skeleton
from ..shared.errors import bad_request
from ..shared.rotations import (
    axis_angle_matrix,
    continuous_quaternions,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from ..shared.skeleton import FPS
from .body_correction import (
    FEET,
    IK_REACH,
    JOINT_INDEX,
    blend_rotations,
    bone_length,
    foot_contacts,
    heading_of,
    limb_chain,
    lower_hips,
    plan_feet,
    plant_feet,
    pose,
    smoothstep,
    two_bone_ik,
    wrap_angle,
    yaw_matrix,
)

# --- limits and settings --------------------------------------------------------------------------------------------

# Sprinters peak near 12 m/s; 8 m/s is a fast run that the model's running clips reach, so a path asking for more
# is called too fast (warning, the motion is still made).
MAX_SPEED = 8.0
# A standing pivot turns a body by about 180 degrees in a quarter second; faster than 720 degrees a second (two turns)
# no body turns, and at speed the centripetal acceleration v·ω above 1.5 g (a sprinter's hardest bend) cannot be held.
MAX_TURN_RATE = math.radians(720.0)
MAX_LATERAL_ACCELERATION = 1.5 * 9.81
FACING_MIN_SPEED = 0.2  # m/s: slower than this, the path's direction says nothing about where the body faces
TARGET_RAMP = 10  # frames (1/3 s) over which a target's correction blends in and out after decoding
LATENT_RAMP = 6  # frames of the same blend on the flow path (as constraints.RAMP_FRAMES for whole poses)
JUMP_ALLOWANCE = 0.6  # m a target may lie above the standing reach (a jump, a reach on tiptoe)
FACINGS = ("path", "free")

_POSITIONS = 3 + 6 * skeleton.NUM_BODY_JOINTS  # first joint-position channel (135)
PATH_CHANNELS = np.array([0, 2])
HEADING_CHANNELS = np.array([3, 7])  # rot6d of the root: R[0, 0] and R[2, 0]
_PELVIS = skeleton.BODY_REST_POSITIONS[0]


def joint_channels(joint: int) -> np.ndarray:
    return _POSITIONS + 3 * joint + np.arange(3)


def chain_length(joint: int) -> float:
    """Length of the bones from the pelvis to ``joint`` (rest pose)."""
    total, current = 0.0, joint
    while skeleton.BODY_PARENTS[current] >= 0:
        total += float(np.linalg.norm(skeleton.BODY_REST_OFFSETS[current]))
        current = skeleton.BODY_PARENTS[current]
    return total


# Standing pelvis height above the floor: the rest pose's pelvis above its lowest sole (motion.FOOT_SOLE_GAP).
STANDING_PELVIS = float(_PELVIS[1] - skeleton.BODY_REST_POSITIONS[JOINT_INDEX["left_foot"], 1] + 0.02)


# --- what is asked ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waypoint:
    """The pelvis's horizontal position (metres, world) at a model frame, and optionally its heading (radians)."""

    frame: int
    x: float
    z: float
    yaw: float | None = None


@dataclass(frozen=True)
class Target:
    """A joint's world position (and optionally world rotation, 3x3) held from frame ``first`` to ``last``."""

    joint: int
    first: int
    last: int
    position: tuple[float, float, float]
    rotation: tuple | None = None

    @property
    def name(self) -> str:
        return skeleton.BODY_JOINT_NAMES[self.joint]


@dataclass
class Directions:
    """A path and targets for one generation. ``facing``: "path" (the body faces along the path where it moves and
    no yaw is given), "free" (only given yaws are pinned). ``warnings`` collects what the body can hardly do."""

    waypoints: tuple[Waypoint, ...] = ()
    targets: tuple[Target, ...] = ()
    facing: str = "path"
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.facing not in FACINGS:
            raise bad_request(f"Unknown facing {self.facing!r}.", f"Use one of: {', '.join(FACINGS)}.")
        self.waypoints = tuple(sorted(self.waypoints, key=lambda point: point.frame))
        frames = [point.frame for point in self.waypoints]
        if len(set(frames)) != len(frames):
            repeated = sorted({frame for frame in frames if frames.count(frame) > 1})
            raise bad_request(f"The path gives frame {repeated[0]} more than once.", "Give each frame one waypoint.")
        if self.waypoints:
            self.warnings.extend(path_warnings(self.waypoints))

    @property
    def last_frame(self) -> int:
        frames = [point.frame for point in self.waypoints] + [target.last for target in self.targets]
        return max(frames, default=-1)

    def check(self, durations: Sequence[float], frames_for_duration) -> None:
        """Frames within every clip (0 … frames − 1)."""
        for duration in durations:
            frames = frames_for_duration(duration)
            if self.last_frame >= frames:
                raise bad_request(
                    f"The directions reach frame {self.last_frame}, but a {duration:g} s clip has frames "
                    f"0-{frames - 1}.",
                    f"Make the clip at least {(self.last_frame + 1) / FPS:.2f} s long (--duration), or use earlier "
                    "frames.",
                )

    def check_reach(self, start_pelvis: np.ndarray | None = None) -> None:
        """Refuse a target farther than its limb from anywhere the body can be at its frame: the pelvis is known at
        the waypoints (and at frame 0: the origin, or where the continued clip is), and it moves at most MAX_SPEED."""
        known = [(point.frame, np.array([point.x, point.z])) for point in self.waypoints]
        origin = np.zeros(2) if start_pelvis is None else np.asarray(start_pelvis, dtype=np.float64)[[0, 2]]
        if not any(frame == 0 for frame, _ in known):
            known.append((0, origin))
        for target in self.targets:
            limb = chain_length(target.joint)
            position = np.asarray(target.position)
            for frame in range(target.first, target.last + 1):
                # How far the target lies beyond where the pelvis can be: within MAX_SPEED of every known position
                # (since or until its frame), so the farthest such excess counts.
                distance = max(np.linalg.norm(position[[0, 2]] - where) - MAX_SPEED * abs(frame - at) / FPS
                               for at, where in known)
                if distance > limb:
                    raise bad_request(
                        f"Target {target.name} at frame {frame} is {distance:.2f} m from where the pelvis can be then "
                        f"(its path, or the start, and at most {MAX_SPEED:g} m/s from there); the {target.name} "
                        f"reaches {limb:.2f} m from the pelvis.",
                        "Move the target closer to the path (or to the origin, where the clip starts), or give it a "
                        "later frame.",
                    )
            height = position[1]
            if not -0.05 <= height <= STANDING_PELVIS + limb + JUMP_ALLOWANCE:
                raise bad_request(
                    f"Target {target.name} is at height {height:.2f} m; the body reaches from the floor (0) up to "
                    f"about {STANDING_PELVIS + limb + JUMP_ALLOWANCE:.2f} m with it.",
                    "Heights are metres above the floor, Y up (the second number).",
                )

    # --- 1. partial pins on the flow path -------------------------------------------------------------------------

    def latent_groups(self, frames: int, context: int, placement, pinned: dict[int, np.ndarray]) -> list[ChannelGroup]:
        """Channel groups for a sampled clip of ``frames`` frames whose first ``context`` are context; ``placement``
        (constraints.Placement) maps canonical to world; ``pinned`` the raw 201 features of the whole-pose pins
        (sampled frame -> features), which anchor every group through their frames."""
        groups: list[ChannelGroup] = []
        turn = -placement.yaw
        offset = np.asarray(placement.offset)
        if self.waypoints:
            points = [(point.frame, point.x, point.z) for point in self.waypoints]
            if context == 0 and 0 not in pinned and self.waypoints[0].frame != 0:
                points.insert(0, (0, 0.0, 0.0))
            world = np.array([[x, 0.0, z] for _, x, z in points])
            canonical = (world - offset) @ yaw_matrix(turn).T
            values = canonical[:, [0, 2]] - _PELVIS[[0, 2]]
            groups.append(
                ChannelGroup.spline(PATH_CHANNELS, [f + context for f, _, _ in points], values, frames, pinned)
            )
            headings = self.headings()
            if headings:
                yaws = np.array([yaw - placement.yaw for _, yaw in headings])
                values = np.stack([np.cos(yaws), -np.sin(yaws)], axis=-1)
                groups.append(ChannelGroup.spline(HEADING_CHANNELS, [f + context for f, _ in headings], values, frames,
                                                  pinned))
        for joint in dict.fromkeys(target.joint for target in self.targets):
            spans = [target for target in self.targets if target.joint == joint]
            anchors, values = [], []
            for target in spans:
                canonical = (np.asarray(target.position) - offset) @ yaw_matrix(turn).T
                for frame in range(target.first, target.last + 1):
                    anchors.append(frame + context)
                    values.append(canonical)
            groups.append(ChannelGroup.ramp(joint_channels(joint), anchors, np.array(values), frames, LATENT_RAMP))
        return groups

    def headings(self) -> list[tuple[int, float]]:
        """(frame, yaw) of every waypoint whose heading is pinned: the given yaw, else (facing "path") the path's
        direction where the body moves faster than FACING_MIN_SPEED."""
        result = []
        tangents = _tangents(self.waypoints)
        for point, tangent in zip(self.waypoints, tangents):
            if point.yaw is not None:
                result.append((point.frame, point.yaw))
            elif self.facing == "path" and tangent is not None:
                result.append((point.frame, tangent))
        return result

    # --- 2. the exact correction after decoding ---------------------------------------------------------------------

    def correct(self, translation: np.ndarray, rotations: np.ndarray, fixed: Sequence[int] = (),
                start_known: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A decoded clip (world frame, output frames) with every waypoint and target met exactly. ``fixed``: frames
        whose whole pose is pinned (a continued clip's first frame, an in-between's last), left where they are;
        ``start_known``: frame 0 is where a continued clip put it (no implicit origin waypoint)."""
        translation = np.array(translation, dtype=np.float64)
        local = quaternion_to_matrix(rotations)
        original_translation, original_local = translation.copy(), local.copy()
        frames = len(translation)
        _, before = pose(local, translation)
        stances = foot_contacts(before)
        if self.waypoints:
            self._correct_heading(local, frames, fixed)
            self._correct_path(translation, frames, fixed, start_known)
        plans = plan_feet(local, translation, stances, fixed)
        lower_hips(local, translation, plans, fixed)
        held = np.zeros((frames, 2))
        for target in self.targets:
            self._shift_root(local, translation, target)
        for target in self.targets:
            self._reach_target(local, translation, target, held)
        plant_feet(local, translation, plans, held)
        # A pinned pose (continued clip's first frame, an in-between's last) is met as it was: planting anchors its
        # stance there, so its legs moved by no more than the IK's rounding and the bending plane's choice.
        fixed = list(fixed)
        translation[fixed] = original_translation[fixed]
        local[fixed] = original_local[fixed]
        return translation, continuous_quaternions(matrix_to_quaternion(local), axis=-3)

    def _correct_heading(self, local: np.ndarray, frames: int, fixed: Sequence[int]) -> None:
        headings = [(frame, yaw) for frame, yaw in self.headings() if frame not in fixed]
        if not headings:
            return
        current = heading_of(local[:, 0])
        anchors = [frame for frame, _ in headings] + list(fixed)
        missing = [wrap_angle(yaw - current[frame]) for frame, yaw in headings] + [0.0] * len(fixed)
        order = np.argsort(anchors)
        turn = spline_matrix(np.asarray(anchors)[order], frames) @ np.asarray(missing)[order]
        local[:, 0] = yaw_matrix(turn) @ local[:, 0]

    def _correct_path(self, translation: np.ndarray, frames: int, fixed: Sequence[int], start_known: bool) -> None:
        points = {point.frame: np.array([point.x, point.z]) for point in self.waypoints}
        if not start_known and 0 not in points and 0 not in fixed:
            points[0] = np.zeros(2)
        pelvis = translation[:, [0, 2]] + _PELVIS[[0, 2]]
        missing = {frame: wanted - pelvis[frame] for frame, wanted in points.items() if frame not in fixed}
        missing.update({frame: np.zeros(2) for frame in fixed})
        anchors = np.array(sorted(missing))
        translation[:, [0, 2]] += spline_matrix(anchors, frames) @ np.array([missing[f] for f in anchors])

    def _shift_root(self, local: np.ndarray, translation: np.ndarray, target: Target) -> None:
        """Move the root (in place, blended over TARGET_RAMP frames around the target's range) as far as the
        target's chain (grandparent, parent, joint) cannot reach it; for the pelvis, or a joint hanging from it, the
        root carries the joint onto the target alone. Done for every target before any IK, so that no root move
        undoes an arm or leg already placed."""
        weight, nearest = span_weights(target.first, target.last, len(translation), TARGET_RAMP)
        goal_position = np.asarray(target.position, dtype=np.float64)
        _, positions = pose(local, translation)
        chain = limb_chain(target.joint)
        if chain is None:
            translation += weight[:, None] * (goal_position - positions[nearest, target.joint])
            return
        grand, parent, joint = chain
        reach = IK_REACH * (bone_length(parent) + bone_length(joint))
        away = goal_position - positions[nearest, grand]
        distance = np.linalg.norm(away, axis=-1)
        excess = np.maximum(distance - reach, 0.0)[:, None] * away / np.maximum(distance, 1e-12)[:, None]
        translation += weight[:, None] * excess

    def _reach_target(self, local: np.ndarray, translation: np.ndarray, target: Target, held: np.ndarray) -> None:
        """Two-bone IK of the target's chain onto the target, blended over TARGET_RAMP frames around its range (the
        root already moved where the chain falls short), then its world rotation where one is asked for."""
        weight, nearest = span_weights(target.first, target.last, len(translation), TARGET_RAMP)
        goal_position = np.asarray(target.position, dtype=np.float64)
        chain = limb_chain(target.joint)
        if chain is not None:
            world, positions = pose(local, translation)
            goal = positions[:, chain[2]] + (goal_position - positions[nearest, chain[2]])
            two_bone_ik(local, world, positions, chain, goal, weight)
        if target.rotation is not None:
            world, _ = pose(local, translation)
            wanted = np.broadcast_to(np.asarray(target.rotation, dtype=np.float64), world[:, target.joint].shape)
            turned = blend_rotations(world[:, target.joint], wanted, weight)
            parent_world = world[:, skeleton.BODY_PARENTS[target.joint]] if target.joint else np.eye(3)
            local[:, target.joint] = np.swapaxes(parent_world, -1, -2) @ turned
        for side, (_, knee, ankle, foot) in enumerate(FEET):
            if target.joint in (knee, ankle, foot):
                held[:, side] = np.maximum(held[:, side], weight)


@dataclass
class ChannelGroup:
    """Some channels pinned at some sampled frames: ``values`` (anchors, channels) raw features at ``anchors``;
    ``spread`` (frames, frames): row f gives the share of each anchor's correction frame f takes (zero rows at the
    anchors, which are pinned exactly)."""

    channels: np.ndarray
    anchors: np.ndarray
    values: np.ndarray
    spread: np.ndarray

    @classmethod
    def spline(cls, channels, anchors, values, frames: int, pinned: dict[int, np.ndarray]) -> ChannelGroup:
        anchors, values = _with_pose_pins(channels, list(anchors), np.asarray(values, dtype=np.float64), pinned)
        basis = spline_matrix(anchors, frames)
        return cls(channels, anchors, values, _columns(basis, anchors, frames))

    @classmethod
    def ramp(cls, channels, anchors, values, frames: int, ramp: int) -> ChannelGroup:
        anchors = np.asarray(anchors)
        order = np.argsort(anchors)
        anchors, values = anchors[order], np.asarray(values, dtype=np.float64)[order]
        distance = np.abs(np.arange(frames)[:, None] - anchors[None, :])
        nearest = np.argmin(distance, axis=1)
        weight = smoothstep(1.0 - distance.min(axis=1) / (ramp + 1.0))
        basis = np.zeros((frames, len(anchors)))
        basis[np.arange(frames), nearest] = weight
        return cls(np.asarray(channels), anchors, values, _columns(basis, anchors, frames))


def _with_pose_pins(channels, anchors: list[int], values: np.ndarray, pinned: dict[int, np.ndarray]):
    """Whole-pose pins anchor a group too (their own value, which wins over a waypoint on the same frame), so the
    spread runs between them and the waypoints."""
    keep = [row for row, frame in enumerate(anchors) if frame not in pinned]
    anchors = [anchors[row] for row in keep] + sorted(pinned)
    values = np.concatenate(
        [values[keep], np.array([pinned[f][channels] for f in sorted(pinned)]).reshape(-1, len(channels))]
    )
    order = np.argsort(anchors)
    return np.asarray(anchors)[order], values[order]


def _columns(basis: np.ndarray, anchors: np.ndarray, frames: int) -> np.ndarray:
    """(frames, anchors) basis as a (frames, frames) matrix acting on per-frame corrections; anchor rows zero."""
    spread = np.zeros((frames, frames))
    spread[:, anchors] = basis
    spread[anchors] = 0.0
    return spread


# --- interpolation --------------------------------------------------------------------------------------------------


def spline_matrix(anchors: Sequence[int] | np.ndarray, frames: int) -> np.ndarray:
    """(frames, anchors): values at every frame of the cubic spline through values at ``anchors`` (sorted, distinct)
    with zero slope at the first and last, held constant beyond them. Linear in the values, so one matrix serves
    every channel: C2 between anchors, C1 where the hold begins (no jump in speed, so no pop)."""
    knots = np.asarray(anchors, dtype=np.float64)
    count = len(knots)
    if count == 1:
        return np.ones((frames, 1))
    h = np.diff(knots)
    # Second derivatives M solve A·M = B·y (clamped ends, slopes 0): the standard tridiagonal system, built dense.
    a = np.zeros((count, count))
    b = np.zeros((count, count))
    a[0, 0], a[0, 1] = h[0] / 3.0, h[0] / 6.0
    b[0, 0], b[0, 1] = -1.0 / h[0], 1.0 / h[0]
    a[-1, -1], a[-1, -2] = h[-1] / 3.0, h[-1] / 6.0
    b[-1, -1], b[-1, -2] = -1.0 / h[-1], 1.0 / h[-1]
    for i in range(1, count - 1):
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i - 1] / 6.0, (h[i - 1] + h[i]) / 3.0, h[i] / 6.0
        b[i, i - 1], b[i, i], b[i, i + 1] = 1.0 / h[i - 1], -1.0 / h[i - 1] - 1.0 / h[i], 1.0 / h[i]
    second = np.linalg.solve(a, b)  # (count, count): M = second @ y
    time = np.clip(np.arange(frames, dtype=np.float64), knots[0], knots[-1])
    segment = np.clip(np.searchsorted(knots, time, side="right") - 1, 0, count - 2)
    left, right = knots[segment], knots[segment + 1]
    width = right - left
    u = (right - time) / width
    v = (time - left) / width
    basis = np.zeros((frames, count))
    rows = np.arange(frames)
    basis[rows, segment] += u
    basis[rows, segment + 1] += v
    basis += ((u**3 - u) * width**2 / 6.0)[:, None] * second[segment]
    basis += ((v**3 - v) * width**2 / 6.0)[:, None] * second[segment + 1]
    return basis



def span_weights(first: int, last: int, frames: int, ramp: int) -> tuple[np.ndarray, np.ndarray]:
    """1 over [first, last], a smoothstep down to 0 over ``ramp`` frames beside it; and each frame's nearest frame
    of the span."""
    index = np.arange(frames)
    nearest = np.clip(index, first, last)
    distance = np.abs(index - nearest)
    return smoothstep(1.0 - distance / (ramp + 1.0)), nearest


# --- reading what the user asks -----------------------------------------------------------------------------------


def _tangents(waypoints: Sequence[Waypoint]) -> list[float | None]:
    """The path's direction (yaw) at each waypoint from its neighbours, None where it moves slower than
    FACING_MIN_SPEED (or a single waypoint)."""
    result: list[float | None] = []
    for index in range(len(waypoints)):
        before = waypoints[max(index - 1, 0)]
        after = waypoints[min(index + 1, len(waypoints) - 1)]
        if after.frame == before.frame:
            result.append(None)
            continue
        dx, dz = after.x - before.x, after.z - before.z
        speed = math.hypot(dx, dz) * FPS / (after.frame - before.frame)
        result.append(math.atan2(dx, dz) if speed > FACING_MIN_SPEED else None)
    return result


def path_warnings(waypoints: Sequence[Waypoint]) -> list[str]:
    """What a body can hardly do: a leg faster than MAX_SPEED, a turn faster than MAX_TURN_RATE or, at speed, with a
    centripetal acceleration above MAX_LATERAL_ACCELERATION."""
    notes = []
    tangents = _tangents(waypoints)
    for first, second in itertools.pairwise(waypoints):
        seconds = (second.frame - first.frame) / FPS
        speed = math.hypot(second.x - first.x, second.z - first.z) / seconds
        if speed > MAX_SPEED:
            notes.append(f"The path from frame {first.frame} to {second.frame} needs {speed:.1f} m/s, faster than a "
                         f"body runs ({MAX_SPEED:g} m/s); the motion is made, but expect sliding. Give it more frames.")
    for index in range(len(waypoints) - 1):
        first, second = waypoints[index], waypoints[index + 1]
        seconds = (second.frame - first.frame) / FPS
        yaw_a = first.yaw if first.yaw is not None else tangents[index]
        yaw_b = second.yaw if second.yaw is not None else tangents[index + 1]
        if yaw_a is None or yaw_b is None:
            continue
        rate = abs(wrap_angle(yaw_b - yaw_a)) / seconds
        speed = math.hypot(second.x - first.x, second.z - first.z) / seconds
        if rate > MAX_TURN_RATE or speed * rate > MAX_LATERAL_ACCELERATION:
            notes.append(f"The path turns {math.degrees(abs(wrap_angle(yaw_b - yaw_a))):.0f} degrees between frames "
                         f"{first.frame} and {second.frame} ({math.degrees(rate):.0f} degrees/s at {speed:.1f} m/s), "
                         "a turn a body cannot make; the motion is made, but the turn will look forced.")
    return notes


def read_path(path: str | Path) -> list[Waypoint]:
    """A JSON list of [frame, x, z] or [frame, x, z, yaw_degrees] rows; every problem named with its row."""
    path = Path(path)
    hint = "Write a JSON list like [[0, 0, 0], [30, 0, 1.2], [60, 0.5, 2.4, 30]]: frame, x, z (metres), optional yaw."
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad_request(f"The path file {path} does not exist.", hint) from None
    except (OSError, UnicodeDecodeError) as error:
        raise bad_request(f"Cannot read the path file {path}: {error}.", hint) from None
    try:
        rows = json.loads(text, parse_constant=lambda name: float("nan"))
    except json.JSONDecodeError as error:
        raise bad_request(f"The path file {path} is not JSON: {error.msg} (line {error.lineno}).", hint) from None
    return parse_path(rows, str(path))


def parse_path(rows, source: str = "the path") -> list[Waypoint]:
    hint = "Write a JSON list like [[0, 0, 0], [30, 0, 1.2], [60, 0.5, 2.4, 30]]: frame, x, z (metres), optional yaw."
    if not isinstance(rows, list) or not rows:
        raise bad_request(f"{source} is not a list of waypoints.", hint)
    waypoints = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) not in (3, 4) or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in row
        ):
            raise bad_request(f"Row {number} of {source} is {json.dumps(row)[:60]}, not 3 or 4 numbers.", hint)
        if not all(math.isfinite(value) for value in row):
            raise bad_request(f"Row {number} of {source} holds NaN or an infinite number.", hint)
        if row[0] != int(row[0]) or row[0] < 0:
            raise bad_request(f"Row {number} of {source} has frame {row[0]}; frames are whole numbers from 0.",
                              "Frames count model frames at 30 fps from the clip's first frame (0).")
        yaw = math.radians(row[3]) if len(row) == 4 else None
        waypoints.append(Waypoint(int(row[0]), float(row[1]), float(row[2]), yaw))
    return waypoints


def parse_target(spec: str) -> Target:
    """JOINT:FRAME:X,Y,Z or JOINT:FIRST-LAST:X,Y,Z, optionally :RX,RY,RZ (world rotation, degrees, XYZ Euler)."""
    hint = "Write JOINT:FRAME:X,Y,Z, e.g. right_wrist:45:0.3,1.2,0.5 (or right_wrist:40-60:… to hold it)."
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise bad_request(f"Target {spec!r} is not JOINT:FRAME:X,Y,Z.", hint)
    first, _, last = parts[1].partition("-")
    try:
        frames = (int(first), int(last) if last else None)
    except ValueError:
        raise bad_request(f"Target {spec!r}: {parts[1]!r} is not a frame or a range FIRST-LAST.", hint) from None
    position = _numbers(parts[2], spec, "position", hint)
    rotation = None
    if len(parts) == 4:
        rotation = _numbers(parts[3], spec, "rotation", "Give the rotation as three angles in degrees.")
    return target_from_fields(parts[0].strip(), *frames, position, rotation, spec)


def target_from_fields(joint: str, first: int, last: int | None, position, rotation=None, spec: str | None = None
                       ) -> Target:
    """A target from its parts (the protocol's fields, or a parsed --target): the joint by name, frames FIRST…LAST
    (``last`` None: one frame), a position in metres, a world rotation as X, Y, Z Euler degrees (applied X first)."""
    spec = spec or f"{joint}:{first}"
    hint = "Write JOINT:FRAME:X,Y,Z, e.g. right_wrist:45:0.3,1.2,0.5 (or right_wrist:40-60:… to hold it)."
    if joint not in JOINT_INDEX:
        raise bad_request(f"Target {spec!r}: there is no joint {joint!r}.",
                          f"Use one of: {', '.join(skeleton.BODY_JOINT_NAMES)}.")
    last = first if last is None else last
    if first < 0 or last < first:
        raise bad_request(f"Target {spec!r}: frames {first}-{last} are not a range from 0 upwards.", hint)
    position = np.asarray(position, dtype=np.float64)
    if position.shape != (3,) or not np.isfinite(position).all():
        raise bad_request(f"Target {spec!r}: the position is not three finite numbers.", hint)
    matrix = None
    if rotation is not None:
        angles = np.radians(np.asarray(rotation, dtype=np.float64))
        if angles.shape != (3,) or not np.isfinite(angles).all():
            raise bad_request(f"Target {spec!r}: the rotation is not three finite angles.", "Give X, Y, Z in degrees.")
        matrices = [axis_angle_matrix(np.eye(3)[axis], angles[axis]) for axis in range(3)]
        matrix = tuple(map(tuple, matrices[2] @ matrices[1] @ matrices[0]))
    x, y, z = (float(value) for value in position)
    return Target(JOINT_INDEX[joint], int(first), int(last), (x, y, z), matrix)


def _numbers(text: str, spec: str, what: str, hint: str) -> np.ndarray:
    try:
        values = np.array([float(value) for value in text.split(",")])
    except ValueError:
        raise bad_request(f"Target {spec!r}: the {what} {text!r} is not three numbers.", hint) from None
    if values.shape != (3,):
        raise bad_request(f"Target {spec!r}: the {what} {text!r} is not three numbers.", hint)
    if not np.isfinite(values).all():
        raise bad_request(f"Target {spec!r}: the {what} holds NaN or an infinite number.", hint)
    return values


def directions_from_arguments(path: str | None, targets: Sequence[str], facing: str = "path", start=None) -> Directions:
    """What ``hymotion generate --path FILE --target SPEC --facing F`` asks, read and checked for reach. ``start``:
    the continued clip's context (constraints.Pose), whose last frame is the clip's frame 0."""
    waypoints = read_path(path) if path else []
    return _checked(Directions(tuple(waypoints), tuple(parse_target(spec) for spec in targets), facing), start)


def directions_from_fields(path_rows, targets: Sequence[tuple], facing: str = "path", start=None) -> Directions:
    """What a ``generate`` request's constraint asks (``path`` rows, ``targets`` as (joint, first, last, position,
    rotation)), checked as the command line's."""
    waypoints = parse_path(path_rows, "constraint.path") if path_rows is not None else []
    return _checked(Directions(tuple(waypoints), tuple(target_from_fields(*fields) for fields in targets), facing),
                    start)


def _checked(directions: Directions, start) -> Directions:
    start_pelvis = None
    if start is not None:
        start_pelvis = skeleton.BODY_REST_POSITIONS[0] + np.asarray(start.translation[-1])
    directions.check_reach(start_pelvis)
    return directions
