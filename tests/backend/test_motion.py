"""Decoding the model's 201 numbers: known rotations, forward kinematics by hand, smoothing, ground, clip files."""

import json
import math

import numpy as np
import pytest
from backend_helpers import axis_angle_quaternion, random_unit_quaternions

from hymotion.pipeline import motion
from hymotion.pipeline.motion import MotionClip
from hymotion.shared import skeleton
from hymotion.shared.rotations import continuous_quaternions, quaternion_to_matrix

JOINTS = skeleton.NUM_BODY_JOINTS
REST = skeleton.BODY_REST_POSITIONS
S = math.sqrt(0.5)
# Tolerances. Everything here is float64 numpy on fixed inputs, so no CPU kernel choice moves a result by more than
# float64 rounding (unit roundoff 1.1e-16).
# - Closed-form results (rotations, 22-joint chains, ground shifts) are O(1) values built from a few dozen operations:
#   rounding stays below ~1e-14, and 1e-12 keeps 100x margin.
# - Iterative results (the power-iteration eigenvector, Markley averages against eigh) carry the eigenvector's
#   conditioning, error ~ 1e-16 / eigen-gap; the smallest relative gap in the fixed draws here is 0.014, so the error
#   stays near 1e-14, and 1e-9 keeps a wide margin (it would take a gap below 1e-7 to reach it).
EXACT = 1e-12
ITERATIVE = 1e-9

# 90 degrees about each axis, written out by hand: the matrix and its quaternion (w, x, y, z).
QUARTER_TURNS = {
    "x": (np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float), np.array([S, S, 0, 0])),
    "y": (np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float), np.array([S, 0, S, 0])),
    "z": (np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float), np.array([S, 0, 0, S])),
}


def joint(name: str) -> int:
    return skeleton.BODY_JOINT_NAMES.index(name)


def rot6d_of(matrix: np.ndarray) -> np.ndarray:
    """The model's 6 numbers for a rotation: the first two matrix columns, read row by row."""
    return np.array([matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1], matrix[2, 0], matrix[2, 1]])


