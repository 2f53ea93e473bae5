"""Sparse keys in numpy only: a whole armature's dense animation reduced to few Bezier keys an animator can edit.

What the fit keeps, at every frame of the original (the frames it is given):

- every bone's world position (its head and its tail) within ``tolerance`` (metres; the operator takes cm), measured
  through forward kinematics of the whole rig (:func:`pose_matrices`), never per curve: a hip's 0.1 degree moves the
  toe 1.5 mm, a finger's 0.1 degree nothing you would see;
- every bone's world rotation within ``rotation_tolerance`` (degrees): the twist of a hand about its own axis moves no
  point of it;
- planted points (:func:`planted_points`: a head or tail near the clip's floor and slow over it, the way
  :mod:`.retarget_feet` finds contacts) within ``planted_fraction`` of the tolerance, so a foot that stands stays
  standing;
- a key at every turning point of a curve (:func:`turning_points`: a peak or trough of a curve that rises or falls by at
  least ``turn_degrees`` / ``turn_distance`` around it, and every kink, where the curve changes direction at once): the
  extreme of a swing, the apex of a jump, the deepest crouch, poses an animator recognises.

How: every key lies on the original curve (its value is the original pose at that frame). Its handles are a third of
the way to the neighbouring keys in time, so each segment is the cubic Hermite curve through its two keys with the
handles' slopes, and those slopes are fitted (:func:`least_squares_slopes`: one linear least-squares problem per bone)
so that the curves pass as close as they can to every frame of the original. At a kink the two handles get a slope
each (handle type FREE); everywhere else one slope is shared (ALIGNED), so an animator dragging one handle keeps the
curve smooth. Keys are added where the error (all the rig's bones at once, through FK) is worst, each at the bone
along the chain that contributes most there, until everything is within tolerance; then every key that is not a
turning point is tried for removal, and stays out where the whole rig is still within tolerance at every frame.

Shared key frames: by default every channel of one bone is keyed at the same frames (``share="BONE"``). An animator
edits a bone's pose, not one quaternion component: a key on w but not on x would make every edit of that rotation
reshape the other components' curves between keys, and Blender's own keying (I, Insert Keyframe) keys a bone's channels
together. Sharing one set of frames across the whole rig (``share="RIG"``, pose-to-pose columns in the Dope Sheet) is
offered too, but costs keys: the feet's stance detail then lands on the spine and the fingers (2-5 times the keys on
the benchmark's clips, docs/retarget-export.md). Per bone is the default because the fit reaches the tolerance with
far fewer keys and the Dope Sheet still shows each bone's poses as columns.

Conventions: Blender's. Armature-space rest matrices are ``bone.matrix_local``; a pose bone's basis is
T(location) R(rotation) S(scale) in its rest frame, and its pose matrix is parent pose @ (parent rest^-1 @ rest) @
basis (a bone that inherits rotation and scale, Blender's default; constraints and drivers are not seen). World is Z-up.
Rotation channels follow Blender's property layouts: rotation_quaternion (w, x, y, z, normalised before use, as
Blender does), rotation_euler (x, y, z in the bone's order), rotation_axis_angle (angle, x, y, z).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import EULER_ORDERS, axis_angle_matrix, quaternion_to_matrix

from .fcurve_eval import evaluate_fcurve
from .retarget_feet import ContactSettings, clean_mask, horizontal_speed, segments

# --- channels and the pose table ------------------------------------------------------------------------------------

# Each bone's pose is one row of 17 numbers: every property Blender's pose bone has, at these offsets.
PROPERTIES: dict[str, tuple[int, int]] = {
    "location": (0, 3),
    "rotation_quaternion": (3, 4),
    "rotation_euler": (7, 3),
    "rotation_axis_angle": (10, 4),
    "scale": (14, 3),
}
SLOTS = 17
REST_POSE = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1], dtype=np.float64)
ROTATION_MODES = ("QUATERNION", "AXIS_ANGLE", *EULER_ORDERS)
SHARE_MODES = ("BONE", "RIG")


@dataclass(frozen=True)
class Channel:
    """One animated F-curve of a pose bone: ``pose.bones[<bone>].<property>[index]``."""

    bone: int
    property: str
    index: int

    @builtins.property  # the field above is called property
    def slot(self) -> int:
        return PROPERTIES[self.property][0] + self.index


@dataclass(frozen=True)
class Rig:
    """An armature as the fit sees it: bones in an order where parents come first."""

    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for a root
    rest: np.ndarray  # (B, 4, 4) armature-space rest matrices (Blender's bone.matrix_local)
    lengths: np.ndarray  # (B,) head to tail
    rotation_modes: tuple[str, ...]  # per bone, Blender's rotation_mode
    world: np.ndarray = field(default_factory=lambda: np.eye(4))  # armature space to world, metres

    def __post_init__(self) -> None:
        count = len(self.names)
        if not (len(self.parents) == count == len(self.rotation_modes) == len(self.lengths) == len(self.rest)):
            raise bad_request("The rig's bone lists differ in length.", "Give one parent, rest matrix, length and "
                              "rotation mode per bone.")
        for bone, parent in enumerate(self.parents):
            if parent >= bone:
                raise bad_request(f"Bone '{self.names[bone]}' comes before its parent.",
                                  "List bones so that every parent comes before its children.")
        unknown = sorted({mode for mode in self.rotation_modes if mode not in ROTATION_MODES})
        if unknown:
            raise bad_request(
                f"Unknown rotation mode(s) {', '.join(unknown)}.", f"Use one of {', '.join(ROTATION_MODES)}."
            )

    def ancestors(self, bone: int) -> list[int]:
        """The bone and its ancestors, the bone first."""
        chain = [bone]
        while self.parents[chain[-1]] >= 0:
            chain.append(self.parents[chain[-1]])
        return chain


@dataclass(frozen=True)
class SparseSettings:
    """What the fit must keep (lengths in metres, angles in degrees); see the module docstring."""

    tolerance: float = 0.005
    rotation_tolerance: float = 1.0  # a 10 cm hand turned 1 degree moves its tip 1.7 mm, a third of the tolerance
    # Planted heads and tails keep 40 % of the tolerance (2 mm at the default): a foot-skate of a few millimetres over
    # a stance is what a viewer starts to see on a close-up, 5 mm is not kept planted.
    planted_fraction: float = 0.4
    share: str = "BONE"
    turn_degrees: float = 5.0  # a rotation curve's peak is a turning point where it rises and falls this much
    turn_distance: float = 0.02  # the same for location curves, metres in the world
    planted_height: float = 0.05  # a point this close to the clip's floor (the ball of a foot is 2-4 cm up) ...
    contacts: ContactSettings = ContactSettings()  # ... and slower than its speed_tolerance over min_frames is planted
    # A kink: a curve's frame-to-frame change jumps by this many times more than it changes at the frames beside it.
    kink_ratio: float = 2.5

    def checked(self) -> SparseSettings:
        for name in ("tolerance", "rotation_tolerance", "planted_fraction", "turn_degrees", "turn_distance"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise bad_request(f"The {name.replace('_', ' ')} is {value}; it must be above zero.",
                                  "Pass a positive tolerance, e.g. 0.5 cm and 1 degree.")
        if self.share not in SHARE_MODES:
            raise bad_request(f"Unknown key sharing {self.share!r}.", f"Use one of {', '.join(SHARE_MODES)}.")
        return self


@dataclass
class FittedCurve:
    """The keys of one channel: frames and values (co), handles (frame, value) and which keys have FREE handles."""

    channel: Channel
    co: np.ndarray  # (K, 2)
    handle_left: np.ndarray  # (K, 2)
    handle_right: np.ndarray  # (K, 2)
    free: np.ndarray  # (K,) bool: a kink, FREE handles; otherwise ALIGNED


@dataclass
class SparseFit:
    curves: list[FittedCurve]
    key_count: int
    dense_key_count: int  # one key per channel per frame
    max_position_error: float  # metres, over every head and tail and frame
    max_rotation_error: float  # degrees
    max_planted_error: float  # metres, over planted heads and tails
    planted: np.ndarray  # (F, B, 2) planted heads and tails of the original
    # per group (bone, or -1 for the rig) the frame indices kept as turning points
    turning_frames: dict[int, np.ndarray]


# --- forward kinematics ---------------------------------------------------------------------------------------------


def euler_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Blender Euler angles (..., 3: x, y, z) to rotations (..., 3, 3); the order names the axis applied first."""
    axes = np.eye(3)
    matrix = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3))
    for axis in order:
        index = "XYZ".index(axis)
        matrix = axis_angle_matrix(axes[index], angles[..., index]) @ matrix
    return matrix


