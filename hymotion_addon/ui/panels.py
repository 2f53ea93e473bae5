"""The sidebar: View3D > Sidebar > HY-Motion. A main panel (backend state, prompt with live guidance, Generate)
and sub-panels for settings, target, batch, presets, history and the backend.

Each panel's drawing is a module function taking a layout, so it can be checked without a window. The main panel's
first draw in a session schedules the early start of the backend (preference "Start the Backend When the Panel
Opens"): a timer starts it without blocking and redraws the sidebar while it starts and loads the model.
"""

from __future__ import annotations

import functools

import bpy

from hymotion.shared.prompt_guide import PromptAdvice, analyse

from ..core import backend_manager, backend_setup
from ..core.backend_manager import MANAGER
from ..core.blender_hints import in_blender_words
from ..scene import generation, rig
from . import operators, preferences
from .text_fit import draw_wrapped, fitted

HISTORY_ROWS = 4
STAGE_REDRAW_S = 0.25

_early_start_scheduled = False


@functools.lru_cache(maxsize=64)
def prompt_advice(prompt: str) -> PromptAdvice:
    """Advice for the prompt box; cached because the panel redraws far more often than the prompt changes."""
    return analyse(prompt)


def _running_run() -> generation.Run | None:
    run = generation.active_run
    return run if run is not None and not run.finished else None


def schedule_early_start(context: bpy.types.Context) -> None:
    """Called by the main panel's draw: the first time it is drawn with the preference on and a backend configured,
    register :func:`start_backend_early` on a timer (a draw callback only schedules; it starts nothing itself)."""
    global _early_start_scheduled
    if _early_start_scheduled:
        return
    settings = preferences.addon_preferences(context)
    if settings is None or not settings.start_backend_early or preferences.backend_config(context) is None:
        return
    _early_start_scheduled = True
    bpy.app.timers.register(start_backend_early, first_interval=0.0)


def start_backend_early() -> None:
    """Timer: start the backend with the model preloaded, without blocking, unless one already runs, starts or failed
    to start (a Generate then decides); then redraw the sidebar while the stage changes."""
    config = preferences.backend_config()
    if config is not None and MANAGER.status().state == backend_manager.STOPPED:
        MANAGER.ensure_started(config, wait=False, preload=True)
        bpy.app.timers.register(redraw_while_starting, first_interval=STAGE_REDRAW_S)


def redraw_while_starting() -> float | None:
    """Timer: redraw the sidebar until the backend is ready (model loaded) or failed."""
    operators.redraw_areas(("VIEW_3D",))
    status = MANAGER.status()
    return STAGE_REDRAW_S if status.state == backend_manager.STARTING or status.loading else None


def cancel_early_start() -> None:
    """On unregister: no timer of ours keeps firing; enabling the add-on again starts early again."""
    global _early_start_scheduled
    for timer in (start_backend_early, redraw_while_starting):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _early_start_scheduled = False


