"""Sparse keys in Blender: read an armature Action's pose-bone F-curves, fit them (:mod:`.core.sparse_keys`) and write
the sparse Bezier keys back into the same F-curves.

Any Action of the armature will do (generated, retargeted, imported, mocap; Blender 4.2's F-curves on the Action and
4.4+'s slotted channelbags, reached through :mod:`.actions`). The curves are sampled at every frame from the
first key to the last (``FCurve.evaluate``, so whatever interpolation or keys the original has), the rig read from the
armature (rest matrices, lengths, rotation modes, object matrix, the scene's unit scale), and the error measured
through the rig's forward kinematics in world centimetres.

Left alone (no keys changed, but counted in the error as they are): F-curves of other properties (custom properties,
Bendy Bones, the object itself), curves with modifiers other than Cycles (their keys are not what plays), and rotation
curves the bone's rotation mode does not use. Curves with Cycles modifiers keep them: inside the keyed range a Cycles
modifier does not change a value.

Keys are written BEZIER with handle types ALIGNED (FREE at a kink), never AUTO or AUTO_CLAMPED: Blender would move
automatic handles, and the curve would no longer be the one whose error was measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import bpy
import numpy as np

from hymotion.shared.errors import bad_request

from ..core import sparse_keys
from .actions import action_fcurves

_PATH = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(\w+)$')
_USED_ROTATION = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}
_KEEPS_VALUES = {"CYCLES"}  # modifiers that change nothing between the first and the last key
_BEZIER = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["BEZIER"].value
_HANDLE_TYPES = bpy.types.Keyframe.bl_rna.properties["handle_left_type"].enum_items
_ALIGNED, _FREE = _HANDLE_TYPES["ALIGNED"].value, _HANDLE_TYPES["FREE"].value
METRES_PER_CM = 0.01


@dataclass(frozen=True)
class SparseReport:
    """What one reduction did: keys before and after over the curves it reduced, their length in seconds, and the
    largest errors over every bone and frame (world cm, degrees; planted heads and tails alone)."""

    curves: int
    curves_left_alone: int
    keys_before: int
    keys_after: int
    seconds: float
    max_error_cm: float
    max_rotation_error: float
    max_planted_error_cm: float
    unseen: tuple[str, ...] = ()  # bones whose constraints or inheritance the error does not see (:func:`unseen_bones`)

    @property
    def keys_per_second_per_curve(self) -> float:
        return self.keys_after / max(self.curves, 1) / max(self.seconds, 1e-9)

    def summary(self) -> str:
        return (f"Kept {self.keys_after} of {self.keys_before} keys on {self.curves} F-curves "
                f"({self.keys_per_second_per_curve:.1f} per second per curve); largest error "
                f"{self.max_error_cm:.2f} cm and {self.max_rotation_error:.2f}\N{DEGREE SIGN}, planted feet "
                f"{self.max_planted_error_cm:.2f} cm.")

    def warning(self) -> str | None:
        """What the error cannot vouch for, when some bones have constraints or do not inherit as Blender's default."""
        if not self.unseen:
            return None
        shown = ", ".join(self.unseen[:3]) + (", ..." if len(self.unseen) > 3 else "")
        return (f"{len(self.unseen)} bone(s) have constraints or do not inherit their parent's rotation and scale "
                f"({shown}): the tolerance holds for the keyed transforms, not for what the constraints make of them.")


@dataclass
class _Curve:
    fcurve: bpy.types.FCurve
    channel: sparse_keys.Channel
    fitted: bool


