"""The one reader and writer of motion files: ``.npz`` (or ``.json``) as ``hymotion generate`` writes them.

A file holds ``fps`` (30), ``joint_names``, ``parents``, ``rest_offsets`` (metres), root ``translation`` (F, 3), local
``rotations`` (F, 22, 4) as quaternions (w, x, y, z), ``positions`` (F, 22, 3), ``prompt``, ``seed``, ``duration``,
``model_id`` and, for a rewritten prompt, ``original_prompt``; Y-up, SMPL-X body joint order (README, "Output files").
Only ``joint_names``, ``translation`` and ``rotations`` are required to read one: a pose file or a clip made by a
script may leave the rest out.

The reader checks everything once, for every caller (the CLI's --start-from / --end-at, MotionClip.load, the farm,
Import Clip and hymotion-bake's Blender side): the arrays present, their shapes and number types, the skeleton (joint
names, parents, rest offsets) and that every number is finite. It never unpickles, refuses a ``.npy`` or a file that is
not a zip archive and a JSON file whose top level is not an object, and reads nothing larger than a motion file can
be (see MAX_FRAMES): each archive member's size is read from the zip directory before a byte is decompressed, and
each array's header before its data is allocated. Every refusal is a bad_request saying what was wrong and what to
do. numpy and the standard library only: the add-on imports it in Blender.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import skeleton
from .errors import HyMotionError, bad_request
from .files import write_atomically
from .jobs import TRAIN_FRAMES

FORMATS = ("npz", "json")
REQUIRED_ARRAYS = ("joint_names", "translation", "rotations")
TEXT_ARRAYS = ("joint_names", "prompt", "model_id", "original_prompt")
NUMBER_ARRAYS = ("fps", "parents", "rest_offsets", "translation", "rotations", "positions", "seed", "duration")

# The longest motion a file may hold. The model makes at most 360 frames (12 s) per clip; a timeline chains clips and
# has no bound of its own yet (issue 30, point 4), so we allow 100 full-length segments: 36,000 frames, 20 minutes
# at 30 fps, far past any shot an animator bakes as one Action and small enough to hold in memory (under 50 MB).
MAX_FRAMES = 100 * TRAIN_FRAMES
# Per frame a file holds 3 + 22*4 + 22*3 = 157 numbers; at 8 bytes (float64 or int64, the widest a numpy writer
# picks) that is 1,256 bytes. Names, prompts and the .npy headers get 16 MiB beside them (a prompt is 4 bytes a
# character in numpy's text arrays, so that is a prompt of millions of characters).
NUMBERS_PER_FRAME = 3 + skeleton.NUM_BODY_JOINTS * 4 + skeleton.NUM_BODY_JOINTS * 3
TEXT_ALLOWANCE = 16 * 2**20
MAX_ARRAY_BYTES = MAX_FRAMES * skeleton.NUM_BODY_JOINTS * 4 * 8 + TEXT_ALLOWANCE  # rotations, the largest array
MAX_NPZ_BYTES = MAX_FRAMES * NUMBERS_PER_FRAME * 8 + TEXT_ALLOWANCE  # all members together, uncompressed
# JSON writes a float64 in at most 24 characters plus ", ": 26 bytes a number.
MAX_JSON_BYTES = MAX_FRAMES * NUMBERS_PER_FRAME * 26 + TEXT_ALLOWANCE
# Rest offsets are stored as float32: 1e-5 m is far above that rounding (6e-8 m at 1 m) and far below any real
# difference between skeletons (millimetres at least).
REST_OFFSET_TOLERANCE = 1e-5
NPY_MAGIC = b"\x93NUMPY"
# The model's clips are 30 fps; a file from elsewhere may have been captured faster (high-speed motion capture runs
# at a few hundred fps), but a rate past 1000 is a damaged value, which would resample a clip to almost no frames.
MAX_FPS = 1000

WRITE_HINT = "Use a .npz or .json written by hymotion generate (or the add-on's Save Pose)."


@dataclass(frozen=True)
class MotionFile:
    """What a motion file holds, checked: arrays as float64, Y-up metres, joints in skeleton.BODY_JOINT_NAMES order.
    ``positions`` is None when the file has none."""

    path: Path
    translation: np.ndarray  # (F, 3)
    rotations: np.ndarray  # (F, 22, 4)
    positions: np.ndarray | None  # (F, 22, 3)
    fps: float = float(skeleton.FPS)
    prompt: str = ""
    seed: int = 0
    duration: float = 0.0
    model_id: str = ""
    original_prompt: str = ""

    @property
    def frames(self) -> int:
        return len(self.translation)


# --- writing --------------------------------------------------------------------------------------------------------


def motion_arrays(
    translation: np.ndarray, rotations: np.ndarray, positions: np.ndarray | None = None, *, fps: int = skeleton.FPS,
    prompt: str = "", seed: int = 0, duration: float = 0.0, model_id: str = "", original_prompt: str = "",
) -> dict[str, np.ndarray]:
    """The arrays of a motion file; ``positions`` default to forward kinematics of the pose, ``original_prompt`` is
    kept only when given (so other files keep their fields)."""
    translation = np.asarray(translation)
    rotations = np.asarray(rotations)
    if positions is None:
        positions = skeleton.forward_kinematics(rotations.astype(np.float64), translation.astype(np.float64))
    arrays = {
        "fps": np.asarray(fps),
        "joint_names": np.asarray(skeleton.BODY_JOINT_NAMES),
        "parents": np.asarray(skeleton.BODY_PARENTS),
        "rest_offsets": skeleton.BODY_REST_OFFSETS.astype(np.float32),
        "translation": translation.astype(np.float32),
        "rotations": rotations.astype(np.float32),
        "positions": np.asarray(positions).astype(np.float32),
        "prompt": np.asarray(prompt),
        "seed": np.asarray(seed),
        "duration": np.asarray(duration),
        "model_id": np.asarray(model_id),
    }
    if original_prompt:
        arrays["original_prompt"] = np.asarray(original_prompt)
    return arrays


def nonfinite_counts(arrays: Mapping[str, np.ndarray]) -> dict[str, int]:
    """How many NaN or infinite numbers each floating-point array holds, for those that hold any."""
    counts = {name: int(value.size - np.count_nonzero(np.isfinite(value)))
              for name, value in arrays.items() if np.asarray(value).dtype.kind in "fc"}
    return {name: count for name, count in counts.items() if count}


def write_motion_file(path: str | Path, arrays: Mapping[str, np.ndarray], fmt: str = "npz") -> Path:
    """Write ``arrays`` (see :func:`motion_arrays`) as .npz or .json; the file appears whole or not at all
    (hymotion.shared.files). A NaN or infinite number is refused before anything is written, naming its array."""
    if fmt not in FORMATS:
        raise bad_request(f"Unknown motion file format {fmt!r}.", f"Use one of {', '.join(FORMATS)}.")
    bad = nonfinite_counts(arrays)
    if bad:
        where = ", ".join(f"{count} in {name}" for name, count in bad.items())
        raise bad_request(f"The motion for {path} has NaN or infinite numbers ({where}); nothing was written.",
                          "The generation went wrong: try another seed, or check the model files with "
                          "`hymotion doctor`.")
    path = Path(path)
    if fmt == "npz":
        return write_atomically(path, lambda handle: np.savez(handle, **arrays))
    text = json.dumps({key: value.tolist() for key, value in arrays.items()}, allow_nan=False)
    return write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


# --- reading --------------------------------------------------------------------------------------------------------


def read_motion_file(path: str | Path) -> MotionFile:
    """Read and check a motion file (.json by its suffix, anything else as .npz); see the module's docstring."""
    path = Path(path)
    if not path.is_file():
        raise bad_request(f"Motion file {path} does not exist.", WRITE_HINT)
    try:
        arrays = _read_json(path) if path.suffix.lower() == ".json" else _read_npz(path)
    except HyMotionError:
        raise
    # zipfile's errors for a damaged archive are spread over several types: a bad deflate stream (zlib.error), a cut
    # header (struct.error, EOFError), encryption or an unknown compression (RuntimeError, NotImplementedError).
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, RuntimeError, NotImplementedError,
            zlib.error, struct.error) as error:
        raise bad_request(f"Cannot read motion file {path}: {error}.", WRITE_HINT) from None
    return _checked(path, arrays)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC))
    if start == NPY_MAGIC:
        raise bad_request(f"{path} is a .npy file (one bare array), not a motion file.",
                          "Save the clip with hymotion generate, or with np.savez and the fields README lists.")
    if not zipfile.is_zipfile(path):
        raise bad_request(f"{path} is not a .npz archive (it may be truncated, or another kind of file).", WRITE_HINT)
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        total = sum(member.file_size for member in members)
        for member in members:
            if member.file_size > MAX_ARRAY_BYTES or total > MAX_NPZ_BYTES:
                raise bad_request(
                    f"{path} unpacks to {total:,} bytes ({member.filename}: {member.file_size:,}); a motion file of "
                    f"{MAX_FRAMES:,} frames, the most read, unpacks to at most {MAX_NPZ_BYTES:,}.",
                    "This is not a motion file (or one far longer than HY-Motion makes); use one written by "
                    "hymotion generate.",
                )
        for member in members:
            name = member.filename.removesuffix(".npy")
            with archive.open(member) as stream:
                arrays[name] = _read_member(path, name, stream, member.file_size)
    return arrays