def draw_backend_state(layout: bpy.types.UILayout, context: bpy.types.Context, detailed: bool = False) -> None:
    """Not installed / not started / starting / loading the model / ready (device, plan) / busy (progress) / error
    (with hint). The main panel draws it in a box; the Backend sub-panel (``detailed``) only once a backend exists."""
    boxes = 0 if detailed else 1
    config = preferences.backend_config(context)
    if config is None:
        task = backend_setup.tasks.get("install")
        record = preferences.install_record()
        if task is not None and task.running:
            draw_wrapped(layout, "Backend: installing…", icon="SORTTIME", boxes=boxes)
            layout.progress(factor=task.fraction, type="BAR", text=fitted(task.step_label, boxes=boxes))
        elif record is not None and record.state != backend_setup.INSTALLED:
            outcome = "did not finish" if record.state == backend_setup.INSTALLING else record.state
            draw_wrapped(layout, f"Backend: install {outcome}", icon="ERROR", boxes=boxes)
            draw_wrapped(layout, "Open Preferences to see why, and its log.", boxes=boxes)
        else:
            draw_wrapped(layout, "Backend: not installed", icon="ERROR", boxes=boxes)
            draw_wrapped(layout, "Install it in the add-on's preferences.", boxes=boxes)
        layout.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES").module = (
            preferences.ADDON_PACKAGE
        )
        return
    status = MANAGER.status()
    run = _running_run()
    if run is not None:
        draw_wrapped(layout, "Backend: busy", icon="SORTTIME", boxes=boxes)
        layout.progress(factor=run.fraction, type="BAR", text=fitted(run.progress_text(), boxes=boxes))
    elif status.state == backend_manager.STARTING:
        draw_wrapped(layout, "Backend: starting…", icon="SORTTIME", boxes=boxes)
    elif status.state == backend_manager.READY and status.hello is not None and status.loading:
        draw_wrapped(layout, f"Backend: loading the model… ({config.model})", icon="SORTTIME", boxes=boxes)
    elif status.state == backend_manager.READY and status.hello is not None:
        device = status.hello.device or "CPU"
        draw_wrapped(layout, f"Backend: ready · {device} · plan {status.hello.plan}", icon="CHECKMARK", boxes=boxes)
        if status.preload_failed:
            draw_wrapped(layout, "The model did not load ahead of time; Generate loads it and says why.", icon="INFO",
                         boxes=boxes)
        _draw_weights_state(layout, status.hello, config.model, boxes)
    elif status.state == backend_manager.ERROR and status.error is not None:
        error = in_blender_words(status.error)
        draw_wrapped(layout, "Backend: error", icon="ERROR", boxes=boxes)
        draw_wrapped(layout, error.message, boxes=boxes)
        if error.hint:
            draw_wrapped(layout, error.hint, icon="INFO", boxes=boxes)
    else:
        draw_wrapped(layout, f"Backend: starts at the first Generate ({config.model}, plan {config.plan})",
                     icon="PAUSE", boxes=boxes)
    if config.model == "tiny-random":
        draw_wrapped(layout, "Tiny test model: motion is noise.", icon="ERROR", boxes=boxes)
    if detailed:
        if status.pid is not None and status.state == backend_manager.READY and status.hello is not None:
            draw_wrapped(layout, f"Process {status.pid}, backend {status.hello.backend_version}", icon="CONSOLE")
        if status.hello is not None and status.hello.log_file:
            layout.operator("hymotion.open_log", text="Open Backend Log", icon="TEXT").filepath = status.hello.log_file
        row = layout.row()
        row.enabled = status.state in (backend_manager.READY, backend_manager.ERROR) and run is None
        row.operator("hymotion.stop_backend", icon="QUIT")


def _draw_weights_state(layout: bpy.types.UILayout, hello, model: str, boxes: int) -> None:
    for availability in hello.models:
        if availability.name == model and not availability.available:
            draw_wrapped(layout, f"The '{model}' weights are not downloaded.", icon="ERROR", boxes=boxes)
            draw_wrapped(layout, "Press Download Weights in the add-on's preferences, or set its Model Folder to "
                         "where the weights are.", boxes=boxes)
            layout.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES").module = (
                preferences.ADDON_PACKAGE
            )


def draw_prompt_guidance(layout: bpy.types.UILayout, settings) -> None:
    """Word count, what the model will probably not follow, and the duration that 'auto' will use."""
    advice = prompt_advice(settings.prompt)
    column = layout.column(align=True)
    if not settings.prompt.strip():
        draw_wrapped(column, "Describe what one person's body does, e.g. 'a person jumps forward, then turns "
                     "left and waves'.", icon="INFO")
        return
    draw_wrapped(column, advice.length_line, icon="TEXT")
    for note in advice.warnings:
        draw_wrapped(column, f"{note.message} {note.suggestion}", icon="ERROR")
    for note in advice.hints:
        draw_wrapped(column, f"{note.message} {note.suggestion}", icon="INFO")
    if settings.duration <= 0.0 and advice.duration is not None:
        draw_wrapped(column, f"Duration (auto): {advice.duration.explanation}", icon="TIME")


