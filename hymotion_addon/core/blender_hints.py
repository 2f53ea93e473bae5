"""The backend's hints in the words of Blender's window: a hint written for the command line ("Run: hymotion
download --variant lite") names a command that is not on PATH for an animator; in Blender every hint names the button
or the setting instead (issue 26)."""

from __future__ import annotations

from hymotion.shared.errors import WEIGHTS_MISSING, HyMotionError

WEIGHTS_HINT = (
    "Press Download Weights in Preferences > Add-ons > HY-Motion (about 20 GB), or set its Model Folder to the "
    "folder that holds HY-Motion-1.0-Lite (or HY-Motion-1.0), Qwen3-8B and clip-vit-large-patch14."
)
CLI_ONLY = " (CLI: --model-dir)"


def in_blender_words(error: HyMotionError) -> HyMotionError:
    """The same error with a hint that names Blender's buttons and settings, never a shell command."""
    hint = error.hint
    if error.code == WEIGHTS_MISSING and "hymotion download" in hint:
        hint = WEIGHTS_HINT
    hint = hint.replace(CLI_ONLY, "")
    if hint == error.hint:
        return error
    return HyMotionError(error.code, error.message, hint, error.field)
