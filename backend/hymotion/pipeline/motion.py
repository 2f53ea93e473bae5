"""From the model's 201-number frames to motion: root translation, 22 local quaternions, joint positions.

numpy only (no torch, no scipy), so results can be decoded and checked anywhere.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..shared import skeleton
from ..shared.rotations import continuous_quaternions, matrix_to_quaternion

LATENT_DIM = 201
STD_FLOOR = 1e-3
SMOOTHING_SIGMA = 1.0
SMOOTHING_RADIUS = int(4 * SMOOTHING_SIGMA + 0.5)
SQUARINGS = 12
DEGENERATE_NORM = 1e-6
TRANSLATION_WINDOW = 11
TRANSLATION_ORDER = 5
# Without the body mesh we put the sole this far below the foot (toe-base) joint; the ankle's gap follows from the
# rest pose so both joints agree on the ground in T-pose. An approximation of the official lowest-mesh-vertex rule.
FOOT_SOLE_GAP = 0.02
ANKLE_SOLE_GAP = FOOT_SOLE_GAP + float(
    skeleton.BODY_REST_POSITIONS[skeleton.BODY_JOINT_NAMES.index("left_ankle"), 1]
    - skeleton.BODY_REST_POSITIONS[skeleton.BODY_JOINT_NAMES.index("left_foot"), 1]
)
GROUND_JOINTS = {
    skeleton.BODY_JOINT_NAMES.index(name): gap
    for name, gap in (
        ("left_ankle", ANKLE_SOLE_GAP), ("right_ankle", ANKLE_SOLE_GAP),
        ("left_foot", FOOT_SOLE_GAP), ("right_foot", FOOT_SOLE_GAP),
    )
}


def denormalize(latent: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Undo the training normalisation; channels whose std is below 1e-3 are constant (std treated as 0)."""
    std = np.where(std < STD_FLOOR, 0.0, std)
    return latent * std + mean


def normalize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The inverse of :func:`denormalize`: constant channels (std below 1e-3) get 0, which decodes to their mean."""
    usable = std >= STD_FLOOR
    return np.where(usable, (features - mean) / np.where(usable, std, 1.0), 0.0)


def encode_features(translation: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Poses to the model's 201 features (not normalised), the inverse of decoding: root translation (..., 3) and
    local quaternions (..., 22, 4) give [translation, 22 rot6d, 22 joint positions by forward kinematics].

    The positions are the world positions the decoder's forward kinematics gives for the same pose (translation
    included), never zeros: the training data holds real positions there, so zeros would be a pose the model never
    saw.
    """
    translation = np.asarray(translation, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    rot6d = matrix_to_rot6d(skeleton.quaternion_to_matrix(rotations))
    positions = skeleton.forward_kinematics(rotations, translation)
    leading = translation.shape[:-1]
    return np.concatenate(
        [translation, rot6d.reshape(leading + (-1,)), positions.reshape(leading + (-1,))], axis=-1
    )


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """(..., 6) read as a (3, 2) matrix whose columns are the first two matrix columns before Gram-Schmidt."""
    pairs = rot6d.reshape(rot6d.shape[:-1] + (3, 2))
    a1, a2 = pairs[..., 0], pairs[..., 1]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    return matrix[..., :, :2].reshape(matrix.shape[:-2] + (6,))


def smooth_quaternions(quaternions: np.ndarray) -> np.ndarray:
    """Gaussian smoothing (sigma 1 frame, edge-padded) as a weighted quaternion average (Markley's eigenvector method).

    (..., F, J, 4) with time on axis -3, so a batch of clips of equal length is smoothed in one call. Each window is
    sign-aligned to its centre frame before averaging.
    """
    q = continuous_quaternions(quaternions, axis=-3)
    radius = SMOOTHING_RADIUS
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / SMOOTHING_SIGMA) ** 2)
    weights /= weights.sum()
    frames = q.shape[-3]
    padded = np.concatenate(
        [np.repeat(q[..., :1, :, :], radius, -3), q, np.repeat(q[..., -1:, :, :], radius, -3)], axis=-3
    )
    windows = np.stack([padded[..., k : k + frames, :, :] for k in range(2 * radius + 1)], axis=-1)  # (..., 4, K)
    windows = np.where(np.sum(windows * q[..., None], axis=-2, keepdims=True) < 0, -windows, windows)
    scatter = (windows * weights) @ np.swapaxes(windows, -1, -2)  # (..., 4, 4) = sum_k w_k q_k q_k^T
    averaged = dominant_eigenvector(scatter, initial=windows @ weights)
    averaged = np.where(np.sum(averaged * q, axis=-1, keepdims=True) < 0, -averaged, averaged)
    return averaged / np.linalg.norm(averaged, axis=-1, keepdims=True)