def _read_member(path: Path, name: str, stream: IO[bytes], size: int) -> np.ndarray:
    """One .npy member, its header checked before its data is allocated: no objects, and no more data than the
    member's size in the zip directory holds (a header may claim any shape)."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise bad_request(f"{path}: array {name!r} is in .npy format {version}, which motion files do not use.",
                          WRITE_HINT)
    if dtype.hasobject:
        raise bad_request(f"{path}: array {name!r} holds Python objects; motion files hold numbers and text only "
                          "(objects would have to be unpickled, which is never done).", WRITE_HINT)
    count = math.prod(shape)
    if count * dtype.itemsize > size:
        raise bad_request(f"{path}: array {name!r} claims {list(shape)} of {dtype} ({count * dtype.itemsize:,} bytes) "
                          f"but its member holds {size:,}; the file is damaged.", WRITE_HINT)
    data = stream.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise bad_request(f"{path}: array {name!r} is cut short; the file is damaged.", WRITE_HINT)
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)


def _read_json(path: Path) -> dict[str, np.ndarray]:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise bad_request(f"{path} is {size:,} bytes; a motion file of {MAX_FRAMES:,} frames, the most read, is at "
                          f"most {MAX_JSON_BYTES:,} as JSON.", WRITE_HINT)
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise bad_request(f"{path} holds a JSON {type(document).__name__}, not an object of named arrays.",
                          'A motion file\'s JSON is one object: {"joint_names": [...], "translation": [...], ...}.')
    arrays = {}
    for key, value in document.items():
        try:
            arrays[key] = np.asarray(value)
        except ValueError as error:
            raise bad_request(f"{path}: {key!r} is not a regular array of numbers or text ({error}).",
                              WRITE_HINT) from None
    return arrays


# --- checking -------------------------------------------------------------------------------------------------------


def _checked(path: Path, arrays: dict[str, np.ndarray]) -> MotionFile:
    missing = [key for key in REQUIRED_ARRAYS if key not in arrays]
    if missing:
        raise bad_request(f"{path} has no {', '.join(missing)}; it is not a HY-Motion clip.", WRITE_HINT)
    for key in TEXT_ARRAYS:
        if key in arrays and arrays[key].dtype.kind != "U":
            raise bad_request(f"{path}: {key!r} holds {arrays[key].dtype} values, not text.", WRITE_HINT)
    for key in NUMBER_ARRAYS:
        if key in arrays and (arrays[key].dtype.kind not in "iuf" or not np.isfinite(arrays[key]).all()):
            what = "NaN or infinite numbers" if arrays[key].dtype.kind in "iuf" else f"{arrays[key].dtype} values"
            raise bad_request(f"{path}: {key!r} holds {what}, not finite numbers.",
                              "The file is damaged or was written from a failed generation; make it again.")
    _check_skeleton(path, arrays)
    translation, rotations, positions = _checked_motion(path, arrays)
    scalars: dict[str, Any] = {
        key: _scalar(path, arrays, key)
        for key in ("fps", "prompt", "seed", "duration", "model_id", "original_prompt")
        if key in arrays
    }
    if "fps" in scalars and not 0 < float(scalars["fps"]) <= MAX_FPS:
        raise bad_request(f"{path}: fps {scalars['fps']} is not a frame rate from above 0 to {MAX_FPS}.",
                          f"HY-Motion clips are {skeleton.FPS} fps; write fps={skeleton.FPS}.")
    if "seed" in scalars and arrays["seed"].dtype.kind not in "iu":
        raise bad_request(f"{path}: seed {scalars['seed']} is not an integer.", WRITE_HINT)
    return MotionFile(
        path, translation, rotations, positions, fps=float(scalars.get("fps", skeleton.FPS)),
        prompt=str(scalars.get("prompt", "")), seed=int(scalars.get("seed", 0)),
        duration=float(scalars.get("duration", 0.0)), model_id=str(scalars.get("model_id", "")),
        original_prompt=str(scalars.get("original_prompt", "")),
    )


def _check_skeleton(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The file's joints, parents and rest offsets must be this model's (SMPL-X body, wooden rest pose)."""
    names = tuple(str(name) for name in arrays["joint_names"].reshape(-1))
    if names != skeleton.BODY_JOINT_NAMES:
        raise bad_request(
            f"{path} is not a HY-Motion clip, not this model's skeleton: its joints are {', '.join(names[:4])}… "
            f"({len(names)}), expected the {skeleton.NUM_BODY_JOINTS} SMPL-X body joints "
            f"({', '.join(skeleton.BODY_JOINT_NAMES[:4])}…).",
            "Use a clip made by HY-Motion (hymotion generate, or saved from an HY-Motion armature).",
        )
    parents = arrays.get("parents")
    if parents is not None and tuple(parents.reshape(-1).tolist()) != skeleton.BODY_PARENTS:
        raise bad_request(
            f"{path} has other joint parents than this model's skeleton.", "Use a clip made by HY-Motion."
        )
    offsets = arrays.get("rest_offsets")
    if offsets is not None and (
        offsets.shape != skeleton.BODY_REST_OFFSETS.shape
        or not np.allclose(offsets.astype(np.float64), skeleton.BODY_REST_OFFSETS, atol=REST_OFFSET_TOLERANCE)
    ):
        raise bad_request(f"{path} has another rest pose (bone lengths) than this model's skeleton.",
                          "Use a clip made by HY-Motion, not one retargeted to another body.")


