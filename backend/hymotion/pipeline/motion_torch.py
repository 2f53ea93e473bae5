"""The decoding of ``motion.py`` in torch, on the device that sampled: a batch of latents never leaves the GPU until
it is motion, so the sampling loop needs no worker processes (nothing re-imports ``__main__``) and holds no GIL for
numpy work. ``motion.py`` stays the reference (the cpu plan and the tests use it); the two agree to float64 rounding.

Everything runs in float64: a batch of clips is a few hundred thousand small matrices, cheap even where float64 is
slow, and it keeps the device path as exact as the numpy one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..shared import skeleton
from . import motion


def denormalize(latent: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    std = torch.where(std < motion.STD_FLOOR, torch.zeros_like(std), std)
    return latent * std + mean


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    pairs = rot6d.reshape(rot6d.shape[:-1] + (3, 2))
    a1, a2 = pairs[..., 0], pairs[..., 1]
    b1 = a1 / torch.linalg.vector_norm(a1, dim=-1, keepdim=True)
    b2 = a2 - torch.sum(b1 * a2, dim=-1, keepdim=True) * b1
    b2 = b2 / torch.linalg.vector_norm(b2, dim=-1, keepdim=True)
    return torch.stack([b1, b2, torch.linalg.cross(b1, b2, dim=-1)], dim=-1)


def matrix_to_quaternion(m: Tensor) -> Tensor:
    """(..., 3, 3) to unit quaternions (w, x, y, z), w >= 0: each row from its largest diagonal candidate."""
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack(
        [
            torch.stack(
                [
                    1 + trace,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
                ],
                -1,
            ),
        ],
        dim=-2,
    )
    diagonal = torch.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], dim=-1)
    choice = torch.argmax(diagonal, dim=-1)[..., None, None].expand(candidates.shape[:-2] + (1, 4))
    best = torch.gather(candidates, -2, choice)[..., 0, :]
    q = best / torch.linalg.vector_norm(best, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def make_continuous(quaternions: Tensor) -> Tensor:
    """Sign flips along time (axis -3) so consecutive quaternions share a hemisphere."""
    steps = torch.sign(torch.sum(quaternions[..., 1:, :, :] * quaternions[..., :-1, :, :], dim=-1))
    steps = torch.where(steps == 0, torch.ones_like(steps), steps)
    signs = torch.cat([torch.ones_like(steps[..., :1, :]), torch.cumprod(steps, dim=-2)], dim=-2)
    return quaternions * signs[..., None]


def smooth_quaternions(quaternions: Tensor) -> Tensor:
    """``motion.smooth_quaternions``: edge-padded Gaussian window, Markley's weighted average per frame."""
    q = make_continuous(quaternions)
    radius = motion.SMOOTHING_RADIUS
    offsets = torch.arange(-radius, radius + 1, dtype=q.dtype, device=q.device)
    weights = torch.exp(-0.5 * (offsets / motion.SMOOTHING_SIGMA) ** 2)
    weights = weights / weights.sum()
    frames = q.shape[-3]
    padded = torch.cat(
        [q[..., :1, :, :].repeat_interleave(radius, -3), q, q[..., -1:, :, :].repeat_interleave(radius, -3)], dim=-3
    )
    windows = torch.stack([padded[..., k : k + frames, :, :] for k in range(2 * radius + 1)], dim=-1)
    aligned = torch.sum(windows * q[..., None], dim=-2, keepdim=True) < 0
    windows = torch.where(aligned, -windows, windows)
    scatter = (windows * weights) @ windows.transpose(-1, -2)
    averaged = dominant_eigenvector(scatter, initial=windows @ weights)
    averaged = torch.where(torch.sum(averaged * q, dim=-1, keepdim=True) < 0, -averaged, averaged)
    return averaged / torch.linalg.vector_norm(averaged, dim=-1, keepdim=True)


def _trace(matrices: Tensor) -> Tensor:
    return torch.diagonal(matrices, dim1=-2, dim2=-1).sum(-1)[..., None, None]


def dominant_eigenvector(matrices: Tensor, initial: Tensor) -> Tensor:
    """``motion.dominant_eigenvector``: repeated squaring from the weighted mean, ``eigh`` where that degenerates."""
    power = matrices / _trace(matrices)
    for _ in range(motion.SQUARINGS):
        power = power @ power
        power = power / _trace(power)
    vectors = (power @ initial[..., None])[..., 0]
    norms = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    degenerate = norms[..., 0] < motion.DEGENERATE_NORM * torch.linalg.vector_norm(initial, dim=-1)
    vectors = vectors / torch.where(norms > 0, norms, torch.ones_like(norms))
    if degenerate.any():
        vectors[degenerate] = torch.linalg.eigh(matrices[degenerate])[1][..., -1]
    return vectors


def smooth_translation(translation: Tensor) -> Tensor:
    frames = translation.shape[-2]
    if frames < motion.TRANSLATION_WINDOW:
        return translation
    operator = torch.from_numpy(motion.savgol_operator(frames)).to(translation.device, translation.dtype)
    return operator @ translation


def quaternion_to_matrix(q: Tensor) -> Tensor:
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def forward_kinematics(rotations: Tensor, translation: Tensor) -> Tensor:
    """``skeleton.forward_kinematics`` for the body skeleton: (..., 22, 4) and (..., 3) to (..., 22, 3)."""
    offsets = torch.tensor(skeleton.BODY_REST_OFFSETS, dtype=rotations.dtype, device=rotations.device)
    local = quaternion_to_matrix(rotations)
    world_rotations: list[Tensor] = []
    positions: list[Tensor] = []
    for joint, parent in enumerate(skeleton.BODY_PARENTS):
        if parent < 0:
            world_rotations.append(local[..., joint, :, :])
            positions.append(offsets[joint] + translation)
        else:
            world_rotations.append(world_rotations[parent] @ local[..., joint, :, :])
            positions.append(positions[parent] + (world_rotations[parent] @ offsets[joint, :, None])[..., 0])
    return torch.stack(positions, dim=-2)


def ground_height(positions: Tensor) -> Tensor:
    """``motion.ground_height``: the lowest sole over each clip of (..., F, 22, 3)."""
    soles = [positions[..., joint, 1].amin(dim=-1) - gap for joint, gap in motion.GROUND_JOINTS.items()]
    return torch.stack(soles).amin(dim=0)


def decode_latents(
    latents: Tensor, mean: Tensor, std: Tensor, smoothing: bool = True, align_ground: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, F, 201) normalised latents of equal length to float32 numpy (translation, rotations, positions), as
    ``motion.decode_latent`` computes them (ground-aligned unless ``align_ground`` is off)."""
    features = denormalize(latents.double(), mean.double(), std.double())
    translation = features[..., 0:3]
    rot6d = features[..., 3:135].reshape(features.shape[:-1] + (skeleton.NUM_BODY_JOINTS, 6))
    quaternions = make_continuous(matrix_to_quaternion(rot6d_to_matrix(rot6d)))
    if smoothing:
        quaternions = smooth_quaternions(quaternions)
        translation = smooth_translation(translation)
    positions = forward_kinematics(quaternions, translation)
    if align_ground:
        lowest = ground_height(positions)[..., None]
        up = torch.tensor([0.0, 1.0, 0.0], dtype=lowest.dtype, device=lowest.device)
        translation = translation - lowest[..., None] * up
        positions = positions - lowest[..., None, None] * up
    return tuple(array.float().cpu().numpy() for array in (translation, quaternions, positions))
