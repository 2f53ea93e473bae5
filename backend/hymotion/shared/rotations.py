"""Rotation math in numpy only, the one copy the backend's light modules and the Blender add-on share.

Conventions: quaternions are unit (w, x, y, z) on the last axis; matrices are (..., 3, 3) and act on column vectors.
The model's frame is Y-up with the character facing +Z; Blender's is Z-up facing -Y, and :func:`y_up_to_z_up` is the
one conversion between them. numpy is the only import, so the add-on can use this module inside Blender.
"""

from __future__ import annotations

import numpy as np

EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def y_up_to_z_up(vectors: np.ndarray) -> np.ndarray:
    """Model space (Y-up, +Z forward) to Blender space (Z-up, character facing -Y): (x, y, z) -> (x, -z, y)."""
    v = np.asarray(vectors)
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], axis=-1)


# The same map as a rotation matrix C (column vectors: C @ v), derived from the function so the two cannot drift.
Y_UP_TO_Z_UP: np.ndarray = y_up_to_z_up(np.eye(3)).T
Y_UP_TO_Z_UP.setflags(write=False)


def quaternion_to_matrix(quaternions: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) to (..., 3, 3) rotation matrices."""
    q = np.asarray(quaternions, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) to unit quaternions (w, x, y, z) with w >= 0, numerically stable for every rotation."""
    m = matrix
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = np.stack(
        [
            np.stack(
                [
                    1 + trace,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            np.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
                ],
                -1,
            ),
        ],
        axis=-2,
    )
    diagonal = np.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], axis=-1)
    best = np.take_along_axis(candidates, np.argmax(diagonal, axis=-1)[..., None, None], axis=-2)[..., 0, :]
    q = best / np.linalg.norm(best, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def continuous_quaternions(quaternions: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along the time ``axis`` so consecutive quaternions lie in one hemisphere (a float64 copy).

    q and -q are the same rotation, but smoothing averages components and F-curves interpolate them, so a sign flip
    between two frames would swing a bone through a full turn. ``axis`` is 0 for one clip (F, J, 4) and -3 for a
    batch of clips (..., F, J, 4); it is never the last axis, which holds (w, x, y, z).
    """
    q = np.moveaxis(np.array(quaternions, dtype=np.float64), axis, 0)
    if len(q) >= 2:
        flips = np.where(np.sum(q[1:] * q[:-1], axis=-1) < 0.0, -1.0, 1.0)
        signs = np.concatenate([np.ones_like(flips[:1]), np.cumprod(flips, axis=0)], axis=0)
        q = q * signs[..., None]
    return np.moveaxis(q, 0, axis)


def axis_angle_matrix(axis: np.ndarray, angle: float | np.ndarray) -> np.ndarray:
    """Rodrigues: rotations (..., 3, 3) by `angle` radians about unit `axis` (..., 3)."""
    x, y, z = np.moveaxis(np.asarray(axis, dtype=np.float64), -1, 0)
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(x.shape + (3, 3))
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    identity = np.broadcast_to(np.eye(3), cross.shape)
    return identity + np.sin(angle) * cross + (1.0 - np.cos(angle)) * (cross @ cross)


def quaternion_to_axis_angle(quaternions: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) to Blender's axis-angle layout (..., 4: angle, x, y, z)."""
    q = np.asarray(quaternions, dtype=np.float64)
    q = np.where(q[..., :1] < 0.0, -q, q)
    sine = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2.0 * np.arctan2(sine, q[..., 0])
    axis = np.where(sine[..., None] > 1e-9, q[..., 1:] / np.maximum(sine, 1e-12)[..., None], [0.0, 1.0, 0.0])
    return np.concatenate([angle[..., None], axis], axis=-1)


def matrix_to_rotation_vector(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations to rotation vectors (..., 3): the axis times the angle, the angle in [0, pi]."""
    q = matrix_to_quaternion(matrix)  # w >= 0: the half-angle is at most pi/2
    sine = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2.0 * np.arctan2(sine, q[..., 0])
    # angle / sin(angle / 2) tends to 2 / w (= 2) as the angle vanishes, where dividing by the sine would not be exact
    scale = np.where(sine > 1e-12, angle / np.maximum(sine, 1e-12), 2.0 / q[..., 0])
    return q[..., 1:] * scale[..., None]


def rotation_vector_matrix(vectors: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) to (..., 3, 3) rotations (Rodrigues); a zero vector is the identity."""
    vectors = np.asarray(vectors, dtype=np.float64)
    angle = np.linalg.norm(vectors, axis=-1)
    return axis_angle_matrix(vectors / np.maximum(angle, 1e-300)[..., None], angle)


def quaternion_to_euler(quaternions: np.ndarray, order: str) -> np.ndarray:
    """Quaternions (F, ..., 4) to Blender Euler angles (F, ..., 3: x, y, z) for `order`, unwrapped along time.

    Blender's order names the axis applied first: 'XYZ' is R = Rz Ry Rx. With axes (i, j, k) in that order and e = +1
    for a cyclic order, the middle angle is asin(-e R[k, i]), the first atan2(e R[k, j], R[k, k]) and the last
    atan2(e R[j, i], R[i, i]).
    """
    if order not in EULER_ORDERS:
        raise ValueError(f"Unknown Euler order {order!r}")
    first, middle, last = ("XYZ".index(axis) for axis in order)
    parity = 1.0 if (first, middle, last) in ((0, 1, 2), (1, 2, 0), (2, 0, 1)) else -1.0
    m = quaternion_to_matrix(quaternions)
    angles = np.empty(m.shape[:-1])
    angles[..., middle] = np.arcsin(np.clip(-parity * m[..., last, first], -1.0, 1.0))
    angles[..., first] = np.arctan2(parity * m[..., last, middle], m[..., last, last])
    angles[..., last] = np.arctan2(parity * m[..., middle, first], m[..., first, first])
    return np.unwrap(angles, axis=0)
