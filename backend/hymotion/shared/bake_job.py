"""The bake job: what ``hymotion-bake`` and ``hymotion farm --blend-every`` hand to Blender to build a .blend library.

The backend generates the clips (motion files), writes the job (JSON) and starts Blender in the background with the
job's path as its last argument; Blender's side (hymotion_addon/scene/library_bake.py) reads it back with
:meth:`BakeJob.from_json`, which checks every field, and builds the rig and one Action per clip. The job file is the
whole hand-over: the backend never runs add-on code.

Standard library only: the add-on imports it in Blender.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import bad_request
from .files import write_text_atomically
from .skeleton import FPS

NLA_LAYOUTS = ("SEQUENCE", "STACK")  # or None: the Actions are kept, not laid out
KEY_MODES = ("EVERY_FRAME", "SPARSE")  # a key on every frame, or sparse Bezier keys (the add-on's Keys setting)
# Blender's own range for a scene's frame rate (RenderSettings.fps).
# The library's frame rate. The clips are 30 fps and other rates resample them; 1 fps would keep one pose a second,
# and past 240 fps (the fastest common capture rate) the file only grows: a 12 s clip at 240 fps is already 2,880
# frames of 22 bones.
MIN_FPS, MAX_FPS = 1, 240
HINT = "The job file is written by hymotion-bake or hymotion farm; run the command again rather than editing it."


def hymotion_package() -> str:
    """The folder of the hymotion package this code comes from, so Blender's launch script imports the same one."""
    return str(Path(__file__).resolve().parents[1])


def check_fps(fps: object, name: str = "fps") -> int:
    """A library's frame rate: an integer Blender accepts (clips are resampled to it)."""
    if isinstance(fps, bool) or not isinstance(fps, int) or not MIN_FPS <= fps <= MAX_FPS:
        raise bad_request(f"{name} {fps!r} is not a frame rate from {MIN_FPS} to {MAX_FPS}.",
                          f"Use a whole number of frames per second, e.g. {FPS} (the model's own) or 24.")
    return fps


@dataclass(frozen=True)
class BakeClip:
    """One clip of the library: its motion file, what it was made from, and optionally its Action's name (the farm
    sets it so its index knows every name; otherwise the name comes from the prompt and seed)."""

    path: str
    prompt: str
    seed: int
    duration: float
    model: str
    action: str | None = None


@dataclass(frozen=True)
class BakeJob:
    """``out``: the .blend to write; ``fps``: the scene's frame rate (clips are resampled to it); ``in_place``: drop
    the horizontal root motion; ``nla``: None, or SEQUENCE / STACK to lay the Actions out as NLA strips;
    ``with_mesh``: give the rig its blocky body mesh; ``keys``: one of KEY_MODES; ``addon_dir`` and
    ``hymotion_package``: where the launch script finds the add-on (None: the extension enabled in that Blender) and the
    backend's light modules."""

    out: str
    clips: tuple[BakeClip, ...]
    fps: int = FPS
    in_place: bool = False
    nla: str | None = None
    with_mesh: bool = False
    keys: str = "EVERY_FRAME"
    addon_dir: str | None = None
    hymotion_package: str = field(default_factory=hymotion_package)

    def __post_init__(self) -> None:
        check_fps(self.fps)
        if self.nla is not None and self.nla not in NLA_LAYOUTS:
            raise bad_request(f"nla {self.nla!r} is not one of {', '.join(NLA_LAYOUTS)} (or none).", HINT)
        if self.keys not in KEY_MODES:
            raise bad_request(f"keys {self.keys!r} is not one of {', '.join(KEY_MODES)}.", HINT)
        if not self.clips:
            raise bad_request("A bake job holds no clips.", HINT)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False)

    def write(self, path: str | Path) -> Path:
        return write_text_atomically(path, self.to_json())

    @classmethod
    def from_json(cls, text: str) -> "BakeJob":
        """The job, every field checked (names, types, values); a bad one is a bad_request naming it."""
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise bad_request(f"The bake job is not JSON: {error}.", HINT) from None
        values = _fields(cls, document, "the bake job")
        values["clips"] = tuple(BakeClip(**_fields(BakeClip, clip, f"clip {number}"))
                                for number, clip in enumerate(values["clips"], start=1))
        return cls(**values)

    @classmethod
    def read(cls, path: str | Path) -> "BakeJob":
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise bad_request(f"Cannot read the bake job {path}: {error}.", HINT) from None


# What each field's JSON value may be; the clips' list is checked item by item in from_json.
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "str | None": (str, type(None)), "int": (int,), "float": (int, float), "bool": (bool,),
    "tuple[BakeClip, ...]": (list,),
}


def _fields(kind: type, document: Any, where: str) -> dict[str, Any]:
    """``document``'s values for the dataclass ``kind``: an object with every field that has no default, no other
    key, each of its declared type (bool is not taken for a number, nor a number for a bool)."""
    if not isinstance(document, dict):
        raise bad_request(f"{where} is a {type(document).__name__}, not an object.", HINT)
    declared = {item.name: item for item in fields(kind)}
    unknown = sorted(set(document) - set(declared))
    missing = [name for name, item in declared.items() if name not in document and _required(item)]
    if unknown or missing:
        raise bad_request(f"{where} has unknown keys {unknown} or lacks {missing}.", HINT)
    for name, value in document.items():
        allowed = _TYPES[str(declared[name].type)]
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise bad_request(f"{where}: {name} is {value!r}, not {declared[name].type}.", HINT)
    return dict(document)


def _required(item: Any) -> bool:
    return item.default is MISSING and item.default_factory is MISSING