def reduce_action(
    armature: bpy.types.Object,
    action: bpy.types.Action | None = None,
    tolerance_cm: float = 0.5,
    rotation_tolerance: float = 1.0,
    share: str = "BONE",
) -> SparseReport:
    """Replace the keys of `action` (default: the armature's active Action) by sparse Bezier keys that keep every
    bone's world position within `tolerance_cm` and its world rotation within `rotation_tolerance` degrees at every
    frame from its first key to its last (module docstring). Refused with nothing changed: no armature, an Action
    that is not the armature's or animates bones it lacks, an Action without keys, a tolerance of zero or below."""
    action = _checked_action(armature, action)
    if not (np.isfinite(tolerance_cm) and tolerance_cm > 0):
        raise bad_request(f"The tolerance is {tolerance_cm} cm; it must be above zero.",
                          "Pass how far a bone may move in centimetres, e.g. 0.5.")
    settings = sparse_keys.SparseSettings(tolerance=tolerance_cm * METRES_PER_CM,
                                          rotation_tolerance=rotation_tolerance, share=share).checked()
    names, parents = _bone_order(armature)
    curves = _pose_curves(action, armature, names)
    keyed = [curve for curve in curves if len(curve.fcurve.keyframe_points)]
    if not keyed:
        raise bad_request(f"Action '{action.name}' has no keys on the bones of '{armature.name}'.",
                          "Key the armature's bones (or bake or retarget a clip onto it) before making sparse keys.")
    frames = _frame_span(keyed)
    values = np.array([[curve.fcurve.evaluate(frame) for curve in keyed] for frame in frames.tolist()])
    rig = _rig(armature, names, parents)
    scene = bpy.context.scene
    fit = sparse_keys.fit_sparse_keys(
        rig, frames, [curve.channel for curve in keyed], values, settings,
        fps=scene.render.fps / scene.render.fps_base, static_pose=_static_pose(armature, names),
        fitted=np.array([curve.fitted for curve in keyed]))
    fitted_curves = [curve for curve in keyed if curve.fitted]
    keys_before = sum(len(curve.fcurve.keyframe_points) for curve in fitted_curves)
    for curve, fitted in zip(fitted_curves, fit.curves):
        write_curve(curve.fcurve, fitted)
    return SparseReport(
        curves=len(fitted_curves),
        curves_left_alone=len(curves) - len(fitted_curves),
        keys_before=keys_before,
        keys_after=fit.key_count,
        seconds=frames.size / (scene.render.fps / scene.render.fps_base),
        max_error_cm=fit.max_position_error / METRES_PER_CM,
        max_rotation_error=fit.max_rotation_error,
        max_planted_error_cm=fit.max_planted_error / METRES_PER_CM,
        unseen=unseen_bones(armature),
    )


def unseen_bones(armature: bpy.types.Object) -> tuple[str, ...]:
    """Bones whose pose the fit's forward kinematics does not reproduce: with an active constraint, or not inheriting
    their parent's rotation or full scale, or with a location in the parent's space rather than their own."""
    names = []
    for pose_bone in armature.pose.bones:
        bone = pose_bone.bone
        constrained = any(not constraint.mute and constraint.influence > 0 for constraint in pose_bone.constraints)
        inherits = bone.use_inherit_rotation and bone.inherit_scale == "FULL" and bone.use_local_location
        if constrained or not inherits:
            names.append(pose_bone.name)
    return tuple(names)


def _checked_action(armature, action) -> bpy.types.Action:
    if armature is None or getattr(armature, "type", None) != "ARMATURE":
        raise bad_request(f"'{getattr(armature, 'name', armature)}' is not an armature.",
                          "Select the armature whose Action should get sparse keys (make it the active object).")
    active = armature.animation_data.action if armature.animation_data else None
    action = action if action is not None else active
    if action is None:
        raise bad_request(f"Armature '{armature.name}' has no Action.",
                          "Assign the Action to reduce in the Action Editor, or bake or retarget a clip first.")
    if action != active:
        raise bad_request(f"Action '{action.name}' is not the Action of armature '{armature.name}'.",
                          "Select the armature the Action belongs to, or assign the Action to this one first.")
    return action


def _bone_order(armature) -> tuple[list[str], list[int]]:
    """The armature's bones with every parent before its children, and their parents' indices."""
    names: list[str] = []
    pending = [bone for bone in armature.data.bones if bone.parent is None]
    while pending:
        bone = pending.pop(0)
        names.append(bone.name)
        pending.extend(bone.children)
    index = {name: number for number, name in enumerate(names)}
    bones = armature.data.bones
    return names, [index[bones[name].parent.name] if bones[name].parent else -1 for name in names]


