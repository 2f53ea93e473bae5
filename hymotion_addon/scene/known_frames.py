"""The request side of generating with known frames in Blender: the rig's poses at scene frames turned into the
protocol's ``constraint``, and where the result will go (:class:`KnownFrames`), for the panel's operators and
``api.generate`` alike; :meth:`KnownFrames.place_results` puts the result there once it is baked."""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from hymotion.shared import skeleton
from hymotion.shared.errors import bad_request
from hymotion.shared.jobs import MIN_FRAMES, TRAIN_FRAMES, frames_for_duration
from hymotion.shared.protocol import FloatArray, GenerateConstraint, PoseFrames

from . import bake, rig, rig_pose
from .sequence import active_action, make_cyclic, pose_frames, write_between


@dataclass
class KnownFrames:
    """What a generation with known frames asks the backend for, and where its results go. ``start_frame``: where
    each Action's first frame lands; ``between``: an in-between's two frames, the result written into ``action``
    (the armature's active Action) between them; ``loop``: the results get Cycles modifiers."""

    constraint: GenerateConstraint
    start_frame: int
    duration: float | None = None
    between: tuple[int, int] | None = None
    action: bpy.types.Action | None = None
    loop: bool = False

    def place_results(self, armature: bpy.types.Object | None,
                      actions: list[bpy.types.Action]) -> list[bpy.types.Action]:
        """After the run: an in-between's result written into its Action (which is returned instead), loops
        cycled."""
        if self.between is not None and actions:
            (generated,) = actions
            write_between(self.action, generated, armature, *self.between)
            return [self.action]
        if self.loop:
            for action in actions:
                make_cyclic(action, armature)
        return actions


def known_frames(armature: bpy.types.Object | None, scene: bpy.types.Scene, *, start_from: int | None = None,
                 end_at: int | None = None, loop: bool = False, context_frames: int = 1,
                 duration: float | None = None, start_frame: int = 1) -> KnownFrames:
    """The constraint for a clip that starts in ``armature``'s pose at scene frame ``start_from`` (the
    ``context_frames`` model frames ending there guide it) and/or ends in its pose at ``end_at``, or loops.

    With both frames it is an in-between: the duration is their gap and the result is written into the active
    Action between them. With ``end_at`` alone the clip (of ``duration`` s) is placed to end on that frame. Bad
    frames or a missing armature are refused before anything is sent."""
    if start_from is None and end_at is None:
        if not loop:
            raise bad_request("Nothing is pinned.", "Give a start frame, an end frame or loop=True.")
        return KnownFrames(GenerateConstraint(loop=True), start_frame, loop=True)
    if armature is None:
        raise bad_request("Starting from or ending at a pose needs the armature that holds it.",
                          "Select that armature, the SMPL-X one or your mapped rig (or pass armature=...).")
    fps = bake.scene_fps(scene)
    for frame in (start_from, end_at):
        if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int)):
            raise bad_request(f"Frame {frame!r} is not a whole number.", "Pass scene frames as integers, e.g. 24.")
    if start_from is not None and end_at is not None:
        if loop:
            raise bad_request("A loop ends where it starts, so it cannot also end at another pose.",
                              "Drop the end frame, or drop the loop.")
        action = active_action(armature)
        first, last = (int(round(value)) for value in action.frame_range)
        if not first <= start_from < end_at <= last:
            raise bad_request(
                f"In-between frames {start_from} and {end_at} must lie within the active Action '{action.name}' "
                f"(frames {first}-{last}), the first before the second.",
                f"Pick two frames from {first} to {last}, e.g. {first} and {last}.",
            )
        frames = round((end_at - start_from) * skeleton.FPS / fps) + 1
        if not MIN_FRAMES <= frames <= TRAIN_FRAMES:
            raise bad_request(
                f"Frames {start_from} and {end_at} are {(end_at - start_from) / fps:.2f} s apart; an in-between spans "
                f"{(MIN_FRAMES - 1) / skeleton.FPS:.2f} to {(TRAIN_FRAMES - 1) / skeleton.FPS:.2f} s.",
                "Pick two frames closer together or further apart.",
            )
        constraint = GenerateConstraint(start=pose_message(armature, start_from, 1, scene),
                                        end=pose_message(armature, end_at, 1, scene))
        return KnownFrames(constraint, start_from, frames / skeleton.FPS, (start_from, end_at), action)
    if start_from is not None:
        start = pose_message(armature, start_from, context_frames, scene)
        return KnownFrames(GenerateConstraint(start=start, loop=loop), start_from, loop=loop)
    if loop:
        raise bad_request("A loop ends where it starts, so it cannot also end at another pose.",
                          "Drop the end frame, or drop the loop.")
    if duration is None:
        raise bad_request("Ending at a pose needs the clip's duration, to know where it starts.", "Pass a duration.")
    assert end_at is not None  # with neither frame given it returned above
    frames = frames_for_duration(duration)
    first = end_at - int(round((frames - 1) * fps / skeleton.FPS))
    return KnownFrames(GenerateConstraint(end=pose_message(armature, end_at, 1, scene)), first)


def pose_message(armature: bpy.types.Object, frame: int, frames: int, scene: bpy.types.Scene) -> PoseFrames:
    """:func:`pose_frames` as the protocol carries it; a mapped rig's pose read back through its mapping."""
    read = pose_frames if rig.is_hymotion_armature(armature) else rig_pose.read_pose
    translation, rotations = read(armature, frame, frames, scene)
    return PoseFrames(FloatArray.from_numpy(translation), FloatArray.from_numpy(rotations))
