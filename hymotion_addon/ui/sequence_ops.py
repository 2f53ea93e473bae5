"""Operators and the sidebar section for working beyond one clip: generate starting from the rig's current pose,
in-between two poses of its Action, a loop, a timeline as one Action (through the backend, like Generate: modal, Esc
cancels); save the rig's pose for ``hymotion generate --start-from/--end-at``, import a generated clip at the current
frame, make a loop cycle (docs/blender.md)."""

from __future__ import annotations

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.jobs import parse_seeds

from ..scene import bake, generation, known_frames, regenerate, rig, rig_pose, sequence
from .operators import GenerationOperator, PromptListOperator, common_spec_fields
from .properties import generation_property
from .text_fit import draw_wrapped


def _armature(context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if rig.is_hymotion_armature(obj) else None


class _KnownFramesOperator(GenerationOperator):
    """Generate the panel's prompt (first seed) with known frames taken from the rig, then put the result where it
    belongs (:meth:`KnownFrames.place_results`)."""

    prompt: bpy.props.StringProperty(name="Prompt", description="What the body does (default: the panel's)",
                                     options={"SKIP_SAVE"})

    def known(self, context: bpy.types.Context, armature: bpy.types.Object | None) -> known_frames.KnownFrames:
        raise NotImplementedError

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        prompt = self.value(context, "prompt").strip()
        if not prompt:
            raise bad_request("The prompt is empty.", "Describe the motion, e.g. 'a person sits down'.")
        armature = self.target_armature(context)
        self._known = self.known(context, armature)
        fields = common_spec_fields(self, context)
        fields["start_frame"] = self._known.start_frame
        if self._known.between is not None:
            fields["keys"] = "EVERY_FRAME"  # the in-between's keys are copied into the Action around it, frame by frame
        if self._known.constraint.start is not None or self._known.constraint.end is not None:
            # The pinned pose is where the rig is, at the scene's frames: the clip keeps its travel and timing.
            fields.update(in_place=False, fps_mode="RESAMPLE")
        return generation.RunSpec(
            clips=[generation.Clip(prompt, self._known.duration or self.duration_for(context, prompt))],
            seeds=parse_seeds(self.value(context, "seeds"))[:1], constraint=self._known.constraint, **fields,
        )

    def conclude(self, context: bpy.types.Context, run: generation.Run) -> set[str]:
        if run.actions and run.error is None and not run.cancel_requested:
            try:
                run.actions[:] = self._known.place_results(run.armature, run.actions)
                self.after(context, run)
            except HyMotionError as error:
                self.report({"ERROR"}, str(error))
        return super().conclude(context, run)

    def after(self, context: bpy.types.Context, run: generation.Run) -> None:
        """Anything more once the results are placed."""


def _active_hymotion_armature(context: bpy.types.Context) -> bpy.types.Object:
    """The active SMPL-X armature, or the animator's mapped rig (issue 27)."""
    return rig_pose.require_target(
        context.active_object,
        "Select the HY-Motion armature or your mapped rig whose pose the motion starts from.",
    )


def _target_or_new(operator: GenerationOperator, context: bpy.types.Context) -> bpy.types.Object | None:
    """The panel's target for a clip that pins no pose: a new SMPL-X armature, or the active one or mapped rig."""
    if operator.value(context, "target") == "NEW":
        return None
    return _active_hymotion_armature(context)


class HYMOTION_OT_continue_pose(_KnownFramesOperator, bpy.types.Operator):
    """Generate the prompt starting in the active HY-Motion armature's pose at the current frame; the new Action
    starts at that frame, where the old motion is. Esc cancels"""

    bl_idname = "hymotion.continue_pose"
    bl_label = "Start from Current Pose"

    context_frames: bpy.props.IntProperty(
        name="Context Frames", default=10, min=1, max=120,
        description="Frames ending at the current one (1/30 s apart) the new motion continues from",
    )
    to_nla: bpy.props.BoolProperty(
        name="Sequence on NLA", default=False,
        description="Lay the old Action (up to the current frame) and the new one on one NLA track, seamlessly",
    )

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object:
        return _active_hymotion_armature(context)

    def known(self, context, armature):
        self._before = armature.animation_data.action if armature.animation_data else None
        return known_frames.known_frames(armature, context.scene, start_from=context.scene.frame_current,
                                     context_frames=self.context_frames)

    def after(self, context, run):
        if self.to_nla:
            sequence.sequence_on_nla(run.armature, self._before, run.actions[0], self._known.start_frame)


class HYMOTION_OT_inbetween(_KnownFramesOperator, bpy.types.Operator):
    """Generate the prompt from the active Action's pose at one frame to its pose at another and write it into the
    Action between them. Esc cancels"""

    bl_idname = "hymotion.inbetween"
    bl_label = "In-between"

    frame_start: bpy.props.IntProperty(name="From Frame", description="The pose the motion starts in")
    frame_end: bpy.props.IntProperty(name="To Frame", description="The pose the motion ends in")

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object:
        return _active_hymotion_armature(context)

    def known(self, context, armature):
        return known_frames.known_frames(armature, context.scene, start_from=self.frame_start, end_at=self.frame_end)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        scene = context.scene
        if not self.properties.is_property_set("frame_start"):
            self.frame_start = scene.frame_current
        if not self.properties.is_property_set("frame_end"):
            self.frame_end = self.frame_start + round(bake.scene_fps(scene))
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.prop(self, "frame_start")
        self.layout.prop(self, "frame_end")


class HYMOTION_OT_generate_loop(_KnownFramesOperator, bpy.types.Operator):
    """Generate the prompt as a loop (its last frame is its first) and add Cycles modifiers, so it repeats and a walk
    carries on. Esc cancels"""

    bl_idname = "hymotion.generate_loop"
    bl_label = "Generate Loop"

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object | None:
        return _target_or_new(self, context)

    def known(self, context, armature):
        return known_frames.known_frames(armature, context.scene, loop=True,
                                     start_frame=int(self.value(context, "start_frame")))


class HYMOTION_OT_regenerate_segment(_KnownFramesOperator, bpy.types.Operator):
    """Make a range of the active Action anew (the preview range, or two frames) with a prompt (default: the clip's
    own) and a seed; every key outside the range stays, and the new motion meets the frames on both sides. Esc
    cancels"""

    bl_idname = "hymotion.regenerate_segment"
    bl_label = "Regenerate Segment"

    frame_start: bpy.props.IntProperty(name="First Frame", description="The first frame made anew")
    frame_end: bpy.props.IntProperty(name="Last Frame", description="The last frame made anew")
    seed: bpy.props.IntProperty(name="Seed", default=1, min=0, description="Another seed gives another take")
    context_frames: bpy.props.IntProperty(
        name="Context Frames", default=regenerate.REGENERATE_CONTEXT, min=1, max=120,
        description="Frames before the range (1/30 s apart) the new motion continues from",
    )

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object:
        return _active_hymotion_armature(context)

    def known(self, context, armature):
        given = self.properties.is_property_set("frame_start") or self.properties.is_property_set("frame_end")
        first, last = regenerate.segment_range(context.scene, *((self.frame_start, self.frame_end) if given
                                                                else (None, None)))
        return regenerate.regenerate_frames(armature, context.scene, first, last, self.context_frames)

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        if not self.prompt.strip():
            armature = context.active_object
            self.prompt = (regenerate.clip_prompt(armature) if armature is not None else "") or self.prompt
        spec = super().spec(context)
        spec.seeds = [int(self.seed)]
        return spec

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        scene = context.scene
        if not self.properties.is_property_set("frame_start"):
            if scene.use_preview_range:
                self.frame_start, self.frame_end = scene.frame_preview_start, scene.frame_preview_end
            else:
                self.frame_start = scene.frame_current
                self.frame_end = self.frame_start + round(bake.scene_fps(scene))
        if not self.prompt and context.active_object is not None:
            self.prompt = regenerate.clip_prompt(context.active_object)
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context: bpy.types.Context) -> None:
        for name in ("frame_start", "frame_end", "prompt", "seed", "context_frames"):
            self.layout.prop(self, name)


