"""The Takes sub-panel, its list and its operators (the logic is :mod:`..scene.takes` and :mod:`..scene.take_runs`).

Registration: register :data:`classes` in order, then call :func:`register_properties` (it hangs
``Object.hymotion_takes`` on objects); undo with :func:`unregister_properties`, then the classes in reverse. The
panel is a child of ``HYMOTION_PT_main``, which must be registered first.

The properties carry no Python callbacks (the bpy 4.2 module crashes at exit once any was registered): picking a row
only picks it, and the row's buttons (Play, Solo) and the panel's act on it.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, PointerProperty, StringProperty

from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.jobs import parse_seeds

from ..scene import generation, rig, take_runs, takes, target_rig
from . import operators, properties, retarget_ui
from .preferences import draw_wrapped

TAKE_ROWS = 4


# --- properties -----------------------------------------------------------------------------------------------------


class HYMOTION_PG_take(bpy.types.PropertyGroup):
    action: PointerProperty(name="Take", type=bpy.types.Action, description="The take's Action")
    number: IntProperty(name="Number", description="Take 1 is the first one made on this rig", default=0)
    source: PointerProperty(name="Retargeted From", type=bpy.types.Object,
                            description="The SMPL-X rig this take was retargeted from (empty: generated on this rig)")


class HYMOTION_PG_takes(bpy.types.PropertyGroup):
    items: CollectionProperty(type=HYMOTION_PG_take)
    index: IntProperty(name="Take", default=0)
    before: PointerProperty(name="Before the Takes", type=bpy.types.Action,
                            description="The Action the rig played before its first take, back when all are rejected")
    solo: BoolProperty(name="Solo", default=False)
    keep_others: BoolProperty(
        name="Keep the Others",
        description="Accept keeps the other takes in the file with a fake user instead of removing them",
        default=False,
    )


def register_properties() -> None:
    setattr(bpy.types.Object, takes.TAKES_PROPERTY, PointerProperty(type=HYMOTION_PG_takes))


def unregister_properties() -> None:
    delattr(bpy.types.Object, takes.TAKES_PROPERTY)


def remember_accepted(scene: bpy.types.Scene, action: bpy.types.Action) -> None:
    """The scene's History notes the accepted take's seed on its prompt (added on top if it is not there)."""
    settings = getattr(scene, "hymotion", None)
    prompt = str(action.get("hymotion_prompt", ""))
    if settings is None or not prompt:
        return
    item = next((entry for entry in settings.history if entry.prompt == prompt), None)
    seed = int(action.get("hymotion_seed", 0))
    if item is None:
        properties.remember(settings, prompt, float(action.get("hymotion_duration", 0.0)), str(seed))
        item = settings.history[0]
    item.accepted_seed = seed


# --- list -----------------------------------------------------------------------------------------------------------


class HYMOTION_UL_takes(bpy.types.UIList):
    """The rig's takes in the order made; the one it plays is marked, each row has Play and Solo."""

    bl_idname = "HYMOTION_UL_takes"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        rig_object = data.id_data
        action = item.action
        if action is None:
            layout.label(text="(removed)", icon="ERROR")
            return
        shown = takes.shown_take(rig_object) == action
        row = layout.row(align=True)
        row.label(text=takes.take_label(rig_object, action), icon="HIDE_OFF" if shown else "DOT")
        row.label(text=str(action.get("hymotion_prompt", action.name)))
        play = row.operator(HYMOTION_OT_take_play.bl_idname, text="", icon="PLAY")
        play.take = action.name
        solo = row.operator(HYMOTION_OT_take_solo.bl_idname, text="",
                            icon="SOLO_ON" if takes.is_solo(rig_object, action) else "SOLO_OFF")
        solo.take = action.name


# --- operators ------------------------------------------------------------------------------------------------------


