"""The `hymotion` command in-process: the files it writes, and exit code 2 with a message, never a traceback."""

import json
import logging
import os

import numpy as np
import pytest
from backend_helpers import StubPrompter

from hymotion.cli import main
from hymotion.model.tiny import TINY_WARNING
from hymotion.pipeline.motion import MotionClip
from hymotion.shared import skeleton
from hymotion.shared.jobs import MAX_PROMPTS_PER_JOB
from hymotion.shared.prompt_guide import PROMPTER_MODEL_ENV, PROMPTER_URL_ENV

TINY_WALK = ("generate", "--model", "tiny-random", "a person walks", "--duration", "1")
FIELDS = {"fps", "joint_names", "parents", "rest_offsets", "translation", "rotations", "positions", "prompt", "seed",
          "duration", "model_id"}


def run(argv, capsys) -> tuple[int, str]:
    """Exit code and stderr of one in-process run (argparse errors exit through SystemExit)."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:
        assert isinstance(exit_.code, int), f"exited with {exit_.code!r}, not a status"
        code = exit_.code
    return code, capsys.readouterr().err


pytestmark = pytest.mark.usefixtures("empty_hub_cache")


@pytest.fixture
def fast_tiny(monkeypatch, tiny_pipeline):
    """Reuse the session's tiny pipeline instead of building one per command."""
    requested = []

    def load_pipeline(model, model_dir=None, plan="auto", device=None, cache_dir=None, official_padding=False,
                      precision=None, compile_dit=False, text_encoder_int8=False):
        requested.append(model)
        assert model == "tiny-random"
        return tiny_pipeline

    monkeypatch.setattr("hymotion.pipeline.loading.load_pipeline", load_pipeline)
    return requested