def basis_rotations(rig: Rig, table: np.ndarray) -> np.ndarray:
    """Each bone's basis rotation (F, B, 3, 3) from its pose rows (F, B, 17) in its own rotation mode. A zero
    quaternion or axis is the identity, as in Blender."""
    frames, bones = table.shape[:2]
    rotations = np.empty((frames, bones, 3, 3))
    for mode in set(rig.rotation_modes):
        chosen = np.array([m == mode for m in rig.rotation_modes])
        rows = table[:, chosen]
        if mode == "QUATERNION":
            q = rows[..., 3:7]
            norm = np.linalg.norm(q, axis=-1, keepdims=True)
            q = np.where(norm > 1e-12, q / np.maximum(norm, 1e-300), [1.0, 0.0, 0.0, 0.0])
            rotations[:, chosen] = quaternion_to_matrix(q)
        elif mode == "AXIS_ANGLE":
            axis = rows[..., 11:14]
            norm = np.linalg.norm(axis, axis=-1, keepdims=True)
            unit = np.where(norm > 1e-12, axis / np.maximum(norm, 1e-300), [0.0, 1.0, 0.0])
            angle = np.where(norm[..., 0] > 1e-12, rows[..., 10], 0.0)
            rotations[:, chosen] = axis_angle_matrix(unit, angle)
        else:
            rotations[:, chosen] = euler_matrix(rows[..., 7:10], mode)
    return rotations


