"""Known frames inside a generation: continue from a pose, in-between two poses, loops, and timelines longer than
one clip. numpy only (no torch): the sampler in ``pipeline.py`` applies what this module prepares.

One mechanism serves all four. Some frames of the clip are *pinned*: their 201 features are built from a pose
(:func:`motion.encode_features`: translation, 22 rot6d and the 22 forward-kinematics positions, normalised with the
model's mean and std). After every Euler step the sampler puts each pinned frame back on the flow path the model was
trained on, ``x_t = t·x_known + (1 − t)·noise`` with the clip's own initial noise, so at t = 1 the pinned latent is
the known one. Frames within ``RAMP_FRAMES`` of a pinned frame get the same correction scaled by a ramp (offset
blending, as in an animation layer): the seam is not a hard cut, and the pinned frame itself is met exactly. A loop
pins its last frame to its first (the model's current estimate of it, step by step), horizontal root position left
free so the walk's drift stays. Decoding (smoothing) moves a pinned frame slightly; :func:`pin_poses` puts the
decoded pose back exactly with the same ramp.

The canonical frame. The training convention is not published. We assume the one of the AMASS/HumanML3D
processing that SMPL text-to-motion data sets share: a clip starts with the pelvis joint on the vertical axis
(horizontal origin) facing +Z, height kept. Evidence: the official joint template is a T-pose facing +Z (``skeleton``),
the official decoder adds the translation to the template pelvis, and the ComfyUI port makes the same assumption. The
pose a clip is conditioned on is moved there (:class:`Placement`), and the result is moved back so the new motion
continues the old one's position and heading exactly; the move is a rigid turn about the vertical axis plus a
horizontal shift, so it changes nothing about the motion itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..shared import skeleton
from ..shared.errors import bad_request
from ..shared.jobs import MAX_POSE_TRANSLATION, TRAIN_FRAMES, GenerationSettings, frames_for_duration
from ..shared.motion_files import read_motion_file
from ..shared.rotations import (
    continuous_quaternions,
    matrix_to_quaternion,
    matrix_to_rotation_vector,
    rotation_vector_matrix,
)
from ..shared.skeleton import FPS
from . import motion

if TYPE_CHECKING:  # imported for its annotation only, as the constraint's users build Directions themselves
    from .directing import Directions

RAMP_FRAMES = 6  # 0.2 s: long enough to hide a pop, short enough to leave the model's motion alone
MIN_LOOP_FRAMES = FPS  # a loop shorter than 1 s repeats too fast to read as a cycle
REST_PELVIS = skeleton.BODY_REST_POSITIONS[0]
_POSITIONS = 3 + 6 * skeleton.NUM_BODY_JOINTS  # first joint-position channel (135)
HORIZONTAL_CHANNELS = np.array(
    [0, 2] + [_POSITIONS + 3 * joint + axis for joint in range(skeleton.NUM_BODY_JOINTS) for axis in (0, 2)]
)
_FRAME_SUFFIX = re.compile(r"^(?P<path>.+?):(?P<frame>-?\d+)$")


@dataclass
class Pose:
    """Consecutive frames of motion in model space (Y-up, metres): root translation (N, 3), local quaternions
    (N, 22, 4) w, x, y, z, in skeleton.BODY_JOINT_NAMES order."""

    translation: np.ndarray
    rotations: np.ndarray

    def __post_init__(self) -> None:
        self.translation = np.asarray(self.translation, dtype=np.float64).reshape(-1, 3)
        self.rotations = np.asarray(self.rotations, dtype=np.float64).reshape(-1, skeleton.NUM_BODY_JOINTS, 4)
        if len(self.translation) != len(self.rotations) or not len(self.translation):
            raise bad_request(
                f"A pose needs as many translations as rotation sets, got {len(self.translation)} and "
                f"{len(self.rotations)}.", "Pass (N, 3) translations and (N, 22, 4) quaternions, N >= 1.",
            )
        if not (np.isfinite(self.translation).all() and np.isfinite(self.rotations).all()):
            raise bad_request("A pose holds NaN or infinite numbers.", "Pass finite translations and quaternions.")
        if np.abs(self.translation).max() > MAX_POSE_TRANSLATION:
            raise bad_request(
                f"A pose's root translation reaches {np.abs(self.translation).max():.3g} m; the limit is "
                f"{MAX_POSE_TRANSLATION:g} m from the origin.",
                "Translations are in metres; move the known frames near the origin (the motion keeps their heading).",
            )
        norms = np.linalg.norm(self.rotations, axis=-1)
        if (norms < 1e-6).any():
            raise bad_request("A pose holds a zero quaternion.", "Rotations are unit quaternions (w, x, y, z).")
        self.rotations = self.rotations / norms[..., None]

    @property
    def frames(self) -> int:
        return len(self.translation)

    def frame(self, index: int) -> "Pose":
        return Pose(self.translation[index], self.rotations[index])


@dataclass
class MotionConstraint:
    """What a generation must meet. ``start``: the clip begins with these frames (its first output frame is the
    last of them, earlier ones are context the model sees and the output leaves out). ``end``: one pose the clip
    ends in. ``loop``: the last frame equals the first (root height and rotations; the horizontal drift stays)."""

    start: Pose | None = None
    end: Pose | None = None
    loop: bool = False
    directions: Directions | None = None  # partial pins (a root path, joint targets)

    @property
    def context(self) -> int:
        """Frames sampled before the output's first frame."""
        return self.start.frames - 1 if self.start is not None else 0

    def check(self, durations: Sequence[float]) -> None:
        """Refuse what cannot be met, before any sampling."""
        if self.start is None and self.end is None and not self.loop and self.directions is None:
            raise bad_request("The constraint pins nothing.", "Give a start pose, an end pose or loop=True.")
        if self.loop and self.directions is not None:
            raise bad_request("A loop cannot also follow a path or meet targets (yet).",
                              "Drop --loop, or drop --path and --target.")
        if self.directions is not None:
            self.directions.check(durations, frames_for_duration)
        if self.end is not None and self.end.frames != 1:
            raise bad_request(f"The end pose must be one frame, got {self.end.frames}.", "Pass a single pose.")
        if self.loop and self.end is not None:
            raise bad_request("A loop ends where it starts, so it cannot also end at another pose.",
                              "Drop the end pose (--end-at), or drop the loop.")
        for duration in durations:
            frames = frames_for_duration(duration)
            if self.loop and frames < MIN_LOOP_FRAMES:
                raise bad_request(
                    f"A loop of {duration:g} s is shorter than {MIN_LOOP_FRAMES / FPS:g} s.",
                    "Make the loop at least 1 s long (--duration 1 or more).",
                )
            if frames + self.context > TRAIN_FRAMES:
                raise bad_request(
                    f"{self.context + 1} context frames and a {duration:g} s clip need {frames + self.context} "
                    f"frames; the model makes at most {TRAIN_FRAMES} ({TRAIN_FRAMES / FPS:g} s).",
                    f"Use fewer context frames or at most {(TRAIN_FRAMES - self.context) / FPS:.2f} s.",
                )


