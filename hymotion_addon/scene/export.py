"""Export animation through Blender's own exporters (FBX, glTF/GLB, BVH), no FBX SDK anywhere.

Works for the SMPL-X armature and for any rig a clip was retargeted onto. One file per Action, or all the chosen
Actions in one file (FBX and glTF: one take/animation per Action, named after it; BVH holds a single motion per
file). Blender's FBX importer starts takes one frame late unless its Animation Offset is set to 0. Every export
leaves the scene as it found it: active Action and slot, NLA mute states, frame range, selection, active object
and its mode (an export from Pose Mode returns to Pose Mode). A file that cannot be written is a clear report.

Defaults per target application (written down in docs/retarget-export.md):

* UNITY: FBX, "FBX All" scaling and the axis conversion baked into the data (Apply Transform), so the rig comes in at
  scale 1 with no -90 degree X rotation; no leaf bones; deform bones only.
* UNREAL: FBX, the metre -> centimetre factor kept in the file's unit scale ("FBX Units Scale"), no leaf bones (they
  become real bones in Unreal), deform bones only.
* MAYA: FBX, Maya's Y-up, centimetres by the file's unit scale, leaf bones kept so joints keep their lengths.
* GENERIC: FBX with Blender's defaults, less leaf bones.
Every FBX target bakes a key on every frame with no curve simplification, so what plays in Blender plays the same.
glTF/GLB: Y-up, sampled on every frame, no key reduction. BVH: native rotation orders, scale 1.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import addon_utils
import bpy

from hymotion.shared.errors import bad_request

from .actions import action_fcurves, slot_for, uses_slotted_actions

FORMATS = ("FBX", "GLB", "GLTF", "BVH")
TARGETS = ("UNITY", "UNREAL", "MAYA", "GENERIC")
EXTENSIONS = {"FBX": ".fbx", "GLB": ".glb", "GLTF": ".gltf", "BVH": ".bvh"}
_EXPORTER_ADDONS = {"FBX": "io_scene_fbx", "GLB": "io_scene_gltf2", "GLTF": "io_scene_gltf2", "BVH": "io_anim_bvh"}

_FBX_COMMON = {
    "use_selection": True,
    "object_types": {"ARMATURE", "MESH"},
    "bake_anim": True,
    "bake_anim_use_all_bones": True,
    "bake_anim_force_startend_keying": True,
    "bake_anim_step": 1.0,
    "bake_anim_simplify_factor": 0.0,
    "mesh_smooth_type": "FACE",
    "primary_bone_axis": "Y",
    "secondary_bone_axis": "X",
    "axis_forward": "-Z",
    "axis_up": "Y",
    "global_scale": 1.0,
}
FBX_TARGET_SETTINGS: dict[str, dict] = {
    "UNITY": {
        "apply_scale_options": "FBX_SCALE_ALL",
        "bake_space_transform": True,
        "add_leaf_bones": False,
        "use_armature_deform_only": True,
    },
    "UNREAL": {
        "apply_scale_options": "FBX_SCALE_UNITS",
        "add_leaf_bones": False,
        "use_armature_deform_only": True,
    },
    "MAYA": {
        "apply_scale_options": "FBX_SCALE_NONE",
        "add_leaf_bones": True,
        "use_armature_deform_only": False,
    },
    "GENERIC": {
        "apply_scale_options": "FBX_SCALE_NONE",
        "add_leaf_bones": False,
        "use_armature_deform_only": False,
    },
}
GLTF_SETTINGS = {
    "use_selection": True,
    "export_yup": True,
    "export_animations": True,
    "export_force_sampling": True,
    "export_frame_step": 1,
    "export_frame_range": False,
    "export_optimize_animation_size": False,
    "export_anim_single_armature": True,
    "export_anim_slide_to_zero": False,
    "export_def_bones": False,
    "export_skins": True,
    "export_reset_pose_bones": True,
}
BVH_SETTINGS = {"global_scale": 1.0, "rotate_mode": "NATIVE", "root_transform_only": False}


def ensure_exporter(file_format: str) -> None:
    """Enable Blender's bundled exporter add-on for the format if it is off (they ship with Blender)."""
    module = _EXPORTER_ADDONS[file_format]
    loaded_default, loaded_state = addon_utils.check(module)
    if not loaded_state:
        if addon_utils.enable(module, default_set=True) is None:
            raise bad_request(
                f"Blender's {file_format} exporter ({module}) could not be enabled.",
                "Enable it in Edit > Preferences > Add-ons, then export again.",
            )