def rest_offsets(rig: Rig) -> np.ndarray:
    """Each bone's rest matrix relative to its parent's (B, 4, 4); a root's is its rest matrix in the world."""
    rest = np.asarray(rig.rest, dtype=np.float64)
    return np.array([rig.world @ rest[bone] if parent < 0 else np.linalg.solve(rest[parent], rest[bone])
                     for bone, parent in enumerate(rig.parents)])


def pose_matrices(rig: Rig, table: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """World matrices (F, B, 4, 4) of every pose bone for pose rows (F, B, 17) (`offsets`: :func:`rest_offsets`)."""
    offsets = rest_offsets(rig) if offsets is None else offsets
    frames, bones = table.shape[:2]
    basis = np.zeros((frames, bones, 4, 4))
    basis[..., :3, :3] = basis_rotations(rig, table) * table[:, :, None, 14:17]
    basis[..., :3, 3] = table[..., 0:3]
    basis[..., 3, 3] = 1.0
    world = np.empty_like(basis)
    for bone, parent in enumerate(rig.parents):
        start = offsets[bone] if parent < 0 else world[:, parent] @ offsets[bone]
        world[:, bone] = start @ basis[:, bone]
    return world


def bone_points(rig: Rig, matrices: np.ndarray) -> np.ndarray:
    """World heads and tails (F, B, 2, 3) from pose matrices (F, B, 4, 4)."""
    heads = matrices[..., :3, 3]
    tails = heads + matrices[..., :3, 1] * np.asarray(rig.lengths)[:, None]
    return np.stack([heads, tails], axis=-2)


def _unit_rotations(matrices: np.ndarray) -> np.ndarray:
    rotation = matrices[..., :3, :3]
    return rotation / np.maximum(np.linalg.norm(rotation, axis=-2, keepdims=True), 1e-300)


def rotation_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between rotations (..., 3, 3): 2 asin(|A - B| / sqrt 8), exact where arccos of the trace is not."""
    difference = np.linalg.norm(a - b, axis=(-2, -1)) / np.sqrt(8.0)
    return np.degrees(2.0 * np.arcsin(np.clip(difference, 0.0, 1.0)))


# --- what the original does: planted points, turning points, slopes -------------------------------------------------


def planted_points(points: np.ndarray, fps: float, settings: SparseSettings) -> np.ndarray:
    """Which heads and tails (F, B, 2) of world points (F, B, 2, 3) are planted: within ``planted_height`` of the
    clip's floor (its lowest point) and slower over the ground than the contact speed, for at least the contact's
    minimum frames (one-frame gaps closed), as :func:`.retarget_feet.detect_contacts` finds a foot's contacts."""
    frames = points.shape[0]
    floor = points[..., 2].min()
    low = points[..., 2] < floor + settings.planted_height
    planted = np.zeros(points.shape[:3], dtype=bool)
    for bone, end in zip(*np.nonzero(low.any(axis=0))):
        speed = horizontal_speed(points[:, bone, end], fps) if frames > 1 else np.zeros(frames)
        raw = low[:, bone, end] & (speed < settings.contacts.speed_tolerance)
        planted[:, bone, end] = clean_mask(raw, settings.contacts.min_frames)
    return planted


def turning_points(values: np.ndarray, swing: float) -> list[int]:
    """Peaks and troughs of a curve (F,) that it rises to and falls from by at least `swing` (a zigzag filter:
    ripples smaller than `swing` are no turning point); the ends are not listed."""
    count = values.shape[0]
    points: list[int] = []
    if count < 3:
        return points
    high = low = 0
    trend = 0
    pivot = 0
    for frame in range(1, count):
        value = values[frame]
        if trend == 0:
            high = frame if value > values[high] else high
            low = frame if value < values[low] else low
            if values[high] - values[low] >= swing:
                trend = 1 if high > low else -1
                first, pivot = (low, high) if trend == 1 else (high, low)
                if first > 0:
                    points.append(first)
            continue
        if trend * (value - values[pivot]) > 0:
            pivot = frame
        elif trend * (values[pivot] - value) >= swing:
            points.append(pivot)
            trend, pivot = -trend, frame
    return points


def kinks(values: np.ndarray, jump: float, ratio: float) -> np.ndarray:
    """Frames (indices) where a curve (F,) changes direction at once: its frame-to-frame change jumps by at least
    `jump` and by `ratio` times more than at the frames beside it."""
    if values.shape[0] < 5:
        return np.zeros(0, dtype=np.int64)
    second = np.abs(np.diff(values, 2))  # second[t - 1] belongs to frame t
    middle = second[1:-1]
    beside = np.maximum(second[:-2], second[2:])
    found = (middle >= jump) & (middle > ratio * beside)
    return np.flatnonzero(found) + 2


def slopes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample (F, C), the curves' slope (value per sample): central (five-point where there is room, three-point
    next to the ends, one-sided at the ends), and one-sided from the left and from the right (three-point), for
    kinks."""
    count = values.shape[0]
    central = np.zeros_like(values)
    backward = np.zeros_like(values)
    forward = np.zeros_like(values)
    if count < 2:
        return central, backward, forward
    step = np.diff(values, axis=0)
    backward[1:] = step
    forward[:-1] = step
    if count >= 3:
        backward[2:] = (3.0 * values[2:] - 4.0 * values[1:-1] + values[:-2]) / 2.0
        forward[:-2] = (-3.0 * values[:-2] + 4.0 * values[1:-1] - values[2:]) / 2.0
        central[1:-1] = (values[2:] - values[:-2]) / 2.0
    if count >= 5:
        central[2:-2] = (values[:-4] - 8.0 * values[1:-3] + 8.0 * values[3:-1] - values[4:]) / 12.0
    central[0], central[-1] = forward[0], backward[-1]
    backward[0], forward[-1] = forward[0], backward[-1]
    return central, backward, forward


def least_squares_slopes(values: np.ndarray, keys: np.ndarray, kinked: np.ndarray, guess_left: np.ndarray,
                         guess_right: np.ndarray, free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The slopes (value per sample) at the keys (K,, sample indices) that make the cubic Hermite curves through
    the keys (values fixed at the samples, handles at the thirds) closest to every sample of `values` (F, C) in least
    squares: one slope per key shared by both sides (aligned handles), two at a kink. Each segment's curve is linear in
    its end slopes, so this is one linear least-squares problem per channel, all channels sharing its matrix.

    Only the keys marked `free` (K,, all by default) are solved, over the segments that touch them; the others keep
    their guesses (K, C). A slope no sample decides (keys on neighbouring frames) stays at its guess too: a weak pull
    towards the guesses, a millionth of a sample's weight, settles it and changes nothing else measurably."""
    count = keys.size
    free = np.ones(count, dtype=bool) if free is None else np.asarray(free, dtype=bool)
    left_unknown = np.arange(count) + np.cumsum(kinked) - kinked
    right_unknown = left_unknown + kinked
    unknowns = int(right_unknown[-1]) + 1 if count else 0
    guess = np.zeros((unknowns, values.shape[1]))
    guess[left_unknown] = guess_left
    guess[right_unknown] = guess_right
    solved = np.zeros(unknowns, dtype=bool)
    solved[left_unknown[free]] = solved[right_unknown[free]] = True
    if count < 2 or not solved.any():
        return guess[left_unknown], guess[right_unknown]
    rows, targets = [], []
    for segment in range(count - 1):
        first, last = keys[segment], keys[segment + 1]
        start, end = right_unknown[segment], left_unknown[segment + 1]
        if last - first < 2 or not (solved[start] or solved[end]):
            continue
        span = float(last - first)
        u = (np.arange(first + 1, last) - first) / span
        row = np.zeros((u.size, unknowns))
        row[:, start] += span * (u**3 - 2 * u**2 + u)
        row[:, end] += span * (u**3 - u**2)
        rows.append(row)
        ends = (2 * u**3 - 3 * u**2 + 1)[:, None] * values[first] + (-2 * u**3 + 3 * u**2)[:, None] * values[last]
        targets.append(values[first + 1:last] - ends)
    weight = 1e-6
    normal = weight * np.eye(int(solved.sum()))
    right_side = weight * guess[solved]
    if rows:
        design, target = np.concatenate(rows), np.concatenate(targets)
        target = target - design[:, ~solved] @ guess[~solved]
        design = design[:, solved]
        normal += design.T @ design
        right_side += design.T @ target
    slopes = guess.copy()
    slopes[solved] = np.linalg.solve(normal, right_side)
    return slopes[left_unknown], slopes[right_unknown]


