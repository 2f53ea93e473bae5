"""The Export Animation operator: the panel's export settings, a file browser, and :func:`.export.export_animation`.

It reads its settings from ``Scene.hymotion_retarget`` (see :mod:`.retarget_ui`, which registers it with the panel).
"""

from pathlib import Path

import bpy
from bpy.props import StringProperty

from hymotion.shared.errors import HyMotionError

from ..scene import export


class HYMOTION_OT_export_animation(bpy.types.Operator):
    """Export the rig and its animation with Blender's own FBX, glTF or BVH exporter"""

    bl_idname = "hymotion.export_animation"
    bl_label = "Export Animation"
    bl_options = {"REGISTER"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.fbx;*.glb;*.gltf;*.bvh", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return hasattr(context.scene, "hymotion_retarget")

    def _armature(self, context):
        settings = context.scene.hymotion_retarget
        return settings.target_armature if settings.export_rig == "TARGET" else settings.source_armature

    def invoke(self, context, event):
        armature = self._armature(context)
        if armature is None:
            self.report({"ERROR"}, "Pick the rig to export (Target Rig or the SMPL-X Source) first.")
            return {"CANCELLED"}
        if not self.filepath:
            folder = Path(bpy.path.abspath("//")) if bpy.data.is_saved else Path.home()
            extension = export.EXTENSIONS[context.scene.hymotion_retarget.export_format]
            self.filepath = str(folder / f"{bpy.path.clean_name(armature.name)}{extension}")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.hymotion_retarget
        armature = self._armature(context)
        if armature is None:
            self.report({"ERROR"}, "Pick the rig to export (Target Rig or the SMPL-X Source) first.")
            return {"CANCELLED"}
        if not self.filepath:
            self.report({"ERROR"}, "Choose a file to export to.")
            return {"CANCELLED"}
        try:
            actions = export.rig_actions(armature) if settings.export_all_actions else None
            files = export.export_animation(
                armature,
                self.filepath,
                file_format=settings.export_format,
                target=settings.export_target,
                actions=actions,
                one_file_per_action=settings.export_one_file_per_action,
            )
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        except OSError as error:  # whatever the file system says, as a report, never a traceback
            self.report({"ERROR"}, f"Could not export to {self.filepath}: {error}. Pick a folder you can write to.")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {len(files)} file(s): {', '.join(str(path) for path in files[:3])}")
        return {"FINISHED"}
