"""Regenerate a segment of a motion file (issue 27): frames START..END of a clip made anew with a prompt and a seed,
every other frame kept exactly. numpy only: the generation itself is the known-frames mechanism
(:mod:`.known_frames`) with frames pinned on both sides, the ``context`` frames before the range as the start (the
last of them is the new clip's first frame) and the frame after it as the end pose; :func:`splice` then puts the new
frames between the old ones.

A range at the very start of the clip has no frames before it, one at the very end none after it: that side is then
free (a segment ending the clip ends where the model takes it). The generated clip spans the range plus its pinned
neighbours, so it must be 20 to 360 model frames long, context included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..shared import skeleton
from ..shared.errors import bad_request
from ..shared.jobs import MIN_FRAMES, TRAIN_FRAMES
from ..shared.rotations import continuous_quaternions
from ..shared.skeleton import FPS
from . import motion
from .known_frames import MotionConstraint, Pose, load_motion

REGENERATE_CONTEXT = 10  # frames (1/3 s) before the range the new motion continues from, as a timeline's segments do
_RANGE = re.compile(r"^(?P<path>.+):(?P<first>\d+)-(?P<last>\d+)$")


@dataclass
class SegmentRedo:
    """Frames ``first``..``last`` (0-based, both included) of the clip in ``path`` to make anew."""

    path: Path
    first: int
    last: int
    translation: np.ndarray  # (F, 3) the whole original clip, float64 as read
    rotations: np.ndarray  # (F, 22, 4)
    positions: np.ndarray  # (F, 22, 3) its forward kinematics
    prompt: str  # the clip's own prompt, the default for the new segment
    context: int = REGENERATE_CONTEXT

    @property
    def frames(self) -> int:
        return len(self.translation)

    @property
    def pinned_before(self) -> bool:
        return self.first > 0

    @property
    def pinned_after(self) -> bool:
        return self.last < self.frames - 1

    @property
    def generated_frames(self) -> int:
        """Frames of the clip the model makes: the range and its pinned neighbours (the context's last frame, the end
        pose)."""
        return self.last - self.first + 1 + int(self.pinned_before) + int(self.pinned_after)

    @property
    def duration(self) -> float:
        return self.generated_frames / FPS

    def constraint(self) -> MotionConstraint | None:
        """Start: up to ``context`` frames ending on the frame before the range; end: the frame after it."""
        start = end = None
        if self.pinned_before:
            count = min(self.context, self.first)
            before = slice(self.first - count, self.first)
            start = Pose(self.translation[before], self.rotations[before])
        if self.pinned_after:
            end = Pose(self.translation[self.last + 1], self.rotations[self.last + 1])
        if start is None and end is None:
            return None
        return MotionConstraint(start=start, end=end)

    def splice(self, clip: motion.MotionClip) -> motion.MotionClip:
        """The original clip with the range taken from ``clip`` (as the model made it for this redo); the frames
        outside the range are the original's, bit for bit."""
        if clip.frames != self.generated_frames:
            raise bad_request(
                f"The regenerated segment has {clip.frames} frames; {self.generated_frames} were asked for.",
                "Report this: the known-frames generation returned another length.",
            )
        offset = int(self.pinned_before)
        count = self.last - self.first + 1
        translation = np.array(self.translation, dtype=np.float64)
        rotations = np.array(self.rotations, dtype=np.float64)
        positions = np.array(self.positions, dtype=np.float64)
        new_rotations = np.asarray(clip.rotations[offset : offset + count], dtype=np.float64)
        if self.pinned_before:  # the same hemisphere as the frame before, so interpolation never flips
            previous = self.rotations[self.first - 1 : self.first]
            joined = continuous_quaternions(np.concatenate([previous, new_rotations]), axis=-3)
            new_rotations = joined[1:]
        new_translation = np.asarray(clip.translation[offset : offset + count], dtype=np.float64)
        translation[self.first : self.last + 1] = new_translation
        rotations[self.first : self.last + 1] = new_rotations
        positions[self.first : self.last + 1] = skeleton.forward_kinematics(new_rotations, new_translation)
        return replace(clip, translation=translation.astype(np.float32), rotations=rotations.astype(np.float32),
                       positions=positions.astype(np.float32), duration=self.frames / FPS)


def parse_range(spec: str) -> tuple[Path, int, int]:
    """"clip.npz:40-80" -> (clip.npz, 40, 80)."""
    match = _RANGE.match(spec)
    if not match:
        raise bad_request(f"--regenerate {spec!r} is not FILE:START-END.",
                          "Give the motion file and the 0-based frames to make anew, e.g. walk.npz:40-80.")
    return Path(match["path"]), int(match["first"]), int(match["last"])


def load_redo(spec: str, context: int = REGENERATE_CONTEXT) -> SegmentRedo:
    """The motion file and range of ``FILE:START-END``, checked: a range inside the clip, first before last, and a
    generated clip the model can make (20 to 360 frames with its context)."""
    path, first, last = parse_range(spec)
    translation, rotations, prompt = load_motion(path)
    frames = len(translation)
    if not 0 <= first <= last < frames:
        raise bad_request(f"Frames {first}-{last} are not inside {path} (frames 0-{frames - 1}), first before last.",
                          f"Pick a range from 0 to {frames - 1}, e.g. {path}:{frames // 3}-{2 * frames // 3}.")
    if context < 1:
        raise bad_request(f"The number of context frames must be at least 1, got {context}.", "Use e.g. 10.")
    positions = skeleton.forward_kinematics(rotations, translation)
    redo = SegmentRedo(path, first, last, translation, rotations, positions, prompt, context)
    pinned = int(redo.pinned_before) + int(redo.pinned_after)
    extra = min(context, first) - 1 if redo.pinned_before else 0  # context frames the output leaves out
    if redo.generated_frames < MIN_FRAMES or redo.generated_frames + extra > TRAIN_FRAMES:
        raise bad_request(
            f"Frames {first}-{last} make a clip of {redo.generated_frames} frames with their {pinned} pinned "
            f"neighbour(s) and {extra} more context frames; the model makes {MIN_FRAMES} to {TRAIN_FRAMES}.",
            f"Regenerate {MIN_FRAMES - pinned} to {TRAIN_FRAMES - pinned - extra} frames "
            f"({(MIN_FRAMES - pinned) / FPS:.2f} to {(TRAIN_FRAMES - pinned - extra) / FPS:.2f} s).",
        )
    return redo