# --- the fit --------------------------------------------------------------------------------------------------------


def fit_sparse_keys(
    rig: Rig,
    frames: np.ndarray,
    channels: list[Channel],
    values: np.ndarray,
    settings: SparseSettings = SparseSettings(),
    *,
    fps: float = 30.0,
    static_pose: np.ndarray | None = None,
    fitted: np.ndarray | None = None,
) -> SparseFit:
    """Sparse Bezier keys for the channels' dense `values` (F, C) at `frames` (F,, evenly spaced, e.g. every frame)
    that keep the whole rig within the settings' tolerances at every one of those frames (module docstring).
    `static_pose` (B, 17) holds what the bones' unanimated properties are (Blender's rest pose where left out);
    `fitted` (C,) says which channels to reduce: the others keep their values and come back with no keys."""
    settings = settings.checked()
    frames, values = _checked_input(rig, frames, channels, values)
    fit = _Fit(rig, frames, channels, values, settings, fps, static_pose,
               np.ones(len(channels), dtype=bool) if fitted is None else np.asarray(fitted, dtype=bool))
    fit.add_keys_where_worst()
    fit.remove_needless_keys()
    fit.cache = fit.errors()  # from the pose table alone: what the result reports is never the running bookkeeping
    fit.add_keys_where_worst()
    return fit.result()


