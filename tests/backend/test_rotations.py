"""The shared rotation module: quaternion <-> matrix, sign continuity, the Y-up to Z-up map, axis-angle and Euler."""

import math

import numpy as np
import pytest
from backend_helpers import axis_angle_quaternion, random_unit_quaternions

from hymotion.shared import rotations

# float64 numpy on fixed inputs: closed-form results on O(1) values take a few dozen operations, so rounding stays
# below ~1e-14 (unit roundoff 1.1e-16); 1e-12 keeps 100x margin. Nothing here iterates.
EXACT = 1e-12


def elementary_rotation(axis: str, angle: float) -> np.ndarray:
    """Rx, Ry or Rz written out by hand."""
    c, s = math.cos(angle), math.sin(angle)
    return {
        "X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def test_y_up_to_z_up_puts_model_up_on_blender_up_and_forward_on_minus_y():
    up, forward, left = np.eye(3)[1], np.eye(3)[2], np.eye(3)[0]
    converted = rotations.y_up_to_z_up(np.stack([up, forward, left]))
    np.testing.assert_array_equal(converted, [[0, 0, 1], [0, -1, 0], [1, 0, 0]])
    vectors = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_allclose(vectors @ rotations.Y_UP_TO_Z_UP.T, rotations.y_up_to_z_up(vectors), atol=EXACT)
    assert np.linalg.det(rotations.Y_UP_TO_Z_UP) == pytest.approx(1.0)


def test_matrix_to_quaternion_is_stable_for_half_turns_and_random_rotations():
    rng = np.random.default_rng(0)
    half_turns = [axis_angle_quaternion(axis, math.pi) for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -2, 0.5])]
    quaternions = np.concatenate([np.stack(half_turns), random_unit_quaternions(rng, (200,))])
    recovered = rotations.matrix_to_quaternion(rotations.quaternion_to_matrix(quaternions))
    assert (recovered[:, 0] >= 0).all()
    np.testing.assert_allclose(np.abs(np.sum(recovered * quaternions, axis=-1)), 1.0, atol=EXACT)


def test_continuous_quaternions_remove_sign_flips_and_keep_rotations():
    rng = np.random.default_rng(5)
    smooth = axis_angle_quaternion([1.0, 1.0, 0.0], np.linspace(0, 6, 60))[:, None].repeat(3, axis=1)
    flipped = smooth * rng.choice([-1.0, 1.0], size=(60, 3, 1))
    continuous = rotations.continuous_quaternions(flipped)
    assert (np.sum(continuous[1:] * continuous[:-1], axis=-1) >= 0).all()
    np.testing.assert_allclose(np.abs(continuous), np.abs(flipped))
    np.testing.assert_allclose(continuous[0], flipped[0])


def test_continuous_quaternions_work_along_the_time_axis_of_a_batch():
    rng = np.random.default_rng(6)
    clips = random_unit_quaternions(rng, (2, 30, 3))  # (clips, frames, joints, 4): time is axis -3
    batched = rotations.continuous_quaternions(clips, axis=-3)
    for clip, result in zip(clips, batched):
        np.testing.assert_array_equal(result, rotations.continuous_quaternions(clip))
    single = random_unit_quaternions(rng, (1, 3))
    np.testing.assert_array_equal(rotations.continuous_quaternions(single), single)


def test_axis_angle_matrix_and_quaternion_to_axis_angle_agree_with_quaternions():
    rng = np.random.default_rng(7)
    quaternions = random_unit_quaternions(rng, (50,))
    axis_angle = rotations.quaternion_to_axis_angle(quaternions)
    assert ((axis_angle[:, 0] >= 0) & (axis_angle[:, 0] <= math.pi + EXACT)).all()
    rebuilt = rotations.axis_angle_matrix(axis_angle[:, 1:], axis_angle[:, 0])
    np.testing.assert_allclose(rebuilt, rotations.quaternion_to_matrix(quaternions), atol=EXACT)
    np.testing.assert_allclose(rotations.quaternion_to_axis_angle(np.array([1.0, 0, 0, 0])), [0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("order", rotations.EULER_ORDERS)
def test_euler_angles_rebuild_the_rotation_in_blenders_order(order):
    """Blender's order names the axis applied first: 'XYZ' is R = Rz Ry Rx. (The rebuilt matrix loses accuracy only
    within ~1e-4 rad of gimbal lock, where EXACT would need cos(middle angle) below 1e-4; these fixed draws are far
    from it.)"""
    rng = np.random.default_rng(8)
    quaternions = random_unit_quaternions(rng, (40,))
    angles = rotations.quaternion_to_euler(quaternions, order)
    for quaternion, euler in zip(quaternions, angles):
        rebuilt = np.eye(3)
        for axis in order:
            rebuilt = elementary_rotation(axis, euler["XYZ".index(axis)]) @ rebuilt
        np.testing.assert_allclose(rebuilt, rotations.quaternion_to_matrix(quaternion), atol=EXACT)
    with pytest.raises(ValueError, match="Euler order"):
        rotations.quaternion_to_euler(quaternions, "XXY")


def test_rotation_vectors_are_scipys_from_tiny_angles_to_nearly_half_turns():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(4)
    axes = rng.normal(size=(400, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, 300), [0.0, 1e-14, 1e-9, 1e-6], np.pi - np.logspace(-6, -2, 96)])
    vectors = axes * angles[:, None]
    matrices = rotations.rotation_vector_matrix(vectors)
    # Both sides are float64 evaluations of the same closed forms (Rodrigues; a quaternion's half-angle), a few dozen
    # operations on numbers of order 1: differences of a few 1e-15. Near a half turn the rotation vector's direction
    # comes from a quaternion whose w is ~angle gap/2, read at ~1e-16 absolute, so an angle 1e-6 short of pi still
    # reads to ~1e-10. 1e-8 keeps a 100x margin; a wrong sign, axis or angle convention is an O(1) error.
    np.testing.assert_allclose(matrices, Rotation.from_rotvec(vectors).as_matrix(), atol=1e-8)
    np.testing.assert_allclose(rotations.matrix_to_rotation_vector(matrices),
                               Rotation.from_matrix(matrices).as_rotvec(), atol=1e-8)
    np.testing.assert_allclose(rotations.matrix_to_rotation_vector(matrices), vectors, atol=1e-8)
