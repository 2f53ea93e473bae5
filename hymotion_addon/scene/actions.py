"""The one way to reach an Action's F-curves, on every Blender the extension supports: 4.2 and 4.3 keep them on the
Action itself; 4.4 and later on a slot's channelbag inside a layer's keyframe strip (slotted Actions, the only kind in
5.0). Baking, retargeting, sequencing, export and sparse keys all go through here."""

from __future__ import annotations

import bpy


def uses_slotted_actions() -> bool:
    """Whether this Blender keeps F-curves in slots/layers/channelbags (4.4+) rather than on the Action (4.2/4.3)."""
    properties = bpy.types.Action.bl_rna.properties
    return "slots" in properties and "layers" in properties and "action_slot" in bpy.types.AnimData.bl_rna.properties


def fcurve_factory(action: bpy.types.Action, armature: bpy.types.Object):
    """A function (data_path, index, group) -> new F-curve for this Blender's Action layout, and the slot if any."""
    if not uses_slotted_actions():
        return (lambda path, index, group: action.fcurves.new(path, index=index, action_group=group)), None
    slot = action.slots.new(id_type="OBJECT", name=armature.name)
    layer = action.layers.new("Layer")
    strip = layer.strips.new(type="KEYFRAME")
    channelbag = strip.channelbag(slot, ensure=True)
    fcurves = channelbag.fcurves
    if "group_name" in fcurves.bl_rna.functions["new"].parameters:
        return (lambda path, index, group: fcurves.new(path, index=index, group_name=group)), slot
    groups: dict[str, bpy.types.ActionGroup] = {}

    def new_grouped_fcurve(path: str, index: int, group: str) -> bpy.types.FCurve:
        fcurve = fcurves.new(path, index=index)
        if group not in groups:
            groups[group] = channelbag.groups.new(group)
        fcurve.group = groups[group]
        return fcurve

    return new_grouped_fcurve, slot


def slot_for(action: bpy.types.Action, armature: bpy.types.Object):
    """The Action's slot for an object: the one named after the armature, else the first object slot."""
    object_slots = [slot for slot in action.slots if slot.target_id_type == "OBJECT"]
    for slot in object_slots:
        if slot.name_display == armature.name:
            return slot
    return object_slots[0] if object_slots else action.slots[0]


def action_fcurves(action: bpy.types.Action, armature: bpy.types.Object | None = None) -> list[bpy.types.FCurve]:
    """The Action's F-curves: on 4.4+ those of ``armature``'s slot when the armature plays this Action, else every
    channelbag's; before 4.4 the Action's own list."""
    if not uses_slotted_actions():
        return list(action.fcurves)
    slot = None
    if armature is not None and armature.animation_data and armature.animation_data.action == action:
        slot = armature.animation_data.action_slot
    curves = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                if slot is None or bag.slot == slot:
                    curves.extend(bag.fcurves)
    return curves


def fcurve_bone(fcurve: bpy.types.FCurve) -> str | None:
    """The pose bone an F-curve animates, None for other channels."""
    path = fcurve.data_path
    return path[len('pose.bones["'):path.index('"]')] if path.startswith('pose.bones["') else None
