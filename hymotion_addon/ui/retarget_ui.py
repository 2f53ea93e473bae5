"""Sidebar sub-panel, bone-mapping list, presets and operators for retargeting (the export operator has its own
module, :mod:`.export_operator`; its class is registered from :data:`classes` here).

Registration: register :data:`classes` in order, then call :func:`register_properties` (it hangs
``Scene.hymotion_retarget`` on the scene); undo with :func:`unregister_properties`, then the classes in reverse.
The panel is a child of ``HYMOTION_PT_main``, which must be registered first.

The properties carry no Python callbacks (no poll/update/items functions): the bpy 4.2 module crashes at interpreter
exit once any was registered, so choices are checked where they are used and presets are listed by a menu.
"""

import re
from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.skeleton import BODY_JOINT_NAMES

from ..core import bone_mapping
from ..core.bone_mapping import BoneMapping
from ..scene import bake, export, retarget, rig, takes, target_rig
from . import export_operator, preferences
from .properties import KEY_MODE_ITEMS
from .text_fit import draw_wrapped

PRESET_FOLDER = "bone_maps"
_PRESET_SUFFIX = ".json"


# --- where presets live ---------------------------------------------------------------------------------------------


def preset_directory() -> Path:
    """The folder mapping presets are saved in, inside the add-on's user folder (survives updates, follows
    $HYMOTION_USER_DIR)."""
    return preferences.user_dir() / PRESET_FOLDER


def preset_path(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9 ._-]+", "_", name).strip(" ._")
    if not safe:
        raise bad_request(f"'{name}' cannot be used as a preset name.", "Use letters, digits, spaces, '-' or '_'.")
    return preset_directory() / f"{safe}{_PRESET_SUFFIX}"


def preset_names() -> list[str]:
    folder = preset_directory()
    return sorted(path.stem for path in folder.glob(f"*{_PRESET_SUFFIX}")) if folder.is_dir() else []


# --- mapping <-> scene list -----------------------------------------------------------------------------------------


def _joint_label(joint: str) -> str:
    return joint.replace("_", " ").title()


def mapping_from_settings(settings: "HYMOTION_PG_retarget") -> BoneMapping:
    bones = {item.joint: item.bone for item in settings.bone_map if item.joint in BODY_JOINT_NAMES}
    return BoneMapping(bones=bones, convention=settings.convention or "custom")


def store_mapping(settings: "HYMOTION_PG_retarget", mapping: BoneMapping) -> None:
    """Show a mapping in the panel's list: one row per SMPL-X body joint."""
    settings.bone_map.clear()
    for joint in BODY_JOINT_NAMES:
        item = settings.bone_map.add()
        item.joint = joint
        item.bone = mapping.bones.get(joint, "")
    settings.convention = mapping.convention
    settings.bone_map_index = min(settings.bone_map_index, len(settings.bone_map) - 1)


# --- properties -----------------------------------------------------------------------------------------------------


class HYMOTION_PG_bone_map_item(bpy.types.PropertyGroup):
    joint: StringProperty(name="Source Joint", description="SMPL-X body joint the motion comes from")
    bone: StringProperty(name="Target Bone", description="Bone of your rig that plays this joint (empty: not driven)")


