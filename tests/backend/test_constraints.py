"""Known frames: continue from a pose, in-between, loops and timelines, on the tiny random model (fp32 cpu plan).

The tiny model's motion is noise, which makes the pins a hard test: nothing but the constraint brings a frame onto
the given pose.

Tolerances. The issue asks for rotations within 1e-4 and the root within 1 mm. What the pipeline can miss by is
float32 rounding: clips are stored as float32 (quaternion components to 6e-8, translations of a few metres to 5e-7
m) and the canonical-frame move is float64; so 1e-4 (rotation-matrix entries) and 1e-3 m keep a margin above 100x.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from backend_helpers import settings

from hymotion.cli import main
from hymotion.pipeline import known_frames as constraints
from hymotion.pipeline import motion, timeline
from hymotion.pipeline.known_frames import MotionConstraint, Placement, Pose
from hymotion.pipeline.loading import load_pipeline
from hymotion.pipeline.timeline import Segment
from hymotion.shared import skeleton
from hymotion.shared.errors import HyMotionError
from hymotion.shared.jobs import frames_for_duration

ROTATION_TOLERANCE = 1e-4
ROOT_TOLERANCE = 1e-3  # metres
STEPS = 4


def matrices(quaternions):
    return skeleton.quaternion_to_matrix(np.asarray(quaternions, dtype=np.float64))


def assert_same_pose(clip, frame, translation, rotations):
    """Rotations compared as matrices (a quaternion and its negative are the same rotation)."""
    np.testing.assert_allclose(matrices(clip.rotations[frame]), matrices(rotations), atol=ROTATION_TOLERANCE)
    np.testing.assert_allclose(clip.translation[frame], translation, atol=ROOT_TOLERANCE)


def generate(pipeline, constraint=None, **options):
    options.setdefault("steps", STEPS)
    return list(pipeline.generate(settings(**options), constraint=constraint))


@pytest.fixture(scope="module")
def walk(tiny_pipeline):
    """A 2 s clip to continue from, turned by 70 degrees and moved away from the origin, so that the canonical
    frame has real work to do."""
    clip = generate(tiny_pipeline, prompts=("a person walks",), seeds=(7,))[0]
    moved = Placement(math.radians(70), (3.0, 0.0, -2.0))
    translation, rotations = moved.to_world(clip.translation, clip.rotations)
    return motion.MotionClip(translation.astype(np.float32), rotations.astype(np.float32),
                             skeleton.forward_kinematics(rotations, translation).astype(np.float32))


def random_pose(seed: int) -> Pose:
    rng = np.random.default_rng(seed)
    rotations = rng.normal(size=(1, skeleton.NUM_BODY_JOINTS, 4))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    return Pose(rng.normal(size=(1, 3)) + [0.0, 1.0, 0.0], rotations)


# --- features and the canonical frame -------------------------------------------------------------------------------


def test_pose_features_decode_back_to_the_pose_and_hold_its_joint_positions():
    pose = random_pose(1)
    rng = np.random.default_rng(2)
    mean, std = rng.normal(size=201) * 0.1, rng.uniform(0.05, 0.5, size=201)
    features = motion.encode_features(pose.translation, pose.rotations)
    positions = skeleton.forward_kinematics(pose.rotations, pose.translation)
    # Pure float64 arithmetic on values of order 1: 1e-9 is far above its rounding, far below any wrong channel.
    np.testing.assert_allclose(features[:, 135:].reshape(1, 22, 3), positions, atol=1e-9)
    translation, rotations, _ = motion.decode_latent(
        motion.normalize(features, mean, std), mean, std, smoothing=False, align_ground=False
    )
    np.testing.assert_allclose(translation, pose.translation, atol=1e-9)
    np.testing.assert_allclose(matrices(rotations), matrices(pose.rotations), atol=1e-9)


def test_normalize_gives_zero_on_constant_channels_so_they_decode_to_their_mean():
    mean, std = np.array([1.0, 2.0]), np.array([0.5, 1e-4])
    latent = motion.normalize(np.array([2.0, 7.0]), mean, std)
    np.testing.assert_array_equal(latent, [2.0, 0.0])
    np.testing.assert_array_equal(motion.denormalize(latent, mean, std), [2.0, 2.0])


def test_canonical_frame_puts_the_pelvis_on_the_origin_facing_plus_z_and_back_is_the_identity():
    pose = random_pose(3)
    placement = Placement.of(pose)
    canonical = placement.pose_to_canonical(pose)
    pelvis = skeleton.forward_kinematics(canonical.rotations, canonical.translation)[0, 0]
    # float64 turns of values of order 1: 1e-9 is far above rounding.
    np.testing.assert_allclose(pelvis[[0, 2]], 0.0, atol=1e-9)
    assert abs(constraints.heading(canonical.rotations[0])) < 1e-9
    assert pelvis[1] == pytest.approx(skeleton.forward_kinematics(pose.rotations, pose.translation)[0, 0, 1])
    back_translation, back_rotations = placement.to_world(canonical.translation, canonical.rotations)
    np.testing.assert_allclose(back_translation, pose.translation, atol=1e-9)
    np.testing.assert_allclose(matrices(back_rotations), matrices(pose.rotations), atol=1e-9)


def test_ramp_is_one_on_pinned_frames_and_falls_to_zero_beside_them():
    weights, nearest = constraints.ramp_weights([0, 1, 19], 20, ramp=3)
    np.testing.assert_allclose(weights, [1, 1, 0.75, 0.5, 0.25] + [0] * 11 + [0.25, 0.5, 0.75, 1])
    assert list(nearest[:5]) == [0, 1, 1, 1, 1] and list(nearest[-4:]) == [19, 19, 19, 19]


# --- the sampler ----------------------------------------------------------------------------------------------------


def test_sampler_alone_puts_the_pinned_latents_exactly(tiny_pipeline, walk, monkeypatch):
    """With smoothing off and the decode-side correction switched off, the pinned frames come out of the sampler
    itself: at t = 1 the flow path t·x_known + (1 − t)·noise is x_known."""
    monkeypatch.setattr(constraints, "pin_poses", lambda t, r, pins: (np.asarray(t, float), np.asarray(r, float)))
    end = Pose(walk.translation[20], walk.rotations[20])
    constraint = MotionConstraint(start=Pose(walk.translation[-1], walk.rotations[-1]), end=end)
    clip = generate(tiny_pipeline, constraint, smoothing=False)[0]
    # The latent holds x_known in float32 (relative 6e-8); denormalising, Gram-Schmidt of unit columns and the move
    # back keep that order, so 1e-5 is a 100x margin, and a frame the sampler did not pin is off by order 1.
    np.testing.assert_allclose(matrices(clip.rotations[0]), matrices(walk.rotations[-1]), atol=1e-5)
    np.testing.assert_allclose(matrices(clip.rotations[-1]), matrices(walk.rotations[20]), atol=1e-5)
    np.testing.assert_allclose(clip.translation[[0, -1]], walk.translation[[-1, 20]], atol=1e-5)


def test_unconstrained_generation_is_unchanged_by_constrained_runs(tiny_pipeline, walk):
    before = generate(tiny_pipeline, seeds=(3,))[0]
    generate(tiny_pipeline, MotionConstraint(start=Pose(walk.translation[-1], walk.rotations[-1])), seeds=(3,))
    after = generate(tiny_pipeline, seeds=(3,))[0]
    for name in ("translation", "rotations", "positions"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name))


def constrained_clips(pipeline, walk):
    constraint = MotionConstraint(start=Pose(walk.translation[-4:], walk.rotations[-4:]),
                                  end=Pose(walk.translation[30], walk.rotations[30]))
    return generate(pipeline, constraint, prompts=("a person walks", "a person turns"), durations=(1.0, 2.0),
                    seeds=(0, 1), smoothing=False)


def test_gpu_plan_placement_decodes_constrained_clips_as_the_cpu_plan(tiny_pipeline, walk, tmp_path):
    """The GPU plans decode in torch (motion_torch, ground alignment off here); run on the CPU in fp32 they must
    give the cpu plan's clips. Same fp32 arithmetic up to summation order; decoding the tiny model's noise latents
    turns that into a few 1e-5 (FP32_DECODED in test_pipeline.py), so 1e-4 keeps >= 3x margin."""
    gpu_plan = load_pipeline("tiny-random", plan="gpu", device="cpu", cache_dir=tmp_path / "gpu", precision="fp32")
    for ours, reference in zip(constrained_clips(gpu_plan, walk), constrained_clips(tiny_pipeline, walk), strict=True):
        np.testing.assert_allclose(ours.positions, reference.positions, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_constrained_batches_on_the_cuda_graph_equal_the_eager_steps(walk, tmp_path):
    """The put-back runs between graph replays on the graph's own buffer: same clips as without the graph (fp32;
    kernels may sum in another order: FP32_ACROSS_KERNELS in test_plans_cuda.py)."""
    graphed = load_pipeline("tiny-random", plan="gpu", device="cuda", cache_dir=tmp_path / "g", precision="fp32")
    eager = load_pipeline("tiny-random", plan="gpu", device="cuda", cache_dir=tmp_path / "e", precision="fp32")
    eager._plan = dataclasses.replace(eager._plan, cuda_graph=False)
    for ours, reference in zip(constrained_clips(graphed, walk), constrained_clips(eager, walk), strict=True):
        np.testing.assert_allclose(ours.positions, reference.positions, atol=1e-4)
    assert graphed._graphs, "the gpu plan must capture its step even with a constraint"


# --- continue -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("context", [1, 8])
def test_continued_clip_starts_in_the_last_context_frame_in_world_position_and_heading(tiny_pipeline, walk, context):
    start = Pose(walk.translation[-context:], walk.rotations[-context:])
    clip = generate(tiny_pipeline, MotionConstraint(start=start), prompts=("a person waves",), durations=(1.5,))[0]
    assert clip.frames == frames_for_duration(1.5) and clip.duration == 1.5
    assert_same_pose(clip, 0, walk.translation[-1], walk.rotations[-1])
    np.testing.assert_allclose(clip.positions[0], walk.positions[-1], atol=ROOT_TOLERANCE)
    assert constraints.heading(clip.rotations[0]) == pytest.approx(constraints.heading(walk.rotations[-1]), abs=1e-4)


def test_continued_clip_is_not_the_context_held_still(tiny_pipeline, walk):
    """The pin holds one frame; the rest is generated (the tiny model's noise moves a lot within a few frames)."""
    clip = generate(tiny_pipeline, MotionConstraint(start=Pose(walk.translation[-1], walk.rotations[-1])))[0]
    assert np.abs(clip.positions[-1] - clip.positions[0]).max() > 0.05


# --- in-between -----------------------------------------------------------------------------------------------------


def test_in_between_starts_and_ends_in_the_given_poses_for_every_clip_of_a_batch(tiny_pipeline, walk):
    constraint = MotionConstraint(start=Pose(walk.translation[5], walk.rotations[5]),
                                  end=Pose(walk.translation[50], walk.rotations[50]))
    clips = generate(tiny_pipeline, constraint, prompts=("a person walks", "a person turns"), durations=(1.0, 2.5),
                     seeds=(0, 1))
    assert [clip.frames for clip in clips] == [30, 30, 75, 75]
    for clip in clips:
        assert_same_pose(clip, 0, walk.translation[5], walk.rotations[5])
        assert_same_pose(clip, -1, walk.translation[50], walk.rotations[50])


def test_end_pose_alone_is_met_in_the_world(tiny_pipeline, walk):
    clip = generate(tiny_pipeline, MotionConstraint(end=Pose(walk.translation[30], walk.rotations[30])))[0]
    assert_same_pose(clip, -1, walk.translation[30], walk.rotations[30])


# --- loop -----------------------------------------------------------------------------------------------------------


def test_loop_ends_in_its_first_pose_with_the_horizontal_drift_kept(tiny_pipeline):
    clip = generate(tiny_pipeline, MotionConstraint(loop=True), durations=(1.5,))[0]
    np.testing.assert_allclose(matrices(clip.rotations[-1]), matrices(clip.rotations[0]), atol=ROTATION_TOLERANCE)
    assert abs(clip.translation[-1, 1] - clip.translation[0, 1]) < ROOT_TOLERANCE
    # The tiny model's root wanders by decimetres in 1.5 s; a loop that also pinned x/z would leave 0 here.
    assert np.abs(clip.translation[-1, [0, 2]] - clip.translation[0, [0, 2]]).max() > 0.01


def test_loop_from_a_start_pose_begins_and_ends_in_it(tiny_pipeline, walk):
    start = Pose(walk.translation[-1], walk.rotations[-1])
    clip = generate(tiny_pipeline, MotionConstraint(start=start, loop=True))[0]
    assert_same_pose(clip, 0, walk.translation[-1], walk.rotations[-1])
    np.testing.assert_allclose(matrices(clip.rotations[-1]), matrices(walk.rotations[-1]), atol=ROTATION_TOLERANCE)


# --- timeline -------------------------------------------------------------------------------------------------------


def test_timeline_is_the_sum_of_its_lines_and_every_seam_is_the_pose_it_continues(tiny_pipeline):
    segments = [Segment("a person walks", 1.0), Segment("a person sits down", 0.8), Segment("a person waves", 1.2)]
    (clip,) = timeline.generate_timeline(tiny_pipeline, segments, [4], steps=STEPS, cfg_scale=5.0, context_frames=5)
    lengths = [frames_for_duration(segment.duration) for segment in segments]
    assert clip.frames == sum(lengths) == 90
    # The first segment is an ordinary clip; the second one, generated alone from the timeline's frames so far,
    # starts in the seam frame and continues as the timeline does.
    first = generate(tiny_pipeline, prompts=("a person walks",), durations=(1.0,), seeds=(4,))[0]
    np.testing.assert_allclose(clip.translation[:30], first.translation, atol=ROOT_TOLERANCE)
    context = Pose(clip.translation[25:30], clip.rotations[25:30])
    second = generate(tiny_pipeline, MotionConstraint(start=context), prompts=("a person sits down",),
                      durations=((lengths[1] + 1) / 30,), seeds=(4,))[0]
    assert_same_pose(second, 0, clip.translation[29], clip.rotations[29])
    np.testing.assert_allclose(clip.translation[30:54], second.translation[1:], atol=ROOT_TOLERANCE)
    np.testing.assert_allclose(matrices(clip.rotations[30:54]), matrices(second.rotations[1:]), atol=ROTATION_TOLERANCE)


def test_timeline_of_a_minute_is_one_clip_of_1800_frames(tiny_pipeline):
    segments = [Segment(f"a person walks, part {k}", 10.0) for k in range(6)]
    (clip,) = timeline.generate_timeline(tiny_pipeline, segments, [0], steps=1, cfg_scale=1.0, context_frames=10)
    assert clip.frames == 1800 and clip.duration == 60.0
    assert np.isfinite(clip.positions).all()


# --- refusals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("constraint, durations, words", [
    (MotionConstraint(loop=True), (0.9,), "shorter than 1 s"),
    (MotionConstraint(loop=True, end=random_pose(1)), (2.0,), "cannot also end"),
    (MotionConstraint(start=Pose(np.zeros((10, 3)), np.tile([1.0, 0, 0, 0], (10, 22, 1)))), (12.0,), "at most 360"),
    (MotionConstraint(), (2.0,), "pins nothing"),
])
def test_constraints_that_cannot_be_met_are_refused_before_sampling(tiny_pipeline, constraint, durations, words):
    with pytest.raises(HyMotionError, match=words) as error:
        generate(tiny_pipeline, constraint, durations=durations)
    assert error.value.code == "bad_request" and error.value.hint


