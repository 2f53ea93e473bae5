"""Takes: several results of one prompt on ONE rig, to choose from (issue 29).

A take is an Action listed in its rig's ``Object.hymotion_takes`` (a PropertyGroup that :mod:`..ui.takes_ui`
registers: ``items`` in the order they were made, each with its Action and take number, ``index`` the row picked in
the panel, ``before`` the Action the rig played before its first take, ``solo`` whether the shown take plays alone
while comparing). The rig is the one place that says what its takes are: an Action deleted from the file simply drops
out of the list, and a take is never "of" two rigs unless the rig object itself was duplicated.

The take the rig shows is its active Action, so everything that works on "the rig's Action" (retargeting, export,
sparse keys, the Action editor) works on the shown take. Accept makes one take the rig's Action for good and removes
the others (or keeps them with a fake user); Reject removes one. Compare puts a copy of the rig beside it for every
other take (sharing the rig's armature and meshes), so the takes play side by side; Solo hides the copies again.

What made a take is kept on its Action (``hymotion_take_recipe``: guidance, steps, smoothing, in place, frame rate
mode, and for a retargeted take the SMPL-X rig, mapping and options), so Generate More can make more of the same.
"""

from __future__ import annotations

import json

import bpy
from mathutils import Vector

from hymotion.shared.errors import bad_request

from .actions import slot_for, uses_slotted_actions

TAKES_PROPERTY = "hymotion_takes"
RECIPE_PROPERTY = "hymotion_take_recipe"
COMPARE_PROPERTY = "hymotion_compare_of"  # on a comparison copy: the rig it stands beside
COMPARE_TAKE_PROPERTY = "hymotion_compare_take"  # on a comparison copy: the take it plays
COMPARE_COLLECTION = "HY-Motion Compare"
COMPARE_SPACING = 1.25  # copies stand this many rig widths apart, so arms swung out do not overlap the neighbour
MIN_COMPARE_WIDTH = 0.5  # metres: a rig narrower than this (one bone, a T-pose folded in) still gets room


# --- reading a rig's takes ------------------------------------------------------------------------------------------


def _holder(rig: bpy.types.Object):
    holder = getattr(rig, TAKES_PROPERTY, None)
    if holder is None:
        raise bad_request(
            f"'{getattr(rig, 'name', rig)}' cannot hold takes: it is not an object, or the HY-Motion add-on is not "
            "enabled.", "Enable HY-Motion and pass an armature object."
        )
    return holder


def takes_of(rig: bpy.types.Object | None) -> list[bpy.types.Action]:
    """The rig's takes in the order they were made (an Action deleted from the file is left out); none where the
    takes property is not registered (the retarget UI or the scene modules used without the whole add-on)."""
    holder = getattr(rig, TAKES_PROPERTY, None) if rig is not None and rig.type == "ARMATURE" else None
    return [item.action for item in holder.items if item.action is not None] if holder is not None else []


def has_takes(rig: bpy.types.Object | None) -> bool:
    return bool(takes_of(rig))


def take_number(rig: bpy.types.Object, action: bpy.types.Action) -> int:
    """The take's number on its rig (1 for the first one made), 0 when it is not one of the rig's takes."""
    return next((item.number for item in _holder(rig).items if item.action == action), 0)


def owners(action: bpy.types.Action) -> list[bpy.types.Object]:
    """The rigs that list ``action`` as a take (comparison copies are not rigs of their own)."""
    return [obj for obj in bpy.data.objects if obj.type == "ARMATURE" and COMPARE_PROPERTY not in obj
            and action in takes_of(obj)]


def owner_of(action: bpy.types.Action, rig: bpy.types.Object | None = None) -> bpy.types.Object:
    """The rig ``action`` is a take of (``rig`` when given, checked); a clear error when it is none's or another's."""
    if not isinstance(action, bpy.types.Action):
        raise bad_request(f"{action!r} is not an Action.", "Pass one of the rig's takes (api.takes_of lists them).")
    found = owners(action)
    if rig is not None:
        if rig in found:
            return rig
        if found:
            raise bad_request(f"'{action.name}' is a take of '{found[0].name}', not of '{rig.name}'.",
                              f"Pass armature=bpy.data.objects['{found[0].name}'], or pick one of '{rig.name}''s "
                              "takes.")
    if not found:
        raise bad_request(
            f"'{action.name}' is not a take of any rig, so there is nothing to accept or reject.",
            "Takes are made by Generate with several seeds (api.generate(..., takes=True)); an Action that is "
            "already the rig's own needs neither.",
        )
    if len(found) > 1:
        raise bad_request(f"'{action.name}' is a take of several rigs ({', '.join(obj.name for obj in found)}).",
                          "Say which: pass armature=... (a duplicated rig keeps its original's takes).")
    return found[0]


