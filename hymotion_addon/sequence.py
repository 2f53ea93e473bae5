"""Beyond one clip, on the Blender side: read the rig's pose as the model sees it, write it as a context file for
``hymotion generate --start-from/--end-at``, bring a generated clip back onto the same armature, and make a loop
cycle. The generation itself runs in the backend (docs/blender.md, "Beyond one clip").
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
from hymotion import skeleton
from hymotion.errors import bad_request

from . import bake, rig
from .core import motion_math

CONTEXT_MODEL_ID = "blender-pose"


def pose_frames(armature: bpy.types.Object, frame: float, frames: int = 1,
                scene: bpy.types.Scene | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The armature's pose at ``frames`` model frames (1/30 s apart, whatever the scene's rate) ending at scene
    frame ``frame``: root translation (N, 3) and local rotations (N, 22, 4), model space (Y-up). The scene returns
    to its current frame afterwards."""
    _check(armature)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise bad_request(f"frames must be a whole number >= 1, got {frames!r}.", "Use e.g. 1 or 10.")
    scene = scene if scene is not None else bpy.context.scene
    step = bake.scene_fps(scene) / skeleton.FPS
    rest = np.array([np.array(armature.data.bones[name].matrix_local)[:3, :3] for name in skeleton.BODY_JOINT_NAMES])
    current = (scene.frame_current, scene.frame_subframe)
    bones = [armature.pose.bones[name] for name in skeleton.BODY_JOINT_NAMES]
    locations, quaternions = [], []
    try:
        for k in reversed(range(frames)):
            time = frame - k * step
            whole = int(np.floor(time))
            scene.frame_set(whole, subframe=time - whole)
            quaternions.append([_quaternion(bone) for bone in bones])
            locations.append(tuple(bones[0].location))
    finally:
        scene.frame_set(current[0], subframe=current[1])
    rotations = motion_math.model_rotations(np.array(quaternions), rest)
    return motion_math.model_translation(np.array(locations), rest[0]), rotations


def _quaternion(bone: bpy.types.PoseBone) -> tuple[float, ...]:
    """The bone's rotation as a unit quaternion whatever its rotation mode (keyed poses may use Euler)."""
    if bone.rotation_mode == "QUATERNION":
        quaternion = bone.rotation_quaternion.normalized()
    elif bone.rotation_mode == "AXIS_ANGLE":
        angle, *axis = bone.rotation_axis_angle
        from mathutils import Quaternion, Vector

        quaternion = Quaternion(Vector(axis).normalized(), angle)
    else:
        quaternion = bone.rotation_euler.to_quaternion()
    return tuple(quaternion)


def save_pose(armature: bpy.types.Object, path: str | Path, frame: float | None = None, frames: int = 1,
              scene: bpy.types.Scene | None = None) -> Path:
    """Write the pose (``frames`` frames ending at ``frame``, default the current frame) as a motion file that
    ``hymotion generate --start-from`` / ``--end-at`` reads."""
    scene = scene if scene is not None else bpy.context.scene
    frame = scene.frame_current if frame is None else frame
    translation, rotations = pose_frames(armature, frame, frames, scene)
    path = Path(bpy.path.abspath(str(path)))
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = {
        "fps": np.asarray(skeleton.FPS), "joint_names": np.asarray(skeleton.BODY_JOINT_NAMES),
        "parents": np.asarray(skeleton.BODY_PARENTS), "rest_offsets": skeleton.BODY_REST_OFFSETS.astype(np.float32),
        "translation": translation.astype(np.float32), "rotations": rotations.astype(np.float32),
        "positions": skeleton.forward_kinematics(rotations, translation).astype(np.float32),
        "prompt": np.asarray(f"pose of {armature.name} at frame {frame:g}"), "seed": np.asarray(0),
        "duration": np.asarray(frames / skeleton.FPS), "model_id": np.asarray(CONTEXT_MODEL_ID),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
    except OSError as error:
        raise bad_request(f"Cannot write {path}: {error.strerror}.", "Choose a folder you can write to.") from None
    return path


def read_clip(path: str | Path) -> dict:
    """A motion file written by ``hymotion generate`` (.npz or .json), checked to be this model's skeleton."""
    path = Path(bpy.path.abspath(str(path)))
    if not path.is_file():
        raise bad_request(f"Motion file {path} does not exist.", "Pick a .npz or .json written by hymotion generate.")
    try:
        if path.suffix.lower() == ".json":
            data = {key: np.asarray(value) for key, value in json.loads(path.read_text(encoding="utf-8")).items()}
        else:
            with np.load(path, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"Cannot read {path}: {error}.",
                          "Pick a .npz or .json written by hymotion generate.") from None
    names = tuple(str(name) for name in np.asarray(data.get("joint_names", [])).reshape(-1))
    if names != skeleton.BODY_JOINT_NAMES or "translation" not in data or "rotations" not in data:
        raise bad_request(f"{path} is not a HY-Motion clip (its joints are not the 22 SMPL-X body joints).",
                          "Pick a file written by hymotion generate.")
    return data


def import_clip(path: str | Path, armature: bpy.types.Object, *, start_frame: int = 1, fps_mode: str = "RESAMPLE",
                nla_layout: str | None = None, scene: bpy.types.Scene | None = None) -> bpy.types.Action:
    """Bake a motion file onto ``armature`` as a new Action whose first frame lands on ``start_frame``."""
    data = read_clip(path)
    action = bake.bake_motion(
        armature, data["translation"], data["rotations"], prompt=str(data.get("prompt", "")),
        seed=int(data.get("seed", 0)), model=str(data.get("model_id", "")), scene=scene, start_frame=start_frame,
        fps_mode=fps_mode, source_fps=float(data.get("fps", skeleton.FPS)),
    )
    action.use_fake_user = True
    if nla_layout is not None:
        bake.push_to_nla(armature, action, nla_layout)
    return action


def make_cyclic(action: bpy.types.Action, armature: bpy.types.Object) -> int:
    """Add a Cycles modifier to every F-curve of ``action`` (a loop baked on ``armature``); the root's horizontal
    location repeats with offset, so a walk goes on. Returns how many F-curves got one.

    All three root location channels repeat with offset: they are bone-space axes, each a mix of world directions,
    and a loop's end has its start's height, so the offset is the horizontal drift alone."""
    _check(armature)
    root_path = f'pose.bones["{bake.ROOT_BONE}"].location'
    fcurves = action_fcurves(action)
    if not fcurves:
        raise bad_request(f"Action '{action.name}' has no F-curves.", "Import or bake a loop first.")
    count = 0
    for fcurve in fcurves:
        if any(modifier.type == "CYCLES" for modifier in fcurve.modifiers):
            continue
        cycles = fcurve.modifiers.new("CYCLES")
        cycles.mode_before = cycles.mode_after = "REPEAT_OFFSET" if fcurve.data_path == root_path else "REPEAT"
        count += 1
    return count


def action_fcurves(action: bpy.types.Action):
    """The Action's F-curves wherever this Blender keeps them (the Action itself, or its layers' channelbags)."""
    if bake.uses_slotted_actions():
        return [fcurve for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for fcurve in bag.fcurves]
    return list(action.fcurves)


def _check(armature: bpy.types.Object) -> None:
    if not rig.is_hymotion_armature(armature):
        raise bad_request(f"'{getattr(armature, 'name', armature)}' is not an SMPL-X armature made by HY-Motion.",
                          "Select the armature HY-Motion built (or generate once to get one).")
