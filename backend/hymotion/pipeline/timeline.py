"""Timelines: prompts one after another as one continuous motion, each segment continuing from the last frames of
the one before through the known-frames mechanism (:mod:`.known_frames`), the seam frame kept once."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..shared import skeleton
from ..shared.errors import bad_request
from ..shared.jobs import TRAIN_FRAMES, GenerationSettings, check_timeline_length, frames_for_duration
from ..shared.rotations import (
    continuous_quaternions,
)
from ..shared.skeleton import FPS
from . import motion
from .known_frames import MotionConstraint, Pose

TIMELINE_CONTEXT = 10  # frames each timeline segment continues from: a third of a second of motion


@dataclass
class Segment:
    prompt: str
    duration: float


def check_timeline(segments: Sequence[Segment], context_frames: int, start: Pose | None) -> None:
    if not segments:
        raise bad_request("The timeline holds no lines.", "Write one '4.5 | prompt' line per segment.")
    check_timeline_length([segment.duration for segment in segments])
    for number, segment in enumerate(segments, start=1):
        frames = frames_for_duration(segment.duration)
        # Segments after the first sample one more frame (the seam frame, which the previous segment already has).
        extra = (start.frames - 1 if start is not None else 0) if number == 1 else context_frames
        if frames + extra > TRAIN_FRAMES:
            raise bad_request(
                f"Timeline line {number} ({segment.duration:g} s) and its {extra} context frames need "
                f"{frames + extra} frames; the model makes at most {TRAIN_FRAMES}.",
                f"Split the line in two, or make it at most {(TRAIN_FRAMES - extra) / FPS:.2f} s.",
            )


def generate_timeline(
    pipeline,
    segments: Sequence[Segment],
    seeds: Sequence[int],
    *,
    steps: int,
    cfg_scale: float,
    smoothing: bool = True,
    context_frames: int = 10,
    start: Pose | None = None,
    end: Pose | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[motion.MotionClip]:
    """One continuous clip per seed: each segment is generated from the last ``context_frames`` frames of the motion
    so far (the first from ``start`` when given), its first frame being the previous segment's last one (the seam,
    kept once), so the clip has the sum of the segments' frames. ``end``: the last segment ends in that pose."""
    check_timeline(segments, context_frames, start)
    for seed in seeds:
        so_far: tuple[np.ndarray, np.ndarray] | None = None  # (translation, rotations) of the segments made
        for number, segment in enumerate(segments):
            frames = frames_for_duration(segment.duration)
            if so_far is None:
                context, length = start, frames
            else:
                translation, rotations = so_far
                take = min(context_frames, len(translation))
                context, length = Pose(translation[-take:], rotations[-take:]), frames + 1
            last = number == len(segments) - 1
            constraint = MotionConstraint(start=context, end=end if last else None)
            settings = GenerationSettings([segment.prompt], [length / FPS], [seed], cfg_scale, steps, smoothing)
            use = constraint if (context is not None or constraint.end is not None) else None
            (clip,) = pipeline.generate(settings, on_progress, should_cancel, on_warning, constraint=use)
            new_translation, new_rotations = clip.translation.astype(np.float64), clip.rotations.astype(np.float64)
            if so_far is None:
                so_far = new_translation, new_rotations
            else:
                so_far = (np.concatenate([so_far[0], new_translation[1:]]),
                          np.concatenate([so_far[1], new_rotations[1:]]))
        assert so_far is not None  # check_timeline refuses a timeline without segments
        translation, rotations = so_far[0], continuous_quaternions(so_far[1], axis=-3)
        yield motion.MotionClip(
            translation=translation.astype(np.float32), rotations=rotations.astype(np.float32),
            positions=skeleton.forward_kinematics(rotations, translation).astype(np.float32),
            prompt=" | ".join(segment.prompt for segment in segments), seed=seed,
            duration=len(translation) / FPS, model_id=pipeline.model_id, plan=pipeline.plan,
            extra={"segments": [(segment.prompt, segment.duration) for segment in segments]},
        )