def rig_with_takes(context: bpy.types.Context) -> bpy.types.Object:
    """The active object's rig (a comparison copy's rig), refused clearly when it has no takes."""
    obj = takes.rig_of(context.active_object)
    if obj is None or obj.type != "ARMATURE":
        what = f"'{obj.name}' is not an armature" if obj is not None else "nothing is selected"
        raise bad_request(f"Takes belong to a rig, and {what}.", "Select the armature whose takes to work on.")
    if not takes.has_takes(obj):
        raise bad_request(f"'{obj.name}' has no takes.", "Generate with several seeds (Settings > Seeds, e.g. 0-3).")
    return obj


class _TakeOperator(operators.BlenderMixin):
    """Acts on one take of the active rig: ``take`` names its Action; empty, the one picked in the list."""

    bl_options = {"REGISTER", "UNDO"}

    take: StringProperty(name="Take", description="Name of the take's Action (empty: the one picked in the list)",
                         options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = takes.rig_of(context.active_object)
        return obj is not None and obj.type == "ARMATURE" and takes.has_takes(obj)

    def rig_and_take(self, context: bpy.types.Context) -> tuple[bpy.types.Object, bpy.types.Action]:
        obj = rig_with_takes(context)
        if self.take:
            action = bpy.data.actions.get(self.take)
            if action is None:
                raise bad_request(f"There is no Action named '{self.take}'.", "Pick a take in the Takes list.")
            return takes.owner_of(action, obj), action
        holder = getattr(obj, takes.TAKES_PROPERTY)
        listed = [item.action for item in holder.items]
        action = listed[holder.index] if 0 <= holder.index < len(listed) else None
        if action is None:
            raise bad_request("No take is picked in the list.", "Click a take in the Takes list first.")
        return obj, action

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            obj, action = self.rig_and_take(context)
            message = self.act(context, obj, action)
        except HyMotionError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, message)
        operators.redraw_areas(("VIEW_3D",))
        return {"FINISHED"}

    def act(self, context: bpy.types.Context, obj: bpy.types.Object, action: bpy.types.Action) -> str:
        raise NotImplementedError


class HYMOTION_OT_take_play(_TakeOperator, bpy.types.Operator):
    """Show this take on the rig and play it from its first frame"""

    bl_idname = "hymotion.take_play"
    bl_label = "Play Take"

    def act(self, context, obj, action) -> str:
        start, end = takes.play(obj, action, context.scene)
        screen = context.screen
        if screen is not None and not screen.is_animation_playing and context.window is not None:
            bpy.ops.screen.animation_play()
        return f"Playing {takes.take_label(obj, action)} ('{action.name}', frames {start}-{end})."


class HYMOTION_OT_take_solo(_TakeOperator, bpy.types.Operator):
    """Play only this take: it goes on the rig and the comparison copies are hidden (again: show them back)"""

    bl_idname = "hymotion.take_solo"
    bl_label = "Solo Take"

    def act(self, context, obj, action) -> str:
        solo = not takes.is_solo(obj, action)
        takes.set_solo(obj, action, solo)
        return f"{takes.take_label(obj, action)} {'plays alone' if solo else 'plays beside the others again'}."


class HYMOTION_OT_take_compare(_TakeOperator, bpy.types.Operator):
    """Put a copy of the rig beside it for every other take, so all takes play side by side"""

    bl_idname = "hymotion.take_compare"
    bl_label = "Compare Side by Side"

    def act(self, context, obj, action) -> str:
        if takes.shown_take(obj) is None:
            takes.show(obj, action)
        copies = takes.compare(obj, context.scene)
        shown = takes.take_label(obj, takes.shown_take(obj))
        return f"{len(copies) + 1} takes side by side; '{obj.name}' plays {shown}."


class HYMOTION_OT_take_end_compare(_TakeOperator, bpy.types.Operator):
    """Remove the comparison copies (the takes stay)"""

    bl_idname = "hymotion.take_end_compare"
    bl_label = "End Compare"

    def act(self, context, obj, action) -> str:
        takes.end_compare(obj)
        if context.view_layer.objects.get(obj.name) is not None:
            context.view_layer.objects.active = obj
        return f"Comparison of '{obj.name}''s takes ended."