def read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_generate_with_the_tiny_model_writes_a_valid_file(tmp_path, capsys, caplog):
    out = tmp_path / "x.npz"
    with caplog.at_level(logging.WARNING):
        code, err = run(["generate", "--model", "tiny-random", "a person walks", "--out", out, "--steps", 3,
                         "--duration", 2, "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 0, err
    data = read_npz(out)
    assert set(data) == FIELDS
    assert data["translation"].shape == (60, 3)
    assert data["rotations"].shape == (60, 22, 4) and data["positions"].shape == (60, 22, 3)
    np.testing.assert_allclose(np.linalg.norm(data["rotations"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        data["positions"], skeleton.forward_kinematics(data["rotations"], data["translation"]), atol=1e-4
    )
    assert (str(data["prompt"]), int(data["seed"]), float(data["duration"])) == ("a person walks", 0, 2.0)
    assert str(data["model_id"]) == "tiny-random" and int(data["fps"]) == 30
    assert list(data["joint_names"]) == list(skeleton.BODY_JOINT_NAMES)
    assert TINY_WARNING in caplog.text, "the tiny model must say that its motion is noise"
    assert "1 motion file(s) written" in err
    assert list((tmp_path / "cache").rglob("*.safetensors")), "the prompt's embedding is cached in --cache-dir"


def test_several_seeds_write_one_file_each(tmp_path, capsys, fast_tiny):
    code, err = run(["generate", "--model", "tiny-random", "a person walks", "--seeds", "0,1", "--out",
                     tmp_path / "x.npz", "--steps", 2, "--duration", 1], capsys)
    assert code == 0, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x_s0.npz", "x_s1.npz"]
    seeds = [int(read_npz(tmp_path / f"x_s{seed}.npz")["seed"]) for seed in (0, 1)]
    assert seeds == [0, 1]


def test_prompt_file_writes_one_file_per_line_with_its_duration(tmp_path, capsys, fast_tiny):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("4.5 | a person jumps twice\n\n# a comment\na person walks\n", encoding="utf-8")
    out_dir = tmp_path / "clips"
    code, err = run(["generate", "--model", "tiny-random", "--prompts", prompts, "--out-dir", out_dir,
                     "--duration", 2, "--steps", 2], capsys)
    assert code == 0, err
    files = sorted(out_dir.iterdir())
    assert [path.name for path in files] == ["001_a_person_jumps_twice.npz", "002_a_person_walks.npz"]
    first, second = (read_npz(path) for path in files)
    summary = [(str(clip["prompt"]), float(clip["duration"]), len(clip["translation"])) for clip in (first, second)]
    assert summary == [("a person jumps twice", 4.5, 135), ("a person walks", 2.0, 60)]


def test_json_format_is_readable_json_with_every_field(tmp_path, capsys, fast_tiny):
    out = tmp_path / "clip.json"
    code, err = run(["generate", "--model", "tiny-random", "a person waves", "--format", "json", "--out", out,
                     "--steps", 2, "--duration", 1], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert set(data) == FIELDS
    assert np.asarray(data["rotations"]).shape == (30, 22, 4)
    assert MotionClip.load(out).frames == 30


def test_json_suffix_on_out_writes_json(tmp_path, capsys, fast_tiny):
    out = tmp_path / "walk.json"
    code, err = run(["generate", "--model", "tiny-random", "a person walks", "--out", out, "--steps", 1,
                     "--duration", 1], capsys)
    assert code == 0, err
    assert MotionClip.load(out).frames == 30


@pytest.mark.parametrize("duration", ["0.67", "12"])
def test_durations_at_the_limits_are_accepted(tmp_path, capsys, fast_tiny, duration):
    code, err = run(["generate", "--model", "tiny-random", "a person walks", "--duration", duration, "--out",
                     tmp_path / "x.npz", "--steps", 1], capsys)
    assert code == 0, err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert "error" in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} missing from: {err}"


BAD_ARGUMENTS = {
    "empty prompt": (["", "--duration", "2"], "Prompt 1 is empty"),
    "whitespace prompt": (["   \t ", "--duration", "2"], "Prompt 1 is empty"),
    "duration too short": (["a person walks", "--duration", "0.5"], "outside 0.67-12"),
    "duration too long": (["a person walks", "--duration", "12.5"], "outside 0.67-12"),
    "non-integer seeds": (["a person walks", "--seeds", "a,b"], "Seed 'a' is not an integer"),
    "negative seed": (["a person walks", "--seeds", "-1"], "Seed"),
    "zero steps": (["a person walks", "--steps", "0"], "steps must be an integer >= 1"),
    "negative steps": (["a person walks", "--steps", "-3"], "steps must be an integer >= 1"),
    "fractional steps": (["a person walks", "--steps", "2.5"], "not an integer"),
    "zero cfg": (["a person walks", "--cfg", "0"], "cfg must be a number > 0"),
    "negative cfg": (["a person walks", "--cfg", "-2"], "cfg must be a number > 0"),
    "nan cfg": (["a person walks", "--cfg", "nan"], "cfg must be a number > 0"),
    "no prompt": ([], "No prompt given"),
    "steps over the limit": (["a person walks", "--steps", "1001"], "at most 1000"),
    "steps past 64 bits": (["a person walks", "--steps", str(2**63)], "at most 1000"),
    "cfg over the limit": (["a person walks", "--cfg", "1e308"], "at most 100"),
    "seed range past memory": (["a person walks", "--seeds", "0-99999999999"], "more than 1000 seeds"),
    "seed range past the limit": (["a person walks", "--seeds", "0-100000"], "more than 1000 seeds"),
    "seed past 64 bits": (["a person walks", "--seeds", str(2**63)], "2^63-1"),
    "repeated seed": (["a person walks", "--seeds", "0,0"], "Seed 0 is given more than once"),
    "backwards seed range": (["a person walks", "--seeds", "5-3"], "runs backwards"),
    "rewrite of a timeline": (["--timeline", "segments.txt", "--rewrite"], "not a --timeline's segments"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, fast_tiny, case):
    arguments, fragment = BAD_ARGUMENTS[case]
    code, err = run(["generate", "--model", "tiny-random", *arguments, "--out", tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, fragment)
    assert fast_tiny == [], "nothing is loaded for a request that cannot run"
    assert not list(tmp_path.glob("*.npz"))


def use_prompter(monkeypatch, prompter: StubPrompter, content: str = "", status: int = 200) -> None:
    """Point --rewrite at the loopback stub, answering ``content`` with HTTP ``status``."""
    monkeypatch.setenv(PROMPTER_URL_ENV, prompter.url)
    monkeypatch.setenv(PROMPTER_MODEL_ENV, "prompter")
    prompter.content, prompter.status = content, status


def test_rewrite_generates_the_rewritten_prompt_and_keeps_the_original_in_the_file(
    tmp_path, capsys, fast_tiny, prompter, monkeypatch
):
    use_prompter(monkeypatch, prompter, '{"duration": 45, "short_caption": "A person walks forward, then waves."}')
    out = tmp_path / "x.npz"
    code, err = run(["generate", "--model", "tiny-random", "persona camina y saluda", "--rewrite", "--out", out,
                     "--steps", 1], capsys)
    assert code == 0, err
    assert "rewrite: prompt 1: A person walks forward, then waves. (1.5 s by the rewriter)" in err
    assert "persona camina y saluda" in prompter.requests[0][2]["messages"][0]["content"]
    data = read_npz(out)
    assert set(data) == FIELDS | {"original_prompt"}
    assert (str(data["prompt"]), str(data["original_prompt"])) == (
        "A person walks forward, then waves.", "persona camina y saluda")
    assert float(data["duration"]) == 1.5 and len(data["translation"]) == 45  # the rewriter's 45 frames at 30 fps
    assert MotionClip.load(out).original_prompt == "persona camina y saluda"


def test_rewrite_keeps_a_duration_the_user_gave_and_names_files_after_the_users_words(
    tmp_path, capsys, fast_tiny, prompter, monkeypatch
):
    use_prompter(monkeypatch, prompter, '{"duration": 300, "short_caption": "A person jumps twice."}')
    code, err = run(["generate", "--model", "tiny-random", "jump jump", "--rewrite", "--duration", 1,
                     "--out-dir", tmp_path, "--steps", 1], capsys)
    assert code == 0, err
    data = read_npz(tmp_path / "jump_jump.npz")
    assert (str(data["prompt"]), float(data["duration"])) == ("A person jumps twice.", 1.0)


def test_rewrite_falls_back_to_the_prompt_as_written_when_the_rewriter_fails(
    tmp_path, capsys, fast_tiny, prompter, monkeypatch
):
    use_prompter(monkeypatch, prompter, status=500)
    out = tmp_path / "x.npz"
    code, err = run(["generate", "--model", "tiny-random", "a person waves", "--rewrite", "--out", out,
                     "--duration", 1, "--steps", 1], capsys)
    assert code == 0, err
    assert "rewrite: prompt 1 kept as written: prompt rewriter at" in err and "HTTP 500" in err
    data = read_npz(out)
    assert set(data) == FIELDS and str(data["prompt"]) == "a person waves"


def test_rewrite_without_a_configured_rewriter_exits_2_before_loading(tmp_path, capsys, fast_tiny, monkeypatch):
    monkeypatch.delenv(PROMPTER_URL_ENV, raising=False)
    monkeypatch.delenv(PROMPTER_MODEL_ENV, raising=False)
    code, err = run(["generate", "--model", "tiny-random", "a person waves", "--rewrite", "--out",
                     tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, "--rewrite needs a prompt rewriter", PROMPTER_URL_ENV, PROMPTER_MODEL_ENV)
    assert fast_tiny == []


def test_prompt_file_over_the_prompt_limit_exits_2_before_loading(tmp_path, capsys, fast_tiny):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a person walks {n}\n" for n in range(MAX_PROMPTS_PER_JOB + 1)))
    code, err = run(["generate", "--prompts", prompts, "--out-dir", tmp_path / "clips"], capsys)
    assert_user_error(code, err, f"the limit is {MAX_PROMPTS_PER_JOB}")
    assert fast_tiny == []


def test_an_output_name_too_long_for_the_file_system_exits_2(tmp_path, capsys, fast_tiny):
    code, err = run([*TINY_WALK, "--out", tmp_path / ("x" * 300 + ".npz")], capsys)
    assert_user_error(code, err, "too long")
    assert fast_tiny == [], "refused before the model loads"


def test_missing_prompt_file_exits_2(tmp_path, capsys, fast_tiny):
    code, err = run(["generate", "--prompts", tmp_path / "nope.txt", "--out-dir", tmp_path], capsys)
    assert_user_error(code, err, "does not exist")


@pytest.mark.parametrize("content", ["", "\n\n   \n", "# only a comment\n"])
def test_empty_prompt_file_exits_2(tmp_path, capsys, fast_tiny, content):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(content)
    code, err = run(["generate", "--prompts", prompts, "--out-dir", tmp_path], capsys)
    assert_user_error(code, err, "holds no prompts")


def test_prompt_file_line_with_a_bad_duration_names_the_line(tmp_path, capsys, fast_tiny):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks\n20 | a person runs\n")
    code, err = run(["generate", "--prompts", prompts, "--out-dir", tmp_path], capsys)
    assert_user_error(code, err, "line 2")


def test_out_with_a_prompt_file_exits_2(tmp_path, capsys, fast_tiny):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks\n")
    code, err = run(["generate", "--prompts", prompts, "--out", tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, "--out-dir")


def test_read_only_output_folder_exits_2(tmp_path, capsys, fast_tiny):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running with privileges that ignore folder permissions (root)")
        code, err = run([*TINY_WALK, "--out", locked / "x.npz"], capsys)
        assert_user_error(code, err, "Cannot write")
    finally:
        locked.chmod(0o700)


def test_output_folder_that_is_a_file_exits_2(tmp_path, capsys, fast_tiny):
    blocker = tmp_path / "clips"
    blocker.write_text("I am a file")
    code, err = run([*TINY_WALK, "--out-dir", blocker], capsys)
    assert_user_error(code, err, "is a file")


def test_output_folder_below_a_file_exits_2(tmp_path, capsys, fast_tiny):
    blocker = tmp_path / "clips"
    blocker.write_text("I am a file")
    code, err = run([*TINY_WALK, "--steps", "1", "--out-dir", blocker / "run1"], capsys)
    assert_user_error(code, err, "run1")


def garbage_model_folder(root, with_text_encoders: bool):
    folder = root / "HY-Motion-1.0-Lite"
    folder.mkdir(parents=True)
    (folder / "config.yml").write_text(
        "network_module_args:\n  feat_dim: 32\n  mask_mode: narrowband\n  apply_rope_to_single_branch: false\n"
    )
    (folder / "latest.ckpt").write_bytes(b"<html>404 Not Found</html>")
    if with_text_encoders:
        for name in ("Qwen3-8B", "clip-vit-large-patch14"):
            (root / name).mkdir()
            (root / name / "config.json").write_text("{}")
    return folder


def test_model_folder_with_a_garbage_checkpoint_exits_2(tmp_path, capsys):
    folder = garbage_model_folder(tmp_path, with_text_encoders=True)
    code, err = run(["generate", "--model", folder, "a person walks", "--duration", "1", "--out",
                     tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, "latest.ckpt", "not a torch checkpoint", "hint:")


def test_garbage_checkpoint_is_reported_even_before_text_encoders_are_downloaded(tmp_path, capsys):
    folder = garbage_model_folder(tmp_path, with_text_encoders=False)
    code, err = run(["generate", "--model", folder, "a person walks", "--duration", "1", "--out",
                     tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, "latest.ckpt")


def test_missing_weights_in_a_model_dir_name_the_download_command(tmp_path, capsys):
    empty = tmp_path / "weights"
    empty.mkdir()
    code, err = run(["generate", "--model", "lite", "--model-dir", empty, "a person walks", "--duration", "1",
                     "--out", tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, "hymotion download --variant lite --model-dir", str(empty))


def test_missing_weights_in_the_hub_cache_name_the_download_command(tmp_path, capsys):
    code, err = run(["generate", "--model", "standard", "a person walks", "--duration", "1", "--out",
                     tmp_path / "x.npz"], capsys)
    assert_user_error(code, err, "hymotion download --variant standard")



def test_precision_fp32_reaches_the_pipeline_and_bad_values_exit_2(tmp_path, capsys, monkeypatch):
    from hymotion.pipeline import loading as pipeline_module

    chosen = []
    load = pipeline_module.load_pipeline

    def recording_load(*args, **kwargs):
        chosen.append(kwargs.get("precision"))
        return load(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "load_pipeline", recording_load)
    code, err = run(["generate", "--model", "tiny-random", "--plan", "cpu", "a person walks", "--precision", "fp32",
                     "--out", tmp_path / "x.npz", "--steps", 1, "--duration", 1, "--cache-dir", tmp_path / "c"], capsys)
    assert code == 0 and chosen == ["fp32"], err
    code, err = run(["generate", "a person walks", "--precision", "fp16"], capsys)
    assert code == 2 and "invalid choice: 'fp16'" in err
