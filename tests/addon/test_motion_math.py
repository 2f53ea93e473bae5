"""The bake's numpy math on its own: slerp, resampling, rest-frame conversion, names (sign continuity and the other
rotation helpers are hymotion.shared.rotations', tested in tests/backend/test_rotations.py)."""

from __future__ import annotations

import numpy as np
import pytest
from addon_helpers import random_unit_quaternions

from hymotion.shared.errors import HyMotionError
from hymotion.shared.rotations import Y_UP_TO_Z_UP, quaternion_to_matrix, y_up_to_z_up
from hymotion.shared.skeleton import NUM_BODY_JOINTS
from hymotion_addon.core import motion_math

# float64 numpy throughout: closed-form results on O(1) values round by ~1e-15, so 1e-12 keeps 1000x margin. Angles
# from arccos near a dot product of 1 lose precision as sqrt(roundoff): 1e-8 rad, so those compare at 1e-7.
EXACT = 1e-12
ANGLE = 1e-7


def rotation_angle_between(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    return 2.0 * np.arccos(np.clip(np.abs(np.sum(q0 * q1, axis=-1)), 0.0, 1.0))


def test_slerp_hits_endpoints_and_halves_the_angle(rng):
    q0 = random_unit_quaternions(rng, (50,))
    q1 = random_unit_quaternions(rng, (50,))
    np.testing.assert_allclose(np.abs(np.sum(motion_math.slerp(q0, q1, np.zeros(50)) * q0, axis=-1)), 1.0)
    np.testing.assert_allclose(np.abs(np.sum(motion_math.slerp(q0, q1, np.ones(50)) * q1, axis=-1)), 1.0)
    middle = motion_math.slerp(q0, q1, np.full(50, 0.5))
    np.testing.assert_allclose(rotation_angle_between(q0, middle), rotation_angle_between(middle, q1), atol=ANGLE)
    np.testing.assert_allclose(rotation_angle_between(q0, middle), rotation_angle_between(q0, q1) / 2, atol=ANGLE)


def test_slerp_takes_the_short_way_and_survives_equal_inputs(rng):
    q0 = random_unit_quaternions(rng, (20,))
    np.testing.assert_allclose(motion_math.slerp(q0, -q0, np.full(20, 0.3)), q0, atol=EXACT)
    np.testing.assert_allclose(motion_math.slerp(q0, q0, np.full(20, 0.7)), q0, atol=EXACT)


@pytest.mark.parametrize("frames, target_fps, expected", [(360, 24, 288), (120, 60, 240), (31, 24, 25), (1, 24, 1)])
def test_resampled_frame_count_keeps_the_duration(frames, target_fps, expected):
    assert motion_math.resampled_frame_count(frames, 30, target_fps) == expected


def test_resample_keeps_first_frame_and_speed(rng):
    translation = np.cumsum(rng.normal(size=(31, 3)), axis=0)
    rotations = random_unit_quaternions(rng, (31, NUM_BODY_JOINTS))
    new_translation, new_rotations = motion_math.resample_clip(translation, rotations, 30, 24)
    assert new_translation.shape == (25, 3) and new_rotations.shape == (25, NUM_BODY_JOINTS, 4)
    np.testing.assert_allclose(new_translation[[0, -1]], translation[[0, -1]], atol=EXACT)
    np.testing.assert_allclose(np.abs(np.sum(new_rotations[-1] * rotations[-1], axis=-1)), 1.0, atol=EXACT)
    np.testing.assert_allclose(new_translation[1], translation[1] + 0.25 * (translation[2] - translation[1]))
    with pytest.raises(HyMotionError, match="positive"):
        motion_math.resample_clip(translation, rotations, 30, 0)


def test_bone_local_rotation_is_the_model_rotation_seen_from_the_bone_rest_frame(rng):
    rotations = random_unit_quaternions(rng, (4, NUM_BODY_JOINTS))
    rest = quaternion_to_matrix(random_unit_quaternions(rng, (NUM_BODY_JOINTS,)))
    local = motion_math.bone_local_rotations(rotations, rest)
    blender_axes = Y_UP_TO_Z_UP @ quaternion_to_matrix(rotations) @ Y_UP_TO_Z_UP.T
    expected = np.swapaxes(rest, -1, -2)[None] @ blender_axes @ rest[None]
    np.testing.assert_allclose(quaternion_to_matrix(local), expected, atol=EXACT)


def test_root_translation_goes_into_the_root_bone_frame(rng):
    translation = rng.normal(size=(6, 3))
    rest = quaternion_to_matrix(random_unit_quaternions(rng, ()))
    location = motion_math.bone_local_translation(translation, rest)
    np.testing.assert_allclose(location @ rest.T, y_up_to_z_up(translation), atol=EXACT)


def test_without_horizontal_motion_keeps_only_height(rng):
    translation = rng.normal(size=(5, 3))
    in_place = motion_math.without_horizontal_motion(translation)
    np.testing.assert_array_equal(in_place[:, 1], translation[:, 1])
    assert not in_place[:, [0, 2]].any()


@pytest.mark.parametrize(
    "prompt, seed, expected",
    [
        ("A person jumps twice!", 0, "HYM_jumps_twice_s0"),
        ("Someone waves, then sits down.", 12, "HYM_waves_then_sits_down_s12"),
        ("???", 3, "HYM_motion_s3"),
        ("walks " * 40, 1, "HYM_" + "_".join(["walks"] * 6) + "_s1"),
    ],
)
def test_action_names_are_short_and_sanitised(prompt, seed, expected):
    assert motion_math.action_name(prompt, seed) == expected
    assert len(expected) <= 63


@pytest.mark.parametrize(
    "translation, rotations, message",
    [
        (np.zeros((2, 3)), np.zeros((2, NUM_BODY_JOINTS, 4)), "zero quaternions"),
        (np.full((2, 3), np.nan), np.ones((2, NUM_BODY_JOINTS, 4)), "NaN"),
        (np.zeros((0, 3)), np.ones((0, NUM_BODY_JOINTS, 4)), "no frames"),
        (np.zeros((2, 2)), np.ones((2, NUM_BODY_JOINTS, 4)), "expected \\(2, 3\\)"),
    ],
)
def test_bad_clips_name_the_problem(translation, rotations, message):
    with pytest.raises(HyMotionError, match=message) as caught:
        motion_math.validated_clip(translation, rotations)
    assert caught.value.hint


def test_validated_clip_normalises_quaternions():
    _, rotations = motion_math.validated_clip(np.zeros((1, 3)), np.full((1, NUM_BODY_JOINTS, 4), 2.0))
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=-1), 1.0)


@pytest.mark.parametrize("target_fps", [24.0, 25.0, 30.0, 50.0, 60.0, 24000 / 1001, 30000 / 1001, 60000 / 1001])
def test_a_resampled_loop_ends_exactly_on_its_loop_point(target_fps):
    """Issue 27: the last key sits on the loop point ((frames - 1) source frames), holds the source's last frame and
    no whole frame is doubled or held."""
    rng = np.random.default_rng(3)
    frames = 60
    translation = rng.normal(size=(frames, 3))
    rotations = rng.normal(size=(frames, 22, 4))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    offsets, new_translation, new_rotations = motion_math.resample_loop(translation, rotations, 30.0, target_fps)
    assert offsets[-1] == pytest.approx((frames - 1) * target_fps / 30.0, abs=1e-9)
    assert np.all(np.diff(offsets) > 0.0) and np.all(offsets[:-1] == np.arange(offsets.size - 1))
    np.testing.assert_allclose(new_translation[-1], translation[-1], atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(new_rotations[-1] * rotations[-1], axis=-1)), 1.0, atol=1e-9)
