"""What a generation asks for, validated the same way by the CLI, the service and the add-on (no heavy imports)."""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HyMotionError, bad_request
from .skeleton import FPS

TRAIN_FRAMES = 360
MIN_FRAMES = 20
MIN_DURATION = round(MIN_FRAMES / FPS, 2)
MAX_DURATION = TRAIN_FRAMES / FPS
DEFAULT_DURATION = 4.0
DEFAULT_STEPS = 50
DEFAULT_CFG = 5.0
ADVISED_MAX_WORDS = 60

# Upper limits of one job, checked before anything runs (docs/protocol.md, "Limits"). Each is far past any useful
# setting and far below what exhausts memory or runs for days: steps 20x the official 50; guidance 20x the official 5;
# 10,000 clips (prompts x seeds) of at most 12 s.
MAX_STEPS = 1000
MAX_CFG = 100.0
MAX_SEEDS_PER_JOB = 1000
MAX_PROMPTS_PER_JOB = 10_000
MAX_CLIPS_PER_JOB = 10_000
MAX_SEED = 2**63 - 1
# A prompt's characters. The text encoder reads at most 128 tokens (the official max_length_llm; about 600 characters
# of English, far fewer of Chinese) and warns that the rest is cut off; 2,000 characters is well past that, and keeps
# a result's echoed prompt (and a timeline's "p1 | p2 | ..." of up to MAX_TIMELINE_SEGMENTS of them) small.
MAX_PROMPT_CHARS = 2000
# A timeline's total length: 10 minutes at 30 fps. Blender plays any length, but each frame of the result becomes
# 22 bones x 7 keyed channels (about 2.8 million keyframes for 18,000 frames, hundreds of MB inside Blender), and its
# result event is about 840 bytes of base64 per frame: 18,000 frames make one line of about 15 MB, under the client's
# MAX_EVENT_BYTES, so a timeline is always sent whole. Longer scenes are several timelines (each starting from the
# last one's end with --start-from).
MAX_TIMELINE_FRAMES = 18_000
MAX_TIMELINE_SEGMENTS = MAX_TIMELINE_FRAMES // MIN_FRAMES
# Known frames' root translation, metres from the origin. Beyond 10 km a float32 coordinate's resolution is worse
# than a millimetre (2^-10 m at 8-16 km) and motion visibly shakes; 1e25 overflows the model's float32 features and
# gives NaN motion.
MAX_POSE_TRANSLATION = 10_000.0
# --- the prompt-line grammar ------------------------------------------------------------------------------------------
# One line of a prompt list, a prompt file, a timeline or a farm's prompt file:  [SECONDS |] PROMPT [| seeds SEEDS]
# SECONDS is a plain number (4 or 4.5); SEEDS as --seeds takes them (0,2 or 0-3; per line in `hymotion farm` only).
# Text before a '|' that is not such a number is refused, so "4,5 | ..." or "4s | ..." never becomes prompt text.
LINE_SEPARATOR = "|"
LINE_FORM = "[seconds |] prompt [| seeds 0-3]"
_SECONDS = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_SEEDS_FIELD = re.compile(r"seeds?\b\s*:?\s*(?P<seeds>.*)", re.IGNORECASE | re.DOTALL)


def frames_for_duration(duration: float) -> int:
    """round(duration * 30) clamped to the model's 20..360 frames, as the official pipeline does."""
    return int(min(max(round(duration * FPS), MIN_FRAMES), TRAIN_FRAMES))


