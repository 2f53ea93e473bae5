"""Bad inputs to the commands end as one clear error with exit code 2, and nothing NaN is ever written (issue 30,
points 2, 4 and 7): known frames far from the origin, a clip whose numbers are not finite, a timeline past its
length, a prompt past its length, --fps 0 or -30 for hymotion-bake, --context-frames 0; default output names of
prompts the slug cannot spell never collide; a prompt rewriter's deeply nested reply is a reason, not a
RecursionError."""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import StubPrompter, settings
from test_constraints import fast_tiny, run  # noqa: F401 (fast_tiny is a fixture)

from hymotion import bake
from hymotion.cli import main
from hymotion.pipeline import motion
from hymotion.pipeline.known_frames import MotionConstraint, Pose
from hymotion.pipeline.motion import MotionClip
from hymotion.shared import prompt_guide, skeleton
from hymotion.shared.errors import HyMotionError
from hymotion.shared.jobs import MAX_POSE_TRANSLATION, MAX_PROMPT_CHARS, MAX_TIMELINE_FRAMES, output_stem

STEPS = 2
IDENTITY = np.tile([1.0, 0.0, 0.0, 0.0], (1, 22, 1))


def still_clip(frames: int = 30, offset=(0.0, 0.0, 0.0)) -> MotionClip:
    translation = np.tile(np.asarray(offset, dtype=np.float64), (frames, 1))
    rotations = np.tile(IDENTITY, (frames, 1, 1))
    return MotionClip(translation.astype(np.float32), rotations.astype(np.float32),
                      skeleton.forward_kinematics(rotations, translation).astype(np.float32))


