"""From the model's 201-number frames to motion: root translation, 22 local quaternions, joint positions.

numpy only (no torch, no scipy), so results can be decoded and checked anywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..shared import skeleton
from ..shared.motion_files import motion_arrays, read_motion_file, write_motion_file
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
    """Lowest sole height over each whole clip of (..., F, 22, 3), from the ankle and foot joints (see
    FOOT_SOLE_GAP)."""
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
        return motion_arrays(
            self.translation, self.rotations, self.positions, fps=self.fps, prompt=self.prompt, seed=self.seed,
            duration=self.duration, model_id=self.model_id, original_prompt=self.original_prompt,
        )

    def save(self, path: str | Path, fmt: str = "npz") -> Path:
        """Write the clip as .npz or .json through the one motion-file writer (hymotion.shared.motion_files): the
        file appears whole or not at all, and a clip with NaN or infinite numbers is refused."""
        return write_motion_file(path, self.arrays(), fmt)

    @classmethod
    def load(cls, path: str | Path) -> "MotionClip":
        """A motion file read and checked by the one reader (hymotion.shared.motion_files)."""
        data = read_motion_file(path)
        positions = data.positions
        if positions is None:
            positions = skeleton.forward_kinematics(data.rotations, data.translation)
        return cls(
            translation=data.translation, rotations=data.rotations, positions=positions, prompt=data.prompt,
            seed=data.seed, duration=data.duration, model_id=data.model_id, fps=int(data.fps),
            original_prompt=data.original_prompt,
        )


def decode_latent(
    latent: np.ndarray, mean: np.ndarray, std: np.ndarray, smoothing: bool = True, align_ground: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., F, 201) normalised latents to (translation (..., F, 3), rotations (..., F, 22, 4), positions
    (..., F, 22, 3)).

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