class HYMOTION_OT_take_accept(_TakeOperator, bpy.types.Operator):
    """Make this take the rig's Action; the other takes are removed (or kept with a fake user: Keep the Others)"""

    bl_idname = "hymotion.take_accept"
    bl_label = "Accept Take"

    keep_others: BoolProperty(name="Keep the Others", description="Keep the other takes with a fake user",
                              options={"SKIP_SAVE"})

    def act(self, context, obj, action) -> str:
        label = takes.take_label(obj, action)
        keep = self.keep_others if self.properties.is_property_set("keep_others") else (
            getattr(obj, takes.TAKES_PROPERTY).keep_others)
        outcome = takes.accept(action, obj, keep_others=keep)
        remember_accepted(context.scene, action)
        if context.view_layer.objects.get(obj.name) is not None:
            context.view_layer.objects.active = obj
        dropped = (f"kept {len(outcome['kept'])} other take(s) with a fake user" if outcome["kept"] else "")
        removed = f"removed {len(outcome['removed'])}" if outcome["removed"] else ""
        others = "; ".join(part for part in (dropped, removed) if part) or "no other takes"
        return f"Accepted {label}: '{action.name}' is now '{obj.name}''s Action ({others})."


class HYMOTION_OT_take_reject(_TakeOperator, bpy.types.Operator):
    """Drop this take: it is removed from the file (the rig shows the next take)"""

    bl_idname = "hymotion.take_reject"
    bl_label = "Reject Take"

    keep: BoolProperty(name="Keep It", description="Keep the Action with a fake user instead of removing it",
                       options={"SKIP_SAVE"})

    def act(self, context, obj, action) -> str:
        label, name = takes.take_label(obj, action), action.name
        outcome = takes.reject(action, obj, keep=self.keep)
        shown = obj.animation_data.action if obj.animation_data else None
        now = f"'{obj.name}' shows '{shown.name}'" if shown is not None else f"'{obj.name}' has no Action now"
        return f"Rejected {label} ('{name}', {outcome}); {now}."