def _pose_curves(action, armature, names: list[str]) -> list[_Curve]:
    """The Action's pose-bone F-curves for this armature, each with its channel and whether the fit may change it."""
    index = {name: number for number, name in enumerate(names)}
    curves, missing = [], []
    for fcurve in action_fcurves(action, armature):
        match = _PATH.match(fcurve.data_path)
        if not match:
            continue
        bone_name, prop = match.group(1).replace('\\"', '"').replace("\\\\", "\\"), match.group(2)
        if bone_name not in index:
            missing.append(bone_name)
            continue
        if prop not in sparse_keys.PROPERTIES or fcurve.array_index >= sparse_keys.PROPERTIES[prop][1]:
            continue
        mode = armature.pose.bones[bone_name].rotation_mode
        used = prop in ("location", "scale") or prop == _USED_ROTATION.get(mode, "rotation_euler")
        plain = all(modifier.type in _KEEPS_VALUES for modifier in fcurve.modifiers)
        curves.append(_Curve(fcurve, sparse_keys.Channel(index[bone_name], prop, fcurve.array_index),
                             used and plain and len(fcurve.keyframe_points) > 0))
    if missing:
        shown = ", ".join(sorted(set(missing))[:4])
        raise bad_request(f"Action '{action.name}' animates bones that armature '{armature.name}' lacks ({shown}).",
                          "Select the armature the Action was made for.")
    return curves


def _frame_span(curves: list[_Curve]) -> np.ndarray:
    """Every whole frame from the first key to the last over the curves."""
    starts, ends = zip(*(curve.fcurve.range() for curve in curves))
    first, last = int(np.floor(min(starts) + 1e-6)), int(np.ceil(max(ends) - 1e-6))
    return np.arange(first, last + 1, dtype=np.float64)


def _rig(armature, names: list[str], parents: list[int]) -> sparse_keys.Rig:
    bones = armature.data.bones
    world = np.array(armature.matrix_world)
    world[:3] *= bpy.context.scene.unit_settings.scale_length  # scene units to metres
    return sparse_keys.Rig(
        names=tuple(names),
        parents=tuple(parents),
        rest=np.array([np.array(bones[name].matrix_local) for name in names]),
        lengths=np.array([bones[name].length for name in names]),
        rotation_modes=tuple(armature.pose.bones[name].rotation_mode for name in names),
        world=world,
    )


def _static_pose(armature, names: list[str]) -> np.ndarray:
    """Each bone's pose properties as they are now (B, 17): what its unkeyed channels hold."""
    table = np.empty((len(names), sparse_keys.SLOTS))
    for row, name in enumerate(names):
        bone = armature.pose.bones[name]
        for prop, (start, size) in sparse_keys.PROPERTIES.items():
            table[row, start:start + size] = tuple(getattr(bone, prop))
    return table


def write_curve(fcurve: bpy.types.FCurve, fitted: sparse_keys.FittedCurve) -> None:
    """Replace an F-curve's keys by the fitted ones (its modifiers, group and settings stay)."""
    points = fcurve.keyframe_points
    points.clear()
    count = fitted.co.shape[0]
    points.add(count)
    points.foreach_set("co", fitted.co.astype(np.float32).ravel())
    points.foreach_set("handle_left", fitted.handle_left.astype(np.float32).ravel())
    points.foreach_set("handle_right", fitted.handle_right.astype(np.float32).ravel())
    points.foreach_set("interpolation", np.full(count, _BEZIER, dtype=np.int32))
    types = np.where(fitted.free, _FREE, _ALIGNED).astype(np.int32)
    points.foreach_set("handle_left_type", types)
    points.foreach_set("handle_right_type", types)
    fcurve.update()


def apply_keys(armature: bpy.types.Object, action: bpy.types.Action, keys: str) -> SparseReport | None:
    """The Keys setting (Every Frame / Sparse) of Generate, Batch Bake, Import Clip, Retarget and ``hymotion-bake
    --keys sparse``: 'SPARSE' reduces the just-written Action (the armature's active one) at the default tolerances,
    'EVERY_FRAME' leaves it."""
    return reduce_action(armature, action) if keys == "SPARSE" else None