@dataclass(frozen=True)
class Placement:
    """A turn by ``yaw`` (radians) about the vertical axis through the origin, then a horizontal ``offset``:
    canonical frame -> world. The canonical frame of a pose has its pelvis joint on the vertical axis, facing +Z."""

    yaw: float = 0.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def of(cls, pose: Pose) -> "Placement":
        """The placement that carries ``pose``'s canonical version back onto it (its first frame decides)."""
        pelvis = REST_PELVIS + pose.translation[0]
        return cls(heading(pose.rotations[0]), (float(pelvis[0]), 0.0, float(pelvis[2])))

    def to_world(self, translation: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _turn_and_shift(translation, rotations, self.yaw, np.zeros(3), np.asarray(self.offset))

    def to_canonical(self, translation: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _turn_and_shift(translation, rotations, -self.yaw, -np.asarray(self.offset), np.zeros(3))

    def pose_to_canonical(self, pose: Pose) -> Pose:
        return Pose(*self.to_canonical(pose.translation, pose.rotations))


def heading(rotations: np.ndarray) -> float:
    """Yaw (radians, about +Y) of the body's forward axis: the pelvis's +Z (the rest pose faces +Z) projected on the
    ground. A body lying face up or down has no horizontal forward; then its head direction (pelvis +Y) decides."""
    root = skeleton.quaternion_to_matrix(np.asarray(rotations)[0])
    forward = root[:, 2]
    if math.hypot(forward[0], forward[2]) < 1e-3:
        forward = root[:, 1]
    return math.atan2(forward[0], forward[2])


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _turn_and_shift(
    translation: np.ndarray, rotations: np.ndarray, yaw: float, before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move whole bodies rigidly: pelvis p -> R(yaw)·(p + before) + after, root rotation -> R(yaw)·root."""
    turn = _yaw_matrix(yaw)
    pelvis = REST_PELVIS + np.asarray(translation, dtype=np.float64)
    moved = (pelvis + before) @ turn.T + after - REST_PELVIS
    rotations = np.array(rotations, dtype=np.float64)
    root = turn @ skeleton.quaternion_to_matrix(rotations[..., 0, :])
    rotations[..., 0, :] = matrix_to_quaternion(root)
    return moved, rotations


def ramp_weights(pinned: Sequence[int], frames: int, ramp: int = RAMP_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: how much of its nearest pinned frame's correction it takes (1 on pinned frames, falling linearly
    to 0 over ``ramp`` frames beside them) and which pinned frame that is."""
    pinned_frames = np.asarray(pinned, dtype=np.int64)
    if not len(pinned_frames):  # only partial pins (directing): no whole-pose ramp
        return np.zeros(frames), np.arange(frames)
    distance = np.abs(np.arange(frames)[:, None] - pinned_frames[None, :])
    nearest = pinned_frames[np.argmin(distance, axis=1)]
    weights = np.clip(1.0 - distance.min(axis=1) / (ramp + 1), 0.0, 1.0)
    return weights, nearest


@dataclass
class Pin:
    """One pinned frame of the sampled clip. ``features`` are normalised latents (None: the frame follows frame
    ``follows``, a loop's free start); ``channels`` marks the features that are pinned."""

    frame: int
    translation: np.ndarray | None
    rotations: np.ndarray | None
    features: np.ndarray | None
    channels: np.ndarray
    follows: int | None = None


@dataclass
class LatentTargets:
    """What the sampler puts back for one clip of ``len(weight)`` frames: ``target`` (L, 201) normalised latents,
    ``weight`` (L, 201) 1 = pinned (met exactly), between 0 and 1 = ramp, 0 = free; ``nearest`` (L,) the pinned frame
    whose correction each frame takes; ``follow`` (source, frame) when a frame's target is the sampler's running
    estimate of another frame (a loop), else None."""

    target: np.ndarray
    weight: np.ndarray
    nearest: np.ndarray
    follow: tuple[int, int] | None
    spread: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (channels, (L, L)): partial pins


@dataclass
class PreparedConstraint:
    """A constraint moved to the canonical frame and turned into pins, for one generation."""

    constraint: MotionConstraint
    placement: Placement
    start: Pose | None
    end: Pose | None
    mean: np.ndarray
    std: np.ndarray
    durations: list[float] = field(default_factory=list)

    @property
    def context(self) -> int:
        return self.constraint.context

    @property
    def align_ground(self) -> bool:
        """Only an unanchored clip (a loop alone) is moved to the ground; a pinned pose decides the height."""
        return self.start is None and self.end is None

    def sample_settings(self, settings: GenerationSettings) -> GenerationSettings:
        """The settings the sampler runs: each clip lengthened by the context frames."""
        lengths = [(frames_for_duration(d) + self.context) / FPS for d in settings.durations]
        return replace(settings, durations=lengths)

    def pins(self, frames: int) -> list[Pin]:
        """Pinned frames of a sampled clip of ``frames`` frames (context included)."""
        every = np.ones(motion.LATENT_DIM, dtype=bool)
        pins: list[Pin] = []
        if self.start is not None:
            for index in range(self.start.frames):
                pins.append(self._pin(index, self.start.frame(index), every))
        if self.end is not None:
            pins.append(self._pin(frames - 1, self.end, every))
        if self.constraint.loop:
            looped = np.ones(motion.LATENT_DIM, dtype=bool)
            looped[HORIZONTAL_CHANNELS] = False
            first = self.context
            if self.start is not None:
                pin = self._pin(frames - 1, self.start.frame(first), looped)
            else:
                pin = Pin(frames - 1, None, None, None, looped, follows=first)
            pins.append(pin)
        return pins

    def _pin(self, frame: int, pose: Pose, channels: np.ndarray) -> Pin:
        features = motion.normalize(motion.encode_features(pose.translation, pose.rotations), self.mean, self.std)
        return Pin(frame, pose.translation[0], pose.rotations[0], features[0], channels)

    def latent_targets(self, frames: int, length: int) -> LatentTargets:
        """Sampler tensors for a clip of ``frames`` frames in a batch padded to ``length``."""
        pins = self.pins(frames)
        weights, nearest = ramp_weights([pin.frame for pin in pins], frames)
        by_frame = {pin.frame: pin for pin in pins}
        target = np.zeros((length, motion.LATENT_DIM), dtype=np.float32)
        weight = np.zeros((length, motion.LATENT_DIM), dtype=np.float32)
        follow = None
        for frame in np.flatnonzero(weights > 0):
            pin = by_frame[int(nearest[frame])]
            weight[frame] = weights[frame] * pin.channels
        for pin in pins:
            if pin.features is not None:
                target[pin.frame] = pin.features
            else:
                assert pin.follows is not None  # a pin without features follows another frame (pins: a loop's end)
                follow = (pin.follows, pin.frame)
        nearest_padded = np.arange(length)
        nearest_padded[:frames] = nearest
        spread = self._partial_pins(pins, frames, length, target, weight)
        return LatentTargets(target, weight, nearest_padded, follow, spread)

    def _partial_pins(self, pins: list[Pin], frames: int, length: int, target: np.ndarray, weight: np.ndarray):
        """Directions' channel groups into ``target`` and ``weight`` (in place: 1 on their pinned frames, their own
        spread instead of the whole-pose ramp elsewhere); returns the spread matrices padded to ``length``."""
        if self.constraint.directions is None:
            return []
        whole: dict[int, np.ndarray] = {}
        for pin in pins:
            if pin.features is not None:
                assert pin.translation is not None and pin.rotations is not None  # _pin gives a pin all three
                whole[pin.frame] = motion.encode_features(pin.translation[None], pin.rotations[None])[0]
        groups = self.constraint.directions.latent_groups(frames, self.context, self.placement, whole)
        spread = []
        for group in groups:
            full = np.zeros((len(group.anchors), motion.LATENT_DIM))
            full[:, group.channels] = group.values
            normalised = motion.normalize(full, self.mean, self.std)[:, group.channels]
            channels = weight[:frames, group.channels]
            channels[channels < 1] = 0.0  # the group's own spread replaces the whole-pose ramp on its channels
            weight[:frames, group.channels] = channels
            for row, frame in enumerate(group.anchors):
                target[frame, group.channels] = normalised[row]
                weight[frame, group.channels] = 1.0
            matrix = np.zeros((length, length), dtype=np.float32)
            matrix[:frames, :frames] = group.spread
            matrix[list(whole)] = 0.0  # whole-pose pins stay exactly as they are
            spread.append((group.channels, matrix))
        return spread

    def finish(self, clip: motion.MotionClip, duration: float) -> motion.MotionClip:
        """A decoded clip (canonical frame, context included) with every pinned frame met exactly, moved back to
        the world, the context left out."""
        translation, rotations = pin_poses(clip.translation, clip.rotations, self.pins(clip.frames))
        translation, rotations = self.placement.to_world(translation, rotations)
        translation, rotations = translation[self.context :], continuous_quaternions(rotations[self.context :], axis=-3)
        if self.constraint.directions is not None:
            fixed = ([0] if self.start is not None else []) + ([len(translation) - 1] if self.end is not None else [])
            translation, rotations = self.constraint.directions.correct(
                translation, rotations, fixed, start_known=self.start is not None
            )
        return replace(
            clip, translation=translation.astype(np.float32), rotations=rotations.astype(np.float32),
            positions=skeleton.forward_kinematics(rotations, translation).astype(np.float32), duration=duration,
        )


def prepare(
    constraint: MotionConstraint, settings: GenerationSettings, mean: np.ndarray, std: np.ndarray
) -> PreparedConstraint:
    """Check ``constraint`` against the settings and move its poses to the canonical frame of its anchor (the
    clip's first output frame when a start is given, else the end pose; a loop alone stays where the model puts it)."""
    constraint.check(settings.durations)
    start, end = constraint.start, constraint.end
    if start is not None:
        placement = Placement.of(start.frame(start.frames - 1))
    elif end is not None:
        placement = Placement.of(end)
    else:
        placement = Placement()
    return PreparedConstraint(
        constraint, placement,
        placement.pose_to_canonical(start) if start is not None else None,
        placement.pose_to_canonical(end) if end is not None else None,
        mean, std, list(settings.durations),
    )


def pin_poses(translation: np.ndarray, rotations: np.ndarray, pins: list[Pin]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded (F, 3) translation and (F, 22, 4) rotations with each pinned frame set to its pose and the frames
    beside it moved by the same correction along the ramp (rotations: the fraction of the correcting rotation).
    A loop's last frame gets its first frame's rotations and root height."""
    translation = np.asarray(translation, dtype=np.float64).copy()
    matrices = skeleton.quaternion_to_matrix(rotations)
    frames = len(translation)
    weights, nearest = ramp_weights([pin.frame for pin in pins], frames)
    turns, shifts = {}, {}
    for pin in pins:
        source = pin.follows if pin.follows is not None else None
        if source is not None:
            wanted_rotations = skeleton.quaternion_to_matrix(rotations[source])
            wanted_translation = translation[source]
        else:
            assert pin.translation is not None and pin.rotations is not None  # a pin that follows none has a pose
            wanted_rotations = skeleton.quaternion_to_matrix(pin.rotations)
            wanted_translation = pin.translation
        turns[pin.frame] = matrix_to_rotation_vector(wanted_rotations @ np.swapaxes(matrices[pin.frame], -1, -2))
        axes = pin.channels[:3].astype(np.float64)
        shifts[pin.frame] = (wanted_translation - translation[pin.frame]) * axes
    for frame in np.flatnonzero(weights > 0):
        anchor = int(nearest[frame])
        turn = rotation_vector_matrix(weights[frame] * turns[anchor])
        matrices[frame] = turn @ matrices[frame]
        translation[frame] += weights[frame] * shifts[anchor]
    return translation, continuous_quaternions(matrix_to_quaternion(matrices), axis=-3)


# --- context files --------------------------------------------------------------------------------------------------


def split_frame(spec: str) -> tuple[Path, int | None]:
    """"clip.npz:12" -> (clip.npz, 12); "clip.npz" -> (clip.npz, None). A path ending in ':<digits>' that exists as a
    file is read as a path."""
    match = _FRAME_SUFFIX.match(spec)
    if match and not Path(spec).is_file():
        return Path(match["path"]), int(match["frame"])
    return Path(spec), None


def load_context(spec: str, frames: int = 1) -> Pose:
    """``frames`` consecutive frames of a motion file (.npz or .json as ``hymotion generate`` writes them) ending at
    FRAME (0-based, negative counts from the end; default the last), checked to be this model's skeleton."""
    path, frame = split_frame(spec)
    data = read_motion_file(path)
    translation, rotations, count = data.translation, data.rotations, data.frames
    last = count - 1 if frame is None else frame
    if not -count <= last < count:
        raise bad_request(f"{path} has frames 0-{count - 1}; frame {frame} is out of range.",
                          f"Pick a frame from 0 to {count - 1} (or -1 for the last), e.g. {path}:{count - 1}.")
    last %= count
    if frames < 1:
        raise bad_request(f"The number of context frames must be at least 1, got {frames}.", "Use e.g. 1 or 10.")
    if last + 1 < frames:
        raise bad_request(
            f"{frames} context frames ending at frame {last} of {path} would start before its first frame.",
            f"Use at most {last + 1} context frames, or a later frame.",
        )
    return Pose(translation[last + 1 - frames : last + 1], rotations[last + 1 - frames : last + 1])


def load_motion(path: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Every frame of a motion file (read and checked by hymotion.shared.motion_files): translation (F, 3) and
    rotations (F, 22, 4) exactly as stored (not renormalised), and its prompt ('' if none)."""
    data = read_motion_file(path)
    translation = np.asarray(data.translation, dtype=np.float64)
    rotations = np.asarray(data.rotations, dtype=np.float64)
    Pose(translation, rotations)  # refuses zero quaternions
    return translation, rotations, data.prompt
