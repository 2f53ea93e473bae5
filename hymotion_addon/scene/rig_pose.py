"""The animator's own rig as the target of known frames (issue 27), the bpy side of :mod:`.core.rig_pose`: read a
mapped rig's pose at scene frames as the SMPL-X body's (for the request's start or end pose), and bake what comes
back onto that rig with the floor and anchor the pose was read with, so the new piece meets the old one.

A rig is usable when its mapping (detected from the bone names, or the Retarget panel's) covers the pelvis, spine1
and both legs, and no constraint or driver overrides a mapped bone (the pieces are written as keys on them).
"""

from __future__ import annotations

import bpy
import numpy as np

from hymotion.shared import skeleton
from hymotion.shared.errors import HyMotionError, bad_request

from ..core import rig_pose
from . import bake, rig, target_rig


def is_mapped_rig(armature: bpy.types.Object | None) -> bool:
    """An armature other than the SMPL-X one whose bone names map to the body (legs and spine included)."""
    if armature is None or getattr(armature, "type", None) != "ARMATURE" or rig.is_hymotion_armature(armature):
        return False
    try:
        require_mapped_rig(armature)
    except HyMotionError:
        return False
    return True


def require_mapped_rig(armature: bpy.types.Object):
    """The rig's retarget plan, refused (with what to do) when its legs or spine are not mapped or a constraint or
    driver overrides a mapped bone (naming it)."""
    target_rig.check_armature(armature)
    mapping = target_rig.resolve_mapping(armature, None)
    plan = target_rig.plan_for(armature, mapping)
    rig_pose.check_readable(plan, armature.name)
    target_rig.check_keyable(armature, mapping)
    return plan


def require_target(armature: bpy.types.Object | None, hint: str) -> bpy.types.Object:
    """The SMPL-X armature HY-Motion made or a mapped rig; anything else refused with ``hint``."""
    if armature is not None and getattr(armature, "type", None) == "ARMATURE" and not rig.is_hymotion_armature(
            armature):
        try:
            require_mapped_rig(armature)
        except HyMotionError as error:
            raise bad_request(f"'{armature.name}' is not an SMPL-X armature made by HY-Motion, nor a rig it can "
                              f"use: {error.message}", error.hint) from None
        return armature
    return rig.require_hymotion_armature(armature, hint)


def read_pose(armature: bpy.types.Object, frame: float, frames: int = 1,
              scene: bpy.types.Scene | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rig's evaluated pose at ``frames`` model frames (1/30 s apart) ending at scene frame ``frame``, as the
    SMPL-X body's in model space: translation (N, 3), rotations (N, 22, 4). The scene returns to its frame."""
    plan = require_mapped_rig(armature)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise bad_request(f"frames must be a whole number >= 1, got {frames!r}.", "Use e.g. 1 or 10.")
    scene = scene if scene is not None else bpy.context.scene
    step = bake.scene_fps(scene) / skeleton.FPS
    names = [plan.target.names[bone] for bone in plan.bones.tolist()]
    bones = [armature.pose.bones[name] for name in names]
    current = (scene.frame_current, scene.frame_subframe)
    matrices = []
    try:
        for k in reversed(range(frames)):
            time = frame - k * step
            whole = int(np.floor(time))
            scene.frame_set(whole, subframe=time - whole)
            matrices.append([np.array(bone.matrix) for bone in bones])
    finally:
        scene.frame_set(current[0], subframe=current[1])
    stacked = np.array(matrices)  # (N, M, 4, 4)
    by_bone = {bone: stacked[:, slot] for slot, bone in enumerate(plan.bones.tolist())}
    return rig_pose.source_pose(plan, by_bone)


def bake_piece(armature: bpy.types.Object, translation: np.ndarray, rotations: np.ndarray, *, continues: bool,
               pinned_start: bool = True, pinned_end: bool = False, **options) -> bpy.types.Action:
    """Bake a generated clip onto the mapped rig (:func:`.retarget.bake_onto_rig`); a piece that ``continues`` what
    is on the rig (a pinned start and/or end) takes the shared floor, and the feet stay planted where the old motion
    has them on its pinned frames (the first, the last), so it meets the old motion."""
    from .retarget import bake_onto_rig

    plan = require_mapped_rig(armature)
    floor = rig_pose.continuity_floor(plan) if continues else None
    seams = ((0,) if pinned_start else ()) + ((-1,) if pinned_end else ()) if continues else ()
    return bake_onto_rig(armature, translation, rotations, floor=floor, pinned_frames=seams, **options)