def dominant_eigenvector(matrices: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Unit eigenvector of the largest eigenvalue of symmetric PSD (..., 4, 4) matrices.

    Repeated squaring (M^(2^k), rescaled by its trace) applied to a starting vector near the answer (the weighted
    mean): the other eigen-directions shrink by (λ2/λ1)^(2^k), i.e. to machine precision for any usable gap, in a
    dozen small batched matmuls instead of a full eigendecomposition per matrix. Where the start happens to be
    orthogonal to the answer, ``eigh`` decides.
    """
    power = matrices / np.trace(matrices, axis1=-2, axis2=-1)[..., None, None]
    for _ in range(SQUARINGS):
        power = power @ power
        power /= np.trace(power, axis1=-2, axis2=-1)[..., None, None]
    vectors = (power @ initial[..., None])[..., 0]
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    degenerate = norms[..., 0] < DEGENERATE_NORM * np.linalg.norm(initial, axis=-1)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    if degenerate.any():
        vectors[degenerate] = np.linalg.eigh(matrices[degenerate])[1][..., -1]
    return vectors


@functools.lru_cache(maxsize=32)
def savgol_operator(frames: int) -> np.ndarray:
    """The (F, F) matrix of the official smoothing: a Savitzky-Golay filter (window 11, order 5) in scipy's 'interp'
    mode, as ``scipy.signal.savgol_filter`` computes it (tests/backend/test_motion.py checks it against scipy).

    The filter is a least-squares polynomial fit over each window: with V the window's Vandermonde matrix, V·V⁺ maps
    the window's samples to the fitted values at its positions. Interior frames take its centre row; 'interp' fits
    the first and last windows and evaluates them at the edge frames. Built here rather than taken from scipy because
    the backend does not depend on scipy: transformers imports scipy.optimize wherever scipy is installed, 0.7 s of
    the backend's start on the lent H100.
    """
    window, order = TRANSLATION_WINDOW, TRANSLATION_ORDER
    half = window // 2
    vandermonde = np.vander(np.arange(window, dtype=np.float64) - half, order + 1, increasing=True)
    fit = vandermonde @ np.linalg.pinv(vandermonde)
    operator = np.zeros((frames, frames))
    for frame in range(half, frames - half):
        operator[frame, frame - half : frame + half + 1] = fit[half]
    operator[:half, :window] = fit[:half]
    operator[frames - half :, frames - window :] = fit[half + 1 :]
    return operator


def smooth_translation(translation: np.ndarray) -> np.ndarray:
    """The official smoothing along time of (..., F, 3); clips shorter than the window (never produced by the model)
    pass through."""
    if translation.shape[-2] < TRANSLATION_WINDOW:
        return translation
    return savgol_operator(translation.shape[-2]) @ translation


def ground_height(positions: np.ndarray) -> np.ndarray:
    """Lowest sole height over each whole clip of (..., F, 22, 3), from the ankle and foot joints (see FOOT_SOLE_GAP)."""
    soles = [positions[..., joint, 1].min(axis=-1) - gap for joint, gap in GROUND_JOINTS.items()]
    return np.min(soles, axis=0)


@dataclass
class MotionClip:
    """One generated motion, model space (Y-up, metres), 30 fps, joints in skeleton.BODY_JOINT_NAMES order."""

    translation: np.ndarray  # (F, 3) root translation; pelvis world position = rest pelvis + translation
    rotations: np.ndarray  # (F, 22, 4) local rotations, unit quaternions (w, x, y, z)
    positions: np.ndarray  # (F, 22, 3) world joint positions
    prompt: str = ""
    seed: int = 0
    duration: float = 0.0
    model_id: str = ""
    prompt_index: int = 0
    plan: str = ""
    fps: int = skeleton.FPS
    extra: dict = field(default_factory=dict)
    original_prompt: str = ""  # the user's words when a prompt rewriter changed them (hymotion generate --rewrite)

    @property
    def frames(self) -> int:
        return len(self.translation)

    def arrays(self) -> dict[str, np.ndarray]:
        """The saved fields; ``original_prompt`` only for a rewritten prompt, so other files keep their fields."""
        arrays = {
            "fps": np.asarray(self.fps),
            "joint_names": np.asarray(skeleton.BODY_JOINT_NAMES),
            "parents": np.asarray(skeleton.BODY_PARENTS),
            "rest_offsets": skeleton.BODY_REST_OFFSETS.astype(np.float32),
            "translation": self.translation.astype(np.float32),
            "rotations": self.rotations.astype(np.float32),
            "positions": self.positions.astype(np.float32),
            "prompt": np.asarray(self.prompt),
            "seed": np.asarray(self.seed),
            "duration": np.asarray(self.duration),
            "model_id": np.asarray(self.model_id),
        }
        if self.original_prompt:
            arrays["original_prompt"] = np.asarray(self.original_prompt)
        return arrays

    def save(self, path: str | Path, fmt: str = "npz") -> Path:
        """Write the clip as .npz or .json; the file appears whole or not at all (see write_atomically)."""
        from .finite import require_finite

        require_finite(self)
        path = Path(path)
        if fmt == "npz":
            write_atomically(path, lambda handle: np.savez(handle, **self.arrays()))
        elif fmt == "json":
            text = json.dumps({key: value.tolist() for key, value in self.arrays().items()})
            write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
        else:
            raise ValueError(f"unknown format {fmt!r}")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MotionClip":
        path = Path(path)
        if path.suffix == ".json":
            data = {key: np.asarray(value) for key, value in json.loads(path.read_text()).items()}
        else:
            with np.load(path, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
        return cls(
            translation=data["translation"], rotations=data["rotations"], positions=data["positions"],
            prompt=str(data["prompt"]), seed=int(data["seed"]), duration=float(data["duration"]),
            model_id=str(data["model_id"]), fps=int(data["fps"]), original_prompt=str(data.get("original_prompt", "")),
        )


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file in the same folder, flushed to disk, then renamed over ``path``: whoever reads
    ``path`` (or a kill at any moment) finds the previous file or the whole new one, never a truncated one. A kill
    can leave a hidden ``.hymotion-*.partial`` file beside it, never a broken file under the real name."""
    descriptor, scratch = tempfile.mkstemp(prefix=".hymotion-", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if hasattr(os, "fchmod"):  # POSIX: mkstemp's 0600 would hide the clip from other users
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _umask() -> int:
    """The process's umask (only readable by setting it), so the file gets the permissions a plain open() gives."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; file systems that cannot sync a folder are left as they are."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def decode_latent(
    latent: np.ndarray, mean: np.ndarray, std: np.ndarray, smoothing: bool = True, align_ground: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., F, 201) normalised latents to (translation (..., F, 3), rotations (..., F, 22, 4), positions (..., F, 22, 3)).

    Leading axes are clips of equal length, decoded together in one vectorised pass.
    """
    features = denormalize(np.asarray(latent, dtype=np.float64), mean, std)
    translation = features[..., 0:3]
    rot6d = features[..., 3:135].reshape(features.shape[:-1] + (skeleton.NUM_BODY_JOINTS, 6))
    quaternions = continuous_quaternions(matrix_to_quaternion(rot6d_to_matrix(rot6d)), axis=-3)
    if smoothing:
        quaternions = smooth_quaternions(quaternions)
        translation = smooth_translation(translation)
    positions = skeleton.forward_kinematics(quaternions, translation)
    if align_ground:
        lowest = ground_height(positions)[..., None]
        translation = translation.copy()
        translation[..., 1] -= lowest
        positions = positions.copy()
        positions[..., 1] -= lowest[..., None]
    return translation, quaternions, positions
