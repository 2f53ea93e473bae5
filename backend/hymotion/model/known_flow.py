"""A test model whose answer is known: a velocity field that carries any noise to one given smooth motion.

Random weights give noise (joints move about 0.9 m a frame), so seams and pops cannot be judged on them. This model
stands in for the DiT inside the real :class:`~hymotion.pipeline.MotionPipeline` (same sampler, CFG, pins, decoder)
and predicts the straight flow-matching velocity towards a fixed target latent x₁:

    v(x, t) = (x₁ − x) / (1 − t)

Along the official Euler schedule (t = k/steps) every step lands on the straight path t·x₁ + (1 − t)·noise, and the
last step (dt = 1 − t) lands on x₁ itself, whatever the seed: unconstrained sampling gives the target motion exactly
(up to float32 rounding), and a constrained result can be judged for how far it leaves that motion and how smooth it
is where the constraints act. The text is ignored (the tiny text encoder keeps every text path of the pipeline
running). ``load_pipeline("known-walk")`` (also ``known-jump``, ``known-turn``) builds it.

The target motions are data built here by small functions of time: 12 s (360 frames) at 30 fps, every channel a sum
of sines and smooth ramps (C-infinity), starting with the pelvis on the horizontal origin facing +Z, the canonical
frame of ``constraints``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..pipeline import motion
from ..shared import skeleton
from ..shared.jobs import TRAIN_FRAMES
from ..shared.rotations import matrix_to_quaternion
from ..shared.skeleton import FPS
from .loading import LoadedModel, PipelineSettings
from .tiny import TINY_DIT_CONFIG

KNOWN_MODEL_PREFIX = "known-"
# How close to t = 1 the velocity may be asked for: the Euler schedule never evaluates at t = 1 (its last step starts
# at 1 − 1/steps), so this only keeps a stray call finite.
_LAST_T = 1e-6
_JOINT = {name: index for index, name in enumerate(skeleton.BODY_JOINT_NAMES)}


# --- target motions -------------------------------------------------------------------------------------------------


def _axis_angle(axis: str, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (F, 3, 3) by ``angles`` radians about the body axis x, y or z."""
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones_like(angles), np.zeros_like(angles)
    rows = {
        "x": [one, zero, zero, zero, c, -s, zero, s, c],
        "y": [c, zero, s, zero, one, zero, -s, zero, c],
        "z": [c, -s, zero, s, c, zero, zero, zero, one],
    }[axis]
    return np.stack(rows, axis=-1).reshape(angles.shape + (3, 3))


def _smooth_step(t: np.ndarray, start: float, stop: float) -> np.ndarray:
    """0 before ``start``, 1 after ``stop``, a C-infinity blend between (so no derivative jumps)."""
    x = np.clip((t - start) / (stop - start), 0.0, 1.0)
    f = np.where(x > 0, np.exp(-1.0 / np.maximum(x, 1e-12)), 0.0)
    g = np.where(x < 1, np.exp(-1.0 / np.maximum(1.0 - x, 1e-12)), 0.0)
    return f / (f + g)


@dataclass(frozen=True)
class TargetMotion:
    """Root translation (F, 3) and local quaternions (F, 22, 4), model space, 30 fps."""

    name: str
    translation: np.ndarray
    rotations: np.ndarray


SOFT_GROUND = 0.01  # m: the pelvis height keeps a soft minimum of the two soles on the floor, blended over this
SWING_SHARE = 0.4  # of a stride a leg swings (60 % on the ground: 10 % of double support at each change of feet)
_PROFILE_SAMPLES = 720
_PROFILE_SMOOTHING = 0.05  # of a stride (50 ms at one stride a second): a Gaussian that rounds the profile's corners


