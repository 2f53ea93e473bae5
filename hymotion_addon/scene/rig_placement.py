"""Where a new HY-Motion armature goes and what it is called (issue 26, point 16).

Target = New Armature builds a new armature for each Generate. Piled at the origin under one name (SMPLX, SMPLX.001,
...), four of them after two Generates and two Batch Bakes could not be told apart. So each new one is named after
its prompt, as its Action is (SMPLX_jumps_twice beside HYM_jumps_twice_s0), and stands beside the HY-Motion
armatures already in the scene, one row along X. Baking onto an existing armature is Target = Active Armature."""

from __future__ import annotations

import bpy

from ..core.motion_math import ACTION_NAME_PREFIX, action_name
from . import rig

RIG_PREFIX = "SMPLX_"
MAX_STEM_CHARS = 20
"""The prompt's words in an armature's name: enough to tell it apart in the Outliner, which clips long names."""
SPACING_M = 2.0
"""Distance along X between armatures: the SMPL-X body's arm span in its rest T-pose is about 1.7 m."""


def armature_name(prompts: list[str]) -> str:
    """SMPLX_<prompt's words>, as the Action's name has them; SMPLX_batch for a list of prompts."""
    if len(prompts) != 1:
        return f"{RIG_PREFIX}batch"
    words = action_name(prompts[0], 0).removeprefix(ACTION_NAME_PREFIX).removesuffix("_s0").split("_")
    stem = words[0]
    for word in words[1:]:
        if len(stem) + 1 + len(word) > MAX_STEM_CHARS:
            break
        stem = f"{stem}_{word}"
    return f"{RIG_PREFIX}{stem}"


def place_beside_others(armature: bpy.types.Object, scene: bpy.types.Scene) -> None:
    """Put a new armature one step along X past the furthest HY-Motion armature of the scene (the first one stays
    at the origin)."""
    others = [obj for obj in scene.objects if obj != armature and rig.is_hymotion_armature(obj)]
    if others:
        armature.location = (max(obj.location.x for obj in others) + SPACING_M, 0.0, 0.0)