class HYMOTION_PG_retarget(bpy.types.PropertyGroup):
    source_armature: PointerProperty(
        name="Source", type=bpy.types.Object, description="The SMPL-X armature HY-Motion baked the motion onto"
    )
    target_armature: PointerProperty(
        name="Target Rig", type=bpy.types.Object, description="Your character's armature, which gets the motion"
    )
    bone_map: CollectionProperty(type=HYMOTION_PG_bone_map_item)
    bone_map_index: IntProperty(name="Mapping Row", default=0, min=0)
    convention: StringProperty(name="Detected As", description="Naming convention the mapping was found by")
    root_motion: EnumProperty(
        name="Root Motion",
        items=(
            ("HIPS", "On the Hips", "The hips bone carries all of the motion; a root bone stays still"),
            ("ROOT_BONE", "On the Root Bone", "The root bone slides along the ground, the hips only move up and down"),
        ),
        default=retarget.DEFAULT_ROOT_MOTION,
    )
    root_bone: StringProperty(name="Root Bone", description="Bone above the hips that carries the ground motion")
    in_place: BoolProperty(
        name="In Place",
        description="Drop the horizontal motion; the character moves on the spot",
        default=retarget.DEFAULT_IN_PLACE,
    )
    feet_cleanup: BoolProperty(
        name="Clean Up Feet",
        description="Pin each foot while it touches the ground, so it neither slides nor sinks",
        default=retarget.DEFAULT_FEET_CLEANUP,
    )
    keys: EnumProperty(name="Keys", items=KEY_MODE_ITEMS, default="EVERY_FRAME")
    scope: EnumProperty(
        name="Actions",
        items=(
            ("ACTIVE", "Active Action", "Retarget the source armature's active Action"),
            ("ALL", "All HY-Motion Actions",
             "Retarget every HY-Motion Action of the source, as NLA strips in a row (takes stay takes)"),
        ),
        default="ACTIVE",
    )
    export_rig: EnumProperty(
        name="Export Rig",
        items=(
            ("TARGET", "Target Rig", "Export your character's rig"),
            ("SOURCE", "SMPL-X Armature", "Export the SMPL-X armature HY-Motion generated"),
        ),
        default="TARGET",
    )
    export_format: EnumProperty(
        name="Format",
        items=(
            ("FBX", "FBX", "Autodesk FBX, through Blender's own exporter"),
            ("GLB", "glTF Binary (.glb)", "One self-contained glTF file"),
            ("GLTF", "glTF Separate (.gltf)", "glTF with separate binary data"),
            ("BVH", "BVH", "Biovision motion capture (one motion per file)"),
        ),
        default="FBX",
    )
    export_target: EnumProperty(
        name="For",
        items=(
            ("UNITY", "Unity", "Scale 1, no leaf bones, axis conversion applied"),
            ("UNREAL", "Unreal Engine", "Centimetres in the file's unit scale, no leaf bones"),
            ("MAYA", "Maya", "Y-up, centimetres, leaf bones kept"),
            ("GENERIC", "Other", "Blender's own FBX defaults, no leaf bones"),
        ),
        default="GENERIC",
        description="FBX settings for the application that imports the file",
    )
    export_all_actions: BoolProperty(
        name="All Actions of the Rig",
        description="Export every Action of the rig instead of only its active one",
    )
    export_one_file_per_action: BoolProperty(
        name="One File per Action", description="Write one file per Action instead of one file holding them all"
    )


def register_properties() -> None:
    bpy.types.Scene.hymotion_retarget = PointerProperty(type=HYMOTION_PG_retarget)


def unregister_properties() -> None:
    del bpy.types.Scene.hymotion_retarget


# --- list -----------------------------------------------------------------------------------------------------------


class HYMOTION_UL_bone_map(bpy.types.UIList):
    """Source joint -> target bone, editable; unmapped joints and bones the rig lacks are flagged."""

    bl_idname = "HYMOTION_UL_bone_map"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        target = data.target_armature if data.target_armature and data.target_armature.type == "ARMATURE" else None
        missing = bool(item.bone) and (target is None or item.bone not in target.data.bones)
        flag = "ERROR" if missing else ("BONE_DATA" if item.bone else "DOT")
        split = layout.split(factor=0.42)
        split.label(text=_joint_label(item.joint), icon=flag)
        if target is not None:
            split.prop_search(item, "bone", target.data, "bones", text="")
        else:
            split.prop(item, "bone", text="")

    def filter_items(self, context, data, propname):
        items = getattr(data, propname)
        flags = [self.bitflag_filter_item] * len(items)
        if self.filter_name:
            pattern = self.filter_name.lower()
            flags = [
                self.bitflag_filter_item if pattern in item.joint.lower() or pattern in item.bone.lower() else 0
                for item in items
            ]
        return flags, []


# --- operators ------------------------------------------------------------------------------------------------------


def _settings(context) -> HYMOTION_PG_retarget:
    return context.scene.hymotion_retarget


class HYMOTION_OT_detect_bone_mapping(bpy.types.Operator):
    """Find which bones of the target rig play the SMPL-X body joints, from their names and the hierarchy"""

    bl_idname = "hymotion.detect_bone_mapping"
    bl_label = "Detect Mapping"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "hymotion_retarget")

    def execute(self, context):
        settings = _settings(context)
        target = settings.target_armature
        if target is None or target.type != "ARMATURE":
            self.report({"ERROR"}, "Pick your character's armature as the Target Rig first.")
            return {"CANCELLED"}
        try:
            mapping = target_rig.detect_mapping(target)
            root = target_rig.root_bone_candidate(target, mapping)
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        store_mapping(settings, mapping)
        settings.root_bone = root or ""
        unmapped = mapping.unmapped()
        if unmapped:
            self.report(
                {"WARNING"},
                f"Mapped {22 - len(unmapped)} of 22 joints ({mapping.convention}); not found: "
                f"{', '.join(unmapped[:6])}{'…' if len(unmapped) > 6 else ''}. Pick those bones in the list.",
            )
        else:
            self.report({"INFO"}, f"Mapped all 22 joints ({mapping.convention}).")
        return {"FINISHED"}


