"""Hints in Blender name buttons and settings, never a shell command (issue 26, point 12)."""

from __future__ import annotations

from hymotion.shared.errors import BAD_REQUEST, WEIGHTS_MISSING, HyMotionError
from hymotion_addon.core.blender_hints import in_blender_words


def test_missing_weights_point_at_download_weights_and_the_model_folder_not_at_a_command():
    error = HyMotionError(WEIGHTS_MISSING, "HY-Motion lite (tencent/HY-Motion-1.0/HY-Motion-1.0-Lite) is not "
                          "downloaded.", "Run: hymotion download --variant lite")
    said = in_blender_words(error)
    assert said.message == error.message and said.code == WEIGHTS_MISSING
    assert "Download Weights" in said.hint and "Model Folder" in said.hint and "hymotion download" not in said.hint


def test_the_cli_only_part_of_a_hint_is_left_out_and_other_hints_stay():
    unreachable = HyMotionError(WEIGHTS_MISSING, "Could not reach huggingface.co.", "... choose that folder as Model "
                                "Folder (CLI: --model-dir).")
    assert in_blender_words(unreachable).hint == "... choose that folder as Model Folder."
    other = HyMotionError(BAD_REQUEST, "The prompt is empty.", "Describe the motion.")
    assert in_blender_words(other) is other