class HYMOTION_OT_generate_timeline(PromptListOperator, bpy.types.Operator):
    """Generate the lines of a 'seconds | prompt' list (the Batch panel's text or file) one after the other as ONE
    continuous Action, each continuing from the one before. Esc cancels"""

    bl_idname = "hymotion.generate_timeline"
    bl_label = "Timeline"

    list_settings = "timeline"
    list_panel = "Continue, In-between, Loop panel"

    def target_armature(self, context: bpy.types.Context) -> bpy.types.Object | None:
        return _target_or_new(self, context)

    def spec(self, context: bpy.types.Context) -> generation.RunSpec:
        text, source = self.prompt_text(context)
        return generation.RunSpec(
            clips=sequence.timeline_clips(text, source, float(self.value(context, "duration"))),
            seeds=parse_seeds(self.value(context, "seeds"))[:1], timeline=True, **common_spec_fields(self, context),
        )


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
    keys: generation_property("keys", for_operator=True)

    def execute(self, context):
        armature = _armature(context)
        try:
            if armature is None:
                armature = rig.build_armature(context)
            action = sequence.import_clip(
                self.filepath, armature, start_frame=context.scene.frame_current,
                nla_layout="SEQUENCE" if self.to_nla else None, scene=context.scene, keys=self.keys, loop=self.cyclic,
            )
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
        assert armature is not None  # Blender runs execute only after poll() found the armature
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
        draw_sequence(self.layout, context)