def _checked_input(rig: Rig, frames, channels, values) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if not channels:
        raise bad_request("There are no animated pose-bone channels to reduce.",
                          "Key the armature's bones first (or bake a clip onto it).")
    if frames.ndim != 1 or frames.size < 1 or values.shape != (frames.size, len(channels)):
        raise bad_request(f"Values have shape {values.shape}; expected ({frames.size}, {len(channels)}): one row per "
                          "frame, one column per channel.", "Sample every channel at every frame.")
    steps = np.diff(frames)
    if steps.size and (steps.min() <= 0 or np.ptp(steps) > 1e-6 * steps.max()):
        raise bad_request("The frames are not evenly spaced and increasing.", "Sample the curves at every frame.")
    if not (np.isfinite(frames).all() and np.isfinite(values).all()):
        raise bad_request("The animation holds NaN or infinite values.", "Fix or remove the broken F-curves first.")
    for channel in channels:
        if channel.property not in PROPERTIES or not 0 <= channel.index < PROPERTIES[channel.property][1]:
            raise bad_request(f"Channel {channel.property}[{channel.index}] is no pose-bone channel.",
                              f"Use one of {', '.join(PROPERTIES)} with an index in range.")
        if not 0 <= channel.bone < len(rig.names):
            raise bad_request(f"Channel of bone {channel.bone} names no bone of the rig.", "Pass the rig's bones.")
    return frames, values


