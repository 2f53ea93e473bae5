"""The SMPL-X body for the rig to deform: rest-pose mesh, skin weights and joints, read from the user's model file.

SMPL-X is not ours to ship: its licence needs a free registration on the SMPL-X project site, where the user
downloads the model and points the add-on at ``SMPLX_NEUTRAL.npz``.

Why the `smplx` package is not used: its loader opens ``.npz`` files with ``np.load(allow_pickle=True)`` (and
``.pkl`` files with ``pickle.load``), which can run code hidden in a file the user picked. The rest pose needs none
of its machinery: with zero shape, expression and pose, the SMPL-X body is its template ``v_template``, its joints
are ``J_regressor @ v_template`` and its skin weights are stored as they are. So this module reads only those arrays
(with ``f`` and ``kintree_table``) with ``allow_pickle=False``, which refuses object arrays instead of unpickling
them; the file's other entries (blend shapes, landmarks, and in some releases pickled dictionaries) are never read.

Only numpy: the Blender add-on runs this in its own process, and ``hymotion body-mesh`` writes the result to a file.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import bad_request
from .files import write_atomically
from .skeleton import NUM_SMPLX_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS

SMPLX_DOWNLOAD_HINT = (
    "Register (free) on the SMPL-X project site (smpl-x.is.tue.mpg.de), download the SMPL-X model (npz), unzip it "
    "and choose models/smplx/SMPLX_NEUTRAL.npz."
)
_MODEL_KEYS = ("v_template", "f", "weights", "J_regressor", "kintree_table")
_MESH_KEYS = ("vertices", "faces", "weights", "joints", "joint_names")


@dataclass(frozen=True)
class BodyMesh:
    """A rest-pose body in the model's frame (Y-up, metres); weights and joints follow SMPLX_JOINT_NAMES."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32, triangles
    weights: np.ndarray  # (V, 55) float32, each row sums to 1
    joints: np.ndarray  # (55, 3) float32, the model's own rest joint positions

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        try:
            write_atomically(path, lambda file: np.savez(
                file, vertices=self.vertices, faces=self.faces, weights=self.weights, joints=self.joints,
                joint_names=np.array(SMPLX_JOINT_NAMES),
            ))
        except OSError as error:
            raise bad_request(f"Cannot write {path}: {error.strerror}.", "Choose a folder you can write to.") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BodyMesh:
        """Read a file written by :meth:`save` (``hymotion body-mesh``)."""
        hint = "Write it again with: hymotion body-mesh --smplx-model SMPLX_NEUTRAL.npz --out body.npz"
        arrays = _read_arrays(Path(path), _MESH_KEYS, "body mesh", hint)
        if tuple(arrays["joint_names"].tolist()) != SMPLX_JOINT_NAMES:
            raise bad_request(f"{path} names other joints than the SMPL-X rig.", hint)
        return _checked(
            path, arrays["vertices"], arrays["faces"], arrays["weights"], arrays["joints"], hint, what="body mesh"
        )


def load_smplx_body(model_path: str | os.PathLike) -> BodyMesh:
    """The SMPL-X body in its rest pose (zero shape and expression) from an SMPL-X model .npz."""
    path = Path(model_path)
    if path.suffix.lower() == ".pkl":
        raise bad_request(f"{path} is a pickle file, which could run code when opened, so it is not read.",
                          "Use the .npz release of the same model. " + SMPLX_DOWNLOAD_HINT)
    arrays = _read_arrays(path, _MODEL_KEYS, "SMPL-X model", SMPLX_DOWNLOAD_HINT)
    template = np.asarray(arrays["v_template"], dtype=np.float64)
    regressor = np.asarray(arrays["J_regressor"], dtype=np.float64)
    weights = np.asarray(arrays["weights"])
    if weights.ndim != 2 or weights.shape[1] != NUM_SMPLX_JOINTS:
        raise bad_request(
            f"{path} has skin weights for {weights.shape[-1] if weights.ndim else 0} joints, not SMPL-X's "
            f"{NUM_SMPLX_JOINTS}: it is not an SMPL-X model (SMPL and SMPL-H are not supported).", SMPLX_DOWNLOAD_HINT)
    kintree = arrays["kintree_table"]
    if kintree.shape != (2, NUM_SMPLX_JOINTS) or not np.array_equal(kintree[0, 1:], SMPLX_PARENTS[1:]):
        raise bad_request(f"{path} has another joint hierarchy than SMPL-X.", SMPLX_DOWNLOAD_HINT)
    if template.ndim != 2 or template.shape[1] != 3 or regressor.shape != (NUM_SMPLX_JOINTS, template.shape[0]):
        raise bad_request(f"{path} has a template of shape {template.shape} and a joint regressor of shape "
                          f"{regressor.shape}, which do not fit together.", SMPLX_DOWNLOAD_HINT)
    return _checked(path, template, arrays["f"], weights, regressor @ template, SMPLX_DOWNLOAD_HINT,
                    what="SMPL-X model")


def _read_arrays(path: Path, keys: tuple[str, ...], what: str, hint: str) -> dict[str, np.ndarray]:
    """The named arrays of an .npz, never unpickling anything."""
    if not path.is_file():
        raise bad_request(f"The {what} file {path} does not exist.", hint)
    if not zipfile.is_zipfile(path):  # else np.load would take it for a pickle and refuse it as one
        raise bad_request(f"{path} is not a readable .npz file (an .npz is a zip archive of arrays).", hint)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise bad_request(f"{path} is not an {what} file: it has no {', '.join(missing)}.", hint)
            arrays = {key: archive[key] for key in keys}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise bad_request(f"{path} stores Python objects where the {what} needs plain arrays; they are not "
                              "unpickled, as that could run code.", hint) from None
        raise bad_request(f"{path} is not a readable .npz file ({error}).", hint) from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise bad_request(f"{path} is not a readable .npz file ({error}).", hint) from None
    not_numbers = [key for key, array in arrays.items() if array.dtype.kind not in "biuf" and key != "joint_names"]
    if not_numbers:
        raise bad_request(f"{path} holds no numbers in {', '.join(not_numbers)}: it is not an {what} file.", hint)
    return arrays


def _checked(path, vertices, faces, weights, joints, hint: str, what: str) -> BodyMesh:
    """Shapes, index ranges and weights checked; weights normalised so every vertex follows its bones fully."""
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces)
    weights = np.asarray(weights, dtype=np.float64)
    count = vertices.shape[0] if vertices.ndim == 2 else 0
    if (
        vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3
        or weights.shape != (count, NUM_SMPLX_JOINTS) or np.shape(joints) != (NUM_SMPLX_JOINTS, 3)
    ):
        raise bad_request(f"{path}: the {what}'s arrays have shapes that do not fit together "
                          f"(vertices {vertices.shape}, faces {faces.shape}, weights {weights.shape}).", hint)
    if not np.issubdtype(faces.dtype, np.integer) or faces.size and (faces.min() < 0 or faces.max() >= count):
        raise bad_request(f"{path}: the {what}'s faces point at vertices that do not exist.", hint)
    totals = weights.sum(axis=1, keepdims=True)
    if (weights < 0).any() or (totals <= 0).any() or not np.isfinite(vertices).all():
        raise bad_request(f"{path}: the {what} has negative or missing skin weights, or vertices that are not "
                          "numbers.", hint)
    return BodyMesh(
        vertices=vertices,
        faces=faces.astype(np.int32),
        weights=(weights / totals).astype(np.float32),
        joints=np.asarray(joints, dtype=np.float32),
    )