class HYMOTION_OT_take_generate_more(operators.GenerationOperator, bpy.types.Operator):
    """Generate more takes of the picked take's prompt, with new seeds and the settings that made it. Esc cancels"""

    bl_idname = "hymotion.take_generate_more"
    bl_label = "Generate More"

    count: IntProperty(name="How Many", description="New takes to make (0: as many as the Seeds setting lists)",
                       default=0, min=0, soft_max=16, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        run = generation.active_run
        return _TakeOperator.poll(context) and (run is None or run.finished)

    def _plan(self, context: bpy.types.Context) -> take_runs.MoreTakes:
        obj = rig_with_takes(context)
        holder = getattr(obj, takes.TAKES_PROPERTY)
        listed = [item.action for item in holder.items]
        picked = listed[holder.index] if 0 <= holder.index < len(listed) else None
        count = self.count or len(parse_seeds(self.value(context, "seeds")))
        self._more = take_runs.more_takes(obj, count, picked)
        return self._more

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        return self._plan(context).spec

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object | None:
        return self._more.smplx_rig

    def conclude(self, context: bpy.types.Context, run: generation.Run) -> set[str]:
        try:
            self._more.place(run.actions)
        except HyMotionError as error:
            self.report({"ERROR"}, f"The new takes were made on '{self._more.smplx_rig.name}' but not retargeted: "
                                   f"{error}")
        return super().conclude(context, run)


class HYMOTION_OT_take_retarget(bpy.types.Operator):
    """Retarget every take of this SMPL-X rig onto the Retarget panel's Target Rig, as takes of that rig"""

    bl_idname = "hymotion.take_retarget"
    bl_label = "Retarget Takes"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = getattr(context.scene, "hymotion_retarget", None)
        return settings is not None and settings.target_armature is not None and _TakeOperator.poll(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.hymotion_retarget
        target = settings.target_armature
        try:
            source = rig_with_takes(context)
            rig.require_hymotion_armature(source, "Select the SMPL-X armature whose takes to retarget.")
            if target is None or target.type != "ARMATURE" or target == source:
                raise bad_request("Pick your character's armature as the Target Rig in Retarget & Export.", "")
            if not settings.bone_map:
                retarget_ui.store_mapping(settings, target_rig.detect_mapping(target))
            made = take_runs.retarget_takes(
                source, target, retarget_ui.mapping_from_settings(settings), in_place=settings.in_place,
                feet_cleanup=settings.feet_cleanup, root_motion=settings.root_motion,
                root_bone=settings.root_bone or None,
            )
        except HyMotionError as error:
            self.report({"ERROR"}, f"Retarget Takes: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Retargeted {len(made)} takes onto '{target.name}'; choose there (select it).")
        return {"FINISHED"}


# --- panel ----------------------------------------------------------------------------------------------------------


def draw_takes(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    obj = takes.rig_of(context.active_object)
    if obj is None or obj.type != "ARMATURE" or not takes.has_takes(obj):
        draw_wrapped(layout, "Generate with several seeds (Settings > Seeds, e.g. 0-3): the results become takes of "
                     "one rig, to play, compare, accept or reject here.", icon="INFO")
        return
    holder = getattr(obj, takes.TAKES_PROPERTY)
    count = len(takes.takes_of(obj))
    layout.label(text=f"{count} take{'s' if count != 1 else ''} on '{obj.name}'", icon="ARMATURE_DATA")
    layout.template_list(HYMOTION_UL_takes.bl_idname, "", holder, "items", holder, "index", rows=TAKE_ROWS)
    row = layout.row(align=True)
    row.operator(HYMOTION_OT_take_play.bl_idname, icon="PLAY")
    if takes.comparison(obj):
        row.operator(HYMOTION_OT_take_end_compare.bl_idname, icon="X")
    else:
        row.operator(HYMOTION_OT_take_compare.bl_idname, icon="MOD_ARRAY")
    row = layout.row(align=True)
    row.operator(HYMOTION_OT_take_accept.bl_idname, text="Accept", icon="CHECKMARK")
    row.operator(HYMOTION_OT_take_reject.bl_idname, text="Reject", icon="TRASH")
    layout.prop(holder, "keep_others")
    running = generation.active_run is not None and not generation.active_run.finished
    row = layout.row()
    row.enabled = not running
    row.operator(HYMOTION_OT_take_generate_more.bl_idname, icon="ADD")
    settings = getattr(context.scene, "hymotion_retarget", None)
    if rig.is_hymotion_armature(obj) and settings is not None and settings.target_armature is not None:
        text = f"Retarget Takes to '{settings.target_armature.name}'"
        layout.operator(HYMOTION_OT_take_retarget.bl_idname, text=text, icon="ARMATURE_DATA")


class HYMOTION_PT_takes(bpy.types.Panel):
    bl_label = "Takes"
    bl_idname = "HYMOTION_PT_takes"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HY-Motion"
    bl_parent_id = "HYMOTION_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "hymotion")

    def draw(self, context: bpy.types.Context) -> None:
        draw_takes(self.layout, context)


classes: tuple[type, ...] = (
    HYMOTION_PG_take,
    HYMOTION_PG_takes,
    HYMOTION_UL_takes,
    HYMOTION_OT_take_play,
    HYMOTION_OT_take_solo,
    HYMOTION_OT_take_compare,
    HYMOTION_OT_take_end_compare,
    HYMOTION_OT_take_accept,
    HYMOTION_OT_take_reject,
    HYMOTION_OT_take_generate_more,
    HYMOTION_OT_take_retarget,
    HYMOTION_PT_takes,
)
