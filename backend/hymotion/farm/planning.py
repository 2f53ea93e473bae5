"""The farm's work planned without Ray: the prompt file read into clips (each line's prompt, duration and seeds),
grouped into units of work and into .blend libraries, and the output folder's files and names."""

from __future__ import annotations

import collections
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..shared.errors import HyMotionError, bad_request
from ..shared.files import PARTIAL_MARK
from ..shared.jobs import (
    DEFAULT_CFG,
    DEFAULT_DURATION,
    DEFAULT_STEPS,
    GenerationSettings,
    read_prompt_file,
)

CLIPS_FOLDER = "clips"


LIBRARIES_FOLDER = "libraries"


EMBEDDINGS_FOLDER = "embeddings"


SETTINGS_FILE = "farm.json"


INDEX_JSON = "index.json"


INDEX_CSV = "index.csv"


SUMMARY_FILE = "summary.json"


ID_SLUG_CHARS = 32  # keeps "HYM_<id>_s<seed>" within Blender 4.2's 63-character names for any 64-bit seed


ACTION_PREFIX = "HYM_"


DEFAULT_UNIT_SIZE = 64  # clips per unit: two sampling batches of the gpu plan, a few seconds of work per unit


INDEX_COLUMNS = ("id", "line", "prompt", "seed", "duration", "file", "library", "action")


@dataclass(frozen=True)
class FarmClip:
    """One prompt × seed. ``id`` depends only on the prompt text and duration (plus a repeat number for a line that
    repeats an earlier one), so editing, inserting or reordering other lines keeps finished clips finished."""

    id: str
    line: int
    prompt: str
    duration: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.id}_s{self.seed}"

    @property
    def file(self) -> str:
        """Relative to the output folder."""
        return f"{CLIPS_FOLDER}/{self.key}.npz"

    @property
    def action(self) -> str:
        """The Action's name in its library: unique across the whole run, so linking many libraries never clashes."""
        return f"{ACTION_PREFIX}{self.key}"


@dataclass(frozen=True)
class FarmSettings:
    """What every worker needs to make clips. ``model``, ``steps``, ``cfg`` and ``smoothing`` decide the motion and
    are kept in OUT/farm.json, so a re-run cannot mix clips of different settings in one folder."""

    model: str = "lite"
    model_dir: str | None = None
    plan: str = "auto"
    cache_dir: str | None = None
    steps: int = DEFAULT_STEPS
    cfg: float = DEFAULT_CFG
    smoothing: bool = True
    compile_dit: bool = False

    def motion_settings(self) -> dict[str, Any]:
        return {"model": self.model, "steps": self.steps, "cfg": self.cfg, "smoothing": self.smoothing}


@dataclass(frozen=True)
class Library:
    file: str  # relative to the output folder
    clips: tuple[FarmClip, ...]


def read_farm_prompts(
    path: str | os.PathLike, seeds: list[int], duration: float | None = None
) -> tuple[list[FarmClip], list[HyMotionError]]:
    """The clips a prompt file asks for, and its bad lines (each error names its line; the good lines still run).

    Lines are ``[seconds |] prompt [| seeds 0-3]``; a line without seeds gets ``seeds``, one without a duration gets
    ``duration``, else one estimated from the prompt (as ``hymotion generate`` does).
    """
    from ..shared.jobs import check_prompt_length, prompt_slug
    from ..shared.prompt_guide import duration_for

    bad: list[HyMotionError] = []
    try:
        lines = read_prompt_file(path, on_bad_line=bad.append, allow_seeds=True)
    except HyMotionError:
        if not bad:
            raise
        raise bad_request(f"No line of {path} can run; the first problem: {bad[0].message}", bad[0].hint) from None
    clips: list[FarmClip] = []
    repeats: collections.Counter[str] = collections.Counter()
    for line in lines:
        try:
            if line.seeds is not None:
                check_generation(line.seeds, DEFAULT_STEPS, DEFAULT_CFG)
            check_prompt_length(line.prompt, f"{path}, line {line.line_number}")
        except HyMotionError as error:
            bad.append(bad_request(f"{path}, line {line.line_number}: {error.message}",
                                   "Write a line's own seeds as: 4 | a person jumps | seeds 0-3"))
            continue
        seconds = duration_for(line.prompt, line.duration, duration)
        digest = hashlib.sha256(f"{seconds:g}\0{line.prompt}".encode()).hexdigest()[:8]
        repeats[digest] += 1
        clip_id = (f"{prompt_slug(line.prompt, ID_SLUG_CHARS)}-{digest}"
                   + (f"-{repeats[digest]}" if repeats[digest] > 1 else ""))
        clips.extend(FarmClip(clip_id, line.line_number, line.prompt, seconds, seed) for seed in line.seeds or seeds)
    if not clips:
        raise bad_request(f"No line of {path} can run; the first problem: {bad[0].message}", bad[0].hint)
    return clips, bad


def check_generation(seeds: list[int], steps: int, cfg: float) -> None:
    """Seeds, steps and cfg checked by the one definition every command uses (GenerationSettings.validate)."""
    GenerationSettings(prompts=["check"], durations=[DEFAULT_DURATION], seeds=seeds, cfg_scale=cfg,
                       steps=steps).validate()


def plan_units(clips: list[FarmClip], unit_size: int) -> list[list[FarmClip]]:
    """Work units of about ``unit_size`` clips in file order, all clips of one prompt in one unit where they fit, so a
    prompt is encoded by one worker once (a prompt with more clips than a unit is split into full units)."""
    by_prompt: dict[str, list[FarmClip]] = {}
    for clip in clips:
        by_prompt.setdefault(clip.prompt, []).append(clip)
    units: list[list[FarmClip]] = []
    current: list[FarmClip] = []
    for group in by_prompt.values():
        while len(group) > unit_size:
            units.append(group[:unit_size])
            group = group[unit_size:]
        if len(current) + len(group) > unit_size:
            units.append(current)
            current = []
        current = current + group
    if current:
        units.append(current)
    return units


def plan_libraries(clips: list[FarmClip], every: int, stem: str) -> list[Library]:
    """Each ``every`` clips in file order make ``libraries/<stem>_<number>.blend``."""
    count = -(-len(clips) // every)
    width = max(3, len(str(count)))
    return [
        Library(f"{LIBRARIES_FOLDER}/{stem}_{number + 1:0{width}d}.blend", tuple(clips[start : start + every]))
        for number, start in enumerate(range(0, len(clips), every))
    ]


def remove_partial_files(out: Path) -> int:
    """Delete what a killed writer left behind (never a finished clip or library); returns how many."""
    removed = 0
    for folder in (out / CLIPS_FOLDER, out / LIBRARIES_FOLDER, out):
        for path in folder.glob(f".*{PARTIAL_MARK}*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