def _checked_motion(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    translation = arrays["translation"].astype(np.float64)
    rotations = arrays["rotations"].astype(np.float64)
    positions = arrays["positions"].astype(np.float64) if "positions" in arrays else None
    count = len(translation) if translation.ndim else 0
    joints = skeleton.NUM_BODY_JOINTS
    wanted = {"translation": (count, 3), "rotations": (count, joints, 4), "positions": (count, joints, 3)}
    found = {"translation": translation, "rotations": rotations, "positions": positions}
    wrong = [f"{key} {list(array.shape)}" for key, array in found.items()
             if array is not None and array.shape != wanted[key]]
    if wrong or not 1 <= count <= MAX_FRAMES:
        raise bad_request(
            f"{path} holds {', '.join(wrong) or f'{count} frames'}; expected translation (F, 3), rotations "
            f"(F, {joints}, 4) and positions (F, {joints}, 3) with F from 1 to {MAX_FRAMES:,}.", WRITE_HINT,
        )
    return translation, rotations, positions


def _scalar(path: Path, arrays: dict[str, np.ndarray], key: str) -> object:
    if arrays[key].shape != ():
        raise bad_request(f"{path}: {key!r} has shape {list(arrays[key].shape)}; it is one value.", WRITE_HINT)
    return arrays[key].item()