def rig_actions(armature: bpy.types.Object) -> list[bpy.types.Action]:
    """Every Action in the file whose channels all resolve on this armature (as the FBX exporter decides)."""
    actions = []
    for action in bpy.data.actions:
        fcurves = action_fcurves(action)
        if not fcurves:
            continue
        try:
            for fcurve in fcurves:
                armature.path_resolve(fcurve.data_path)
        except ValueError:
            continue
        actions.append(action)
    return actions




def export_animation(
    armature: bpy.types.Object,
    filepath: str | Path,
    *,
    file_format: str = "FBX",
    target: str = "GENERIC",
    actions: list[bpy.types.Action] | None = None,
    one_file_per_action: bool = False,
    include_meshes: bool = True,
    scene: bpy.types.Scene | None = None,
) -> list[Path]:
    """Export `armature` (with its child meshes unless told otherwise) and its animation; return the files written.

    `actions` defaults to the armature's active Action, else every Action on its NLA tracks. With
    `one_file_per_action` each Action goes to "<stem>_<action><ext>" next to `filepath`; otherwise all of them go to
    `filepath` (FBX and glTF keep one take/animation per Action, named after it). `target` picks the FBX defaults
    (UNITY, UNREAL, MAYA, GENERIC) and is ignored by glTF and BVH.
    """
    if file_format not in FORMATS:
        raise bad_request(f"Unknown export format {file_format!r}.", f"Use one of {', '.join(FORMATS)}.")
    if target not in TARGETS:
        raise bad_request(f"Unknown export target {target!r}.", f"Use one of {', '.join(TARGETS)}.")
    if armature is None or getattr(armature, "type", None) != "ARMATURE":
        raise bad_request(
            f"'{getattr(armature, 'name', armature)}' is not an armature.", "Pick the rig whose animation to export."
        )
    scene = scene if scene is not None else bpy.context.scene
    if armature.name not in bpy.context.view_layer.objects:
        raise bad_request(
            f"Armature '{armature.name}' is not in the active view layer, so it cannot be exported.",
            "Link it to the current scene (and enable its collection), then export again.",
        )
    actions = list(actions) if actions is not None else _default_actions(armature)
    if not actions:
        raise bad_request(
            f"'{armature.name}' has no animation to export.",
            "Generate or retarget a motion onto it first (or pick Actions to export).",
        )
    path = Path(bpy.path.abspath(str(filepath)))
    if path.suffix.lower() != EXTENSIONS[file_format]:
        path = path.with_suffix(EXTENSIONS[file_format])
    if file_format == "BVH" and len(actions) > 1 and not one_file_per_action:
        raise bad_request(
            f"BVH holds one motion per file, and {len(actions)} Actions were chosen.",
            "Export one file per Action, or choose FBX or glTF to keep them in one file.",
        )
    if not path.parent.is_dir():
        raise bad_request(f"The folder {path.parent} does not exist.", "Pick an existing folder to export into.")
    if not os.access(path.parent, os.W_OK):
        raise _unwritable(path, "the folder is read-only")
    ensure_exporter(file_format)

    groups = [[action] for action in actions] if one_file_per_action else [actions]
    written = []
    with _preserved_state(armature, scene):
        _select_for_export(armature, include_meshes)
        for group in groups:
            target_path = _per_action_path(path, group[0]) if one_file_per_action and len(actions) > 1 else path
            if file_format == "BVH":
                _export_bvh(armature, group[0], scene, target_path)
            else:
                _export_takes(armature, group, file_format, target, target_path)
            written.append(target_path)
    return written


def _default_actions(armature: bpy.types.Object) -> list[bpy.types.Action]:
    anim_data = armature.animation_data
    if anim_data is None:
        return []
    if anim_data.action is not None:
        return [anim_data.action]
    found = []
    for track in anim_data.nla_tracks:
        for strip in track.strips:
            if strip.action is not None and strip.action not in found:
                found.append(strip.action)
    return found


def _per_action_path(path: Path, action: bpy.types.Action) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", action.name).strip("_") or "action"
    return path.with_name(f"{path.stem}_{safe}{path.suffix}")


def _assign(armature: bpy.types.Object, action: bpy.types.Action) -> None:
    anim_data = armature.animation_data or armature.animation_data_create()
    anim_data.action = action
    if uses_slotted_actions() and len(action.slots):
        anim_data.action_slot = slot_for(action, armature)


def _export_bvh(armature: bpy.types.Object, action: bpy.types.Action, scene: bpy.types.Scene, path: Path) -> None:
    """BVH writes the active Action's evaluated pose over the given frames."""
    _assign(armature, action)
    start, end = (int(round(value)) for value in action.frame_range)
    scene.frame_start, scene.frame_end = start, end
    _call(bpy.ops.export_anim.bvh, filepath=str(path), frame_start=start, frame_end=end, **BVH_SETTINGS)


