"""Operators: Generate and Batch Bake (modal, Esc cancels), presets, history, the SMPL-X body, and backend set-up.

Generate and Batch Bake read their settings from the panel (``scene.hymotion``); any operator property given
explicitly (``bpy.ops.hymotion.generate(prompt="a person waves", duration=4.0)``) wins over the panel's value. With a
window they run modal: the backend works in its own process, a timer bakes each result as it arrives and shows
progress, and the UI stays usable. In background mode (``blender -b``, the bpy module) they block until done.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from hymotion.shared import errors
from hymotion.shared.body_mesh import SMPLX_DOWNLOAD_HINT, load_smplx_body
from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.jobs import parse_prompt_lines, parse_seeds
from hymotion.shared.presets import BUILTIN_PRESETS, PresetStore
from hymotion.shared.prompt_guide import duration_for

from ..core import backend_setup, command_task
from ..core.backend_manager import MANAGER
from ..scene import generation, rig, scene_range, takes
from . import preferences, properties
from .properties import HYMOTION_PG_settings, generation_property

TIMER_INTERVAL_S = 0.1
SETUP_POLL_S = 0.5
REDRAWN_AREAS = ("VIEW_3D", "PREFERENCES")


def redraw_areas(area_types: tuple[str, ...] = REDRAWN_AREAS) -> None:
    window_manager = bpy.context.window_manager
    for window in window_manager.windows if window_manager else ():
        for area in window.screen.areas:
            if area.type in area_types:
                area.tag_redraw()


def _report_error(operator: bpy.types.Operator, error: HyMotionError) -> set[str]:
    operator.report({"ERROR"}, str(error))
    return {"CANCELLED"}


def _settings(context: bpy.types.Context) -> HYMOTION_PG_settings:
    return context.scene.hymotion


class BlenderMixin:
    """Base of the mixins of operators and menus: it only names, for the type checker, what bpy.types.Operator (and
    bpy.types.Menu) provide to the classes that combine with it (bpy has no type information). Empty at run time."""

    if TYPE_CHECKING:
        layout: Any
        properties: Any

        def report(self, type: set[str], message: str) -> None: ...


# --- generation -----------------------------------------------------------------------------------------------------


class _GenerationProperties:
    """Operator properties that override the panel's settings when given (never remembered between calls)."""

    duration: generation_property("duration", for_operator=True)
    seeds: generation_property("seeds", for_operator=True)
    cfg: generation_property("cfg", for_operator=True)
    steps: generation_property("steps", for_operator=True)
    smoothing: generation_property("smoothing", for_operator=True)
    target: generation_property("target", for_operator=True)
    with_mesh: generation_property("with_mesh", for_operator=True)
    fps_mode: generation_property("fps_mode", for_operator=True)
    in_place: generation_property("in_place", for_operator=True)
    start_frame: generation_property("start_frame", for_operator=True)
    keys: generation_property("keys", for_operator=True)
    fit_scene_range: generation_property("fit_scene_range", for_operator=True)


