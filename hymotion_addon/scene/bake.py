"""Bake a generated clip onto an SMPL-X armature as an Action, and lay Actions out on NLA tracks.

Input is plain numpy: root translation (F, 3) and local joint quaternions (F, 22, 4, w x y z) in the model's Y-up
frame at 30 fps, joints in :data:`hymotion.shared.skeleton.BODY_JOINT_NAMES` order. The conversion to each bone's rest
frame is in :mod:`.core.motion_math`; this module only writes F-curves.

Keys are written with ``keyframe_points.add`` + ``foreach_set`` (no per-key Python) on every frame, with LINEAR
interpolation: with a key on every frame there is nothing for Bezier handles to smooth, evaluating at a frame gives
the exact model value, sub-frames (motion blur) never overshoot between keys, and no handle recalculation is needed.

Blender 4.2/4.3 store F-curves on the Action itself; 4.4 and later on a slot's channelbag inside a layer's keyframe
strip (slotted actions). The layout is chosen by what the running Blender's Action type offers, not by its version.
"""

from __future__ import annotations

import bpy
import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import continuous_quaternions
from hymotion.shared.skeleton import BODY_JOINT_NAMES, FPS

from ..core import motion_math
from . import sparse_action
from .actions import fcurve_factory, slot_for
from .rig import require_hymotion_armature

