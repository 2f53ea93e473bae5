"""Fit Scene Range: after a generation, the scene's start and end frame cover the new motion, so playback shows all of
it and no frozen pose after it (issue 26). Blender's BVH importer offers the same as Update Scene Duration.

It is on by default: an animator who presses Generate in a fresh scene (frames 1-250) expects to press Play and see
the motion, not 130 frames of a held last pose. The frame rate is never touched here (Frame Rate decides that)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import bpy


def motion_frames(armature: bpy.types.Object | None, actions: Sequence[bpy.types.Action]) -> tuple[float, float]:
    """First and last frame the new Actions play at on the armature: their NLA strips where they were laid out as
    strips (Batch Bake, Continue), else the Actions' own frame ranges."""
    wanted = {action.name for action in actions}
    spans: list[tuple[float, float]] = []
    animation = armature.animation_data if armature is not None else None
    if animation is not None:
        spans = [(strip.frame_start, strip.frame_end) for track in animation.nla_tracks for strip in track.strips
                 if strip.action is not None and strip.action.name in wanted]
        if animation.action is not None and animation.action.name in wanted:
            spans.append(tuple(animation.action.frame_range))
    if not spans:
        spans = [tuple(action.frame_range) for action in actions]
    return min(start for start, _ in spans), max(end for _, end in spans)


def fit_scene_range(scene: bpy.types.Scene, armature: bpy.types.Object | None,
                    actions: Sequence[bpy.types.Action]) -> tuple[int, int]:
    """Set the scene's frame range to the new motion (whole frames that include it); returns (start, end)."""
    first, last = motion_frames(armature, actions)
    start, end = math.floor(first), max(math.ceil(last), math.floor(first) + 1)
    scene.frame_start, scene.frame_end = start, end
    return start, end
