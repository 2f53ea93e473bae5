"""What runs on the farm's workers: one pipeline per GPU as a Ray actor that turns units into clip files, and the
task that bakes a finished library into a .blend with Blender."""

from __future__ import annotations

import collections
import os
import time
import traceback
from pathlib import Path
from typing import Any

from ..shared.bake_job import BakeClip, BakeJob
from ..shared.errors import INTERNAL, HyMotionError
from ..shared.files import replacing
from ..shared.jobs import (
    GenerationSettings,
)
from ..shared.motion_files import read_motion_file
from .planning import FarmClip, FarmSettings, Library

CPU_CORES_PER_WORKER = 4


WORKER_START_TIMEOUT_S = 900.0  # loading real weights from a network disk can take minutes


class FarmWorker:
    """One pipeline with its model loaded, as a Ray actor (one per GPU, or a CPU worker); makes the clips of a unit.

    Errors come back as data (code, message, hint) rather than raised, so the driver can tell the user's mistakes
    (missing weights) from a crash and retry only the latter."""

    def __init__(self, settings: FarmSettings, out: str, device: str | None) -> None:
        self.settings = settings
        self.out = Path(out)
        self.error: dict | None = None
        self.pipeline = None
        try:
            from ..pipeline.loading import load_pipeline

            plan = "cpu" if device == "cpu" else settings.plan
            self.pipeline = load_pipeline(settings.model, settings.model_dir, plan, device=device,
                                          cache_dir=settings.cache_dir, compile_dit=settings.compile_dit)
        except Exception as error:  # reported by ready(); the driver decides
            self.error = _error_dict(error)

    def ready(self) -> dict[str, Any]:
        import socket

        described = self.pipeline.describe() if self.pipeline is not None else {}
        return {"pid": os.getpid(), "host": socket.gethostname(), "error": self.error,
                "plan": described.get("plan"), "device": described.get("device")}

    def make(self, unit: list[FarmClip]) -> dict[str, Any]:
        """Make the unit's clips whose files do not exist yet; one pipeline call per set of seeds."""
        made: list[dict] = []
        notes: list[str] = []
        try:
            missing = [clip for clip in unit if not (self.out / clip.file).exists()]
            for group in _by_seeds(missing):
                lines = list({clip.id: clip for clip in group}.values())  # one per prompt line, in order
                position = {clip.id: index for index, clip in enumerate(lines)}
                wanted = {(position[clip.id], clip.seed): clip for clip in group}
                settings = GenerationSettings(
                    prompts=[clip.prompt for clip in lines], durations=[clip.duration for clip in lines],
                    seeds=sorted({clip.seed for clip in group}), cfg_scale=self.settings.cfg,
                    steps=self.settings.steps, smoothing=self.settings.smoothing,
                )
                assert self.pipeline is not None, "the driver hands units only to workers that loaded"
                for motion in self.pipeline.generate(settings, on_warning=notes.append):
                    clip = wanted[(motion.prompt_index, motion.seed)]
                    motion.save(self.out / clip.file)
                    made.append({"key": clip.key, "frames": motion.frames, "at": time.time()})
        except Exception as error:
            traceback.print_exc()  # into this worker's Ray log
            return {"made": made, "notes": notes, "pid": os.getpid(), "error": _error_dict(error)}
        return {"made": made, "notes": notes, "pid": os.getpid(), "error": None}


def _by_seeds(clips: list[FarmClip]) -> list[list[FarmClip]]:
    """Clips grouped so each group is every one of its prompts × one set of seeds (one pipeline call each)."""
    seeds_of: dict[str, set[int]] = collections.defaultdict(set)
    for clip in clips:
        seeds_of[clip.id].add(clip.seed)
    groups: dict[tuple[int, ...], list[FarmClip]] = collections.defaultdict(list)
    for clip in clips:
        groups[tuple(sorted(seeds_of[clip.id]))].append(clip)
    return list(groups.values())


def _error_dict(error: BaseException) -> dict[str, str]:
    if isinstance(error, HyMotionError):
        return error.to_dict()
    return {"code": INTERNAL, "message": f"{type(error).__name__}: {error}", "hint": ""}


def bake_farm_library(out: str, library: Library, blender: str | None, bpy_python: str | None) -> dict[str, Any]:
    """Bake one library with hymotion-bake's code in a background Blender (a Ray CPU task); rename it into place."""
    import tempfile

    from ..bake import blender_command, find_addon_dir, run_blender

    try:
        clips = tuple(
            BakeClip(path=str(Path(out) / clip.file), prompt=clip.prompt, seed=clip.seed, duration=clip.duration,
                     model=read_motion_file(Path(out) / clip.file).model_id, action=clip.action)
            for clip in library.clips
        )
        addon_dir = find_addon_dir(None)
        with replacing(Path(out) / library.file) as temporary, \
                tempfile.TemporaryDirectory(prefix="hymotion-farm-") as scratch:
            job = BakeJob(out=str(temporary), clips=clips, addon_dir=str(addon_dir) if addon_dir else None)
            run_blender(blender_command(blender, bpy_python), job.write(Path(scratch) / "manifest.json"))
    except Exception as error:
        return {"file": library.file, "error": _error_dict(error)}
    return {"file": library.file, "error": None}
