"""The one prompt-line grammar (hymotion.shared.jobs): "[seconds |] prompt [| seeds 0-3]", read the same way by
`hymotion generate --prompts` and `--timeline`, `hymotion-bake`, `hymotion farm` and the add-on's Batch Bake and
Timeline; text before a '|' that is not a number of seconds is refused with its line number (issue 26, point 18)."""

from __future__ import annotations

import pytest

from hymotion import bake
from hymotion.cli import main
from hymotion.farm.planning import read_farm_prompts
from hymotion.shared.errors import HyMotionError
from hymotion.shared.jobs import parse_prompt_lines
from hymotion.shared.prompt_guide import duration_for, suggest_duration

NOT_SECONDS = ["4,5 | a person jumps", "4s | a person jumps", " | a person jumps", "abc | a person jumps",
               "four | a person jumps", "4.5.1 | a person jumps", "1e1 | a person jumps"]


@pytest.mark.parametrize("line, prompt, duration, seeds", [
    ("a person jumps", "a person jumps", None, None),
    ("4.5 | a person jumps", "a person jumps", 4.5, None),
    ("  4 |a person jumps  ", "a person jumps", 4.0, None),
    (".8|a person jumps", "a person jumps", 0.8, None),
    ("2 | seeds fall from a tree", "seeds fall from a tree", 2.0, None),
    ("a person jumps | seeds 3-5", "a person jumps", None, [3, 4, 5]),
    ("4 | a person jumps | seeds 0,2", "a person jumps", 4.0, [0, 2]),
    ("4 | a person jumps | Seed: 7", "a person jumps", 4.0, [7]),
])
def test_a_line_gives_its_prompt_duration_and_seeds(line, prompt, duration, seeds):
    (parsed,) = parse_prompt_lines(f"# a comment\n\n{line}\n", allow_seeds=True)
    assert (parsed.prompt, parsed.duration, parsed.seeds, parsed.line_number) == (prompt, duration, seeds, 3)


@pytest.mark.parametrize("line", NOT_SECONDS)
def test_text_before_a_bar_that_is_not_seconds_is_refused_with_its_line(line):
    with pytest.raises(HyMotionError, match=r"prompts.txt, line 2: .*duration in seconds") as error:
        parse_prompt_lines(f"a person walks\n{line}\n", source="prompts.txt")
    assert error.value.code == "bad_request" and "4.5 | a person jumps" in error.value.hint
    assert "[seconds |] prompt [| seeds 0-3]" in error.value.message


@pytest.mark.parametrize("line, words", [
    ("4 |", "the prompt after '|' is empty"),
    ("| seeds 0-3", "the prompt before '| seeds' is empty"),
    ("4 | a | b", "has 2 '|'"),
    ("30 | a person walks", "outside"),
    ("a person waves | seeds x", "not an integer"),
])
def test_other_bad_lines_are_refused_with_their_line(line, words):
    with pytest.raises(HyMotionError, match=f"line 1: .*{words}") as error:
        parse_prompt_lines(line, allow_seeds=True)
    assert error.value.hint


def test_seeds_per_line_are_refused_where_only_the_run_has_seeds():
    with pytest.raises(HyMotionError, match="line 1: .*hymotion farm only") as error:
        parse_prompt_lines("4 | a person jumps | seeds 0-3")
    assert "--seeds" in error.value.hint


def test_the_duration_rule_is_the_line_then_the_default_then_the_estimate():
    assert duration_for("a person jumps", 3.0, 5.0) == 3.0
    assert duration_for("a person jumps", None, 5.0) == 5.0
    assert duration_for("a person jumps", None, 0.0) == duration_for("a person jumps") == suggest_duration(
        "a person jumps")


# --- every command refuses such a line ------------------------------------------------------------------------------


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a person walks\n4,5 | a person jumps\n", encoding="utf-8")
    return path


def _refused(code: int, err: str) -> None:
    assert code == 2 and "line 2" in err and "'4,5' before '|' is not a duration in seconds" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--prompts", "--timeline"])
def test_hymotion_generate_refuses_the_line(bad_file, tmp_path, capsys, option):
    code = main(["generate", option, str(bad_file), "--out-dir", str(tmp_path), "--model", "tiny-random"])
    _refused(code, capsys.readouterr().err)


def test_hymotion_bake_refuses_the_line(bad_file, tmp_path, capsys):
    _refused(bake.main([str(bad_file), "--out", str(tmp_path / "library.blend")]), capsys.readouterr().err)


def test_the_farm_reports_the_line_and_runs_the_others(bad_file):
    clips, bad = read_farm_prompts(bad_file, [0])
    assert [clip.prompt for clip in clips] == ["a person walks"]
    assert len(bad) == 1 and "line 2" in bad[0].message and "not a duration in seconds" in bad[0].message