class GenerationOperator(_GenerationProperties, BlenderMixin):
    """Shared by Generate and Batch Bake: start a Run, follow it (modal or blocking), report how it ended."""

    bl_options = {"REGISTER", "UNDO"}

    def value(self, context: bpy.types.Context, name: str):
        return getattr(self, name) if self.properties.is_property_set(name) else getattr(_settings(context), name)

    def duration_for(self, context: bpy.types.Context, prompt: str, line_duration: float | None = None) -> float:
        return duration_for(prompt, line_duration, max(float(self.value(context, "duration")), 0.0))

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object | None:
        if self.value(context, "target") == "NEW":
            return None
        return rig.require_hymotion_armature(
            context.active_object, "Select that armature to be the target, or set Target to New Armature."
        )

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        raise NotImplementedError

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            spec = self.spec(context)
            armature = self.target_armature(context)
        except HyMotionError as error:
            return _report_error(self, error)
        config = preferences.backend_config(context)
        if config is None:
            return _report_error(self, preferences.not_installed_error())
        blocking = bpy.app.background or context.window is None
        try:
            run = generation.Run(spec, config, context.scene, context.collection or context.scene.collection, armature)
            generation.start_run(run, wait=blocking)
        except HyMotionError as error:
            return _report_error(self, error)
        if blocking:
            run.run_until_done()
            return self.conclude(context, run)
        self._run = run
        window_manager = context.window_manager
        self._timer = window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        window_manager.modal_handler_add(self)
        window_manager.progress_begin(0.0, 1.0)
        self.show_progress(context)
        return {"RUNNING_MODAL"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return self.execute(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        run = self._run
        if event.type == "ESC" and event.value == "PRESS":
            run.cancel()
            self.show_progress(context)
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            run.update()
            self.show_progress(context)
        if run.finished:
            self.stop_modal(context)
            return self.conclude(context, run)
        return {"PASS_THROUGH"}

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal (e.g. a file is loaded): stop the job, keep what was baked."""
        self._run.stop_now("The generation was stopped because Blender ended it (e.g. another file was opened).")
        self.stop_modal(context)

    def show_progress(self, context: bpy.types.Context) -> None:
        run = self._run
        context.window_manager.progress_update(run.fraction)
        if context.workspace is not None:
            context.workspace.status_text_set(run.status_text())
        redraw_areas(("VIEW_3D",))

    def stop_modal(self, context: bpy.types.Context) -> None:
        window_manager = context.window_manager
        window_manager.event_timer_remove(self._timer)
        window_manager.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        redraw_areas(("VIEW_3D",))

    def conclude(self, context: bpy.types.Context, run: generation.Run) -> set[str]:
        """Report the outcome (its summary last). Any Action made keeps the operator FINISHED, so it is one undo
        step."""
        if run.actions and self.value(context, "fit_scene_range"):
            frames = scene_range.fit_scene_range(context.scene, run.armature, run.actions)
            self.report({"INFO"}, f"Scene range set to frames {frames[0]}–{frames[1]} (Fit Scene Range).")
        for warning in run.warnings:
            self.report({"WARNING"}, warning)
        if run.error is not None and run.error.code != errors.CANCELLED:
            self.report({"ERROR"}, run.summary())
        else:
            self.report({"WARNING"} if run.cancel_requested else {"INFO"}, run.summary())
        if run.actions:
            self.remember(context, run)
            return {"FINISHED"}
        return {"CANCELLED"}

    def remember(self, context: bpy.types.Context, run: generation.Run) -> None:
        """What a finished run leaves in the panel (the prompt history for Generate)."""

    def draw(self, context: bpy.types.Context) -> None:
        # Redoing a generation would run the model again: the panel is the place to change and regenerate.
        self.layout.label(text="Change the settings in the HY-Motion panel and generate again.")


class HYMOTION_OT_generate(GenerationOperator, bpy.types.Operator):
    """Generate motion from the prompt and bake it into Actions (one per seed). Esc cancels"""

    bl_idname = "hymotion.generate"
    bl_label = "Generate"

    prompt: bpy.props.StringProperty(
        name="Prompt", description="What the body does, in English", options={"SKIP_SAVE"}
    )

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        prompt = self.value(context, "prompt").strip()
        if not prompt:
            raise bad_request("The prompt is empty.", "Describe the motion, e.g. 'a person jumps forward twice'.")
        seeds = parse_seeds(self.value(context, "seeds"))
        onto_takes = self.value(context, "target") == "ACTIVE" and takes.has_takes(context.active_object)
        return generation.RunSpec(
            clips=[generation.Clip(prompt, self.duration_for(context, prompt))],
            seeds=seeds,
            takes=len(seeds) > 1 or onto_takes,  # several seeds, or a rig with takes: choose in the Takes panel
            **common_spec_fields(self, context),
        )

    def remember(self, context: bpy.types.Context, run: generation.Run) -> None:
        clip = run.spec.clips[0]
        duration = float(self.value(context, "duration"))
        properties.remember(_settings(context), clip.prompt, duration, self.value(context, "seeds"))


class PromptListOperator(GenerationOperator):
    """What an operator that works through a prompt list shares: where the list comes from (the Batch panel's text
    or file, or the operator's own arguments) and reading it."""

    source: generation_property("batch_source", for_operator=True)
    text: bpy.props.StringProperty(name="Text", description="Name of the text datablock", options={"SKIP_SAVE"})
    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH", options={"SKIP_SAVE"})

    list_settings = "batch"
    """Which of the panel's prompt lists this operator reads: batch_source/_text/_file (Batch Bake) or
    timeline_source/_text/_file (Timeline): two settings of their own, so changing one leaves the other."""
    list_panel = "Batch Bake panel"

    def prompt_text(self, context: bpy.types.Context) -> tuple[str, str]:
        """The prompt list and a name for it in messages."""
        settings = _settings(context)
        prefix = self.list_settings
        source = self.source if self.properties.is_property_set("source") else getattr(settings, f"{prefix}_source")
        if source == "TEXT":
            chosen = getattr(settings, f"{prefix}_text")
            name = self.text if self.properties.is_property_set("text") else (chosen.name if chosen else "")
            if not name:
                raise bad_request("No text datablock is chosen for the prompt list.",
                                  f"Pick a text in the {self.list_panel} (write one prompt per line in the Text "
                                  "Editor).")
            text = bpy.data.texts.get(name)
            if text is None:
                raise bad_request(f"There is no text datablock named '{name}'.", "Pick an existing text.")
            return text.as_string(), f"Text '{name}'"
        path_text = (self.filepath if self.properties.is_property_set("filepath")
                     else getattr(settings, f"{prefix}_file"))
        if not path_text.strip():
            raise bad_request("No prompt file is chosen.", "Pick a text file with one prompt per line.")
        path = Path(bpy.path.abspath(path_text))
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as error:
            raise bad_request(f"Cannot read the prompt file {path}: {error}.",
                              "Check the path; save it as UTF-8.") from None


class HYMOTION_OT_batch_bake(PromptListOperator, bpy.types.Operator):
    """Generate one Action per line of a prompt list and lay them out as NLA strips. Esc cancels and keeps the
    finished ones"""

    bl_idname = "hymotion.batch_bake"
    bl_label = "Batch Bake"

    nla_layout: generation_property("nla_layout", for_operator=True)

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        text, source = self.prompt_text(context)
        lines = parse_prompt_lines(text, source=source)
        seeds = parse_seeds(self.value(context, "seeds"))
        return generation.RunSpec(
            clips=[generation.Clip(line.prompt, self.duration_for(context, line.prompt, line.duration))
                   for line in lines],
            seeds=seeds[:1],
            nla_layout=self.value(context, "nla_layout"),
            **common_spec_fields(self, context),
        )


def common_spec_fields(operator: GenerationOperator, context: bpy.types.Context) -> dict:
    return {
        "cfg": float(operator.value(context, "cfg")),
        "steps": int(operator.value(context, "steps")),
        "smoothing": bool(operator.value(context, "smoothing")),
        "fps_mode": operator.value(context, "fps_mode"),
        "in_place": bool(operator.value(context, "in_place")),
        "start_frame": int(operator.value(context, "start_frame")),
        "with_mesh": bool(operator.value(context, "with_mesh")),
        "keys": operator.value(context, "keys"),
    }


class HYMOTION_OT_cancel(bpy.types.Operator):
    """Stop the running generation; Actions already made stay"""

    bl_idname = "hymotion.cancel"
    bl_label = "Cancel Generation"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return generation.active_run is not None and not generation.active_run.finished

    def execute(self, context: bpy.types.Context) -> set[str]:
        generation.cancel_active_run()
        return {"FINISHED"}


class HYMOTION_OT_stop_backend(bpy.types.Operator):
    """Stop the backend process and free its memory; the next generation starts it again"""

    bl_idname = "hymotion.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        if generation.active_run is not None and not generation.active_run.finished:
            self.report({"ERROR"}, "A generation is running: cancel it first (Esc).")
            return {"CANCELLED"}
        MANAGER.shutdown()
        redraw_areas()
        return {"FINISHED"}


# --- presets and history --------------------------------------------------------------------------------------------


class HYMOTION_OT_preset_load(bpy.types.Operator):
    """Set the panel's generation settings from a saved preset"""

    bl_idname = "hymotion.preset_load"
    bl_label = "Load Preset"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty(name="Preset")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            preset = PresetStore(preferences.presets_path()).get(self.name)
            properties.apply_preset(_settings(context), preset)
        except HyMotionError as error:
            return _report_error(self, error)
        except (TypeError, ValueError) as error:
            return _report_error(self, bad_request(f"Preset '{self.name}' has a value this version cannot use: "
                                                   f"{error}.", "Save the preset again."))
        self.report({"INFO"}, f"Loaded preset '{self.name}'.")
        return {"FINISHED"}


class HYMOTION_OT_preset_save(bpy.types.Operator):
    """Save the panel's generation settings under the preset name"""

    bl_idname = "hymotion.preset_save"
    bl_label = "Save Preset"

    name: bpy.props.StringProperty(name="Name", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = _settings(context)
        name = self.name if self.properties.is_property_set("name") else settings.preset_name
        try:
            saved = PresetStore(preferences.presets_path()).save(name, properties.to_preset(settings))
        except HyMotionError as error:
            return _report_error(self, error)
        self.report({"INFO"}, f"Saved preset '{saved}'.")
        return {"FINISHED"}


class HYMOTION_OT_preset_delete(bpy.types.Operator):
    """Delete one of your saved presets"""

    bl_idname = "hymotion.preset_delete"
    bl_label = "Delete Preset"

    name: bpy.props.StringProperty(name="Preset")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            PresetStore(preferences.presets_path()).delete(self.name)
        except HyMotionError as error:
            return _report_error(self, error)
        self.report({"INFO"}, f"Deleted preset '{self.name}'.")
        return {"FINISHED"}


class _PresetMenu(BlenderMixin):
    """Presets are listed by a menu, not an enum with an items callback: bpy 4.2 crashes at exit while a
    registered property has a Python callback."""

    operator = ""
    user_presets_only = False

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        try:
            names = PresetStore(preferences.presets_path()).names()
        except HyMotionError as error:
            layout.label(text=error.message, icon="ERROR")
            return
        if self.user_presets_only:
            names = [name for name in names if name not in BUILTIN_PRESETS]
        if not names:
            layout.label(text="No saved presets yet")
        for name in names:
            layout.operator(self.operator, text=name).name = name


class HYMOTION_MT_preset_load(_PresetMenu, bpy.types.Menu):
    bl_label = "Load Preset"
    operator = "hymotion.preset_load"


class HYMOTION_MT_preset_delete(_PresetMenu, bpy.types.Menu):
    bl_label = "Delete Preset"
    operator = "hymotion.preset_delete"
    user_presets_only = True


class HYMOTION_OT_history_use(bpy.types.Operator):
    """Put the selected history prompt (with its duration and seeds) back into the prompt box"""

    bl_idname = "hymotion.history_use"
    bl_label = "Use Prompt"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        return 0 <= settings.history_index < len(settings.history)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = _settings(context)
        item = settings.history[settings.history_index]
        settings.prompt, settings.duration, settings.seeds = item.prompt, item.duration, item.seeds
        return {"FINISHED"}


class HYMOTION_OT_history_clear(bpy.types.Operator):
    """Forget the recent prompts of this scene"""

    bl_idname = "hymotion.history_clear"
    bl_label = "Clear History"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        _settings(context).history.clear()
        return {"FINISHED"}


# --- SMPL-X body ----------------------------------------------------------------------------------------------------


class HYMOTION_OT_add_smplx_body(bpy.types.Operator):
    """Skin the SMPL-X body from your model file (see the add-on's preferences) to the active HY-Motion armature"""

    bl_idname = "hymotion.add_smplx_body"
    bl_label = "Add SMPL-X Body"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(
        name="SMPL-X Model File", description="Empty: the file set in the preferences", subtype="FILE_PATH",
        options={"SKIP_SAVE"},
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            armature = rig.require_hymotion_armature(
                context.active_object, "Select one (Generate makes it), then add the body again."
            )
        except HyMotionError as error:
            return _report_error(self, error)
        prefs = preferences.addon_preferences(context)
        model_file = self.filepath or (prefs.smplx_model_file if prefs is not None else "")
        if not model_file.strip():
            return _report_error(self, bad_request("No SMPL-X model file is set.",
                                                   "Set 'SMPL-X Model File' in Preferences > Add-ons > HY-Motion. "
                                                   + SMPLX_DOWNLOAD_HINT))
        try:
            body = load_smplx_body(bpy.path.abspath(model_file.strip()))
        except HyMotionError as error:
            return _report_error(self, error)
        mesh_object = rig.add_body_mesh(armature, body)
        self.report({"INFO"}, f"Added '{mesh_object.name}' ({len(body.vertices)} vertices) to '{armature.name}'.")
        return {"FINISHED"}


# --- backend set-up (preferences) -----------------------------------------------------------------------------------


def _watch_setup_tasks() -> float | None:
    """Timer: redraw while a set-up task runs, once more when the last one ends, then stop."""
    redraw_areas()
    return SETUP_POLL_S if any(task.running for task in backend_setup.tasks.values()) else None


def start_setup_task(name: str, title: str, steps: list[command_task.Step]) -> command_task.CommandTask:
    task = command_task.CommandTask(
        name, title, steps, preferences.log_path(name), backend_setup.subprocess_environment()
    ).start()
    backend_setup.tasks[name] = task
    return watch_setup_task(task)


def watch_setup_task(task: command_task.CommandTask) -> command_task.CommandTask:
    """Redraw the preferences while ``task`` runs (a timer)."""
    if not bpy.app.timers.is_registered(_watch_setup_tasks):
        bpy.app.timers.register(_watch_setup_tasks, first_interval=SETUP_POLL_S)
    return task


class _SetupOperator:
    task_name = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        task = backend_setup.tasks.get(cls.task_name)
        return task is None or not task.running

    def backend_python(self, context: bpy.types.Context) -> str:
        python = preferences.backend_python(preferences.addon_preferences(context))
        if not python:
            raise preferences.not_installed_error()
        return python


class HYMOTION_OT_install_backend(_SetupOperator, bpy.types.Operator):
    """Create a Python environment in the extension's folder and install PyTorch and the HY-Motion backend into it"""

    bl_idname = "hymotion.install_backend"
    bl_label = "Install Backend"
    task_name = "install"

    @classmethod
    def description(cls, context: bpy.types.Context, properties) -> str:
        return preferences.install_tooltip()

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences.addon_preferences(context)
        if prefs is None:
            return _report_error(self, bad_request("The add-on's preferences are not available.",
                                                   "Enable HY-Motion in Preferences > Add-ons first."))
        if generation.active_run is not None and not generation.active_run.finished:
            return _report_error(self, bad_request("A generation is running.", "Cancel it (Esc) before installing."))
        MANAGER.shutdown()
        try:
            task = preferences.start_backend_install(prefs, bpy.app.online_access)
        except HyMotionError as error:
            return _report_error(self, error)
        watch_setup_task(task)
        self.report({"INFO"}, f"Installing the backend into {preferences.venv_dir()} (see the progress here).")
        return {"FINISHED"}


class HYMOTION_OT_download_weights(_SetupOperator, bpy.types.Operator):
    """Download the chosen model and its two text encoders (about 20 GB) with the backend's downloader"""

    bl_idname = "hymotion.download_weights"
    bl_label = "Download Weights"
    task_name = "download"

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences.addon_preferences(context)
        if prefs is None:
            return _report_error(self, bad_request("The add-on's preferences are not available.",
                                                   "Enable HY-Motion in Preferences > Add-ons first."))
        if not bpy.app.online_access:
            return _report_error(self, bad_request("Online access is off, so nothing is downloaded.",
                                                   preferences.OFFLINE_PATH))
        if not prefs.licences_accepted:
            return _report_error(self, bad_request("The weights' licences are not accepted yet.",
                                                   "Read them in these preferences and tick the box to accept."))
        if prefs.model == "tiny-random":
            return _report_error(self, bad_request("The tiny model needs no download.", "Choose Lite or Standard."))
        try:
            python = self.backend_python(context)
        except HyMotionError as error:
            return _report_error(self, error)
        model_dir = bpy.path.abspath(prefs.model_dir) if prefs.model_dir.strip() else ""
        start_setup_task(self.task_name, "Downloading the weights",
                         backend_setup.download_steps(python, prefs.model, model_dir))
        return {"FINISHED"}


class HYMOTION_OT_doctor(_SetupOperator, bpy.types.Operator):
    """Check this machine, the GPU, the weights and the memory plan, and show what to fix"""

    bl_idname = "hymotion.doctor"
    bl_label = "Doctor Report"
    task_name = "doctor"

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences.addon_preferences(context)
        try:
            python = self.backend_python(context)
        except HyMotionError as error:
            return _report_error(self, error)
        variant = prefs.model if prefs is not None and prefs.model in ("lite", "standard") else None
        model_dir = bpy.path.abspath(prefs.model_dir) if prefs is not None and prefs.model_dir.strip() else ""
        steps = backend_setup.doctor_steps(python, variant, model_dir, offline=not bpy.app.online_access)
        start_setup_task(self.task_name, "Doctor report", steps)
        return {"FINISHED"}


class HYMOTION_OT_copy_doctor_report(bpy.types.Operator):
    """Copy the doctor report to the clipboard, e.g. for a bug report"""

    bl_idname = "hymotion.copy_doctor_report"
    bl_label = "Copy Report"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(backend_setup.doctor_report())

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.window_manager.clipboard = backend_setup.doctor_report()
        self.report({"INFO"}, "Doctor report copied to the clipboard.")
        return {"FINISHED"}


class HYMOTION_OT_cancel_setup_task(bpy.types.Operator):
    """Stop this set-up step"""

    bl_idname = "hymotion.cancel_setup_task"
    bl_label = "Cancel"

    task: bpy.props.StringProperty(name="Task")

    def execute(self, context: bpy.types.Context) -> set[str]:
        task = backend_setup.tasks.get(self.task)
        if task is None or not task.running:
            return {"CANCELLED"}
        task.cancel()
        return {"FINISHED"}


class HYMOTION_OT_open_log(bpy.types.Operator):
    """Open the log file with the system's text viewer"""

    bl_idname = "hymotion.open_log"
    bl_label = "Open Log"

    filepath: bpy.props.StringProperty(name="Log File", subtype="FILE_PATH")

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not Path(self.filepath).is_file():
            return _report_error(self, bad_request(f"The log {self.filepath} does not exist yet.", ""))
        bpy.ops.wm.path_open(filepath=self.filepath)
        return {"FINISHED"}


classes = (
    HYMOTION_OT_generate,
    HYMOTION_OT_batch_bake,
    HYMOTION_OT_cancel,
    HYMOTION_OT_stop_backend,
    HYMOTION_OT_preset_load,
    HYMOTION_OT_preset_save,
    HYMOTION_OT_preset_delete,
    HYMOTION_MT_preset_load,
    HYMOTION_MT_preset_delete,
    HYMOTION_OT_history_use,
    HYMOTION_OT_history_clear,
    HYMOTION_OT_add_smplx_body,
    HYMOTION_OT_install_backend,
    HYMOTION_OT_download_weights,
    HYMOTION_OT_doctor,
    HYMOTION_OT_copy_doctor_report,
    HYMOTION_OT_cancel_setup_task,
    HYMOTION_OT_open_log,
)


def stop_setup_tasks() -> None:
    """On unregister: no set-up command keeps running, no timer keeps firing."""
    for task in backend_setup.tasks.values():
        if task.running:
            task.cancel()
    if bpy.app.timers.is_registered(_watch_setup_tasks):
        bpy.app.timers.unregister(_watch_setup_tasks)