class _Fit:
    """The state of one fit: the original, the keys so far, the curves they make, and the rig's pose and errors under
    those curves, kept up to date where a key changes (a key's slopes are refitted with its two neighbours on each
    side, so a change reaches no further than the segments around them)."""

    def __init__(self, rig, frames, channels, values, settings, fps, static_pose, fitted):
        self.rig, self.frames, self.channels, self.values, self.settings = rig, frames, channels, values, settings
        self.step = float(frames[1] - frames[0]) if frames.size > 1 else 1.0
        count, bones = frames.size, len(rig.names)
        static = REST_POSE if static_pose is None else np.asarray(static_pose, dtype=np.float64)
        self.original = np.array(np.broadcast_to(static, (count, bones, SLOTS)))
        for column, channel in enumerate(channels):
            self.original[:, channel.bone, channel.slot] = values[:, column]
        self.table = self.original.copy()
        self.offsets = rest_offsets(rig)
        matrices = pose_matrices(rig, self.original, self.offsets)
        self.points = bone_points(rig, matrices)
        self.rotations = _unit_rotations(matrices)
        self.planted = planted_points(self.points, fps, settings)
        self.point_tolerance = np.where(self.planted, settings.planted_fraction * settings.tolerance,
                                        settings.tolerance)
        self.scale = abs(np.linalg.det(np.asarray(rig.world, dtype=np.float64)[:3, :3])) ** (1.0 / 3.0)
        self.slopes = slopes(values)  # per sample

        self.fitted = [column for column in range(len(channels)) if fitted[column]]
        group_of = (lambda channel: channel.bone) if settings.share == "BONE" else (lambda channel: -1)
        self.groups: dict[int, list[int]] = {}
        for column in self.fitted:
            self.groups.setdefault(group_of(channels[column]), []).append(column)
        self.group_of_bone = {channels[column].bone: group_of(channels[column]) for column in self.fitted}
        self.subtree = {group: self._descendants({channels[c].bone for c in columns})
                        for group, columns in self.groups.items()}
        self.keys, self.free, self.turning, self.left, self.right = {}, {}, {}, {}, {}
        for group, columns in self.groups.items():
            keys = np.zeros(count, dtype=bool)
            keys[[0, -1]] = True
            free = np.zeros(count, dtype=bool)
            for column in columns:
                swing, jump = self._thresholds(channels[column])
                keys[turning_points(values[:, column], swing)] = True
                kinked = kinks(values[:, column], jump, settings.kink_ratio)
                keys[kinked] = True
                free[kinked] = True
            self.keys[group], self.free[group] = keys, free
            self.turning[group] = keys.copy()
            self.left[group], self.right[group] = self._guess(group, np.arange(count))
            self._solve(group, None)
            self._put_curves(group, 0, count - 1)
        self.matrices = pose_matrices(rig, self.table, self.offsets)
        self.cache = self._errors_of(self.matrices, slice(0, count), slice(None))

    def _descendants(self, bones: set[int]) -> np.ndarray:
        inside = np.zeros(len(self.rig.names), dtype=bool)
        for bone, parent in enumerate(self.rig.parents):
            inside[bone] = bone in bones or (parent >= 0 and inside[parent])
        return np.flatnonzero(inside)

    def _thresholds(self, channel: Channel) -> tuple[float, float]:
        """A channel's turning swing and kink jump in its own units: a quaternion component moves about half the
        angle turned (sin of the half angle); locations are scaled to the world."""
        settings = self.settings
        turn, tolerance = np.radians(settings.turn_degrees), np.radians(settings.rotation_tolerance)
        if channel.property == "rotation_quaternion":
            return turn / 2.0, tolerance / 2.0
        if channel.property == "location":
            return settings.turn_distance / self.scale, settings.tolerance / self.scale
        return turn, tolerance

    def _guess(self, group: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The original's slopes (per sample) at frames `index` for the group's channels: one-sided at kinks."""
        columns = self.groups[group]
        central, backward, forward = (slope[index][:, columns] for slope in self.slopes)
        kinked = self.free[group][index][:, None]
        return np.where(kinked, backward, central), np.where(kinked, forward, central)

    def _solve(self, group: int, free_frames: np.ndarray | None) -> None:
        """Refit the slopes of the group's keys at `free_frames` (all keys where None), the others kept."""
        index = np.flatnonzero(self.keys[group])
        free = np.ones(index.size, dtype=bool) if free_frames is None else np.isin(index, free_frames)
        columns = self.groups[group]
        left, right = least_squares_slopes(self.values[:, columns], index, self.free[group][index],
                                           self.left[group][index], self.right[group][index], free)
        self.left[group][index], self.right[group][index] = left, right

    def curve(self, column: int, group: int):
        """Keys of a channel of `group` at its key frames: co and handles (a third of the way to each neighbour, along
        the fitted slopes: one-sided at a kink), and which keys are kinks."""
        index = np.flatnonzero(self.keys[group])
        x = self.frames[index]
        y = self.values[index, column]
        row = self.groups[group].index(column)
        left_slope = self.left[group][index, row] / self.step
        right_slope = self.right[group][index, row] / self.step
        gaps = np.diff(x) / 3.0
        before = np.concatenate([gaps[:1], gaps]) if gaps.size else np.ones(1)
        after = np.concatenate([gaps, gaps[-1:]]) if gaps.size else np.ones(1)
        left = np.stack([x - before, y - left_slope * before], axis=-1)
        right = np.stack([x + after, y + right_slope * after], axis=-1)
        return np.stack([x, y], axis=-1), left, right, self.free[group][index]

    def _put_curves(self, group: int, first: int, last: int) -> None:
        """Put the group's curves into the pose table over frames first..last (indices, inclusive)."""
        window = slice(first, last + 1)
        for column in self.groups[group]:
            co, left, right, _ = self.curve(column, group)
            channel = self.channels[column]
            self.table[window, channel.bone, channel.slot] = evaluate_fcurve(
                co, left, right, "BEZIER", self.frames[window])

    def _errors_of(self, matrices: np.ndarray, window: slice, bones) -> np.ndarray:
        """Per frame and bone (W, b, 3) the head's and tail's distance and the rotation's angle from the original,
        each over its own tolerance (1 is at the tolerance), for pose matrices of frames `window`, bones `bones`."""
        rig = self.rig
        lengths = np.asarray(rig.lengths)[bones]
        heads = matrices[..., :3, 3]
        points = np.stack([heads, heads + matrices[..., :3, 1] * lengths[:, None]], axis=-2)
        distance = np.linalg.norm(points - self.points[window][:, bones], axis=-1)
        angle = rotation_angles(_unit_rotations(matrices), self.rotations[window][:, bones])
        return np.concatenate([distance / self.point_tolerance[window][:, bones],
                               (angle / self.settings.rotation_tolerance)[..., None]], axis=-1)

    def errors(self) -> np.ndarray:
        """The errors (F, B, 3; :meth:`_errors_of`) of the whole rig, recomputed from the pose table alone."""
        matrices = pose_matrices(self.rig, self.table, self.offsets)
        return self._errors_of(matrices, slice(None), slice(None))

    def _refresh(self, group: int, first: int, last: int) -> None:
        """Recompute the pose and the errors of the group's bones and all below them over frames first..last."""
        window = slice(first, last + 1)
        table = self.table[window]
        bones = self.subtree[group]
        rotations = basis_rotations(self.rig, table)
        for bone in bones:
            basis = np.zeros((table.shape[0], 4, 4))
            basis[:, :3, :3] = rotations[:, bone] * table[:, bone, None, 14:17]
            basis[:, :3, 3] = table[:, bone, 0:3]
            basis[:, 3, 3] = 1.0
            parent = self.rig.parents[bone]
            start = self.offsets[bone] if parent < 0 else self.matrices[window, parent] @ self.offsets[bone]
            self.matrices[window, bone] = start @ basis
        self.cache[window, bones] = self._errors_of(self.matrices[window][:, bones], window, bones)

    def change(self, group: int, frame: int, keyed: bool) -> tuple:
        """Key (or unkey) `frame` in the group, refit the two keys on each side of it (and its own) and bring the pose
        and errors up to date where that changes the curves. Returns what :meth:`undo` needs."""
        keys = self.keys[group]
        index = np.flatnonzero(keys | (np.arange(keys.size) == frame))  # the keys with `frame` among them
        position = int(np.searchsorted(index, frame))
        refitted = index[max(position - 2, 0):position + 3]  # the curves change from the key before these ...
        first, last = int(index[max(position - 3, 0)]), int(index[min(position + 3, index.size - 1)])  # ... to after
        window = slice(first, last + 1)
        saved = (group, first, last, keys.copy(), self.left[group].copy(), self.right[group].copy(),
                 self.table[window].copy(), self.matrices[window].copy(), self.cache[window].copy())
        keys[frame] = keyed
        if keyed:
            guess = self._guess(group, np.array([frame]))
            self.left[group][frame], self.right[group][frame] = guess[0][0], guess[1][0]
        self._solve(group, refitted)
        self._put_curves(group, first, last)
        self._refresh(group, first, last)
        return saved

    def undo(self, saved: tuple) -> None:
        group, first, last, keys, left, right, table, matrices, cache = saved
        window = slice(first, last + 1)
        self.keys[group], self.left[group], self.right[group] = keys, left, right
        self.table[window], self.matrices[window], self.cache[window] = table, matrices, cache

    def _culprit(self, frame: int, bone: int, part: int) -> int | None:
        """The group to key at `frame` for an error of `bone` (part 0 head, 1 tail, 2 rotation): along its chain, the
        bone whose own error there moves that point most (its angle times its distance to the point, plus its
        location error), among bones not keyed at that frame."""
        chain = [a for a in self.rig.ancestors(bone)
                 if a in self.group_of_bone and not self.keys[self.group_of_bone[a]][frame]]
        if not chain:
            return None
        rows = slice(frame, frame + 1)
        fitted = basis_rotations(self.rig, self.table[rows])[0]
        original = basis_rotations(self.rig, self.original[rows])[0]
        target = self.points[frame, bone, min(part, 1)]
        best, score = None, -1.0
        for ancestor in chain:
            angle = np.radians(rotation_angles(fitted[ancestor], original[ancestor]))
            lever = 1.0 if part == 2 else np.linalg.norm(target - self.points[frame, ancestor, 0])
            moved = self.scale * np.linalg.norm(self.table[frame, ancestor, :3] - self.original[frame, ancestor, :3])
            grown = np.linalg.norm(self.table[frame, ancestor, 14:] - self.original[frame, ancestor, 14:]) * lever
            value = angle * lever + (0.0 if part == 2 else moved) + grown
            if value > score:
                best, score = ancestor, value
        return self.group_of_bone[best]

    def add_keys_where_worst(self) -> None:
        """Key the worst frame of every run of frames out of tolerance, at the chain's bone that errs most there,
        until no frame is out of tolerance."""
        for _ in range(self.frames.size * max(len(self.groups), 1)):
            worst = self.cache.max(axis=(1, 2))
            if worst.max() <= 1.0:
                return
            added = False
            for start, stop in segments(worst > 1.0):
                frame = start + int(np.argmax(worst[start:stop]))
                bone, part = np.unravel_index(int(np.argmax(self.cache[frame])), self.cache.shape[1:])
                group = self._culprit(frame, int(bone), int(part))
                if group is None:
                    continue
                self.change(group, frame, True)
                added = True
            if not added:
                return  # every bone on the erring chains is keyed there: the error is not the keys' (cannot happen)

    def remove_needless_keys(self) -> None:
        """Try every key that is not a turning point, end or kink once, and leave it out where the rig stays within
        tolerance without it (only the frames around it change: everywhere else the errors are as they were)."""
        for group in self.groups:
            for frame in np.flatnonzero(self.keys[group] & ~self.turning[group]):
                saved = self.change(group, int(frame), False)
                if self.cache[saved[1]:saved[2] + 1].max() > 1.0:
                    self.undo(saved)

    def result(self) -> SparseFit:
        errors = self.errors()
        distance = errors[..., :2] * self.point_tolerance
        curves = []
        for column in self.fitted:
            group = self.group_of_bone[self.channels[column].bone]
            co, left, right, free = self.curve(column, group)
            curves.append(FittedCurve(self.channels[column], co, left, right, free))
        return SparseFit(
            curves=curves,
            key_count=sum(curve.co.shape[0] for curve in curves),
            dense_key_count=len(self.fitted) * self.frames.size,
            max_position_error=float(distance.max()),
            max_rotation_error=float(errors[..., 2].max() * self.settings.rotation_tolerance),
            max_planted_error=float(distance[self.planted].max()) if self.planted.any() else 0.0,
            planted=self.planted,
            turning_frames={group: np.flatnonzero(keys) for group, keys in self.turning.items()},
        )
