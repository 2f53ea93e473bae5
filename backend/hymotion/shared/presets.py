"""Named generation settings ("presets"), kept in one JSON file: the one definition the Blender add-on and
``hymotion-bake --preset`` both use.

A preset holds what a generation asks the model for (duration, seeds, CFG, steps, smoothing), validated here with the
rules of :mod:`hymotion.shared.jobs`, plus a ``bake`` dictionary of Blender-side options (in place, fps mode, NLA
layout, start frame) that this module stores without interpreting: the add-on checks those against its own enums when it
applies a preset. Pure Python, no heavy imports.

File layout::

    {"schema": "hymotion-presets/1", "presets": {"My walk": {"duration": 6.0, "seeds": "0,1", ...}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import HyMotionError, bad_request
from .files import write_text_atomically
from .jobs import DEFAULT_CFG, DEFAULT_STEPS, GenerationSettings, check_duration, parse_seeds

SCHEMA = "hymotion-presets/1"
AUTO_DURATION = 0.0
MAX_NAME_LENGTH = 64


@dataclass
class GenerationPreset:
    """Settings for a generation. ``duration`` 0 means "estimate it from the prompt"."""

    duration: float = AUTO_DURATION
    seeds: str = "0"
    cfg: float = DEFAULT_CFG
    steps: int = DEFAULT_STEPS
    smoothing: bool = True
    bake: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "preset") -> GenerationPreset:
        """Check every field (messages name ``where`` and the field); returns self for chaining."""
        try:
            if isinstance(self.duration, bool) or not isinstance(self.duration, (int, float)):
                raise bad_request(
                    f"duration {self.duration!r} is not a number of seconds.", "Use e.g. 4.5, or 0 for auto."
                )
            if self.duration != AUTO_DURATION:
                check_duration(self.duration)
            if not isinstance(self.seeds, str):
                raise bad_request(f"seeds {self.seeds!r} is not text.", "Write seeds as \"0,1,2\" or \"0-3\".")
            GenerationSettings(
                prompts=["a person stands"],
                durations=[1.0],
                seeds=parse_seeds(self.seeds),
                cfg_scale=self.cfg,
                steps=self.steps,
                smoothing=self.smoothing,
            ).validate()
            if not isinstance(self.smoothing, bool):
                raise bad_request(f"smoothing {self.smoothing!r} is not true or false.", "Use true or false.")
            if not isinstance(self.bake, dict) or not all(isinstance(key, str) for key in self.bake):
                raise bad_request("bake must be an object of named options.", "Write it as {\"in_place\": false}.")
        except HyMotionError as error:
            raise HyMotionError(error.code, f"{where}: {error.message}", error.hint) from None
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "preset") -> GenerationPreset:
        """Read a preset; keys this version does not know are skipped (a newer add-on may have written them)."""
        if not isinstance(data, dict):
            raise bad_request(f"{where} is not a JSON object.", "Save the preset again from the HY-Motion panel.")
        known = {f.name for f in fields(cls)}
        preset = cls(**{key: value for key, value in data.items() if key in known})
        if isinstance(preset.duration, int) and not isinstance(preset.duration, bool):
            preset.duration = float(preset.duration)
        if isinstance(preset.cfg, int) and not isinstance(preset.cfg, bool):
            preset.cfg = float(preset.cfg)
        return preset.validate(where)


BUILTIN_PRESETS: dict[str, GenerationPreset] = {
    "Official": GenerationPreset(),
    "Quick draft": GenerationPreset(steps=20),
}
"""Read-only presets every user has: the official sampling settings, and fewer steps for fast previews."""


def check_name(name: str) -> str:
    """A preset name, stripped; refuses empty, over-long and built-in names."""
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The preset has no name.", "Type a name for the preset, e.g. \"Slow walks\".")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise bad_request(f"The preset name is {len(name)} characters long.", f"Use at most {MAX_NAME_LENGTH}.")
    if name in BUILTIN_PRESETS:
        raise bad_request(f"'{name}' is a built-in preset and cannot be changed.", "Save under another name.")
    return name


class PresetStore:
    """The user's presets in one JSON file, plus the built-ins. Every write replaces the file atomically, so two
    Blender sessions saving at once never leave a half-written file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def names(self) -> list[str]:
        """Built-in presets first (in their fixed order), then the user's, alphabetically."""
        return list(BUILTIN_PRESETS) + sorted(self._read(), key=str.casefold)

    def get(self, name: str) -> GenerationPreset:
        if name in BUILTIN_PRESETS:
            return GenerationPreset.from_json(BUILTIN_PRESETS[name].to_json(), f"preset '{name}'")
        stored = self._read()
        if name not in stored:
            raise bad_request(f"There is no preset named '{name}'.", f"Choose one of: {', '.join(self.names())}.")
        return GenerationPreset.from_json(stored[name], f"preset '{name}' in {self.path}")

    def save(self, name: str, preset: GenerationPreset) -> str:
        """Store (or replace) a preset; returns the name it was stored under."""
        name = check_name(name)
        preset.validate(f"preset '{name}'")
        stored = self._read()
        stored[name] = preset.to_json()
        self._write(stored)
        return name

    def delete(self, name: str) -> None:
        if name in BUILTIN_PRESETS:
            raise bad_request(
                f"'{name}' is a built-in preset and cannot be deleted.", "Delete one of your own presets."
            )
        stored = self._read()
        if name not in stored:
            raise bad_request(f"There is no preset named '{name}'.", "Refresh the list and pick an existing preset.")
        del stored[name]
        self._write(stored)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise bad_request(
                f"Cannot read the preset file {self.path}: {error}.",
                "Fix the file by hand, or move it away to start with no saved presets.",
            ) from None
        if not isinstance(document, dict) or document.get("schema") != SCHEMA or not isinstance(
            document.get("presets"), dict
        ):
            raise bad_request(
                f"{self.path} is not a HY-Motion preset file ({SCHEMA}).",
                "Move it away to start with no saved presets.",
            )
        return dict(document["presets"])

    def _write(self, presets: dict[str, Any]) -> None:
        text = json.dumps({"schema": SCHEMA, "presets": presets}, indent=2, sort_keys=True, allow_nan=False)
        write_text_atomically(self.path, text + "\n")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")