def test_a_timeline_line_too_long_for_its_context_is_refused():
    with pytest.raises(HyMotionError, match="line 2"):
        timeline.check_timeline([Segment("a", 2.0), Segment("b", 12.0)], 5, None)


def save_clip(path, clip, **changes):
    arrays = clip.arrays()
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def test_context_file_frame_and_count(tmp_path, walk):
    path = save_clip(tmp_path / "walk.npz", walk)
    pose = constraints.load_context(f"{path}:20", frames=3)
    np.testing.assert_array_equal(pose.translation, walk.translation[18:21])
    assert constraints.load_context(str(path)).translation[0] == pytest.approx(walk.translation[-1])
    assert constraints.load_context(f"{path}:-2").translation[0] == pytest.approx(walk.translation[-2])


@pytest.mark.parametrize("spec, frames, words", [
    ("{path}:60", 1, "out of range"),
    ("{path}:-61", 1, "out of range"),
    ("{path}:3", 5, "before its first frame"),
    ("{other}", 1, "not this model's skeleton"),
    ("{bones}", 1, "another rest pose"),
    ("{missing}", 1, "does not exist"),
])
def test_bad_context_files_are_refused_with_a_hint(tmp_path, walk, spec, frames, words):
    path = save_clip(tmp_path / "walk.npz", walk)
    other = save_clip(tmp_path / "other.npz", walk, joint_names=np.asarray(["root"] + ["j"] * 21))
    bones = save_clip(tmp_path / "bones.npz", walk, rest_offsets=skeleton.BODY_REST_OFFSETS * 1.1)
    text = spec.format(path=path, other=other, bones=bones, missing=tmp_path / "none.npz")
    with pytest.raises(HyMotionError, match=words) as error:
        constraints.load_context(text, frames)
    assert error.value.hint