@dataclass
class GenerationSettings:
    prompts: list[str]
    durations: list[float]
    seeds: list[int] = field(default_factory=lambda: [0])
    cfg_scale: float = DEFAULT_CFG
    steps: int = DEFAULT_STEPS
    smoothing: bool = True

    def validate(self) -> "GenerationSettings":
        """Every rule and limit of a job, in one place; a refusal names its field (as on the wire)."""
        self._check_prompts()
        if len(self.durations) == 1 and len(self.prompts) > 1:
            self.durations = self.durations * len(self.prompts)
        if len(self.durations) != len(self.prompts):
            raise bad_request(
                f"Got {len(self.durations)} durations for {len(self.prompts)} prompts.",
                "Give one duration, or one per prompt.", field="durations",
            )
        self.durations = [check_duration(d) for d in self.durations]
        self._check_seeds()
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise bad_request(
                f"steps must be an integer >= 1 and at most {MAX_STEPS}, got {self.steps!r}.",
                "The official setting is 50; more than about 100 changes nothing visible.", field="steps",
            )
        cfg = self.cfg_scale
        if (
            isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg)
            or not 0 < cfg <= MAX_CFG
        ):
            raise bad_request(
                f"cfg must be a number > 0 and at most {MAX_CFG:g}, got {cfg!r}.",
                "The official setting is 5.0; 1.0 turns guidance off.", field="cfg_scale",
            )
        clips = len(self.prompts) * len(self.seeds)
        if clips > MAX_CLIPS_PER_JOB:
            raise bad_request(
                f"{len(self.prompts)} prompts x {len(self.seeds)} seeds make {clips} clips; one job makes at most "
                f"{MAX_CLIPS_PER_JOB}.", "Split the work into several jobs, or use fewer seeds.", field="seeds",
            )
        return self

    def _check_prompts(self) -> None:
        if not isinstance(self.prompts, list) or not self.prompts:
            raise bad_request(
                "No prompt given.", "Describe the motion, e.g. \"a person jumps twice\".", field="prompts"
            )
        if len(self.prompts) > MAX_PROMPTS_PER_JOB:
            raise bad_request(
                f"{len(self.prompts)} prompts in one job; the limit is {MAX_PROMPTS_PER_JOB}.",
                "Split the prompt list into several jobs (or files).", field="prompts",
            )
        for index, prompt in enumerate(self.prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise bad_request(
                    f"Prompt {index + 1} is empty.",
                    "Write what the body does, e.g. \"a person waves with the right hand\".",
                    field="prompts",
                )
            check_prompt_length(prompt, f"Prompt {index + 1}")
        self.prompts = [prompt.strip() for prompt in self.prompts]

    def _check_seeds(self) -> None:
        if not self.seeds:
            raise bad_request("No seed given.", "Pass at least one integer seed, e.g. --seeds 0.", field="seeds")
        if len(self.seeds) > MAX_SEEDS_PER_JOB:
            raise bad_request(
                f"{len(self.seeds)} seeds in one job; the limit is {MAX_SEEDS_PER_JOB}.",
                "Use fewer seeds, or split them over several jobs.", field="seeds",
            )
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise bad_request(
                    f"Seed {seed!r} is not a whole number from 0 to 2^63-1.", "Use whole numbers like 0,1,2.",
                    field="seeds",
                )
        repeated = sorted(seed for seed, count in Counter(self.seeds).items() if count > 1)
        if repeated:
            raise bad_request(
                f"Seed {', '.join(map(str, repeated))} is given more than once; a seed repeats the same clip.",
                "List each seed once, e.g. 0,1,2.", field="seeds",
            )


def check_prompt_length(prompt: str, label: str) -> None:
    """At most MAX_PROMPT_CHARS characters; ``label`` says which prompt ("Prompt 3", "prompts.txt, line 7")."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise bad_request(
            f"{label} holds {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.",
            f"The model reads about the first {ADVISED_MAX_WORDS} words; describe one motion in a sentence or two.",
            field="prompts",
        )


def check_duration(duration: object) -> float:
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        raise bad_request(f"Duration {duration!r} is not a number of seconds.", "Use e.g. 4 or 4.5.", field="durations")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise bad_request(
            f"Duration {duration:g} s is outside {MIN_DURATION:g}-{MAX_DURATION:g} s.",
            f"The model makes clips of {MIN_DURATION:g} to {MAX_DURATION:g} seconds (20 to 360 frames at 30 fps).",
            field="durations",
        )
    return float(duration)


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" or "0-3" (inclusive) to a list of seeds; a range is sized before it is expanded, so "0-99999999999"
    is refused at once instead of filling memory."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if re.fullmatch(r"\d+-\d+", part):
                low, high = (int(x) for x in part.split("-"))
                if high < low:
                    raise bad_request(f"Seed range {part} runs backwards.", f"Write it as {high}-{low}.", field="seeds")
                if len(seeds) + high - low + 1 > MAX_SEEDS_PER_JOB:
                    raise bad_request(
                        f"--seeds {text} gives more than {MAX_SEEDS_PER_JOB} seeds, the limit of one job.",
                        "Use a shorter range, or split it over several runs.", field="seeds",
                    )
                seeds.extend(range(low, high + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise bad_request(
                f"Seed {part!r} is not an integer.", "Write seeds as 0,1,2 or as a range 0-3.", field="seeds"
            ) from None
    return seeds


@dataclass
class PromptLine:
    prompt: str
    duration: float | None  # the line's own seconds, None when it gives none
    line_number: int
    seeds: list[int] | None = None  # the line's own seeds (hymotion farm), None when it gives none


def parse_prompt_lines(
    text: str, source: str = "prompt list", on_bad_line: Callable[[HyMotionError], None] | None = None,
    allow_seeds: bool = False,
) -> list[PromptLine]:
    """One prompt per line as LINE_FORM says; blank lines and lines starting with # are skipped. ``allow_seeds``:
    a line may name its own seeds (hymotion farm); elsewhere a seeds field is refused.

    A bad line raises, naming its line number; with ``on_bad_line`` it is handed that error and skipped instead, so a
    long list runs with the lines that are fine.
    """
    lines: list[PromptLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            lines.append(parse_prompt_line(line, number, source, allow_seeds))
        except HyMotionError as error:
            if on_bad_line is None:
                raise
            on_bad_line(error)
    if not lines:
        raise bad_request(f"{source} holds no prompts.", "Write one prompt per line, optionally as '4.5 | prompt'.")
    return lines


def parse_prompt_line(line: str, number: int, source: str = "prompt list", allow_seeds: bool = False) -> PromptLine:
    """One non-blank line (see LINE_FORM); every refusal names ``source`` and the line number and shows the form."""
    where = f"{source}, line {number}"
    fields = [part.strip() for part in line.split(LINE_SEPARATOR)]
    seeds = None
    if (
        len(fields) > 1 and _SEEDS_FIELD.fullmatch(fields[-1])
        and not (len(fields) == 2 and _SECONDS.fullmatch(fields[0]))
    ):
        seeds = _line_seeds(fields.pop(), where, allow_seeds)
    if len(fields) > 2:
        raise bad_request(f"{where}: {line!r} has {len(fields) - 1} '|'; a line is {LINE_FORM}.",
                          "Write it as: 4.5 | a person jumps")
    duration = _line_seconds(fields[0], where) if len(fields) == 2 else None
    prompt = fields[-1]
    if not prompt:
        after = "after '|'" if len(fields) == 2 else "before '| seeds'"
        raise bad_request(f"{where}: the prompt {after} is empty.", "Write it as: 4.5 | a person jumps")
    return PromptLine(prompt, duration, number, seeds)


def _line_seconds(text: str, where: str) -> float:
    if not _SECONDS.fullmatch(text):
        what = (f"{text!r} before '|' is not a duration in seconds" if text
                else "nothing before '|', where the duration in seconds goes")
        raise bad_request(
            f"{where}: {what}; a line is {LINE_FORM}.",
            "Write the seconds as a plain number with a point, e.g. 4.5 | a person jumps, or leave out the '|' to "
            "have the duration estimated from the prompt.",
        )
    try:
        return check_duration(float(text))
    except HyMotionError as error:
        raise bad_request(f"{where}: {error.message}", error.hint) from None


def _line_seeds(field_text: str, where: str, allowed: bool) -> list[int]:
    if not allowed:
        raise bad_request(f"{where}: a line's own seeds ('{field_text}') are read by hymotion farm only.",
                          "Remove the '| seeds ...' field and give the seeds for the whole list (--seeds).")
    match = _SEEDS_FIELD.fullmatch(field_text)
    assert match is not None  # parse_prompt_line takes a field as a line's seeds only where it matches
    try:
        return parse_seeds(match["seeds"])
    except HyMotionError as error:
        raise bad_request(f"{where}: {error.message}", "Write a line's own seeds as: 4 | a person jumps | seeds 0-3"
                          ) from None


def read_prompt_file(
    path: str | os.PathLike, on_bad_line: Callable[[HyMotionError], None] | None = None, allow_seeds: bool = False
) -> list[PromptLine]:
    path = Path(path)
    if not path.is_file():
        raise bad_request(f"Prompt file {path} does not exist.", "Check the path, or pass the prompt directly.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise bad_request(f"Cannot read prompt file {path}: {error}.", "Save it as UTF-8 text.") from None
    return parse_prompt_lines(text, source=str(path), on_bad_line=on_bad_line, allow_seeds=allow_seeds)


def prompt_slug(text: str, limit: int = 40) -> str:
    """A prompt as a file or Action name: lower-case letters, digits and underscores, at most ``limit`` long."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug[:limit].rstrip("_") or "motion"


def check_timeline_length(durations: list[float]) -> None:
    """A timeline of at most MAX_TIMELINE_SEGMENTS segments and MAX_TIMELINE_FRAMES frames in all (checked before
    anything runs, by the CLI, the service and generate_timeline)."""
    if len(durations) > MAX_TIMELINE_SEGMENTS:
        raise bad_request(
            f"A timeline of {len(durations)} segments; the limit is {MAX_TIMELINE_SEGMENTS}.",
            "Split it into several timelines, each starting from the end of the one before.", field="timeline",
        )
    frames = sum(frames_for_duration(duration) for duration in durations)
    if frames > MAX_TIMELINE_FRAMES:
        raise bad_request(
            f"The timeline is {frames} frames ({frames / FPS:.0f} s) long; the limit is {MAX_TIMELINE_FRAMES} "
            f"({MAX_TIMELINE_FRAMES / FPS / 60:.0f} minutes at {FPS} fps).",
            "Split it into several timelines, each starting from the end of the one before.", field="timeline",
        )


def output_stem(prompt: str, limit: int = 40) -> str:
    """A default output name for a prompt: its slug, plus a short hash of the prompt whenever the slug lost some of
    it (letters outside a-z such as "走路", or the cut at ``limit``), so that two such prompts never share a file."""
    slug = prompt_slug(prompt, limit)
    whole = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")
    if prompt.isascii() and whole == slug:
        return slug
    return f"{slug}_{hashlib.sha1(prompt.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