class HYMOTION_OT_save_bone_map_preset(bpy.types.Operator):
    """Save the bone mapping as a preset, to reuse it for this rig in other files"""

    bl_idname = "hymotion.save_bone_map_preset"
    bl_label = "Save Mapping Preset"
    bl_options = {"REGISTER"}

    name: StringProperty(name="Preset Name", description="Name to save the mapping under")

    @classmethod
    def poll(cls, context):
        return hasattr(context.scene, "hymotion_retarget") and len(_settings(context).bone_map) > 0

    def invoke(self, context, event):
        target = _settings(context).target_armature
        if not self.name:
            self.name = target.name if target is not None else "My Rig"
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        try:
            path = bone_mapping.save_preset(mapping_from_settings(_settings(context)), preset_path(self.name))
        except (HyMotionError, OSError) as error:
            self.report({"ERROR"}, f"Could not save the preset: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved mapping preset '{path.stem}' to {path}.")
        return {"FINISHED"}


class HYMOTION_OT_load_bone_map_preset(bpy.types.Operator):
    """Load a saved bone mapping preset into the list"""

    bl_idname = "hymotion.load_bone_map_preset"
    bl_label = "Load Mapping Preset"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Preset Name", description="Name of the saved preset to load")

    @classmethod
    def poll(cls, context):
        return hasattr(context.scene, "hymotion_retarget")

    def execute(self, context):
        settings = _settings(context)
        name = self.name
        if not name:
            self.report({"ERROR"}, "No preset chosen. Save a mapping as a preset first, then pick it.")
            return {"CANCELLED"}
        try:
            mapping = bone_mapping.load_preset(preset_path(name))
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        store_mapping(settings, mapping)
        target = settings.target_armature
        missing = mapping.missing_bones(target.data.bones.keys()) if target is not None else []
        if missing:
            self.report(
                {"WARNING"},
                f"Loaded '{name}', but the target rig lacks the bones for {', '.join(missing[:6])}. "
                "Fix the flagged rows or run Detect Mapping.",
            )
        else:
            self.report({"INFO"}, f"Loaded mapping preset '{name}'.")
        return {"FINISHED"}


def _hymotion_actions(source: bpy.types.Object) -> list[bpy.types.Action]:
    """Actions baked onto this SMPL-X armature by HY-Motion (tagged with a prompt), the active one first."""
    actions = [action for action in export.rig_actions(source) if "hymotion_prompt" in action]
    active = source.animation_data.action if source.animation_data else None
    if active in actions:
        actions.remove(active)
        actions.insert(0, active)
    return actions


class HYMOTION_OT_retarget_action(bpy.types.Operator):
    """Put the SMPL-X motion on your rig as a new Action (plain keys, no constraints added)"""

    bl_idname = "hymotion.retarget_action"
    bl_label = "Retarget to Rig"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return hasattr(context.scene, "hymotion_retarget")

    def execute(self, context):
        settings = _settings(context)
        source, target = settings.source_armature, settings.target_armature
        if source is None or target is None:
            self.report({"ERROR"}, "Pick the SMPL-X armature as Source and your character's armature as Target Rig.")
            return {"CANCELLED"}
        if source == target:
            self.report({"ERROR"}, "Source and Target Rig are the same armature; pick your character as the target.")
            return {"CANCELLED"}
        if not rig.is_hymotion_armature(source):
            self.report({"ERROR"}, f"'{source.name}' is not a HY-Motion SMPL-X armature; pick that one as Source.")
            return {"CANCELLED"}
        if target.type != "ARMATURE":
            self.report({"ERROR"}, f"'{target.name}' is not an armature; pick your character's rig as Target Rig.")
            return {"CANCELLED"}
        if settings.scope == "ALL":
            actions = _hymotion_actions(source)
        else:
            active = source.animation_data.action if source.animation_data else None
            actions = [active] if active is not None else []
        if not actions:
            self.report({"ERROR"}, f"'{source.name}' has no HY-Motion Action to retarget. Generate a motion first.")
            return {"CANCELLED"}
        options = {
            "in_place": settings.in_place,
            "feet_cleanup": settings.feet_cleanup,
            "root_motion": settings.root_motion,
            "root_bone": settings.root_bone or None,
            "keys": settings.keys,
        }
        made = []
        try:
            if not settings.bone_map:
                store_mapping(settings, target_rig.detect_mapping(target))
            mapping = mapping_from_settings(settings)
            for action in actions:
                made.append(retarget.retarget_action(source, target, action, mapping, **options))
                if settings.scope == "ALL" and made[-1] not in takes.takes_of(target):  # takes stay alternatives
                    bake.push_to_nla(target, made[-1], mode="SEQUENCE")
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if len(made) == 1:
            self.report({"INFO"}, f"Retargeted '{actions[0].name}' onto '{target.name}' as '{made[0].name}'.")
        else:
            self.report({"INFO"}, f"Retargeted {len(made)} Actions onto '{target.name}' as NLA strips.")
        residual = retarget.residual_summary(made[0])
        if residual:
            self.report(
                {"WARNING"},
                f"Feet cleanup turned these bones away from the source to plant the feet: {residual} (per bone in "
                "the Action's 'hymotion_residual_degrees'). Turn Clean Up Feet off to keep every bone on the source.",
            )
        return {"FINISHED"}


