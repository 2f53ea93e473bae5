"""Sparse keys without Blender: the fitted Bezier keys keep every bone within tolerance at every frame, planted feet
planted, keys at the turning points; bad input is refused with a hint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smooth_clips import JOINT, clip_channels, jump_clip, smpl_rig, turn_clip

from hymotion.shared.errors import BAD_REQUEST, HyMotionError
from hymotion.shared.rotations import quaternion_to_matrix, y_up_to_z_up
from hymotion.shared.skeleton import BODY_JOINT_NAMES, forward_kinematics
from hymotion_addon.core import fcurve_eval, sparse_keys
from hymotion_addon.core.sparse_keys import Channel, Rig, SparseSettings

# The fit checks its own error in float64 through the same FK it fits with; measured again here through
# hymotion.shared.skeleton.forward_kinematics (another implementation), the two differ by float64 roundoff over a chain
# of 8 products (~1e-15 m). 1e-9 m of slack keeps the bound exact for any CPU.
ROUNDOFF = 1e-9
FRAMES_PER_SECOND = 30.0


def fitted_clip(fit: sparse_keys.SparseFit, frames: np.ndarray, translation: np.ndarray, rotations: np.ndarray):
    """The clip the fitted keys play back, evaluated at every frame as Blender would."""
    translation, rotations = translation.copy(), rotations.copy()
    for curve in fit.curves:
        values = fcurve_eval.evaluate_fcurve(curve.co, curve.handle_left, curve.handle_right, "BEZIER", frames)
        if curve.channel.property == "location":
            translation[:, curve.channel.index] = values
        else:
            rotations[:, curve.channel.bone, curve.channel.index] = values
    return translation, rotations / np.linalg.norm(rotations, axis=-1, keepdims=True)


def fit_clip(translation, rotations, **overrides):
    channels, values = clip_channels(translation, rotations)
    frames = np.arange(1, translation.shape[0] + 1, dtype=np.float64)
    fit = sparse_keys.fit_sparse_keys(smpl_rig(), frames, channels, values, SparseSettings(**overrides))
    return fit, frames


@pytest.fixture(scope="module")
def jump():
    translation, rotations, on_ground = jump_clip()
    fit, frames = fit_clip(translation, rotations)
    return translation, rotations, on_ground, fit, frames


@pytest.mark.parametrize("share", ["BONE", "RIG"])
def test_every_joint_stays_within_the_tolerance_at_every_frame(share):
    translation, rotations = turn_clip()
    fit, frames = fit_clip(translation, rotations, share=share)
    played = fitted_clip(fit, frames, translation, rotations)
    distance = np.linalg.norm(forward_kinematics(played[1], played[0]) - forward_kinematics(rotations, translation),
                              axis=-1)
    assert distance.max() <= 0.005 + ROUNDOFF
    assert fit.max_position_error <= 0.005 and fit.max_rotation_error <= 1.0
    if share == "BONE":  # one set of frames for the whole rig costs keys (the module docstring): no target there
        assert fit.key_count <= fit.dense_key_count / 6


def test_the_jump_keeps_its_joints_and_world_rotations_within_tolerance(jump):
    translation, rotations, _, fit, frames = jump
    played_translation, played_rotations = fitted_clip(fit, frames, translation, rotations)
    distance = np.linalg.norm(forward_kinematics(played_rotations, played_translation)
                              - forward_kinematics(rotations, translation), axis=-1)
    assert distance.max() <= 0.005 + ROUNDOFF
    world = _world_rotations(played_rotations)
    expected = _world_rotations(rotations)
    assert sparse_keys.rotation_angles(world, expected).max() <= 1.0 + 1e-9
    assert fit.key_count <= fit.dense_key_count / 6


def _world_rotations(rotations: np.ndarray) -> np.ndarray:
    local = quaternion_to_matrix(rotations)
    world = np.empty_like(local)
    for joint, parent in enumerate(smpl_rig().parents):
        world[:, joint] = local[:, joint] if parent < 0 else world[:, parent] @ local[:, joint]
    return world


def test_planted_feet_stay_planted(jump):
    translation, rotations, on_ground, fit, frames = jump
    toes = [JOINT["left_foot"], JOINT["right_foot"]]
    played = fitted_clip(fit, frames, translation, rotations)
    positions = y_up_to_z_up(forward_kinematics(played[1], played[0]))
    original = y_up_to_z_up(forward_kinematics(rotations, translation))
    # Found planted: the toe joints, on every frame on the ground; in the air only while still within the planted
    # height (5 cm) of the floor (the jump is straight up: the toes lift without moving over the ground).
    planted_heads = fit.planted[:, :, 0]
    assert set(np.flatnonzero(planted_heads.any(axis=0))) == set(toes)
    assert planted_heads[on_ground][:, toes].all()
    floor = original[..., 2].min()
    assert (original[:, toes, 2][planted_heads[:, toes] & ~on_ground[:, None]] < floor + 0.05).all()
    for toe in toes:
        mask = planted_heads[:, toe]
        # within the planted tolerance of the original (2 mm), and the original's planted toe does not move at all
        assert np.linalg.norm(positions[mask, toe] - original[mask, toe], axis=-1).max() <= 0.002 + ROUNDOFF
        assert np.ptp(original[mask, toe], axis=0).max() < 1e-9
    assert fit.max_planted_error <= 0.002


def test_keys_sit_at_the_turning_points(jump):
    translation, _, _, fit, frames = jump
    keyed = {(curve.channel.bone, curve.channel.property): set(curve.co[:, 0].astype(int)) for curve in fit.curves}
    apex = frames[int(np.argmax(translation[:, 1]))]
    lowest = frames[int(np.argmin(translation[:20 + 10, 1]))]  # the crouch before take-off (frames 1-30)
    assert apex in keyed[(0, "location")]
    assert lowest in keyed[(0, "location")] or lowest - 1 in keyed[(0, "location")]  # a plateau's first frame
    # the arms' swing turns at 0.75 s (back) and 1.25 s (up): frames 23.5 and 38.5 on the 1-based timeline
    shoulder = keyed[(JOINT["left_shoulder"], "rotation_quaternion")]
    assert shoulder & {23, 24, 25} and shoulder & {38, 39, 40}
    for group, turning in fit.turning_frames.items():
        for curve in fit.curves:
            if curve.channel.bone == group:
                assert set(frames[turning].astype(int)) <= set(curve.co[:, 0].astype(int))


def test_the_channels_of_a_bone_share_their_key_frames(jump):
    *_, fit, _ = jump
    by_bone: dict[int, set] = {}
    for curve in fit.curves:
        by_bone.setdefault(curve.channel.bone, set()).add(tuple(curve.co[:, 0]))
    assert all(len(frames) == 1 for frames in by_bone.values())


def test_sharing_across_the_rig_keys_every_curve_on_the_same_frames():
    translation, rotations = turn_clip()
    fit, _ = fit_clip(translation, rotations, share="RIG")
    assert len({tuple(curve.co[:, 0]) for curve in fit.curves}) == 1


def test_a_kink_gets_a_key_with_free_handles_and_smooth_keys_aligned_handles():
    frames = np.arange(60, dtype=np.float64)
    angle = np.where(frames < 30, 0.02 * frames, 0.6 - 0.015 * (frames - 30))  # turns back at once at frame 30
    rig = _chain_rig(1)
    channels = [Channel(0, "rotation_euler", 0)]
    fit = sparse_keys.fit_sparse_keys(rig, frames, channels, angle[:, None], SparseSettings(tolerance=0.001))
    curve = fit.curves[0]
    assert 30.0 in curve.co[:, 0]
    at = list(curve.co[:, 0]).index(30.0)
    assert curve.free[at] and curve.free.sum() == 1
    slopes = (curve.co[at, 1] - curve.handle_left[at, 1]) / (curve.co[at, 0] - curve.handle_left[at, 0]), \
        (curve.handle_right[at, 1] - curve.co[at, 1]) / (curve.handle_right[at, 0] - curve.co[at, 0])
    np.testing.assert_allclose(slopes, (0.02, -0.015), atol=1e-12)
    assert curve.co.shape[0] == 3  # the line on each side needs no other key
    for key in np.flatnonzero(~curve.free):
        left = curve.co[key] - curve.handle_left[key]
        right = curve.handle_right[key] - curve.co[key]
        assert abs(left[0] * right[1] - left[1] * right[0]) < 1e-12  # collinear: ALIGNED


def _chain_rig(bones: int, length: float = 0.5, modes: tuple[str, ...] | None = None) -> Rig:
    """A chain of bones pointing up (+Z), each `length` long, the first at the origin."""
    rest = np.tile(np.eye(4), (bones, 1, 1))
    rest[:, :3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # the bone's +Y along the world's +Z
    rest[:, 2, 3] = length * np.arange(bones)
    return Rig(tuple(f"b{bone}" for bone in range(bones)), tuple(range(-1, bones - 1)), rest,
               np.full(bones, length), modes or ("XYZ",) * bones)


def test_the_bezier_evaluator_follows_blenders_rules():
    co = np.array([[0.0, 0.0], [3.0, 3.0], [6.0, 0.0]])
    left = np.array([[-1.0, 0.0], [2.0, 3.0], [5.0, 0.0]])
    right = np.array([[1.0, 0.0], [4.0, 3.0], [7.0, 0.0]])
    # thirds: x(t) is linear, so the curve is the cubic Hermite with slopes 0 at the keys
    at = np.array([-5.0, 0.0, 1.5, 3.0, 4.5, 6.0, 9.0])
    values = fcurve_eval.evaluate_fcurve(co, left, right, "BEZIER", at)
    np.testing.assert_allclose(values, [0.0, 0.0, 1.5, 3.0, 1.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(fcurve_eval.evaluate_fcurve(co, left, right, "LINEAR", [1.0, 4.5]), [1.0, 1.5])
    np.testing.assert_allclose(fcurve_eval.evaluate_fcurve(co, left, right, "CONSTANT", [2.9, 3.5]), [0.0, 3.0])
    # a handle reaching past the segment's other end is shortened along itself to the segment: (4, 2) over 3 frames
    long_right = np.array([[4.0, 2.0], [4.0, 3.0], [7.0, 0.0]])
    short_left = np.array([[-1.0, 0.0], [2.5, 3.0], [5.0, 0.0]])
    corrected = fcurve_eval.evaluate_fcurve(co, short_left, long_right, "BEZIER", [1.5])
    p1, p2 = np.array([3.0, 1.5]), np.array([2.5, 3.0])
    t = np.linspace(0, 1, 200001)
    curve = ((1 - t) ** 3)[:, None] * co[0] + (3 * (1 - t) ** 2 * t)[:, None] * p1 \
        + (3 * (1 - t) * t**2)[:, None] * p2 + (t**3)[:, None] * co[1]
    expected = np.interp(1.5, curve[:, 0], curve[:, 1])
    assert corrected[0] == pytest.approx(expected, abs=1e-6)  # sampled at 2e5 points: the interpolation errs < 1e-7


def test_euler_orders_follow_blender_xyz_means_z_after_y_after_x():
    angles = np.array([0.3, -0.4, 0.5])
    from hymotion.shared.rotations import axis_angle_matrix

    rx, ry, rz = (axis_angle_matrix(np.eye(3)[axis], angles[axis]) for axis in range(3))
    np.testing.assert_allclose(sparse_keys.euler_matrix(angles, "XYZ"), rz @ ry @ rx, atol=1e-15)
    np.testing.assert_allclose(sparse_keys.euler_matrix(angles, "ZXY"), ry @ rx @ rz, atol=1e-15)


def test_every_rotation_mode_location_and_scale_are_fitted_through_fk():
    frames = np.arange(90, dtype=np.float64)
    wave = np.sin(frames / 90 * 2 * np.pi)[:, None]
    rig = _chain_rig(4, modes=("QUATERNION", "AXIS_ANGLE", "ZXY", "XYZ"))
    half = 0.4 * wave[:, 0]
    channels = [Channel(0, "rotation_quaternion", index) for index in range(4)]
    columns = [np.cos(half), np.sin(half), 0 * half, 0 * half]
    channels += [Channel(1, "rotation_axis_angle", index) for index in range(4)]
    columns += [0.6 * wave[:, 0], 0 * half, 0 * half + 1.0, 0 * half]
    channels += [Channel(2, "rotation_euler", 2), Channel(2, "location", 0), Channel(3, "scale", 1)]
    columns += [0.5 * wave[:, 0], 0.05 * wave[:, 0], 1.0 + 0.2 * wave[:, 0]]
    values = np.stack(columns, axis=1)
    fit = sparse_keys.fit_sparse_keys(rig, frames, channels, values)
    table = np.broadcast_to(sparse_keys.REST_POSE, (frames.size, 4, sparse_keys.SLOTS)).copy()
    played = table.copy()
    for column, channel in enumerate(channels):
        table[:, channel.bone, channel.slot] = values[:, column]
    for curve in fit.curves:
        played[:, curve.channel.bone, curve.channel.slot] = fcurve_eval.evaluate_fcurve(
            curve.co, curve.handle_left, curve.handle_right, "BEZIER", frames)
    points = sparse_keys.bone_points(rig, sparse_keys.pose_matrices(rig, played))
    expected = sparse_keys.bone_points(rig, sparse_keys.pose_matrices(rig, table))
    assert np.linalg.norm(points - expected, axis=-1).max() <= 0.005 + ROUNDOFF
    assert fit.key_count < fit.dense_key_count / 6


def test_channels_left_out_keep_their_values_and_get_no_keys():
    translation, rotations = turn_clip()
    channels, values = clip_channels(translation, rotations)
    fitted = np.array([channel.bone != JOINT["head"] for channel in channels])
    fit = sparse_keys.fit_sparse_keys(smpl_rig(), np.arange(values.shape[0]), channels, values, fitted=fitted)
    assert {curve.channel.bone for curve in fit.curves} == set(range(len(BODY_JOINT_NAMES))) - {JOINT["head"]}
    assert fit.max_position_error <= 0.005


@pytest.mark.parametrize("overrides, message", [
    ({"tolerance": 0.0}, "tolerance is 0.0; it must be above zero"),
    ({"tolerance": -1.0}, "tolerance is -1.0"),
    ({"rotation_tolerance": 0.0}, "rotation tolerance is 0.0"),
    ({"tolerance": float("nan")}, "tolerance is nan"),
    ({"share": "CURVE"}, "Unknown key sharing"),
])
def test_bad_settings_are_refused_with_a_hint(overrides, message):
    translation, rotations = turn_clip()
    with pytest.raises(HyMotionError, match=message) as caught:
        fit_clip(translation, rotations, **overrides)
    assert caught.value.code == BAD_REQUEST and caught.value.hint


def test_bad_animation_is_refused_with_a_hint():
    rig = _chain_rig(2)
    channel = [Channel(0, "rotation_euler", 0)]
    cases = [
        (lambda: sparse_keys.fit_sparse_keys(rig, np.arange(5), [], np.zeros((5, 0))), "no animated pose-bone"),
        (lambda: sparse_keys.fit_sparse_keys(rig, np.arange(5), channel, np.zeros((4, 1))), "expected \\(5, 1\\)"),
        (lambda: sparse_keys.fit_sparse_keys(rig, np.arange(5), channel, np.full((5, 1), np.nan)), "NaN"),
        (lambda: sparse_keys.fit_sparse_keys(rig, np.array([0, 1, 3]), channel, np.zeros((3, 1))), "evenly"),
        (lambda: sparse_keys.fit_sparse_keys(rig, np.arange(3), [Channel(0, "rotation_euler", 3)], np.zeros((3, 1))),
         "no pose-bone channel"),
        (lambda: sparse_keys.fit_sparse_keys(rig, np.arange(3), [Channel(5, "scale", 0)], np.zeros((3, 1))),
         "names no bone"),
        (lambda: Rig(("a", "b"), (1, -1), np.tile(np.eye(4), (2, 1, 1)), np.ones(2), ("XYZ", "XYZ")),
         "comes before its parent"),
        (lambda: Rig(("a",), (-1,), np.eye(4)[None], np.ones(1), ("EULER",)), "Unknown rotation mode"),
    ]
    for call, message in cases:
        with pytest.raises(HyMotionError, match=message) as caught:
            call()
        assert caught.value.code == BAD_REQUEST and caught.value.hint


def test_one_frame_or_still_channels_need_only_their_end_keys():
    rig = _chain_rig(2)
    channels = [Channel(0, "rotation_euler", 0), Channel(1, "rotation_euler", 1)]
    single = sparse_keys.fit_sparse_keys(rig, np.array([4.0]), channels, np.array([[0.2, 0.1]]))
    assert [curve.co.tolist() for curve in single.curves] == [[[4.0, 0.2]], [[4.0, 0.1]]]
    still = sparse_keys.fit_sparse_keys(rig, np.arange(50), channels, np.full((50, 2), 0.3))
    assert [curve.co[:, 0].tolist() for curve in still.curves] == [[0.0, 49.0]] * 2


def test_turning_points_ignore_ripples_smaller_than_the_swing():
    values = np.array([0.0, 1.0, 0.9, 1.05, 0.0, -1.0, -0.95, -1.2, 0.5])
    assert sparse_keys.turning_points(values, 0.5) == [3, 7]
    assert sparse_keys.turning_points(values, 0.05) == [1, 2, 3, 5, 6, 7]
    assert sparse_keys.turning_points(np.linspace(0, 1, 10), 0.1) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    amplitudes=st.lists(st.floats(0.0, 1.5), min_size=3, max_size=3),
    periods=st.lists(st.floats(10.0, 120.0), min_size=3, max_size=3),
    tolerance=st.floats(0.001, 0.02),
    frames=st.integers(2, 80),
)
def test_any_smooth_motion_of_a_chain_stays_within_the_tolerance(amplitudes, periods, tolerance, frames):
    """Property: whatever the smooth motion of a three-bone arm, the keys keep every head and tail within the
    tolerance (measured by an FK built here from plain rotations), and never need more keys than frames."""
    at = np.arange(frames, dtype=np.float64)
    values = np.stack([a * np.sin(2 * np.pi * at / p + k) for k, (a, p) in enumerate(zip(amplitudes, periods))], 1)
    rig = _chain_rig(3)
    channels = [Channel(bone, "rotation_euler", 0) for bone in range(3)]
    fit = sparse_keys.fit_sparse_keys(rig, at, channels, values, SparseSettings(tolerance=tolerance))
    played = np.stack([fcurve_eval.evaluate_fcurve(c.co, c.handle_left, c.handle_right, "BEZIER", at)
                       for c in fit.curves], axis=1)

    def arm_points(angles):  # each bone turns about its own x axis; the arm starts upright at the origin
        total = np.cumsum(angles, axis=1)
        steps = 0.5 * np.stack([np.zeros_like(total), -np.sin(total), np.cos(total)], axis=-1)
        return np.cumsum(steps, axis=1)

    assert np.linalg.norm(arm_points(played) - arm_points(values), axis=-1).max() <= tolerance + ROUNDOFF
    assert all(curve.co.shape[0] <= frames for curve in fit.curves)
