"""Regenerate a segment of an Action (issue 27): scene frames ``first``..``last`` of the armature's active Action made
anew with a prompt and a seed, every key outside them kept exactly. The same known-frames mechanism as an in-between
(:mod:`.known_frames`): the frame before the range is the new clip's first frame, with the context frames before it
guiding the start, and the frame after the range its end pose; :meth:`KnownFrames.place_results` then writes the
result into the Action strictly between those two frames, so they and everything beyond keep their keys.

A range that starts on the Action's first frame has no frame before it: the new clip then only ends in the pose after
the range (and one that ends on the last frame only starts from the pose before it).
"""

from __future__ import annotations

import bpy

from hymotion.shared import skeleton
from hymotion.shared.errors import bad_request
from hymotion.shared.jobs import MIN_FRAMES, TRAIN_FRAMES
from hymotion.shared.protocol import GenerateConstraint

from . import bake
from .known_frames import KnownFrames, pose_message
from .sequence import active_action

REGENERATE_CONTEXT = 10  # model frames (1/3 s) before the range the new motion continues from, as the backend's


def segment_range(scene: bpy.types.Scene, frame_start: int | None = None,
                  frame_end: int | None = None) -> tuple[int, int]:
    """The range to regenerate: the two frames given, else the scene's preview range when it is on."""
    if frame_start is not None and frame_end is not None:
        return int(frame_start), int(frame_end)
    if scene.use_preview_range:
        return int(scene.frame_preview_start), int(scene.frame_preview_end)
    raise bad_request("No range to regenerate.",
                      "Set the timeline's preview range (Ctrl P in the Timeline) or give the first and last frames.")


def regenerate_frames(armature: bpy.types.Object, scene: bpy.types.Scene, first: int, last: int,
                      context_frames: int = REGENERATE_CONTEXT) -> KnownFrames:
    """What to ask for to make scene frames ``first``..``last`` of ``armature``'s active Action anew, and where the
    result goes. Refused, before anything is sent, for a range outside the Action, one that covers all of it, or one
    the model cannot make (20 to 360 model frames with its pinned neighbours and context)."""
    for frame in (first, last):
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise bad_request(f"Frame {frame!r} is not a whole number.", "Pass scene frames as integers, e.g. 40.")
    action = active_action(armature)
    start, end = (int(round(value)) for value in action.frame_range)
    if not start <= first <= last <= end:
        raise bad_request(
            f"Frames {first}-{last} are not inside the Action '{action.name}' (frames {start}-{end}), first before "
            "last.", f"Pick a range from {start} to {end}, e.g. the preview range {start + 10}-{min(end, start + 40)}.")
    before = first - 1 if first > start else None
    after = last + 1 if last < end else None
    if before is None and after is None:
        raise bad_request(f"Frames {first}-{last} are all of the Action '{action.name}'; nothing would stay.",
                          "Generate a new clip instead, or leave frames on one side of the range.")
    fps = bake.scene_fps(scene)
    low = before if before is not None else first
    high = after if after is not None else last
    frames = round((high - low) * skeleton.FPS / fps) + 1
    context = 1
    if before is not None:  # context frames 1/30 s apart ending at `before`, all inside the Action
        context = max(1, min(context_frames, int((before - start) * skeleton.FPS / fps) + 1))
    if not MIN_FRAMES <= frames <= TRAIN_FRAMES - (context - 1):
        raise bad_request(
            f"Frames {first}-{last} with their pinned neighbours span {(high - low) / fps:.2f} s; the model makes "
            f"{(MIN_FRAMES - 1) / skeleton.FPS:.2f} to {(TRAIN_FRAMES - context) / skeleton.FPS:.2f} s.",
            "Pick a longer or shorter range.")
    constraint = GenerateConstraint(
        start=pose_message(armature, before, context, scene) if before is not None else None,
        end=pose_message(armature, after, 1, scene) if after is not None else None,
    )
    start_frame = low if before is not None else high - int(round((frames - 1) * fps / skeleton.FPS))
    # Keys strictly between the two bounds are replaced: the pinned frames (or, with no frame there, one past the
    # range) keep theirs.
    bounds = (before if before is not None else first - 1, after if after is not None else last + 1)
    return KnownFrames(constraint, start_frame, frames / skeleton.FPS, bounds, action)


def clip_prompt(armature: bpy.types.Object) -> str:
    """The prompt the active Action was made with ('' when it holds none)."""
    action = armature.animation_data.action if armature.animation_data is not None else None
    return str(action.get("hymotion_prompt", "")) if action is not None else ""