FPS_MODES = ("RESAMPLE", "SET_SCENE_FPS")
KEY_MODES = ("EVERY_FRAME", "SPARSE")
NLA_MODES = ("SEQUENCE", "STACK")
NLA_TRACK_NAME = "HY-Motion"
ROOT_BONE = BODY_JOINT_NAMES[0]
_FPS_MATCH_TOLERANCE = 1e-6
_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def match_scene_fps(
    scene: bpy.types.Scene, translation: np.ndarray, rotations: np.ndarray, fps_mode: str, source_fps: float,
    loop: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Apply ``fps_mode``: 'SET_SCENE_FPS' sets the scene to the clip's rate, 'RESAMPLE' slerps the clip to the
    scene's. Returns the clip at the scene's rate, that rate and each key's offset in scene frames from the first:
    whole frames, except that a ``loop`` (last frame = first) keeps its last key on the loop point, which at 24 or
    25 fps lies between two scene frames (:func:`.core.motion_math.loop_key_offsets`)."""
    if fps_mode == "SET_SCENE_FPS":
        if float(source_fps) != round(source_fps):
            raise bad_request(f"Cannot set the scene to {source_fps} fps.", "Use 'RESAMPLE' for fractional rates.")
        scene.render.fps = int(round(source_fps))
        scene.render.fps_base = 1.0
    target_fps = scene_fps(scene)
    offsets = np.arange(rotations.shape[0], dtype=np.float64)
    if abs(target_fps - source_fps) > _FPS_MATCH_TOLERANCE:
        if loop:
            offsets, translation, rotations = motion_math.resample_loop(translation, rotations, source_fps, target_fps)
        else:
            translation, rotations = motion_math.resample_clip(translation, rotations, source_fps, target_fps)
            offsets = np.arange(rotations.shape[0], dtype=np.float64)
    return translation, rotations, target_fps, offsets


def new_generated_action(
    name: str | None, prompt: str, seed: int, model: str, duration: float | None, source_frames: int, source_fps: float
) -> bpy.types.Action:
    """A new Action named from its prompt and seed, tagged with what made it (custom properties)."""
    action = bpy.data.actions.new(name or motion_math.action_name(prompt, seed))
    action["hymotion_prompt"] = prompt
    action["hymotion_seed"] = int(seed)
    action["hymotion_duration"] = float(
        duration if duration is not None else motion_math.clip_duration(source_frames, source_fps)
    )
    action["hymotion_model"] = model
    return action


def bake_motion(
    armature: bpy.types.Object,
    translation: np.ndarray,
    rotations: np.ndarray,
    *,
    prompt: str = "",
    seed: int = 0,
    model: str = "",
    duration: float | None = None,
    scene: bpy.types.Scene | None = None,
    start_frame: int = 1,
    in_place: bool = False,
    fps_mode: str = "RESAMPLE",
    source_fps: float = FPS,
    name: str | None = None,
    keys: str = "EVERY_FRAME",
    loop: bool = False,
) -> bpy.types.Action:
    """Bake a clip onto `armature` as a new Action, assign it as the active Action and return it.

    fps_mode 'RESAMPLE' resamples the clip to the scene's frame rate (slerp); 'SET_SCENE_FPS' sets the scene to the
    clip's rate instead (the only scene setting ever changed, and only then). The first frame lands on `start_frame`.
    `in_place` drops the horizontal root motion and keeps the height. Prompt, seed, duration (seconds, defaults to
    the clip's) and model are stored as custom properties on the Action. `keys` 'SPARSE' then reduces the keys to
    sparse Bezier keys at the default tolerances (:func:`.sparse_action.apply_keys`). ``loop``: the clip is a closed
    loop (its last frame is its first), so its last key lands on the loop point even between scene frames.
    """
    _check_armature(armature)
    if fps_mode not in FPS_MODES:
        raise bad_request(f"Unknown fps mode {fps_mode!r}.", f"Use one of {', '.join(FPS_MODES)}.")
    check_keys(keys)
    if isinstance(start_frame, bool) or not isinstance(start_frame, (int, np.integer)):
        raise bad_request(f"Start frame {start_frame!r} is not a whole number.", "Pass an integer frame, e.g. 1.")
    scene = scene if scene is not None else bpy.context.scene
    translation, rotations = motion_math.validated_clip(translation, rotations)
    source_frames = rotations.shape[0]

    translation, rotations, _, offsets = match_scene_fps(scene, translation, rotations, fps_mode, source_fps, loop)
    if in_place:
        translation = motion_math.without_horizontal_motion(translation)

    rest = _body_rest_matrices(armature)
    local_rotations = continuous_quaternions(motion_math.bone_local_rotations(rotations, rest))
    root_location = motion_math.bone_local_translation(translation, rest[0])

    action = new_generated_action(name, prompt, seed, model, duration, source_frames, source_fps)

    frames = start_frame + offsets
    new_fcurve, slot = fcurve_factory(action, armature)
    for joint, bone_name in enumerate(BODY_JOINT_NAMES):
        data_path = f'pose.bones["{bone_name}"].rotation_quaternion'
        for component in range(4):
            write_keys(new_fcurve(data_path, component, bone_name), frames, local_rotations[:, joint, component])
    root_path = f'pose.bones["{ROOT_BONE}"].location'
    for component in range(3):
        write_keys(new_fcurve(root_path, component, ROOT_BONE), frames, root_location[:, component])

    for bone_name in BODY_JOINT_NAMES:
        armature.pose.bones[bone_name].rotation_mode = "QUATERNION"
    anim_data = armature.animation_data or armature.animation_data_create()
    anim_data.action = action
    if slot is not None:
        anim_data.action_slot = slot
    if keys == "SPARSE":
        sparse_action.apply_keys(armature, action, keys)
    return action


def check_keys(keys: str) -> None:
    if keys not in KEY_MODES:
        raise bad_request(f"Unknown keys setting {keys!r}.", f"Use one of {', '.join(KEY_MODES)}.")


def push_to_nla(
    armature: bpy.types.Object, action: bpy.types.Action, mode: str = "SEQUENCE", track_name: str = NLA_TRACK_NAME
) -> bpy.types.NlaStrip:
    """Put `action` on the armature's NLA as a strip and return it.

    'SEQUENCE' appends it to the last track named `track_name` (made if missing), starting on the frame after that
    track's last strip ends, so each clip keeps all its frames. 'STACK' puts it on a new track named after the Action,
    starting at the Action's first key; the newest track is on top. If the Action is the armature's active Action it
    is unassigned afterwards, as Blender's Push Down does, so the NLA plays it.
    """
    if mode not in NLA_MODES:
        raise bad_request(f"Unknown NLA mode {mode!r}.", f"Use one of {', '.join(NLA_MODES)}.")
    anim_data = armature.animation_data or armature.animation_data_create()
    action_start = int(round(action.frame_range[0]))
    tracks = [track for track in anim_data.nla_tracks if track.name == track_name]
    if mode == "SEQUENCE" and tracks:
        track = tracks[-1]
        start = max((int(np.ceil(strip.frame_end)) + 1 for strip in track.strips), default=action_start)
    else:
        track = anim_data.nla_tracks.new()
        track.name = track_name if mode == "SEQUENCE" else action.name
        start = action_start
    strip = track.strips.new(action.name, start, action)
    if "action_slot" in strip.bl_rna.properties and strip.action_slot is None and len(action.slots):
        strip.action_slot = slot_for(action, armature)
    if anim_data.action == action:
        anim_data.action = None
    return strip


def _check_armature(armature: bpy.types.Object) -> None:
    require_hymotion_armature(armature, "Build a new SMPL-X armature from the HY-Motion panel and bake onto that.")


def _body_rest_matrices(armature: bpy.types.Object) -> np.ndarray:
    """Each body bone's rest orientation (3x3, armature space), read from the rig so an edited roll bakes right."""
    bones = armature.data.bones
    return np.array([np.array(bones[name].matrix_local)[:3, :3] for name in BODY_JOINT_NAMES])


def write_keys(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray) -> None:
    """Key every frame at once; handles sit on the keys, so a later switch to Bezier starts from a flat curve."""
    coordinates = np.empty((frames.size, 2), dtype=np.float32)
    coordinates[:, 0] = frames
    coordinates[:, 1] = values
    flat = coordinates.ravel()
    points = fcurve.keyframe_points
    points.add(frames.size)
    points.foreach_set("co", flat)
    points.foreach_set("handle_left", flat)
    points.foreach_set("handle_right", flat)
    points.foreach_set("interpolation", np.full(frames.size, _LINEAR, dtype=np.int32))