def draw_main(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.hymotion
    draw_backend_state(layout.box(), context)
    draw_wrapped(layout, "Prompt:")
    layout.prop(settings, "prompt", text="")
    draw_prompt_guidance(layout, settings)
    if _running_run() is not None:
        layout.operator("hymotion.cancel", icon="CANCEL")
    else:
        row = layout.row()
        row.scale_y = 1.5
        row.enabled = preferences.backend_config(context) is not None
        row.operator("hymotion.generate", icon="PLAY")
    last = generation.active_run
    if last is not None and last.finished:
        icon = "ERROR" if last.error is not None and not last.cancelled else "INFO"
        draw_wrapped(layout, last.summary(), icon=icon)


def draw_settings(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.hymotion
    layout.use_property_split = True
    layout.use_property_decorate = False
    layout.prop(settings, "duration")
    if settings.duration <= 0.0:
        draw_wrapped(layout, "Duration 0: estimated from the prompt.", icon="TIME")
    layout.prop(settings, "seeds")
    layout.prop(settings, "cfg")
    layout.prop(settings, "steps")
    layout.prop(settings, "smoothing")


def draw_target(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.hymotion
    layout.use_property_split = True
    layout.use_property_decorate = False
    layout.prop(settings, "target")
    if settings.target == "ACTIVE":
        active = context.active_object
        if rig.is_hymotion_armature(active):
            draw_wrapped(layout, f"Bakes onto '{active.name}'", icon="ARMATURE_DATA")
        else:
            draw_wrapped(layout, "Select an SMPL-X armature made by HY-Motion", icon="ERROR")
    else:
        layout.prop(settings, "with_mesh")
    layout.prop(settings, "fps_mode")
    layout.prop(settings, "in_place")
    layout.prop(settings, "start_frame")
    layout.prop(settings, "keys")
    layout.prop(settings, "fit_scene_range")


def draw_batch(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.hymotion
    layout.prop(settings, "batch_source", expand=True)
    if settings.batch_source == "TEXT":
        layout.prop(settings, "batch_text")
        if settings.batch_text is None:
            draw_wrapped(layout, "Write the list in Blender's Text Editor (New), then pick that text here.")
    else:
        layout.prop(settings, "batch_file")
    layout.prop(settings, "nla_layout", expand=True)
    draw_wrapped(layout, "One prompt per line; '4.5 | prompt' sets a line's duration. Uses the first seed.")
    row = layout.row()
    row.enabled = _running_run() is None
    row.operator("hymotion.batch_bake", icon="NLA_PUSHDOWN")


def draw_presets(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.hymotion
    row = layout.row(align=True)
    row.menu("HYMOTION_MT_preset_load", text="Load", icon="PRESET")
    row.menu("HYMOTION_MT_preset_delete", text="Delete", icon="TRASH")
    draw_wrapped(layout, "Save the settings as:")
    row = layout.row(align=True)
    row.prop(settings, "preset_name", text="")
    row.operator("hymotion.preset_save", text="Save", icon="ADD")


def draw_history(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.hymotion
    layout.template_list("HYMOTION_UL_history", "", settings, "history", settings, "history_index", rows=HISTORY_ROWS)
    if not settings.history:
        draw_wrapped(layout, "Each Generate adds its prompt here.")
    row = layout.row(align=True)
    row.operator("hymotion.history_use", icon="PASTEDOWN")
    row.operator("hymotion.history_clear", icon="X")


class _SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HY-Motion"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return getattr(context.scene, "hymotion", None) is not None


class HYMOTION_PT_main(_SidebarPanel, bpy.types.Panel):
    bl_label = "HY-Motion"

    def draw(self, context: bpy.types.Context) -> None:
        schedule_early_start(context)
        draw_main(self.layout, context)


class HYMOTION_PT_settings(_SidebarPanel, bpy.types.Panel):
    bl_label = "Settings"
    bl_parent_id = "HYMOTION_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        draw_settings(self.layout, context)


class HYMOTION_PT_target(_SidebarPanel, bpy.types.Panel):
    bl_label = "Target"
    bl_parent_id = "HYMOTION_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        draw_target(self.layout, context)


class HYMOTION_PT_batch(_SidebarPanel, bpy.types.Panel):
    bl_label = "Batch Bake"
    bl_parent_id = "HYMOTION_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        draw_batch(self.layout, context)


class HYMOTION_PT_presets(_SidebarPanel, bpy.types.Panel):
    bl_label = "Presets"
    bl_parent_id = "HYMOTION_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        draw_presets(self.layout, context)


class HYMOTION_PT_history(_SidebarPanel, bpy.types.Panel):
    bl_label = "History"
    bl_parent_id = "HYMOTION_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        draw_history(self.layout, context)


class HYMOTION_PT_backend(_SidebarPanel, bpy.types.Panel):
    bl_label = "Backend"
    bl_parent_id = "HYMOTION_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        """Only once there is a backend to start and stop: before that, the main panel says how to install one."""
        return super().poll(context) and preferences.backend_config(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        draw_backend_state(self.layout, context, detailed=True)


class HYMOTION_UL_history(bpy.types.UIList):
    """Recent prompts, newest first."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row()
        row.label(text=item.prompt, icon="TEXT")
        if item.duration > 0.0:
            row.label(text=f"{item.duration:.1f} s")
        if item.accepted_seed >= 0:
            row.label(text=f"seed {item.accepted_seed}", icon="CHECKMARK")


classes = (
    HYMOTION_UL_history,
    HYMOTION_PT_main,
    HYMOTION_PT_settings,
    HYMOTION_PT_target,
    HYMOTION_PT_batch,
    HYMOTION_PT_presets,
    HYMOTION_PT_history,
    HYMOTION_PT_backend,
)
