"""Beyond one clip, on the Blender side: read the rig's pose as the model sees it, write it as a context file for
``hymotion generate --start-from/--end-at``, bring a generated clip back onto the same armature, and make a loop
cycle. The generation itself runs in the backend (docs/blender.md, "Beyond one clip"); ``known_frames.py`` turns
the rig's poses into the request's constraint and
:meth:`KnownFrames.place_results <hymotion_addon.scene.known_frames.KnownFrames.place_results>` puts what comes back
where it belongs, for the panel's operators and ``api.generate`` alike.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from hymotion.shared import skeleton
from hymotion.shared.errors import bad_request
from hymotion.shared.jobs import parse_prompt_lines
from hymotion.shared.motion_files import MotionFile, motion_arrays, read_motion_file, write_motion_file
from hymotion.shared.prompt_guide import duration_for

from ..core import motion_math
from . import bake, generation, rig
from .actions import action_fcurves, slot_for, uses_slotted_actions

CONTEXT_MODEL_ID = "blender-pose"
_TRANSFORM_CHANNELS = (".location", ".rotation_quaternion", ".rotation_euler", ".rotation_axis_angle", ".scale")


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
    arrays = motion_arrays(translation, rotations, prompt=f"pose of {armature.name} at frame {frame:g}",
                           duration=frames / skeleton.FPS, model_id=CONTEXT_MODEL_ID)
    try:
        return write_motion_file(path, arrays)
    except OSError as error:
        raise bad_request(f"Cannot write {path}: {error.strerror}.", "Choose a folder you can write to.") from None


def read_clip(path: str | Path) -> MotionFile:
    """A motion file written by ``hymotion generate`` (.npz or .json), read and checked by the one reader."""
    return read_motion_file(Path(bpy.path.abspath(str(path))))


def import_clip(path: str | Path, armature: bpy.types.Object, *, start_frame: int = 1, fps_mode: str = "RESAMPLE",
                nla_layout: str | None = None, scene: bpy.types.Scene | None = None,
                keys: str = "EVERY_FRAME", loop: bool = False) -> bpy.types.Action:
    """Bake a motion file onto ``armature`` as a new Action whose first frame lands on ``start_frame`` (``keys``:
    bake.bake_motion's); ``loop`` (a clip made with --loop) keeps its last key on the loop point and adds Cycles
    modifiers."""
    data = read_clip(path)
    action = bake.bake_motion(
        armature, data.translation, data.rotations, prompt=data.prompt, seed=data.seed, model=data.model_id,
        scene=scene, start_frame=start_frame, fps_mode=fps_mode, source_fps=data.fps, keys=keys, loop=loop,
    )
    action.use_fake_user = True
    if loop:
        make_cyclic(action, armature)
    if nla_layout is not None:
        bake.push_to_nla(armature, action, nla_layout)
    return action


def make_cyclic(action: bpy.types.Action, armature: bpy.types.Object) -> int:
    """Add a Cycles modifier to every F-curve of ``action`` (a loop baked on ``armature``: the SMPL-X armature or a
    mapped rig); locations repeat with offset, so a walk goes on. Returns how many F-curves got one.

    Every location channel repeats with offset: the root's are bone-space axes, each a mix of world directions, and
    a loop's end has its start's height, so the offset is the horizontal drift alone; a location that does not drift
    (a rig's other keyed bones) ends where it starts, so its offset is nothing."""
    if armature is None or getattr(armature, "type", None) != "ARMATURE":
        raise bad_request("Looping needs the armature the loop was baked on.", "Select that armature.")
    fcurves = action_fcurves(action)
    if not fcurves:
        raise bad_request(f"Action '{action.name}' has no F-curves.", "Import or bake a loop first.")
    count = 0
    for fcurve in fcurves:
        if any(modifier.type == "CYCLES" for modifier in fcurve.modifiers):
            continue
        cycles = fcurve.modifiers.new("CYCLES")
        cycles.mode_before = cycles.mode_after = "REPEAT_OFFSET" if fcurve.data_path.endswith(".location") else "REPEAT"
        count += 1
    return count


# --- generating with known frames (through the backend) -------------------------------------------------------------


def active_action(armature: bpy.types.Object) -> bpy.types.Action:
    """The Action the armature (the SMPL-X one or a mapped rig) plays, refused when it has none."""
    from .rig_pose import require_target

    require_target(armature, "Select the armature HY-Motion built, or your mapped rig.")
    action = armature.animation_data.action if armature.animation_data is not None else None
    if action is None:
        raise bad_request(f"'{armature.name}' has no active Action to take the poses from.",
                          "Generate or key a motion on it first.")
    return action



def write_between(action: bpy.types.Action, generated: bpy.types.Action, armature: bpy.types.Object, first: int,
                  last: int) -> None:
    """Replace ``action``'s keys strictly between frames ``first`` and ``last`` with those of ``generated`` (a clip
    baked from ``first`` to ``last``), make ``action`` active again and remove ``generated``. Quaternion signs are
    matched to the keys on either side, so no interpolation passes through a flipped sign."""
    anim_data = armature.animation_data
    anim_data.action = action
    if uses_slotted_actions():
        anim_data.action_slot = slot_for(action, armature)
    new = {(fcurve.data_path, fcurve.array_index): fcurve for fcurve in action_fcurves(generated)
           if fcurve.data_path.endswith(_TRANSFORM_CHANNELS)}  # a rig's switches (custom properties) stay as keyed
    paths = sorted({path for path, _ in new})
    for path in paths:
        size = 1 + max(index for other, index in new if other == path)
        bone = armature.path_resolve(path.rpartition(".")[0])
        fallback = np.array(getattr(bone, path.rpartition(".")[2]), dtype=np.float64)
        old = [_fcurve_for(action, armature, path, index, bone.name, fallback[index], first, last)
               for index in range(size)]
        keys = np.array([[point.co for point in new[(path, index)].keyframe_points] for index in range(size)])
        if path.endswith("rotation_quaternion"):
            at_first = np.array([curve.evaluate(first) for curve in old])
            keys[:, :, 1] *= np.sign(np.dot(keys[:, 0, 1], at_first)) or 1.0
            if np.dot(keys[:, -1, 1], [curve.evaluate(last) for curve in old]) < 0:
                for curve in old:
                    for point in curve.keyframe_points:
                        if point.co.x >= last:
                            point.co.y, point.handle_left.y, point.handle_right.y = (
                                -point.co.y, -point.handle_left.y, -point.handle_right.y)
        for curve, curve_keys in zip(old, keys):
            points = curve.keyframe_points
            for index in reversed(range(len(points))):
                if first < points[index].co.x < last:
                    points.remove(points[index], fast=True)
            for frame, value in curve_keys:
                if first < frame < last:
                    points.insert(frame, value, options={"FAST"}).interpolation = "LINEAR"
            curve.update()
    bpy.data.actions.remove(generated)


def _fcurve_for(action: bpy.types.Action, armature: bpy.types.Object, path: str, index: int, group: str,
                value: float, first: int, last: int) -> bpy.types.FCurve:
    """The Action's F-curve for (path, index); one it lacked is made, keyed at ``first`` and ``last`` with the value
    the bone holds without it, so the frames outside stay as they were."""
    if uses_slotted_actions():
        existing = next((c for c in action_fcurves(action) if (c.data_path, c.array_index) == (path, index)), None)
        curve = existing or action.fcurve_ensure_for_datablock(armature, path, index=index, group_name=group)
    else:
        existing = action.fcurves.find(path, index=index)
        curve = existing or action.fcurves.new(path, index=index, action_group=group)
    if existing is None:
        for frame in (first, last):
            curve.keyframe_points.insert(frame, value, options={"FAST"})
    return curve


def sequence_on_nla(armature: bpy.types.Object, before: bpy.types.Action | None, after: bpy.types.Action,
                    frame: int) -> bpy.types.NlaTrack:
    """One new NLA track with ``before`` up to the frame before ``frame`` and ``after`` from ``frame`` on, so the
    continued motion plays on without a jump; the active Action is unassigned, as Blender's Push Down does."""
    anim_data = armature.animation_data or armature.animation_data_create()
    track = anim_data.nla_tracks.new()
    track.name = bake.NLA_TRACK_NAME
    strips = []
    if before is not None and int(round(before.frame_range[0])) < frame:
        strip = track.strips.new(before.name, int(round(before.frame_range[0])), before)
        strip.action_frame_end = min(strip.action_frame_end, frame - 1)
        strips.append(strip)
    strips.append(track.strips.new(after.name, frame, after))
    for strip in strips:
        if "action_slot" in strip.bl_rna.properties and strip.action_slot is None and len(strip.action.slots):
            strip.action_slot = slot_for(strip.action, armature)
    anim_data.action = None
    return track


def timeline_clips(text: str, source: str, duration: float = 0.0) -> list[generation.Clip]:
    """The segments of a ``seconds | prompt`` timeline; a line without seconds takes ``duration`` (> 0) or an
    estimate from its prompt. A malformed line is refused naming its number."""
    return [generation.Clip(line.prompt, duration_for(line.prompt, line.duration, max(duration, 0.0)))
            for line in parse_prompt_lines(text, source=source)]


def _check(armature: bpy.types.Object) -> None:
    rig.require_hymotion_armature(armature, "Select the armature HY-Motion built (or generate once to get one).")