def _export_takes(
    armature: bpy.types.Object, actions: list[bpy.types.Action], file_format: str, target: str, path: Path
) -> None:
    """FBX/glTF: each Action on a temporary NLA track of its own (the rig's tracks muted), exported as one take
    (FBX AnimStack, glTF animation) per track, named after the Action and covering its frame range."""
    anim_data = armature.animation_data or armature.animation_data_create()
    anim_data.action = None
    for track in anim_data.nla_tracks:
        track.mute = True
    for action in actions:
        track = anim_data.nla_tracks.new()
        track.name = action.name
        strip = track.strips.new(action.name, int(round(action.frame_range[0])), action)
        if uses_slotted_actions() and "action_slot" in strip.bl_rna.properties and len(action.slots):
            strip.action_slot = slot_for(action, armature)
    if file_format == "FBX":
        _call(bpy.ops.export_scene.fbx, filepath=str(path), bake_anim_use_nla_strips=True,
              bake_anim_use_all_actions=False, **_FBX_COMMON, **FBX_TARGET_SETTINGS[target])
    else:
        _call(bpy.ops.export_scene.gltf, filepath=str(path), export_animation_mode="NLA_TRACKS",
              export_format="GLB" if file_format == "GLB" else "GLTF_SEPARATE", **GLTF_SETTINGS)


def _call(operator, **settings) -> None:
    """Run an exporter with the settings this Blender's version of it knows, and fail with its own message.

    An exporter that cannot write its file (read-only folder, full disk, a folder of that name) raises its OSError
    inside the operator, which Blender hands on as a RuntimeError carrying the traceback: turned into a report."""
    known = {prop.identifier for prop in operator.get_rna_type().properties}
    try:
        result = operator(**{key: value for key, value in settings.items() if key in known})
    except (OSError, RuntimeError) as error:
        raise _unwritable(Path(settings["filepath"]), _last_line(str(error))) from None
    if "FINISHED" not in result:
        raise bad_request(
            f"Blender's exporter ({operator.idname_py()}) did not finish.", "See Blender's Info log for its reason."
        )


def _unwritable(path: Path, reason: str):
    return bad_request(
        f"Could not write {path}: {reason}.",
        "Pick a folder you can write to (and a file name that is not a folder), with free disk space, then export "
        "again.",
    )


def _last_line(text: str) -> str:
    """The error itself from an operator's message, without the traceback lines before it."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("Error: ") if lines else "the exporter failed"


def _select_for_export(armature: bpy.types.Object, include_meshes: bool) -> None:
    view_layer = bpy.context.view_layer
    if bpy.context.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for obj in view_layer.objects:
        obj.select_set(False)
    armature.select_set(True)
    view_layer.objects.active = armature
    if include_meshes:
        for child in armature.children_recursive:
            if child.type == "MESH" and child.name in view_layer.objects:
                child.select_set(True)


@contextlib.contextmanager
def _preserved_state(armature: bpy.types.Object, scene: bpy.types.Scene):
    """Put back everything an export touches: frame range and frame, selection, active object, the rig's Action,
    slot and NLA tracks."""
    view_layer = bpy.context.view_layer
    selection = [obj for obj in view_layer.objects if obj.select_get()]
    active = view_layer.objects.active
    mode = active.mode if active is not None else "OBJECT"
    frame_range = (scene.frame_start, scene.frame_end, scene.frame_current)
    anim_data = armature.animation_data
    action = anim_data.action if anim_data else None
    slot = anim_data.action_slot if anim_data and "action_slot" in anim_data.bl_rna.properties else None
    track_mutes = [track.mute for track in anim_data.nla_tracks] if anim_data else []
    try:
        yield
    finally:
        anim_data = armature.animation_data
        if anim_data is not None:
            while len(anim_data.nla_tracks) > len(track_mutes):
                anim_data.nla_tracks.remove(anim_data.nla_tracks[len(anim_data.nla_tracks) - 1])
            for track, mute in zip(anim_data.nla_tracks, track_mutes):
                track.mute = mute
            anim_data.action = action
            if action is not None and slot is not None:
                anim_data.action_slot = slot
        scene.frame_start, scene.frame_end = frame_range[:2]
        scene.frame_set(frame_range[2])
        for obj in view_layer.objects:
            obj.select_set(obj in selection)
        view_layer.objects.active = active
        if active is not None and active.mode != mode:
            bpy.ops.object.mode_set(mode=mode)  # back to Pose (or Edit) Mode where the export started