# --- the command line -----------------------------------------------------------------------------------------------


@pytest.fixture
def fast_tiny(monkeypatch, tiny_pipeline):
    monkeypatch.setattr("hymotion.pipeline.loading.load_pipeline", lambda *args, **kwargs: tiny_pipeline)


def run(argv, capsys):
    code = main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def test_cli_continue_in_between_and_loop_write_clips_that_meet_their_poses(tmp_path, capsys, fast_tiny, walk):
    context = save_clip(tmp_path / "walk.npz", walk)
    base = ("generate", "--model", "tiny-random", "a person waves", "--steps", STEPS, "--duration", 1.5)
    assert run([*base, "--start-from", context, "--context-frames", 4, "--out", tmp_path / "c.npz"], capsys)[0] == 0
    assert run([*base, "--start-from", f"{context}:10", "--end-at", f"{context}:40", "--out", tmp_path / "i.npz"],
               capsys)[0] == 0
    assert run([*base, "--loop", "--out", tmp_path / "l.npz"], capsys)[0] == 0
    continued, between, looped = (motion.MotionClip.load(tmp_path / name) for name in ("c.npz", "i.npz", "l.npz"))
    assert continued.frames == between.frames == looped.frames == 45
    assert_same_pose(continued, 0, walk.translation[-1], walk.rotations[-1])
    assert_same_pose(between, 0, walk.translation[10], walk.rotations[10])
    assert_same_pose(between, -1, walk.translation[40], walk.rotations[40])
    np.testing.assert_allclose(matrices(looped.rotations[-1]), matrices(looped.rotations[0]), atol=ROTATION_TOLERANCE)


