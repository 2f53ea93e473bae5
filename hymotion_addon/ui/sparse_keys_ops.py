"""The Sparse Keys operator: the active armature's Action reduced to few Bezier keys an animator can edit, every bone
kept within a tolerance in world centimetres and degrees (:mod:`hymotion_addon.scene.sparse_action`;
docs/retarget-export.md)."""

from __future__ import annotations

import bpy

from hymotion.shared.errors import HyMotionError

from ..scene import sparse_action


class HYMOTION_OT_sparse_keys(bpy.types.Operator):
    """Replace the active armature's Action by sparse Bezier keys that keep every bone within the tolerance at every
    frame, planted feet planted and a key wherever the motion turns"""

    bl_idname = "hymotion.sparse_keys"
    bl_label = "Sparse Keys"
    bl_options = {"REGISTER", "UNDO"}

    # No hard minimum: a tolerance of zero or below is refused with a message instead of being clamped silently.
    tolerance: bpy.props.FloatProperty(
        name="Tolerance (cm)", default=0.5, soft_min=0.05, soft_max=5.0, precision=2,
        description="How far, in centimetres, any bone may move from where the original Action has it, at any frame",
    )
    rotation_tolerance: bpy.props.FloatProperty(
        name="Rotation Tolerance (\N{DEGREE SIGN})", default=1.0, soft_min=0.1, soft_max=10.0, precision=2,
        description="How far, in degrees, any bone may turn from how the original Action has it, at any frame",
    )
    share: bpy.props.EnumProperty(
        name="Key Frames",
        items=(
            ("BONE", "Per Bone", "Every channel of a bone is keyed on the same frames (fewest keys)"),
            ("RIG", "Whole Rig", "Every bone is keyed on the same frames: pose-to-pose columns (more keys)"),
        ),
        default="BONE",
    )

    def execute(self, context):
        try:
            report = sparse_action.reduce_action(context.active_object, None, self.tolerance,
                                                   self.rotation_tolerance, self.share)
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        warning = report.warning()
        self.report({"WARNING"} if warning else {"INFO"}, report.summary() + (f" {warning}" if warning else ""))
        return {"FINISHED"}


classes: tuple[type, ...] = (HYMOTION_OT_sparse_keys,)
