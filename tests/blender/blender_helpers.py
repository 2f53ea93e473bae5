"""Helpers shared by the Blender tests (a module of its own, so no test imports a conftest by name)."""

from __future__ import annotations

import gc

import bpy
import numpy as np


def new_empty_file() -> None:
    """Start from an empty factory file.

    Blender 4.2/4.3 as a module crash when Python objects that wrap the old file's data (Rigify leaves cycles of them)
    are garbage-collected after the file is replaced, and when resetting the preferences disables the glTF add-on;
    so collect before replacing the file, and keep the enabled add-ons there."""
    gc.collect()
    if bpy.app.version < (4, 4):
        bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def evaluated_heads(armature: bpy.types.Object, bone_names, frame: int) -> np.ndarray:
    """World positions of the named bones' heads at `frame`, from the evaluated depsgraph."""
    bpy.context.scene.frame_set(frame)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = armature.evaluated_get(depsgraph)
    world = evaluated.matrix_world
    return np.array([tuple(world @ evaluated.pose.bones[name].head) for name in bone_names])


def action_fcurves(action: bpy.types.Action):
    """The Action's F-curves, wherever this Blender keeps them (Action or slot channelbag)."""
    if "layers" in action.bl_rna.properties:
        return [fcurve for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for fcurve in bag.fcurves]
    return list(action.fcurves)
