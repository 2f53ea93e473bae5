"""No motion with NaN or infinite numbers leaves the backend: the pipeline checks every clip before it hands it out,
and the clip writer and the ``result`` event check again, so a clip that slipped past (built by hand, by a library
user) is refused with its cause rather than written or sent (issue 30, point 2)."""

from __future__ import annotations

import numpy as np

from ..shared.errors import BAD_CHECKPOINT, BAD_REQUEST, HyMotionError
from ..shared.motion_files import nonfinite_counts

MOTION_ARRAYS = ("translation", "rotations", "positions")


def require_finite(clip, known_frames: bool = False) -> None:
    """Raise unless every number of ``clip``'s motion (a MotionClip) is finite. The error names the clip and the
    arrays, and the likely cause: the known frames when there were some (``bad_request``, field ``constraint``),
    else the model's files (``bad_checkpoint``), since finite noise through finite weights stays finite."""
    bad = nonfinite_counts({name: np.asarray(getattr(clip, name), dtype=np.float64) for name in MOTION_ARRAYS})
    if not bad:
        return
    where = ", ".join(f"{count} in {name}" for name, count in bad.items())
    what = f"The motion of prompt {int(clip.prompt_index) + 1}, seed {clip.seed} came out with NaN or infinite " \
           f"numbers ({where}); nothing was written or sent."
    if known_frames:
        raise HyMotionError(BAD_REQUEST, f"{what} The known frames are the likely cause.",
                            "Give known frames near the origin (translations in metres, unit quaternions), e.g. "
                            "frames taken from a result of this backend.", field="constraint")
    raise HyMotionError(BAD_CHECKPOINT, f"{what} The model's files are the likely cause.",
                        "Check them with `hymotion doctor`, or download them again with `hymotion download`.")