def latent_with(rotations: dict[int, np.ndarray], frames: int = 3, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A denormalised (F, 201) frame: given joint rotation matrices (others identity), root translation."""
    features = np.zeros((frames, motion.LATENT_DIM))
    features[:, 0:3] = translation
    for index in range(JOINTS):
        features[:, 3 + 6 * index : 9 + 6 * index] = rot6d_of(rotations.get(index, np.eye(3)))
    return features


def decode_plain(features: np.ndarray, **options):
    """Decode with mean 0 and std 1 so the latent is the feature vector itself."""
    options = {"smoothing": False, "align_ground": False} | options
    return motion.decode_latent(features, np.zeros(motion.LATENT_DIM), np.ones(motion.LATENT_DIM), **options)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 2 * np.arccos(np.clip(np.abs(np.sum(a * b, axis=-1)), 0, 1))


def assert_same_rotation(q: np.ndarray, expected: np.ndarray, atol: float = ITERATIVE) -> None:
    sign = 1.0 if np.dot(q, expected) >= 0 else -1.0
    np.testing.assert_allclose(sign * q, expected, atol=atol)


def test_identity_rot6d_decodes_to_identity_quaternions_and_rest_pose():
    translation, rotations, positions = decode_plain(latent_with({}, translation=(0.1, 0.2, 0.3)))
    np.testing.assert_allclose(rotations, np.broadcast_to([1.0, 0, 0, 0], rotations.shape), atol=EXACT)
    np.testing.assert_allclose(positions, np.broadcast_to(REST + [0.1, 0.2, 0.3], positions.shape), atol=EXACT)
    np.testing.assert_allclose(translation, np.broadcast_to([0.1, 0.2, 0.3], translation.shape))


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_quarter_turn_about_each_axis_decodes_to_its_quaternion(axis):
    matrix, quaternion = QUARTER_TURNS[axis]
    _, rotations, _ = decode_plain(latent_with({0: matrix, joint("left_elbow"): matrix}))
    for index in (0, joint("left_elbow")):
        assert_same_rotation(rotations[0, index], quaternion)
    assert_same_rotation(rotations[0, joint("right_elbow")], np.array([1.0, 0, 0, 0]))
    np.testing.assert_allclose(quaternion_to_matrix(quaternion), matrix, atol=EXACT)


def test_rot6d_columns_are_orthonormalised_by_gram_schmidt():
    matrix, _ = QUARTER_TURNS["y"]
    first, second = matrix[:, 0], matrix[:, 1]
    skewed = np.stack([2.5 * first, 0.7 * second + 0.4 * first], axis=-1)  # same plane, not orthonormal
    np.testing.assert_allclose(motion.rot6d_to_matrix(skewed.reshape(6)), matrix, atol=EXACT)


def test_rot6d_round_trips_through_rotation_matrices():
    rng = np.random.default_rng(0)
    matrices = quaternion_to_matrix(random_unit_quaternions(rng, (200,)))
    np.testing.assert_allclose(motion.rot6d_to_matrix(motion.matrix_to_rot6d(matrices)), matrices, atol=EXACT)


def test_denormalize_treats_std_below_one_thousandth_as_zero():
    latent = np.array([[2.0, 2.0, 2.0, 2.0]])
    mean = np.array([1.0, 1.0, 1.0, 1.0])
    std = np.array([0.5, 9e-4, 0.0, 1e-3])
    np.testing.assert_allclose(motion.denormalize(latent, mean, std), [[2.0, 1.0, 1.0, 1.002]])


def test_pelvis_quarter_turn_about_y_moves_the_left_hip_as_computed_by_hand():
    matrix, _ = QUARTER_TURNS["y"]
    _, _, positions = decode_plain(latent_with({0: matrix}, translation=(1.0, 0.0, -2.0)))
    pelvis = REST[0] + [1.0, 0.0, -2.0]
    dx, dy, dz = REST[joint("left_hip")] - REST[0]
    # A quarter turn about +Y takes (x, y, z) to (z, y, -x).
    np.testing.assert_allclose(positions[0, 0], pelvis, atol=EXACT)
    np.testing.assert_allclose(positions[0, joint("left_hip")], pelvis + [dz, dy, -dx], atol=EXACT)


def test_left_knee_quarter_turn_about_x_moves_the_left_ankle_and_foot_only():
    matrix, _ = QUARTER_TURNS["x"]
    _, _, positions = decode_plain(latent_with({joint("left_knee"): matrix}))
    knee = REST[joint("left_knee")]
    dx, dy, dz = REST[joint("left_ankle")] - knee
    # A quarter turn about +X takes (x, y, z) to (x, -z, y).
    ankle = knee + [dx, -dz, dy]
    np.testing.assert_allclose(positions[0, joint("left_ankle")], ankle, atol=EXACT)
    fx, fy, fz = REST[joint("left_foot")] - REST[joint("left_ankle")]
    np.testing.assert_allclose(positions[0, joint("left_foot")], ankle + [fx, -fz, fy], atol=EXACT)
    untouched = [i for i in range(JOINTS) if i not in (joint("left_ankle"), joint("left_foot"))]
    np.testing.assert_allclose(positions[0, untouched], REST[untouched], atol=EXACT)


def test_smoothing_leaves_constant_rotations_unchanged_even_with_sign_flips():
    rng = np.random.default_rng(1)
    constant = np.repeat(random_unit_quaternions(rng, (1, JOINTS)), 40, axis=0)
    flipped = constant * rng.choice([-1.0, 1.0], size=(40, JOINTS, 1))
    smoothed = motion.smooth_quaternions(flipped)
    np.testing.assert_allclose(np.abs(np.sum(smoothed * constant, axis=-1)), 1.0, atol=EXACT)


def test_smoothing_keeps_steady_turns_and_reduces_jitter():
    rng = np.random.default_rng(2)
    frames = 90
    steady = axis_angle_quaternion([0.3, 1.0, -0.2], np.linspace(0.0, 1.5, frames))[:, None]
    noise = axis_angle_quaternion([1.0, 0.0, 0.0], rng.normal(0.0, 0.05, frames))[:, None]
    w1, v1 = steady[..., :1], steady[..., 1:]
    w2, v2 = noise[..., :1], noise[..., 1:]
    jittery = np.concatenate([w1 * w2 - np.sum(v1 * v2, -1, keepdims=True), w1 * v2 + w2 * v1 + np.cross(v1, v2)], -1)

    inner = slice(motion.SMOOTHING_RADIUS, frames - motion.SMOOTHING_RADIUS)
    smoothed_steady = motion.smooth_quaternions(steady)
    np.testing.assert_allclose(smoothed_steady[inner], steady[inner], atol=ITERATIVE, err_msg="steady turn")

    before = angle_between(jittery, steady).mean()
    after = angle_between(motion.smooth_quaternions(jittery), steady).mean()
    # A sigma-1 Gaussian keeps sqrt(sum w^2) = 0.53 of white noise; this fixed draw keeps 0.44. 0.6 asks for the
    # white-noise reduction with room for the draw; without smoothing the ratio would be 1.
    assert after < 0.6 * before


def reference_smoothing(quaternions: np.ndarray) -> np.ndarray:
    """Markley's weighted average per frame with numpy's eigh, one window at a time (slow and obvious)."""
    q = continuous_quaternions(quaternions)
    radius = motion.SMOOTHING_RADIUS
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / motion.SMOOTHING_SIGMA) ** 2)
    weights /= weights.sum()
    result = np.empty_like(q)
    for frame in range(len(q)):
        for j in range(q.shape[1]):
            window = q[np.clip(frame + offsets, 0, len(q) - 1), j]
            window = np.where(window @ q[frame, j] < 0, -1, 1)[:, None] * window
            scatter = (weights[:, None, None] * window[:, :, None] * window[:, None, :]).sum(0)
            average = np.linalg.eigh(scatter)[1][:, -1]
            result[frame, j] = average if average @ q[frame, j] >= 0 else -average
    return result


def test_smoothing_equals_an_eigh_based_markley_average():
    rng = np.random.default_rng(3)
    base = axis_angle_quaternion([0.0, 1.0, 0.0], np.linspace(0, 2, 25))[:, None]
    noisy = continuous_quaternions(base + 0.15 * rng.normal(size=(25, 3, 4)))
    noisy /= np.linalg.norm(noisy, axis=-1, keepdims=True)
    wild = random_unit_quaternions(rng, (25, 2))
    for quaternions in (noisy, wild):
        np.testing.assert_allclose(
            motion.smooth_quaternions(quaternions), reference_smoothing(quaternions), atol=ITERATIVE
        )


@pytest.mark.parametrize("spread", [0.05, None])
def test_power_iteration_average_equals_eigh_dominant_eigenvector(spread):
    rng = np.random.default_rng(4)
    count, window = 500, 9
    if spread is None:
        quaternions = random_unit_quaternions(rng, (count, window))
    else:
        centre = random_unit_quaternions(rng, (count, 1))
        quaternions = centre + spread * rng.normal(size=(count, window, 4))
        quaternions /= np.linalg.norm(quaternions, axis=-1, keepdims=True)
        quaternions *= np.where(np.sum(quaternions * centre, -1, keepdims=True) < 0, -1, 1)
    weights = rng.uniform(0.1, 1.0, size=(count, window))
    matrices = np.einsum("nk,nka,nkb->nab", weights, quaternions, quaternions)
    initial = np.einsum("nk,nka->na", weights, quaternions)
    vectors = motion.dominant_eigenvector(matrices, initial.copy())
    expected = np.linalg.eigh(matrices)[1][..., -1]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=EXACT)
    np.testing.assert_allclose(np.abs(np.sum(vectors * expected, axis=-1)), 1.0, atol=ITERATIVE)


def test_ground_alignment_puts_the_lowest_sole_at_zero():
    frames = 30
    features = latent_with({}, frames=frames)
    features[:, 1] = 0.4 + 0.3 * np.sin(np.linspace(0, 3, frames))  # the body bobs up and down
    knee_bend = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    features[:, 3 + 6 * joint("right_knee") : 9 + 6 * joint("right_knee")] = rot6d_of(knee_bend)
    translation, rotations, positions = decode_plain(features, align_ground=True)
    soles = [positions[:, joint(name), 1] - motion.FOOT_SOLE_GAP for name in ("left_foot", "right_foot")]
    soles += [positions[:, joint(name), 1] - motion.ANKLE_SOLE_GAP for name in ("left_ankle", "right_ankle")]
    assert min(sole.min() for sole in soles) == pytest.approx(0.0, abs=EXACT)
    np.testing.assert_allclose(positions, skeleton.forward_kinematics(rotations, translation), atol=EXACT)
    np.testing.assert_allclose(translation[:, [0, 2]], 0.0)


def test_rest_pose_on_the_ground_stands_on_its_lower_foot():
    _, _, positions = decode_plain(latent_with({}), align_ground=True)
    feet = positions[:, [joint("left_foot"), joint("right_foot")], 1]
    assert feet.min() == pytest.approx(motion.FOOT_SOLE_GAP, abs=EXACT)


def test_smoothing_in_decode_changes_noisy_clips_and_can_be_switched_off():
    rng = np.random.default_rng(6)
    latent = rng.normal(size=(40, motion.LATENT_DIM))
    mean, std = np.zeros(motion.LATENT_DIM), np.ones(motion.LATENT_DIM)
    rough = motion.decode_latent(latent, mean, std, smoothing=False)
    smooth = motion.decode_latent(latent, mean, std, smoothing=True)
    jitter = [np.abs(np.diff(result[0], n=2, axis=0)).mean() for result in (rough, smooth)]
    # Savitzky-Golay (11, 5) keeps about a fifth of white noise's second differences (0.21 on this fixed draw);
    # 0.5 is more than twice that, and without smoothing the ratio is 1.
    assert jitter[1] < 0.5 * jitter[0]
    np.testing.assert_allclose(np.linalg.norm(smooth[1], axis=-1), 1.0, atol=ITERATIVE)


def sample_clip() -> MotionClip:
    rng = np.random.default_rng(7)
    frames = 12
    rotations = random_unit_quaternions(rng, (frames, JOINTS)).astype(np.float32)
    translation = rng.normal(size=(frames, 3)).astype(np.float32)
    return MotionClip(
        translation=translation, rotations=rotations,
        positions=skeleton.forward_kinematics(rotations, translation).astype(np.float32),
        prompt="a person waves, then bows — slowly", seed=17, duration=0.4, model_id="HY-Motion-1.0-lite",
    )


EXPECTED_FIELDS = {"fps", "joint_names", "parents", "rest_offsets", "translation", "rotations", "positions", "prompt",
                   "seed", "duration", "model_id"}


@pytest.mark.parametrize("fmt", ["npz", "json"])
def test_clip_file_round_trip_keeps_every_field(tmp_path, fmt):
    clip = sample_clip()
    path = clip.save(tmp_path / f"clip.{fmt}", fmt)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as npz:
            raw = {key: npz[key] for key in npz.files}
    else:
        raw = {key: np.asarray(value) for key, value in json.loads(path.read_text()).items()}
    assert set(raw) == EXPECTED_FIELDS
    assert int(raw["fps"]) == 30
    assert list(raw["joint_names"]) == list(skeleton.BODY_JOINT_NAMES)
    assert list(raw["parents"]) == list(skeleton.BODY_PARENTS)
    # stored as float32: offsets under 0.5 m round by at most 3e-8 (half an ulp), 1e-7 is 3x that
    np.testing.assert_allclose(raw["rest_offsets"], skeleton.BODY_REST_OFFSETS, atol=1e-7)
    assert raw["translation"].shape == (12, 3)
    assert raw["rotations"].shape == (12, JOINTS, 4)
    assert raw["positions"].shape == (12, JOINTS, 3)
    assert (str(raw["prompt"]), int(raw["seed"]), float(raw["duration"]), str(raw["model_id"])) == (
        clip.prompt, 17, 0.4, "HY-Motion-1.0-lite",
    )

    loaded = MotionClip.load(path)
    for name in ("translation", "rotations", "positions"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clip, name))
    assert (loaded.prompt, loaded.seed, loaded.duration, loaded.model_id, loaded.fps) == (
        clip.prompt, clip.seed, clip.duration, clip.model_id, 30,
    )
