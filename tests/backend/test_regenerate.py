"""Regenerate a segment of a motion file (issue 27): frames START..END made anew, pinned to the frames on both sides,
every other frame kept bit for bit; on the tiny random model (its motion is noise, so only the pins bring the
boundaries together) and from the command line. Tolerances as in test_constraints.py: float32 clips, 1e-4 for
rotation-matrix entries and 1 mm for the root keep a margin above 100x over the rounding."""

import numpy as np
import pytest
from backend_helpers import settings
from test_constraints import fast_tiny, run  # noqa: F401 (fast_tiny is a fixture)

from hymotion.pipeline import motion
from hymotion.pipeline.regenerate import load_redo
from hymotion.shared import skeleton
from hymotion.shared.errors import HyMotionError

ROTATION_TOLERANCE = 1e-4
ROOT_TOLERANCE = 1e-3
STEPS = 4


@pytest.fixture(scope="module")
def walk_file(tiny_pipeline, tmp_path_factory):
    (clip,) = tiny_pipeline.generate(settings(prompts=("a person walks",), durations=(3.0,), seeds=(7,), steps=STEPS))
    return clip.save(tmp_path_factory.mktemp("walk") / "walk.npz")


@pytest.mark.parametrize("first, last", [(30, 59), (0, 29), (60, 89)])
def test_only_the_range_changes_and_its_boundaries_meet_the_frames_beside_it(tmp_path, capsys, fast_tiny, walk_file,
                                                                            first, last):
    original = motion.MotionClip.load(walk_file)
    out = tmp_path / "redo.npz"
    code, err = run(["generate", "--model", "tiny-random", "a person turns", "--seeds", 3, "--steps", STEPS,
                     "--regenerate", f"{walk_file}:{first}-{last}", "--out", out], capsys)
    assert code == 0, err
    redone = motion.MotionClip.load(out)
    assert redone.frames == original.frames and redone.prompt == "a person turns" and redone.seed == 3
    outside = np.ones(original.frames, dtype=bool)
    outside[first : last + 1] = False
    assert np.array_equal(redone.translation[outside], original.translation[outside])  # bit for bit
    assert np.array_equal(redone.rotations[outside], original.rotations[outside])
    assert not np.allclose(redone.rotations[first : last + 1], original.rotations[first : last + 1], atol=1e-3)
    # The model made the frames beside the range as the pins asked: the new clip's first (last) frame is the
    # original's frame before (after) the range, so one frame step at each seam is as long as the model's own steps.
    steps = np.linalg.norm(np.diff(redone.positions, axis=0), axis=-1).max(axis=-1)
    own = np.linalg.norm(np.diff(original.positions, axis=0), axis=-1).max(axis=-1)
    for seam in ([first - 1] if first > 0 else []) + ([last] if last < original.frames - 1 else []):
        assert steps[seam] <= 3.0 * np.percentile(own, 95), (seam, steps[seam])


def test_the_pins_meet_the_frames_on_both_sides_exactly(tiny_pipeline, walk_file):
    redo = load_redo(f"{walk_file}:30-59")
    (clip,) = tiny_pipeline.generate(settings(prompts=("a person turns",), durations=(redo.duration,), steps=STEPS),
                                     constraint=redo.constraint())
    assert clip.frames == redo.generated_frames == 32
    for index, frame in ((0, 29), (-1, 60)):
        np.testing.assert_allclose(skeleton.quaternion_to_matrix(clip.rotations[index].astype(np.float64)),
                                   skeleton.quaternion_to_matrix(redo.rotations[frame]), atol=ROTATION_TOLERANCE)
        np.testing.assert_allclose(clip.translation[index], redo.translation[frame], atol=ROOT_TOLERANCE)


@pytest.mark.parametrize("spec, words", [
    ("{walk}:80-95", "not inside"),
    ("{walk}:50-40", "not inside"),
    ("{walk}:40-45", "the model makes 20 to 360"),
    ("{walk}", "not FILE:START-END"),
    ("{missing}:1-30", "does not exist"),
])
def test_bad_ranges_are_refused_with_a_hint_and_nothing_is_written(tmp_path, capsys, fast_tiny, walk_file, spec,
                                                                  words):
    text = spec.format(walk=walk_file, missing=tmp_path / "none.npz")
    with pytest.raises(HyMotionError, match=words) as error:
        load_redo(text)
    assert error.value.hint
    code, err = run(["generate", "--model", "tiny-random", "--regenerate", text, "--out", tmp_path / "x.npz"], capsys)
    assert code == 2 and words in err and not (tmp_path / "x.npz").exists()


def test_regenerate_refuses_other_known_frames(tmp_path, capsys, fast_tiny, walk_file):
    code, err = run(["generate", "--model", "tiny-random", "--regenerate", f"{walk_file}:30-59", "--loop",
                     "--out", tmp_path / "x.npz"], capsys)
    assert code == 2 and "does not combine with --loop" in err
