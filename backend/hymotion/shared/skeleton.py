"""The skeleton both sides use: SMPL-X joint names, parents, rest offsets, forward kinematics.

This module imports nothing but numpy (and the numpy-only :mod:`hymotion.shared.rotations`) so the Blender add-on can
use it too.

Where the rest offsets come from
--------------------------------
HY-Motion poses a fixed "wooden" skeleton (no shape parameters) by linear blend skinning: each joint's rest offset
is its template position minus its parent's, the root sits at the template pelvis and the root translation is added
on top. The template itself (``j_template.bin``) is a Git LFS pointer in the official repository
(Tencent-Hunyuan/HY-Motion-1.0), but the same folder, ``scripts/gradio/static/assets/dump_wooden/joints.ply``, holds
the skeleton's 52 SMPL-H joint positions (binary little-endian float32, T-pose, Y-up, metres, +Z forward, +X is the
character's left). ``WOODEN_JOINT_POSITIONS`` below is that file's data, verbatim; that it equals ``j_template`` is our
reading (same count, same folder), not a statement of the official code.

SMPL-X has three more joints than SMPL-H (jaw and two eyes). The model never drives them and the wooden data has no
position for them, so ``FACE_JOINT_OFFSETS`` places them by hand relative to the head (an approximation, documented as
such); they exist so users can attach face rigs.

Coordinates here are the model's (Y-up). Blender is Z-up: :func:`hymotion.shared.rotations.y_up_to_z_up` is the one
conversion.
"""

from __future__ import annotations

import numpy as np

from .rotations import quaternion_to_matrix

FPS = 30

BODY_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
BODY_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
NUM_BODY_JOINTS = len(BODY_JOINT_NAMES)

_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
_HAND_JOINT_NAMES = tuple(f"{finger}{k}" for finger in _FINGERS for k in (1, 2, 3))

# Source: official repository, scripts/gradio/static/assets/dump_wooden/joints.ply (SMPL-H order: 22 body joints,
# then left index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3, then the same for the right hand).
WOODEN_JOINT_POSITIONS: tuple[tuple[float, float, float], ...] = (
    (-0.0017950580222532153, -0.19082699716091156, 0.028219124302268028),
    (0.0805768370628357, -0.280765175819397, 0.025116998702287674),
    (-0.08057677745819092, -0.2807650864124298, 0.025116998702287674),
    (0.0, -0.09664119780063629, 0.031726282089948654),
    (0.09983637928962708, -0.6580819487571716, 0.01466340385377407),
    (-0.0978526696562767, -0.65817791223526, 0.014663402922451496),
    (0.0, 0.02598106488585472, 0.02918507345020771),
    (0.10107402503490448, -1.0562195777893066, -0.037458889186382294),
    (-0.09699740260839462, -1.056316614151001, -0.03745889291167259),
    (0.0, 0.1062408834695816, 0.005011926405131817),
    (0.11363235116004944, -1.127859115600586, 0.10524749755859375),
    (-0.10917949676513672, -1.128021240234375, 0.105247363448143),
    (0.0, 0.3020709455013275, -0.014953866600990295),
    (0.05469249561429024, 0.2250737100839615, -0.020232874900102615),
    (-0.05469249561429024, 0.2250737100839615, -0.020232874900102615),
    (0.0, 0.3977150619029999, -0.016454273834824562),
    (0.16535276174545288, 0.23745450377464294, -0.016859769821166992),
    (-0.16535277664661407, 0.23745450377464294, -0.016859769821166992),
    (0.43344366550445557, 0.2493859976530075, -0.029562119394540787),
    (-0.43344369530677795, 0.2493859976530075, -0.029562119394540787),
    (0.7024866342544556, 0.2534196078777313, -0.042731065303087234),
    (-0.7024866342544556, 0.2534196078777313, -0.042731065303087234),
    (0.7930825352668762, 0.24887697398662567, -0.018903059884905815),
    (0.8300293684005737, 0.24715827405452728, -0.017299285158514977),
    (0.8531616926193237, 0.2459874451160431, -0.01581026241183281),
    (0.7920519709587097, 0.2561808228492737, -0.04391267150640488),
    (0.8379867076873779, 0.253326416015625, -0.0489327497780323),
    (0.866210401058197, 0.25133684277534485, -0.05186028778553009),
    (0.7806626558303833, 0.24062635004520416, -0.08464465290307999),
    (0.8046877980232239, 0.2390674352645874, -0.10003022849559784),
    (0.8220816850662231, 0.23823359608650208, -0.11083494871854782),
    (0.8002987504005432, 0.2446703314781189, -0.06704071909189224),
    (0.8281327486038208, 0.24631436169147491, -0.07141368836164474),
    (0.8507949113845825, 0.24492649734020233, -0.07789035141468048),
    (0.7212609052658081, 0.23917995393276215, -0.018622582778334618),
    (0.7498701214790344, 0.23876126110553741, 0.006131042260676622),
    (0.7776486873626709, 0.23753979802131653, 0.02496267482638359),
    (-0.7930826544761658, 0.24887697398662567, -0.018903059884905815),
    (-0.8300293684005737, 0.24715827405452728, -0.017299285158514977),
    (-0.8523250222206116, 0.24537961184978485, -0.01581026241183281),
    (-0.7920519709587097, 0.2561808228492737, -0.04391267150640488),
    (-0.8379867076873779, 0.253326416015625, -0.0489327497780323),
    (-0.866210401058197, 0.25133684277534485, -0.05186028778553009),
    (-0.7806626558303833, 0.24062635004520416, -0.08464465290307999),
    (-0.8046878576278687, 0.2390674352645874, -0.10003022849559784),
    (-0.8220817446708679, 0.23823359608650208, -0.11083494871854782),
    (-0.789702296257019, 0.2526545524597168, -0.06786495447158813),
    (-0.8284280300140381, 0.2483072429895401, -0.0775422528386116),
    (-0.8556466698646545, 0.24527736008167267, -0.08459298312664032),
    (-0.7212609648704529, 0.23917995393276215, -0.018622582778334618),
    (-0.7498701214790344, 0.23876126110553741, 0.006131042260676622),
    (-0.7776486873626709, 0.23753979802131653, 0.02496267482638359),
)