def rig_of(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The rig whose takes concern ``obj``: the rig a comparison copy stands beside, else ``obj`` itself."""
    if obj is None:
        return None
    rig = obj.get(COMPARE_PROPERTY)
    return rig if isinstance(rig, bpy.types.Object) else obj


def source_of(rig: bpy.types.Object, action: bpy.types.Action) -> bpy.types.Object | None:
    """The SMPL-X rig a retargeted take came from (None for a take generated on this rig)."""
    return next((item.source for item in _holder(rig).items if item.action == action), None)


def shown_take(rig: bpy.types.Object | None) -> bpy.types.Action | None:
    """The take the rig plays now (its active Action), None when it plays none of its takes."""
    action = _active_action(rig) if rig is not None else None
    return action if action is not None and action in takes_of(rig) else None


def recipe(action: bpy.types.Action) -> dict:
    """What made the take (see the module's docstring); {} for an Action without one."""
    text = action.get(RECIPE_PROPERTY, "")
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def take_label(rig: bpy.types.Object, action: bpy.types.Action) -> str:
    """'Take 2 · seed 1', for the list and reports."""
    seed = action.get("hymotion_seed")
    return f"Take {take_number(rig, action)}" + (f" · seed {seed}" if seed is not None else "")


# --- making takes ---------------------------------------------------------------------------------------------------


def add_take(rig: bpy.types.Object, action: bpy.types.Action, *, previous: bpy.types.Action | None = None,
             made_with: dict | None = None, source: bpy.types.Object | None = None) -> int:
    """List ``action`` as the rig's newest take and return its number. ``previous``: the Action the rig played
    before this one was baked (kept as the one to go back to when every take is rejected, if this is the first take).
    ``made_with`` goes into the take's recipe; ``source`` is the SMPL-X rig a retargeted take came from."""
    holder = _holder(rig)
    existing = takes_of(rig)
    if action in existing:
        return take_number(rig, action)
    if not existing:
        holder.items.clear()  # rows whose Action was deleted
        holder.before = previous if previous is not None and previous != action else None
        holder.solo = False
    item = holder.items.add()
    item.action = action
    item.number = max((entry.number for entry in holder.items), default=0) + 1
    if made_with is not None:
        action[RECIPE_PROPERTY] = json.dumps(made_with, sort_keys=True)
    action.use_fake_user = True  # a take is never lost on save, whichever one the rig shows
    if source is not None:
        item.source = source
    holder.index = len(holder.items) - 1
    return item.number


def carry_over(source_rig: bpy.types.Object, source_action: bpy.types.Action, target_rig: bpy.types.Object,
               new_action: bpy.types.Action, previous: bpy.types.Action | None, retarget: dict) -> bool:
    """After a retarget: when ``source_action`` is a take of ``source_rig``, ``new_action`` becomes a take of the
    target rig, its recipe the source's plus how it was retargeted (``retarget``: mapping and options). True if so."""
    if source_rig is None or source_action not in takes_of(source_rig):
        return False
    made_with = dict(recipe(source_action), retarget=retarget)
    add_take(target_rig, new_action, previous=previous, made_with=made_with, source=source_rig)
    return True


# --- showing, playing, solo -----------------------------------------------------------------------------------------


def _active_action(obj: bpy.types.Object) -> bpy.types.Action | None:
    return obj.animation_data.action if obj.animation_data is not None else None


def _assign(obj: bpy.types.Object, action: bpy.types.Action | None) -> None:
    anim_data = obj.animation_data or obj.animation_data_create()
    anim_data.action = action
    if action is not None and uses_slotted_actions() and len(action.slots):
        anim_data.action_slot = slot_for(action, obj)


def show(rig: bpy.types.Object, action: bpy.types.Action) -> None:
    """Make the take the rig's active Action (the comparison, if any, follows)."""
    owner_of(action, rig)
    _assign(rig, action)
    holder = _holder(rig)
    holder.index = next(number for number, item in enumerate(holder.items) if item.action == action)
    if comparison(rig):
        if len(takes_of(rig)) > 1:
            compare(rig)
        else:
            end_compare(rig)


def play_range(action: bpy.types.Action) -> tuple[int, int]:
    start, end = action.frame_range
    return int(round(start)), int(round(end))


def play(rig: bpy.types.Object, action: bpy.types.Action, scene: bpy.types.Scene) -> tuple[int, int]:
    """Show the take and put the scene at its first frame; returns its frame range (the operator starts playback).
    The scene's frame range is not changed."""
    show(rig, action)
    start, end = play_range(action)
    scene.frame_set(start)
    return start, end


def set_solo(rig: bpy.types.Object, action: bpy.types.Action, solo: bool) -> None:
    """Solo: the take plays alone on the rig (shown, the comparison copies hidden); off, the copies come back."""
    holder = _holder(rig)
    show(rig, action)
    holder.solo = solo
    for copy in _compare_objects(rig):
        copy.hide_set(solo)


def is_solo(rig: bpy.types.Object, action: bpy.types.Action) -> bool:
    return bool(_holder(rig).solo) and shown_take(rig) == action


# --- comparing side by side -----------------------------------------------------------------------------------------


def comparison(rig: bpy.types.Object) -> list[bpy.types.Object]:
    """The copies standing beside the rig, one per take it does not show (their meshes are their children)."""
    return [obj for obj in _compare_objects(rig) if obj.type == "ARMATURE"]


def _compare_objects(rig: bpy.types.Object) -> list[bpy.types.Object]:
    return [obj for obj in bpy.data.objects if obj.get(COMPARE_PROPERTY) == rig]


def _compare_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    collection = bpy.data.collections.get(COMPARE_COLLECTION)
    if collection is None:
        collection = bpy.data.collections.new(COMPARE_COLLECTION)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection


def _copy_of(rig: bpy.types.Object, action: bpy.types.Action, collection: bpy.types.Collection,
             offset: Vector) -> bpy.types.Object:
    """A copy of the rig (its own pose and constraints, sharing the armature) playing ``action``, moved by
    ``offset``, with copies of the meshes the rig deforms (sharing their mesh data)."""
    copy = rig.copy()
    copy.name = f"{rig.name} {take_label(rig, action)}"
    copy[COMPARE_PROPERTY] = rig
    copy[COMPARE_TAKE_PROPERTY] = action
    _holder(copy).items.clear()  # a copy is not a rig with takes of its own
    _holder(copy).before = None
    if copy.animation_data is not None:
        for track in list(copy.animation_data.nla_tracks):
            copy.animation_data.nla_tracks.remove(track)
    collection.objects.link(copy)
    copy.matrix_world = rig.matrix_world.copy()
    copy.matrix_world.translation = rig.matrix_world.translation + offset
    _assign(copy, action)
    for child in rig.children:
        if child.type != "MESH":
            continue
        mesh = child.copy()
        mesh[COMPARE_PROPERTY] = rig
        collection.objects.link(mesh)
        mesh.parent = copy
        mesh.matrix_parent_inverse = child.matrix_parent_inverse.copy()
        for modifier in mesh.modifiers:
            if modifier.type == "ARMATURE" and modifier.object == rig:
                modifier.object = copy
    return copy


def compare(rig: bpy.types.Object, scene: bpy.types.Scene | None = None) -> list[bpy.types.Object]:
    """Put a copy of the rig beside it for every take it does not show, in take order along the rig's X axis
    (made again from scratch when a comparison stands already). Returns the copies."""
    takes = takes_of(rig)
    if len(takes) < 2:
        raise bad_request(f"'{rig.name}' has {len(takes)} take{'s' if len(takes) != 1 else ''}: nothing to compare.",
                          "Generate with several seeds (e.g. Seeds 0-3), or Generate More.")
    end_compare(rig)
    scene = scene if scene is not None else bpy.context.scene
    shown = shown_take(rig)
    if shown is None:
        _assign(rig, takes[-1])
        shown = takes[-1]
    collection = _compare_collection(scene)
    width = max(float(rig.dimensions.x), MIN_COMPARE_WIDTH) * COMPARE_SPACING
    axis = rig.matrix_world.to_3x3().col[0].normalized()
    copies = [_copy_of(rig, action, collection, axis * width * (place + 1))
              for place, action in enumerate(action for action in takes if action != shown)]
    _holder(rig).solo = False
    return copies


def end_compare(rig: bpy.types.Object) -> None:
    """Remove the comparison copies (and the collection when it is left empty); a copy that was the active object
    hands that over to the rig."""
    view_layer = bpy.context.view_layer
    copies = _compare_objects(rig)
    if view_layer is not None and view_layer.objects.active in copies and rig.name in view_layer.objects:
        view_layer.objects.active = rig
    for obj in copies:
        bpy.data.objects.remove(obj)
    collection = bpy.data.collections.get(COMPARE_COLLECTION)
    if collection is not None and not collection.all_objects:
        bpy.data.collections.remove(collection)
    if getattr(rig, TAKES_PROPERTY, None) is not None:
        _holder(rig).solo = False


# --- accept and reject ----------------------------------------------------------------------------------------------


def _drop(action: bpy.types.Action, rig: bpy.types.Object, keep: bool) -> str:
    """Take the Action off the rig's list; remove it from the file unless ``keep`` or something else still uses it
    once the rig lets go (another object plays it, an NLA strip holds it): removing it would break that. Returns
    'kept' or 'removed'."""
    holder = _holder(rig)
    for number in reversed(range(len(holder.items))):
        if holder.items[number].action == action:
            holder.items.remove(number)
    if _active_action(rig) == action:
        _assign(rig, None)
    if keep or action.users > int(action.use_fake_user):
        action.use_fake_user = True
        return "kept"
    bpy.data.actions.remove(action)
    return "removed"


def accept(action: bpy.types.Action, rig: bpy.types.Object | None = None, keep_others: bool = False
           ) -> dict[str, list[str]]:
    """Make the take its rig's Action for good: the other takes are removed from the file, or kept with a fake user
    (``keep_others``, and always for one that something else uses); the comparison ends and the list empties.
    Returns the names of the takes {'kept': [...], 'removed': [...]}. Nothing changes on a bad call."""
    rig = owner_of(action, rig)
    others = [take for take in takes_of(rig) if take != action]
    end_compare(rig)
    _assign(rig, action)
    outcome: dict[str, list[str]] = {"kept": [], "removed": []}
    for other in others:
        name = other.name
        outcome[_drop(other, rig, keep_others)].append(name)
    holder = _holder(rig)
    holder.items.clear()
    holder.before = None
    holder.index = 0
    action.use_fake_user = True
    action["hymotion_accepted"] = True
    action.pop(RECIPE_PROPERTY, None)
    return outcome


def reject(action: bpy.types.Action, rig: bpy.types.Object | None = None, keep: bool = False) -> str:
    """Take one take off the rig's list, removing it from the file (``keep``: with a fake user instead). If the rig
    showed it, it shows the next take (or the one before); after the last take, the Action it played before its
    takes. Returns 'removed', or 'kept' (asked for, or something else uses the Action)."""
    rig = owner_of(action, rig)
    takes = takes_of(rig)
    was_shown = shown_take(rig) == action
    place = takes.index(action)
    had_comparison = bool(comparison(rig))
    end_compare(rig)
    holder = _holder(rig)
    before = holder.before
    outcome = _drop(action, rig, keep)
    remaining = takes_of(rig)
    if was_shown:
        _assign(rig, remaining[min(place, len(remaining) - 1)] if remaining else before)
    if not remaining:
        holder.items.clear()
        holder.before = None
    else:
        shown = shown_take(rig)
        holder.index = remaining.index(shown) if shown is not None else min(place, len(remaining) - 1)
        if had_comparison and len(remaining) > 1:
            compare(rig)
    return outcome


def next_seeds(rigs: list[bpy.types.Object], prompt: str, count: int) -> list[int]:
    """``count`` seeds not used yet by the rigs' takes of ``prompt``: the ones after the highest used."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise bad_request(f"Cannot make {count!r} more takes.", "Ask for 1 or more.")
    used = [int(action.get("hymotion_seed", 0)) for rig in rigs for action in takes_of(rig)
            if action.get("hymotion_prompt") == prompt]
    first = max(used) + 1 if used else 0
    return list(range(first, first + count))


RETARGET_OPTIONS = ("in_place", "feet_cleanup", "root_motion", "root_bone")  # what Generate More repeats


def retarget_recipe(mapping, options: dict) -> dict:
    """How a take was retargeted, as plain data for its recipe: the mapping (None: detected on the rig) and the
    options Generate More passes again."""
    bones = getattr(mapping, "bones", mapping)
    return {"mapping": dict(bones) if bones is not None else None,
            "convention": getattr(mapping, "convention", "custom"),
            "options": {name: options[name] for name in RETARGET_OPTIONS if name in options}}