def files_in(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- point 2: nothing NaN is written --------------------------------------------------------------------------------


def test_a_start_pose_1e25_from_the_origin_is_refused_with_exit_2_and_nothing_written(tmp_path, capsys, fast_tiny):
    far = tmp_path / "far.npz"
    np.savez(far, **still_clip(offset=(1e25, 0.0, 0.0)).arrays())
    out = tmp_path / "out.npz"
    code, err = run(["generate", "--model", "tiny-random", "a person walks", "--steps", STEPS, "--duration", 1,
                     "--start-from", far, "--out", out], capsys)
    assert code == 2, err
    assert f"{MAX_POSE_TRANSLATION:g} m" in err and "hint:" in err and "Traceback" not in err
    assert not out.exists()


def test_a_pose_within_the_limit_still_continues(tiny_pipeline):
    start = Pose(np.array([[MAX_POSE_TRANSLATION - 1, 0.0, 0.0]]), IDENTITY)
    (clip,) = tiny_pipeline.generate(settings(steps=STEPS, durations=(1.0,)), constraint=MotionConstraint(start=start))
    assert np.isfinite(clip.translation).all()


def nan_decoder(original):
    def decode(*args, **kwargs):
        return tuple(np.full_like(array, np.nan) for array in original(*args, **kwargs))
    return decode


def test_a_generation_that_comes_out_nan_is_an_error_naming_the_cause(tiny_pipeline, monkeypatch):
    monkeypatch.setattr(motion, "decode_latent", nan_decoder(motion.decode_latent))
    with pytest.raises(HyMotionError) as caught:
        list(tiny_pipeline.generate(settings(steps=STEPS, durations=(1.0,))))
    assert caught.value.code == "bad_checkpoint" and "NaN or infinite" in caught.value.message
    assert "model's files" in caught.value.message and "hymotion doctor" in caught.value.hint
    with pytest.raises(HyMotionError) as caught:
        list(tiny_pipeline.generate(settings(steps=STEPS, durations=(1.0,)),
                                    constraint=MotionConstraint(loop=True)))
    assert caught.value.code == "bad_request" and caught.value.field == "constraint"


def test_the_cli_writes_no_file_for_a_nan_generation(tmp_path, capsys, fast_tiny, monkeypatch):
    monkeypatch.setattr(motion, "decode_latent", nan_decoder(motion.decode_latent))
    out = tmp_path / "out.npz"
    code, err = run(["generate", "--model", "tiny-random", "a person walks", "--steps", STEPS, "--duration", 1,
                     "--out", out], capsys)
    assert code == 2 and "NaN or infinite" in err and "Traceback" not in err
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("fmt", ["npz", "json"])
def test_the_clip_writer_refuses_nan_and_leaves_no_file(tmp_path, fmt):
    clip = still_clip()
    clip.rotations[4, 2, 0] = np.nan
    with pytest.raises(HyMotionError) as caught:
        clip.save(tmp_path / f"x.{fmt}", fmt)
    assert "1 in rotations" in caught.value.message
    assert files_in(tmp_path) == []


# --- point 4: a timeline's length -----------------------------------------------------------------------------------


def test_a_timeline_past_its_total_length_exits_2_before_loading_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hymotion.pipeline.loading.load_pipeline", lambda *a, **k: pytest.fail("loaded a model"))
    lines = MAX_TIMELINE_FRAMES // 360 + 1
    story = tmp_path / "story.txt"
    story.write_text("".join(f"12 | a person walks, part {n}\n" for n in range(lines)))
    code, err = run(["generate", "--model", "tiny-random", "--timeline", story, "--out", tmp_path / "s.npz"], capsys)
    assert code == 2 and str(MAX_TIMELINE_FRAMES) in err and "Split it" in err
    assert not (tmp_path / "s.npz").exists()


# --- point 7: the smaller ones --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", ["0", "-30", "100000", "thirty"])
def test_bake_refuses_a_frame_rate_it_cannot_make(tmp_path, capsys, fps):
    with pytest.raises(SystemExit) as stopped:
        bake.build_parser().parse_args([str(tmp_path / "p.txt"), "--out", str(tmp_path / "x.blend"), "--fps", fps])
    assert stopped.value.code == 2
    assert "--fps" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-3"])
def test_context_frames_below_one_is_refused_not_taken_as_the_default(tmp_path, capsys, count):
    with pytest.raises(SystemExit) as stopped:
        main(["generate", "a person walks", "--start-from", str(tmp_path / "w.npz"), "--context-frames", count])
    assert stopped.value.code == 2
    assert "--context-frames" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_prompts_the_slug_cannot_spell_get_names_of_their_own(tmp_path, capsys, fast_tiny):
    for prompt in ("走路", "跳跃"):
        code, err = run(["generate", "--model", "tiny-random", prompt, "--steps", STEPS, "--duration", 1,
                         "--out-dir", tmp_path], capsys)
        assert code == 0, err
    names = files_in(tmp_path)
    assert len(names) == 2 and all(name.startswith("motion_") for name in names), names


def test_output_stems_keep_apart_what_the_slug_would_merge():
    assert output_stem("a person walks") == "a_person_walks"
    long_a, long_b = "a person walks " * 3 + "and waves", "a person walks " * 3 + "and sits"
    assert len({output_stem(long_a), output_stem(long_b)}) == 2
    assert len({output_stem("走路"), output_stem("跳跃"), output_stem("🙂")}) == 3
    assert output_stem("走路") == output_stem("走路")


def test_a_prompt_past_its_length_exits_2(tmp_path, capsys, fast_tiny):
    code, err = run(["generate", "--model", "tiny-random", "a" * (MAX_PROMPT_CHARS + 1), "--out-dir", tmp_path],
                    capsys)
    assert code == 2 and str(MAX_PROMPT_CHARS) in err and files_in(tmp_path) == []


def test_a_deeply_nested_rewriter_message_is_a_reason_not_a_recursion_error(prompter: StubPrompter):
    prompter.content = '{"short_caption": ' + "[" * 100_000 + "]" * 100_000 + "}"
    result, reason = prompt_guide.rewrite_prompt("a person waves", base_url=prompter.url, model="m")
    assert result is None and "nested too deeply" in reason


def test_a_deeply_nested_rewriter_reply_is_a_reason_not_a_recursion_error(monkeypatch):
    monkeypatch.setattr(prompt_guide, "_post", lambda *args: (200, b"[" * 100_000 + b"]" * 100_000))
    result, reason = prompt_guide.rewrite_prompt("a person waves", base_url="http://127.0.0.1:9/v1", model="m")
    assert result is None and "nested too deeply" in reason