@functools.lru_cache(maxsize=1)
def _leg_profiles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over one stride (phase 0 … 1, a leg's swing first): the leg's forward angle (−1 … 1; it sweeps back at one
    steady rate over the stance, so the standing foot moves steadily under the body and the pelvis need not jerk when
    the feet change), its knee lift (0 on the ground, 1 mid-swing) and its stance share (1 on the ground, 0 in the
    air); all smoothed by a periodic Gaussian."""
    u = np.arange(_PROFILE_SAMPLES) / _PROFILE_SAMPLES
    swing = u < SWING_SHARE
    angle = np.where(swing, -1.0 + 2.0 * u / SWING_SHARE, 1.0 - 2.0 * (u - SWING_SHARE) / (1.0 - SWING_SHARE))
    lift = np.where(swing, np.sin(math.pi * u / SWING_SHARE) ** 2, 0.0)
    standing = np.where(swing, 0.0, 1.0)
    offsets = np.minimum(u, 1.0 - u)
    kernel = np.exp(-0.5 * (offsets / _PROFILE_SMOOTHING) ** 2)
    kernel /= kernel.sum()

    def smooth(values: np.ndarray) -> np.ndarray:
        return np.real(np.fft.ifft(np.fft.fft(values) * np.fft.fft(kernel)))

    return smooth(angle), smooth(lift), np.maximum(smooth(standing), 1e-3)


def _profile(values: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """A stride profile read at ``phase`` (strides, any real number), linearly between its samples."""
    position = (phase % 1.0) * _PROFILE_SAMPLES
    below = np.floor(position).astype(int) % _PROFILE_SAMPLES
    share = position - np.floor(position)
    return (1.0 - share) * values[below] + share * values[(below + 1) % _PROFILE_SAMPLES]


def _gait(time: np.ndarray, cadence: float, swing: np.ndarray) -> dict[int, np.ndarray]:
    """Local rotation matrices of a stepping body (legs, arms, slight torso counter-turn); arms down from the T-pose.
    ``swing``: the hip's forward angle amplitude (radians) per frame."""
    angle, lift, stance = _leg_profiles()
    stride = cadence * time
    joints: dict[int, np.ndarray] = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        own = stride + (0.0 if sign > 0 else 0.5)  # the right leg half a stride behind the left
        leg = _profile(angle, own)  # > 0: this leg is ahead of the body
        # Hip flexion is a negative turn about x (the leg points down, -Y; -x turns it towards +Z).
        joints[_JOINT[f"{side}_hip"]] = _axis_angle("x", -swing * leg)
        # The knee bends (positive about x: the shin goes back) while the leg swings, so the foot clears the floor.
        knee = 0.05 + 2.2 * swing * _profile(lift, own)
        joints[_JOINT[f"{side}_knee"]] = _axis_angle("x", knee)
        # The ankle keeps the standing foot flat (hip, knee and ankle turn about parallel axes, so the foot's pitch is
        # their sum), and lets it point a little in the air; blended by the stance share, so it stays smooth.
        standing = _profile(stance, own)
        joints[_JOINT[f"{side}_ankle"]] = _axis_angle(
            "x", standing * (swing * leg - knee) + (1 - standing) * 0.3 * swing * leg
        )
        # Arms swing against their leg; the shoulder lowers the T-pose arm by about 75 degrees.
        down = _axis_angle("z", -sign * np.full_like(time, math.radians(75.0)))
        arm = np.sin(2.0 * math.pi * own)
        joints[_JOINT[f"{side}_shoulder"]] = down @ _axis_angle("y", -sign * 0.5 * swing * arm)
        joints[_JOINT[f"{side}_elbow"]] = _axis_angle("y", sign * (0.35 + 0.1 * arm))
    joints[_JOINT["spine3"]] = _axis_angle("y", 0.08 * swing / 0.45 * np.sin(2.0 * math.pi * stride))
    return joints


def _assemble(name: str, time: np.ndarray, pelvis: np.ndarray, yaw: np.ndarray, joints: dict[int, np.ndarray],
              pitch: np.ndarray | None = None) -> TargetMotion:
    """Quaternions from local matrices (identity where none is given), root = yaw (then pitch); the translation
    places the pelvis joint at ``pelvis`` (F, 3)."""
    frames = len(time)
    matrices = np.broadcast_to(np.eye(3), (frames, skeleton.NUM_BODY_JOINTS, 3, 3)).copy()
    for joint, matrix in joints.items():
        matrices[:, joint] = matrix
    root = _axis_angle("y", yaw)
    if pitch is not None:
        root = root @ _axis_angle("x", pitch)
    matrices[:, 0] = root
    translation = pelvis - skeleton.BODY_REST_POSITIONS[0]
    return TargetMotion(name, translation, matrix_to_quaternion(matrices))


def _planted(name: str, time: np.ndarray, yaw: np.ndarray, joints: dict[int, np.ndarray], cadence: float = 1.0,
             ) -> TargetMotion:
    """A stepping body whose root goes where its standing foot pushes it: with the pelvis held at the origin, each
    foot's sole height and horizontal velocity are computed; the pelvis keeps the standing sole on the floor and moves
    against the standing foot's velocity, so that foot stays planted. Which foot stands is the gait's own stance
    share (smoothed, see :func:`_leg_profiles`), so every channel stays smooth where the feet change."""
    from ..pipeline.motion import ANKLE_SOLE_GAP, FOOT_SOLE_GAP

    still = _assemble(name, time, np.zeros((len(time), 3)), yaw, joints)
    positions = skeleton.forward_kinematics(still.rotations, still.translation)
    stance = _leg_profiles()[2]
    stride = cadence * time
    share = np.stack([_profile(stance, stride), _profile(stance, stride + 0.5)], axis=-1)
    share /= share.sum(axis=-1, keepdims=True)
    soles, velocity = [], []
    for ankle, foot in ((_JOINT["left_ankle"], _JOINT["left_foot"]), (_JOINT["right_ankle"], _JOINT["right_foot"])):
        soles.append(np.minimum(positions[:, ankle, 1] - ANKLE_SOLE_GAP, positions[:, foot, 1] - FOOT_SOLE_GAP))
        velocity.append(np.gradient(positions[:, ankle], axis=0))
    step = -(share[..., None] * np.stack(velocity, axis=1)).sum(axis=1)
    pelvis = np.cumsum(step, axis=0) - step[0]
    soles = np.stack(soles, axis=-1)
    lowest = soles.min(axis=-1, keepdims=True)  # the lower sole on the floor: a soft minimum, so the height is smooth
    pelvis[:, 1] = -(lowest[:, 0] - SOFT_GROUND * np.log(np.exp(-(soles - lowest) / SOFT_GROUND).sum(axis=-1)))
    return _assemble(name, time, pelvis, yaw, joints)


def walk(frames: int = TRAIN_FRAMES) -> TargetMotion:
    """A straight walk along +Z, one stride (two steps) a second, setting off from standing over the first 0.8 s;
    the feet planted in turn (see :func:`_planted`), the pelvis turning slightly with the steps."""
    time = np.arange(frames) / FPS
    start = _smooth_step(time, 0.0, 0.8)
    joints = _gait(time, 1.0, 0.45 * start)
    return _planted("walk", time, 0.05 * np.sin(2.0 * math.pi * time) * start, joints)


def turn(frames: int = TRAIN_FRAMES) -> TargetMotion:
    """The walk, turning left at 20 degrees a second once it is under way."""
    time = np.arange(frames) / FPS
    start = _smooth_step(time, 0.0, 0.8)
    heading = np.cumsum(math.radians(20.0) * _smooth_step(time, 0.5, 1.5)) / FPS
    joints = _gait(time, 1.0, 0.4 * start)
    return _planted("turn", time, heading, joints)


def jump(frames: int = TRAIN_FRAMES) -> TargetMotion:
    """Jumps in place, one every 1.5 s: crouch, rise 25 cm, land; every channel smooth (sines of the phase)."""
    time = np.arange(frames) / FPS
    phase = 2.0 * math.pi * time / 1.5
    lift = 0.5 - 0.5 * np.cos(phase)  # 0 standing, 1 at the top
    crouch = 0.5 - 0.5 * np.cos(2.0 * phase + math.pi / 2)
    pelvis = np.stack(
        [np.zeros_like(time), 0.92 + 0.25 * lift**2 - 0.12 * crouch * (1 - lift), np.zeros_like(time)], -1
    )
    bend = 0.6 * crouch * (1 - lift)
    joints = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        joints[_JOINT[f"{side}_hip"]] = _axis_angle("x", -bend)
        joints[_JOINT[f"{side}_knee"]] = _axis_angle("x", 2.0 * bend)
        joints[_JOINT[f"{side}_ankle"]] = _axis_angle("x", -bend)
        joints[_JOINT[f"{side}_shoulder"]] = _axis_angle("z", -sign * (math.radians(75) - 1.2 * lift))
    return _assemble("jump", time, pelvis, np.zeros_like(time), joints, pitch=0.3 * bend)


TARGETS = {"walk": walk, "turn": turn, "jump": jump}


def target_motion(name: str) -> TargetMotion:
    if name not in TARGETS:
        raise ValueError(f"unknown known-flow target {name!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[name]()


# --- the model ------------------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """What the pipeline keeps per batch for the DiT (the CUDA graph updates these in place); unused here."""

    joint_mask: torch.Tensor
    refiner_mask: torch.Tensor
    text_valid: torch.Tensor


@dataclass(frozen=True)
class _Config:
    input_dim: int = motion.LATENT_DIM
    ctxt_input_dim: int = TINY_DIT_CONFIG["ctxt_input_dim"]
    vtxt_input_dim: int = TINY_DIT_CONFIG["vtxt_input_dim"]


class KnownFlowTransformer(torch.nn.Module):
    """Drop-in for the DiT: ``forward(x, ctxt, vtxt, t, layout)`` returns (x₁ − x) / (1 − t) for every row."""

    def __init__(self, target: np.ndarray) -> None:
        super().__init__()
        self.config = _Config()
        self.register_buffer("target", torch.as_tensor(np.asarray(target, dtype=np.float32)))

    @property
    def dtype(self) -> torch.dtype:
        return self.target.dtype

    def build_layout(self, motion_valid: torch.Tensor, text_valid: torch.Tensor) -> _Layout:
        return _Layout(motion_valid.float(), text_valid.float(), text_valid)

    def forward(self, x, ctxt, vtxt, t, layout) -> torch.Tensor:
        target = self.target[: x.shape[1]].to(x.dtype)
        remaining = (1.0 - t.to(x.dtype)).clamp_min(_LAST_T)[:, None, None]
        return (target[None] - x) / remaining


def normalisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the target's own features over time; std gets 0.5 added so no channel is constant (a
    constant channel, std below 1e-3, could not be pinned: it always decodes to its mean)."""
    return features.mean(axis=0), features.std(axis=0) + 0.5


def build_known_flow_model(name: str = "walk") -> LoadedModel:
    """The known-answer model towards ``name`` (walk, turn, jump), with the tiny model's text dimensions."""
    motion_data = target_motion(name)
    features = motion.encode_features(motion_data.translation, motion_data.rotations)
    mean, std = normalisation(features)
    target = motion.normalize(features, mean, std)
    generator = torch.Generator().manual_seed(0)
    conditioning = {
        "null_vtxt_feat": torch.randn(1, 1, TINY_DIT_CONFIG["vtxt_input_dim"], generator=generator),
        "null_ctxt_input": torch.randn(1, 1, TINY_DIT_CONFIG["ctxt_input_dim"], generator=generator),
        "mean": torch.as_tensor(mean, dtype=torch.float32),
        "std": torch.as_tensor(std, dtype=torch.float32),
    }
    return LoadedModel(KnownFlowTransformer(target).eval(), conditioning, PipelineSettings())