def draw_sequence(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """Generate with known frames (the main panel's prompt and settings), then the file-based tools."""
    settings = context.scene.hymotion
    column = layout.column(align=True)
    column.operator(HYMOTION_OT_continue_pose.bl_idname, icon="FORWARD")
    column.operator(HYMOTION_OT_inbetween.bl_idname, icon="ARROW_LEFTRIGHT")
    column.operator(HYMOTION_OT_generate_loop.bl_idname, icon="FILE_REFRESH")
    draw_wrapped(layout, "Timeline: one 'seconds | prompt' line after the other, as one Action.", icon="SEQ_SEQUENCER")
    column = layout.column()
    column.use_property_split = True
    column.use_property_decorate = False
    column.row().prop(settings, "timeline_source", expand=True)
    column.prop(settings, "timeline_text" if settings.timeline_source == "TEXT" else "timeline_file")
    layout.operator(HYMOTION_OT_generate_timeline.bl_idname, icon="SEQ_SEQUENCER")
    layout.operator(HYMOTION_OT_regenerate_segment.bl_idname, icon="PREVIEW_RANGE")
    column = layout.column(align=True)
    column.operator(HYMOTION_OT_save_pose.bl_idname, icon="POSE_HLT")
    column.operator(HYMOTION_OT_import_clip.bl_idname, icon="IMPORT")
    column.operator(HYMOTION_OT_make_cyclic.bl_idname, icon="MOD_TIME")
    column.operator("hymotion.sparse_keys", icon="IPO_BEZIER")  # sparse_keys_ops; by name, registered after this


classes: tuple[type, ...] = (HYMOTION_OT_continue_pose, HYMOTION_OT_inbetween, HYMOTION_OT_generate_loop,
                             HYMOTION_OT_regenerate_segment,
                             HYMOTION_OT_generate_timeline, HYMOTION_OT_save_pose, HYMOTION_OT_import_clip,
                             HYMOTION_OT_make_cyclic, HYMOTION_PT_sequence)
