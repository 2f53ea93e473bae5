"""The farm's planning, files and command line, without Ray: stable clip ids, units, libraries, the retry rule,
atomic clip files and the errors a user meets before anything runs."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from hymotion.cli import main
from hymotion.farm.driver import _prepare_out, _Unit, next_unit_for
from hymotion.farm.planning import (
    CLIPS_FOLDER,
    FarmSettings,
    plan_libraries,
    plan_units,
    read_farm_prompts,
    remove_partial_files,
)
from hymotion.pipeline.motion import MotionClip
from hymotion.shared.errors import HyMotionError


def prompt_file(tmp_path, text: str):
    path = tmp_path / "prompts.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_clip_ids_survive_inserted_and_reordered_lines(tmp_path):
    first, _ = read_farm_prompts(prompt_file(tmp_path, "a person jumps\n3 | a person waves\n"), [0])
    second, _ = read_farm_prompts(prompt_file(tmp_path, "# new\na person bows\n3 | a person waves\na person jumps\n"),
                                  [0])
    assert {clip.key for clip in first} < {clip.key for clip in second}
    assert [clip.line for clip in second] == [2, 3, 4]


def test_a_changed_duration_or_a_repeated_line_gets_its_own_id(tmp_path):
    clips, _ = read_farm_prompts(prompt_file(tmp_path, "2 | a person jumps\n3 | a person jumps\n2 | a person jumps\n"),
                                 [0])
    ids = [clip.id for clip in clips]
    assert len(set(ids)) == 3 and ids[2] == f"{ids[0]}-2"


def test_seeds_per_line_or_global(tmp_path):
    clips, bad = read_farm_prompts(prompt_file(tmp_path, "a person jumps | seeds 3-5\na person waves\n"), [0, 1])
    assert bad == []
    assert [(clip.prompt, clip.seed) for clip in clips] == [
        ("a person jumps", 3), ("a person jumps", 4), ("a person jumps", 5), ("a person waves", 0),
        ("a person waves", 1),
    ]


def test_bad_lines_are_reported_with_their_numbers_and_skipped(tmp_path):
    path = prompt_file(tmp_path, "a person jumps\n30 | a person walks\na person waves | seeds x\n4 |\na person bows\n")
    clips, bad = read_farm_prompts(path, [0])
    assert [clip.prompt for clip in clips] == ["a person jumps", "a person bows"]
    assert sorted(error.message.split(": ")[0] for error in bad) == [f"{path}, line {number}" for number in (2, 3, 4)]
    assert all(error.hint for error in bad)


def test_a_file_of_only_bad_lines_stops_with_the_first_problem(tmp_path):
    with pytest.raises(HyMotionError) as raised:
        read_farm_prompts(prompt_file(tmp_path, "30 | a person walks\n"), [0])
    assert "line 1" in raised.value.message and "0.67 to 12 seconds" in raised.value.hint


def test_units_hold_every_clip_once_and_each_prompt_in_one_unit(tmp_path):
    text = "".join(f"a person does move {number}\n" for number in range(7)) + "a person does move 0\n"
    clips, _ = read_farm_prompts(prompt_file(tmp_path, text), [0, 1, 2])
    units = plan_units(clips, unit_size=7)
    assert sorted(clip.key for unit in units for clip in unit) == sorted(clip.key for clip in clips)
    assert all(len(unit) <= 7 for unit in units)
    unit_of = collections.defaultdict(set)
    for number, unit in enumerate(units):
        for clip in unit:
            unit_of[clip.prompt].add(number)
    assert all(len(numbers) == 1 for numbers in unit_of.values())  # 6 clips of the repeated prompt fit one unit


def test_a_prompt_with_more_clips_than_a_unit_fills_whole_units(tmp_path):
    clips, _ = read_farm_prompts(prompt_file(tmp_path, "a person jumps | seeds 0-9\n"), [0])
    assert [len(unit) for unit in plan_units(clips, unit_size=4)] == [4, 4, 2]


def test_libraries_take_each_n_clips_in_file_order(tmp_path):
    clips, _ = read_farm_prompts(prompt_file(tmp_path, "a person jumps\na person waves\na person bows\n"), [0, 1])
    libraries = plan_libraries(clips, every=4, stem="npc")
    assert [library.file for library in libraries] == ["libraries/npc_001.blend", "libraries/npc_002.blend"]
    assert [clip.key for library in libraries for clip in library.clips] == [clip.key for clip in clips]


def test_a_failed_unit_goes_to_another_worker_while_one_is_alive():
    units = collections.deque([_Unit([], attempt=1, avoid=0), _Unit([])])
    assert next_unit_for(0, units, others_alive=True) is not None and len(units) == 1
    assert units[0].avoid == 0  # the retry waits for another worker
    assert next_unit_for(0, units, others_alive=True) is None
    assert next_unit_for(0, units, others_alive=False).avoid == 0  # alone: it retries itself


def tiny_clip() -> MotionClip:
    frames = 20
    rotations = np.zeros((frames, 22, 4), np.float32)
    rotations[..., 0] = 1
    return MotionClip(np.zeros((frames, 3), np.float32), rotations, np.zeros((frames, 22, 3), np.float32),
                      prompt="a person jumps", seed=3)


def test_a_clip_file_is_complete_or_absent(tmp_path, monkeypatch):
    path = tmp_path / "a_s3.npz"
    tiny_clip().save(path)  # the farm's workers write clips through the one motion-file writer
    assert [p.name for p in tmp_path.iterdir()] == ["a_s3.npz"]
    assert int(MotionClip.load(path).seed) == 3

    def fails_halfway(handle, **arrays):
        handle.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", fails_halfway)
    with pytest.raises(OSError):
        tiny_clip().save(tmp_path / "b_s0.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["a_s3.npz"]


def test_partial_files_are_removed_and_finished_ones_kept(tmp_path):
    (tmp_path / CLIPS_FOLDER).mkdir()
    finished = tmp_path / CLIPS_FOLDER / "a_s0.npz"
    finished.write_bytes(b"done")
    (tmp_path / CLIPS_FOLDER / ".a_s1.5f3e.partial.npz").write_bytes(b"half")
    assert remove_partial_files(tmp_path) == 1
    assert [p.name for p in (tmp_path / CLIPS_FOLDER).iterdir()] == ["a_s0.npz"]


def test_a_folder_made_with_other_settings_is_refused(tmp_path):
    _prepare_out(tmp_path / "out", FarmSettings(model="tiny-random", steps=1))
    with pytest.raises(HyMotionError) as raised:
        _prepare_out(tmp_path / "out", FarmSettings(model="tiny-random", steps=2))
    assert "steps 1 there, 2 asked" in raised.value.message and "new --out" in raised.value.hint


@pytest.mark.parametrize("arguments, message", [
    (["missing.txt"], "does not exist"),
    (["prompts.txt", "--unit-size", "0"], "--unit-size must be a whole number >= 1"),
    (["prompts.txt", "--seeds", "a"], "Seed 'a' is not an integer"),
    (["prompts.txt", "--duration", "30"], "outside 0.67-12 s"),
    (["prompts.txt", "--plan", "fast"], "Unknown memory plan 'fast'"),
])
def test_bad_arguments_exit_2_with_a_hint_before_ray_starts(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    prompt_file(tmp_path, "a person jumps\n")
    assert main(["farm", *arguments, "--out", "out"]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and "hint: " in stderr


def test_a_prompt_past_its_length_is_a_bad_line_the_others_still_run(tmp_path):
    from hymotion.farm.planning import read_farm_prompts
    from hymotion.shared.jobs import MAX_PROMPT_CHARS

    prompts = tmp_path / "p.txt"
    prompts.write_text("a person waves\n" + "a person walks " * MAX_PROMPT_CHARS + "\n", encoding="utf-8")
    clips, bad = read_farm_prompts(prompts, [0])
    assert [clip.prompt for clip in clips] == ["a person waves"]
    assert len(bad) == 1 and "line 2" in bad[0].message and str(MAX_PROMPT_CHARS) in bad[0].message
