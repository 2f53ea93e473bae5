"""Operators and the sidebar section for working beyond one clip: save the rig's pose for ``hymotion generate
--start-from/--end-at``, import a generated clip at the current frame, make a loop cycle (docs/blender.md)."""

from __future__ import annotations

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper
from hymotion.errors import HyMotionError

from . import generation, rig, sequence


def _armature(context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if rig.is_hymotion_armature(obj) else None


class HYMOTION_OT_save_pose(bpy.types.Operator, ExportHelper):
    """Save the active HY-Motion armature's pose at the current frame as a file `hymotion generate --start-from`
    or `--end-at` reads"""

    bl_idname = "hymotion.save_pose"
    bl_label = "Save Pose for Continuing"
    bl_options = {"REGISTER"}
    filename_ext = ".npz"
    filter_glob: bpy.props.StringProperty(default="*.npz", options={"HIDDEN"})
    frames: bpy.props.IntProperty(
        name="Context Frames", default=10, min=1, max=120,
        description="Frames ending at the current one (1/30 s apart) the next motion continues from",
    )

    @classmethod
    def poll(cls, context):
        return _armature(context) is not None

    def execute(self, context):
        try:
            path = sequence.save_pose(_armature(context), self.filepath, frames=self.frames, scene=context.scene)
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved the pose to {path}.")
        return {"FINISHED"}


class HYMOTION_OT_import_clip(bpy.types.Operator, ImportHelper):
    """Bake a clip made by `hymotion generate` onto the active HY-Motion armature (or a new one), starting at the
    current frame"""

    bl_idname = "hymotion.import_clip"
    bl_label = "Import Clip"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: bpy.props.StringProperty(default="*.npz;*.json", options={"HIDDEN"})
    to_nla: bpy.props.BoolProperty(
        name="Add to NLA", default=False, description="Also push the Action onto the armature's NLA track",
    )
    cyclic: bpy.props.BoolProperty(
        name="Loop", default=False, description="Add Cycles modifiers (for a clip made with --loop)",
    )

    def execute(self, context):
        armature = _armature(context)
        try:
            if armature is None:
                armature = rig.build_armature(context, name=generation.RIG_NAME)
            action = sequence.import_clip(
                self.filepath, armature, start_frame=context.scene.frame_current,
                nla_layout="SEQUENCE" if self.to_nla else None, scene=context.scene,
            )
            if self.cyclic:
                sequence.make_cyclic(action, armature)
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {action.name} at frame {context.scene.frame_current}.")
        return {"FINISHED"}


class HYMOTION_OT_make_cyclic(bpy.types.Operator):
    """Loop the active HY-Motion armature's Action with Cycles modifiers (the root's horizontal motion carries on)"""

    bl_idname = "hymotion.make_cyclic"
    bl_label = "Loop with Cycles"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        armature = _armature(context)
        return armature is not None and armature.animation_data is not None and armature.animation_data.action

    def execute(self, context):
        armature = _armature(context)
        try:
            count = sequence.make_cyclic(armature.animation_data.action, armature)
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Added Cycles modifiers to {count} F-curves.")
        return {"FINISHED"}


class HYMOTION_PT_sequence(bpy.types.Panel):
    bl_label = "Continue, In-between, Loop"
    bl_idname = "HYMOTION_PT_sequence"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HY-Motion"
    bl_parent_id = "HYMOTION_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        column = layout.column(align=True)
        column.operator(HYMOTION_OT_save_pose.bl_idname, icon="POSE_HLT")
        column.operator(HYMOTION_OT_import_clip.bl_idname, icon="IMPORT")
        column.operator(HYMOTION_OT_make_cyclic.bl_idname, icon="FILE_REFRESH")
        layout.label(text="Generate with hymotion generate --start-from / --end-at / --loop / --timeline.")


classes: tuple[type, ...] = (HYMOTION_OT_save_pose, HYMOTION_OT_import_clip, HYMOTION_OT_make_cyclic,
                             HYMOTION_PT_sequence)