def test_cli_timeline_writes_one_continuous_clip(tmp_path, capsys, fast_tiny):
    timeline = tmp_path / "story.txt"
    timeline.write_text("1 | a person walks\n# a comment\n0.8 | a person sits down\n")
    code, err = run(["generate", "--model", "tiny-random", "--timeline", timeline, "--steps", STEPS,
                     "--out", tmp_path / "story.npz"], capsys)
    assert code == 0, err
    assert motion.MotionClip.load(tmp_path / "story.npz").frames == 30 + 24


@pytest.mark.parametrize("extra, words", [
    (["--loop", "--duration", 0.9], "shorter than 1 s"),
    (["--start-from", "{context}:99"], "out of range"),
    (["--start-from", "{context}", "--context-frames", 8, "--duration", 12], "at most 360"),
    (["--context-frames", 3], "needs --start-from"),
])
def test_cli_refuses_constraints_with_exit_2_and_writes_nothing(tmp_path, capsys, fast_tiny, walk, extra, words):
    context = save_clip(tmp_path / "walk.npz", walk)
    out = tmp_path / "out.npz"
    argv = ["generate", "--model", "tiny-random", "a person waves", "--out", out, "--steps", STEPS]
    code, err = run(argv + [str(arg).format(context=context) for arg in extra], capsys)
    assert code == 2 and words in err and "hint:" in err
    assert not out.exists()