# Approximate placement of the SMPL-X face joints relative to the head joint (metres, Y-up); not from the model.
FACE_JOINT_OFFSETS: dict[str, tuple[float, float, float]] = {
    "jaw": (0.0, -0.01, 0.03),
    "left_eye_smplhf": (0.031, 0.06, 0.075),
    "right_eye_smplhf": (-0.031, 0.06, 0.075),
}

SMPLX_JOINT_NAMES: tuple[str, ...] = (
    BODY_JOINT_NAMES
    + tuple(FACE_JOINT_OFFSETS)
    + tuple(f"left_{name}" for name in _HAND_JOINT_NAMES)
    + tuple(f"right_{name}" for name in _HAND_JOINT_NAMES)
)


def _hand_parents(wrist: int, first: int) -> tuple[int, ...]:
    parents = []
    for finger in range(len(_FINGERS)):
        base = first + 3 * finger
        parents += [wrist, base, base + 1]
    return tuple(parents)


HEAD = BODY_JOINT_NAMES.index("head")
SMPLX_PARENTS: tuple[int, ...] = (
    BODY_PARENTS + (HEAD, HEAD, HEAD) + _hand_parents(20, 25) + _hand_parents(21, 40)
)
NUM_SMPLX_JOINTS = len(SMPLX_JOINT_NAMES)


def _smplx_rest_positions() -> np.ndarray:
    wooden = np.asarray(WOODEN_JOINT_POSITIONS, dtype=np.float64)
    head = wooden[HEAD]
    face = np.asarray([head + np.asarray(offset) for offset in FACE_JOINT_OFFSETS.values()])
    return np.concatenate([wooden[:NUM_BODY_JOINTS], face, wooden[NUM_BODY_JOINTS:]])


def rest_offsets(parents: tuple[int, ...], positions: np.ndarray) -> np.ndarray:
    """Offset of each joint from its parent (the root's offset is its absolute rest position)."""
    offsets = positions.copy()
    for joint, parent in enumerate(parents):
        if parent >= 0:
            offsets[joint] = positions[joint] - positions[parent]
    return offsets


SMPLX_REST_POSITIONS: np.ndarray = _smplx_rest_positions()
BODY_REST_POSITIONS: np.ndarray = SMPLX_REST_POSITIONS[:NUM_BODY_JOINTS]
BODY_REST_OFFSETS: np.ndarray = rest_offsets(BODY_PARENTS, BODY_REST_POSITIONS)
SMPLX_REST_OFFSETS: np.ndarray = rest_offsets(SMPLX_PARENTS, SMPLX_REST_POSITIONS)
for _array in (SMPLX_REST_POSITIONS, BODY_REST_OFFSETS, SMPLX_REST_OFFSETS):
    _array.setflags(write=False)


def forward_kinematics(
    rotations: np.ndarray,
    translation: np.ndarray,
    offsets: np.ndarray = BODY_REST_OFFSETS,
    parents: tuple[int, ...] = BODY_PARENTS,
) -> np.ndarray:
    """World joint positions (..., J, 3) from local quaternions (..., J, 4, wxyz) and root translation (..., 3).

    Leading axes are frames (and clips). The root joint sits at its rest position plus the translation, as the
    official decoder places it.
    """
    local = quaternion_to_matrix(rotations)
    world_rot = np.empty_like(local)
    positions = np.empty(local.shape[:-2] + (3,))
    for joint, parent in enumerate(parents):
        if parent < 0:
            world_rot[..., joint, :, :] = local[..., joint, :, :]
            positions[..., joint, :] = offsets[joint] + np.asarray(translation, dtype=np.float64)
        else:
            world_rot[..., joint, :, :] = world_rot[..., parent, :, :] @ local[..., joint, :, :]
            positions[..., joint, :] = positions[..., parent, :] + world_rot[..., parent, :, :] @ offsets[joint]
    return positions

