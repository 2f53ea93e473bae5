"""Motion math the bake needs, in numpy only, so it is testable without Blender.

Conventions: quaternions are (w, x, y, z); clips are translation (F, 3) and local joint rotations (F, J, 4) in the
model's Y-up frame, joint order :data:`hymotion.shared.skeleton.BODY_JOINT_NAMES`.
"""

from __future__ import annotations

import re

import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import y_up_to_z_up
from hymotion.shared.skeleton import FPS, NUM_BODY_JOINTS

ACTION_NAME_PREFIX = "HYM_"
_MAX_PROMPT_CHARS_IN_NAME = 40
# A loop point this close to a whole scene frame (in frames) is on it: rates are given to ~1e-9 relative (NTSC's
# 30000/1001 as a float), so a period of a few hundred frames is off a whole frame by 1e-7 at most when it is on one,
# and 1e-6 frames is 4e-8 s at 24 fps, far below anything a key can show.
_WHOLE_FRAME_TOLERANCE = 1e-6


def validated_clip(translation: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 copies of a clip with checked shapes, finite values and unit quaternions."""
    translation = np.array(translation, dtype=np.float64)
    rotations = np.array(rotations, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (NUM_BODY_JOINTS, 4):
        raise bad_request(
            f"Joint rotations have shape {rotations.shape}; expected (frames, {NUM_BODY_JOINTS}, 4).",
            "Pass one (w, x, y, z) quaternion per body joint per frame, in "
            "hymotion.shared.skeleton.BODY_JOINT_NAMES order.",
        )
    frames = rotations.shape[0]
    if frames < 1:
        raise bad_request("The motion has no frames.", "Generate at least one frame before baking.")
    if translation.shape != (frames, 3):
        raise bad_request(
            f"Root translation has shape {translation.shape}; expected ({frames}, 3) to match the rotations.",
            "Pass one (x, y, z) root translation in metres per frame.",
        )
    if not (np.isfinite(translation).all() and np.isfinite(rotations).all()):
        raise bad_request("The motion contains NaN or infinite values.", "Regenerate the motion; it cannot be baked.")
    norms = np.linalg.norm(rotations, axis=-1, keepdims=True)
    if (norms < 1e-8).any():
        raise bad_request("Some joint rotations are zero quaternions.", "Pass unit quaternions (w, x, y, z).")
    return translation, rotations / norms


def slerp(q0: np.ndarray, q1: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shortest-path spherical interpolation of unit quaternions (..., 4), weight broadcast over (...)."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0.0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    angle = np.arccos(dot)
    sin_angle = np.sin(angle)
    nearly_equal = sin_angle < 1e-6
    safe_sin = np.where(nearly_equal, 1.0, sin_angle)
    w0 = np.where(nearly_equal, 1.0 - weight, np.sin((1.0 - weight) * angle) / safe_sin)
    w1 = np.where(nearly_equal, weight, np.sin(weight * angle) / safe_sin)
    result = w0 * q0 + w1 * q1
    return result / np.linalg.norm(result, axis=-1, keepdims=True)


def resampled_frame_count(frames: int, source_fps: float, target_fps: float) -> int:
    """Frames that keep the clip's duration (frames / fps seconds) at the target rate, at least one."""
    return max(1, int(round(frames * target_fps / source_fps)))


def resample_clip(
    translation: np.ndarray, rotations: np.ndarray, source_fps: float, target_fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a clip to another frame rate: slerp for rotations, linear for translation.

    Target frame k samples time k / target_fps, so the motion keeps its speed exactly; the first frame is the
    source's first frame and the last target frame lies at or before the last source frame.
    """
    _check_rates(source_fps, target_fps)
    frames = rotations.shape[0]
    count = resampled_frame_count(frames, source_fps, target_fps)
    return _sampled_at(translation, rotations, np.arange(count) * (source_fps / target_fps))


def loop_key_offsets(frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Scene-frame offsets (from the first key) of a closed loop's keys: every whole scene frame up to the loop
    point, then the loop point itself. A loop of ``frames`` source frames ends where it starts, so its period is
    ``frames - 1`` source frames; at most rates (24, 25, NTSC) that falls between two scene frames, and the last key
    sits on it, off the whole frames, so the Cycles period is the clip's exactly."""
    _check_rates(source_fps, target_fps)
    period = (frames - 1) * target_fps / source_fps
    whole = int(np.floor(period + _WHOLE_FRAME_TOLERANCE))
    offsets = np.arange(whole + 1, dtype=np.float64)
    if period - whole > _WHOLE_FRAME_TOLERANCE:
        offsets = np.append(offsets, period)
    else:
        offsets[-1] = period
    return offsets


def resample_loop(
    translation: np.ndarray, rotations: np.ndarray, source_fps: float, target_fps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed loop (last frame = first, horizontal drift aside) at another frame rate: the key offsets of
    :func:`loop_key_offsets` and the clip sampled there, the last sample exactly the source's last frame."""
    frames = rotations.shape[0]
    offsets = loop_key_offsets(frames, source_fps, target_fps)
    source_index = offsets * (source_fps / target_fps)
    source_index[-1] = frames - 1
    new_translation, new_rotations = _sampled_at(translation, rotations, source_index)
    return offsets, new_translation, new_rotations


def _check_rates(source_fps: float, target_fps: float) -> None:
    if source_fps <= 0 or target_fps <= 0:
        raise bad_request(
            f"Frame rates must be positive (source {source_fps}, target {target_fps}).",
            "Set the scene's frame rate (Output Properties > Format) to a positive value.",
        )


def _sampled_at(
    translation: np.ndarray, rotations: np.ndarray, source_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The clip at fractional source frames (clamped to the last): slerp for rotations, linear for translation."""
    frames = rotations.shape[0]
    source_index = np.minimum(np.asarray(source_index, dtype=np.float64), frames - 1)
    count = source_index.size
    lower = np.floor(source_index).astype(np.int64)
    upper = np.minimum(lower + 1, frames - 1)
    weight = source_index - lower
    new_translation = translation[lower] + (translation[upper] - translation[lower]) * weight[:, None]
    joint_weight = np.broadcast_to(weight[:, None], (count, rotations.shape[1]))
    new_rotations = slerp(rotations[lower], rotations[upper], joint_weight)
    return new_translation, new_rotations


def without_horizontal_motion(translation: np.ndarray) -> np.ndarray:
    """Root translation with the horizontal (model x and z) part removed and the height (model y) kept.

    The character then moves on the spot above the armature's origin.
    """
    in_place = np.array(translation, dtype=np.float64)
    in_place[:, 0] = 0.0
    in_place[:, 2] = 0.0
    return in_place


def bone_local_rotations(rotations: np.ndarray, bone_rest_matrices: np.ndarray) -> np.ndarray:
    """Model-frame local joint quaternions (F, J, 4) to pose-bone quaternions for bones with rest matrices B (J, 3, 3).

    A bone's pose rotation acts in its rest frame, so the model's local rotation R, first expressed in Blender's axes
    (R' = C R C^T, C the Y-up to Z-up rotation), becomes B^T R' B. Both steps conjugate by a rotation, which keeps a
    quaternion's scalar part and rotates its vector part: (w, v) -> (w, B^T C v).
    """
    vector = y_up_to_z_up(rotations[..., 1:])
    vector = np.einsum("jba,fjb->fja", bone_rest_matrices, vector)
    return np.concatenate([rotations[..., :1], vector], axis=-1)


def bone_local_translation(translation: np.ndarray, root_rest_matrix: np.ndarray) -> np.ndarray:
    """Root translation (F, 3, model frame) to the root pose-bone's location, B^T C t, relative to its rest head."""
    return y_up_to_z_up(translation) @ np.asarray(root_rest_matrix, dtype=np.float64)


def action_name(prompt: str, seed: int) -> str:
    """A short, readable Action name from prompt and seed, e.g. "HYM_jumps_twice_s0"."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    if words[:2] == ["a", "person"]:
        words = words[2:]
    elif words[:1] in (["person"], ["someone"], ["the"], ["a"]):
        words = words[1:]
    stem = ""
    for word in words:
        candidate = f"{stem}_{word}" if stem else word
        if len(candidate) > _MAX_PROMPT_CHARS_IN_NAME:
            break
        stem = candidate
    if not stem:
        stem = words[0][:_MAX_PROMPT_CHARS_IN_NAME] if words else "motion"
    return f"{ACTION_NAME_PREFIX}{stem}_s{seed}"


def clip_duration(frames: int, fps: float = FPS) -> float:
    """Duration in seconds of a clip of `frames` frames, as the generator counts it (frames = duration * fps)."""
    return round(frames / fps, 3)


def z_up_to_y_up(vectors: np.ndarray) -> np.ndarray:
    """The inverse of ``y_up_to_z_up``: Blender (x, y, z) -> model (x, z, -y)."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.stack([v[..., 0], v[..., 2], -v[..., 1]], axis=-1)


def model_rotations(bone_rotations: np.ndarray, bone_rest_matrices: np.ndarray) -> np.ndarray:
    """The inverse of :func:`bone_local_rotations`: pose-bone quaternions (..., J, 4) to model-frame local rotations,
    (w, v') -> (w, C^T B^-T v'). B^-T rather than B: Blender's float32 rest matrices are orthonormal only to ~1e-5,
    and this undoes exactly what the bake did with B^T."""
    bone_rotations = np.asarray(bone_rotations, dtype=np.float64)
    inverse = np.linalg.inv(np.swapaxes(np.asarray(bone_rest_matrices, dtype=np.float64), -1, -2))
    vector = np.einsum("jab,...jb->...ja", inverse, bone_rotations[..., 1:])
    return np.concatenate([bone_rotations[..., :1], z_up_to_y_up(vector)], axis=-1)


def model_translation(location: np.ndarray, root_rest_matrix: np.ndarray) -> np.ndarray:
    """The inverse of :func:`bone_local_translation`: the root pose-bone's location l to model translation,
    C^T (l B^-1)."""
    inverse = np.linalg.inv(np.asarray(root_rest_matrix, dtype=np.float64))
    return z_up_to_y_up(np.asarray(location, dtype=np.float64) @ inverse)