class HYMOTION_MT_bone_map_presets(bpy.types.Menu):
    """Saved bone mapping presets; pick one to load it into the list"""

    bl_idname = "HYMOTION_MT_bone_map_presets"
    bl_label = "Mapping Presets"

    def draw(self, context):
        layout = self.layout
        names = preset_names()
        if not names:
            layout.label(text="No presets saved yet", icon="INFO")
        for name in names:
            layout.operator(HYMOTION_OT_load_bone_map_preset.bl_idname, text=name).name = name


# --- panel ----------------------------------------------------------------------------------------------------------


class HYMOTION_PT_retarget(bpy.types.Panel):
    bl_label = "Retarget & Export"
    bl_idname = "HYMOTION_PT_retarget"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HY-Motion"
    bl_parent_id = "HYMOTION_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return hasattr(context.scene, "hymotion_retarget")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = _settings(context)
        column = layout.column(align=True)
        column.prop(settings, "source_armature")
        source = settings.source_armature
        if source is not None and not rig.is_hymotion_armature(source):
            draw_wrapped(column, "Not a HY-Motion SMPL-X armature", icon="ERROR")
        column.prop(settings, "target_armature")
        target = settings.target_armature
        if target is not None and target.type != "ARMATURE":
            draw_wrapped(column, "Not an armature", icon="ERROR")
        elif target is not None and target_rig.is_rigify_metarig(target):
            draw_wrapped(column, f"A Rigify metarig moves nothing. {target_rig.metarig_hint(target)}", icon="ERROR")

        row = layout.row(align=True)
        row.operator(HYMOTION_OT_detect_bone_mapping.bl_idname, icon="VIEWZOOM")
        row.menu(HYMOTION_MT_bone_map_presets.bl_idname, text="", icon="PRESET")
        row.operator(HYMOTION_OT_save_bone_map_preset.bl_idname, text="", icon="ADD")

        if settings.bone_map:
            unmapped = sum(1 for item in settings.bone_map if not item.bone)
            label = f"{len(settings.bone_map) - unmapped} of {len(settings.bone_map)} joints mapped"
            if settings.convention:
                label += f" ({settings.convention})"
            draw_wrapped(layout, label, icon="ERROR" if unmapped else "CHECKMARK")
        layout.template_list(
            HYMOTION_UL_bone_map.bl_idname, "", settings, "bone_map", settings, "bone_map_index", rows=6
        )
        if not settings.bone_map:
            draw_wrapped(layout, "Pick the Target Rig, then press Detect Mapping to fill this list.", icon="INFO")

        column = layout.column()
        column.prop(settings, "root_motion")
        if settings.root_motion == "ROOT_BONE" and target is not None and target.type == "ARMATURE":
            column.prop_search(settings, "root_bone", settings.target_armature.data, "bones")
        column.prop(settings, "in_place")
        column.prop(settings, "feet_cleanup")
        column.prop(settings, "keys")
        column.prop(settings, "scope")
        layout.operator(HYMOTION_OT_retarget_action.bl_idname, icon="ARMATURE_DATA")

        box = layout.box()
        draw_wrapped(box, "Export", icon="EXPORT", boxes=1)
        column = box.column()
        column.prop(settings, "export_rig")
        column.prop(settings, "export_format")
        if settings.export_format == "FBX":
            column.prop(settings, "export_target")
        flags = box.column()
        flags.use_property_split = False  # checkboxes with their whole label, as Blender's exporters draw them
        flags.prop(settings, "export_all_actions")
        flags.prop(settings, "export_one_file_per_action")
        box.operator(export_operator.HYMOTION_OT_export_animation.bl_idname, icon="EXPORT")


classes: tuple[type, ...] = (
    HYMOTION_PG_bone_map_item,
    HYMOTION_PG_retarget,
    HYMOTION_UL_bone_map,
    HYMOTION_OT_detect_bone_mapping,
    HYMOTION_OT_save_bone_map_preset,
    HYMOTION_OT_load_bone_map_preset,
    HYMOTION_OT_retarget_action,
    export_operator.HYMOTION_OT_export_animation,
    HYMOTION_MT_bone_map_presets,
    HYMOTION_PT_retarget,
)
