"""The panel's settings, saved with the .blend file on each scene (``scene.hymotion``), and the prompt history.

The PropertyGroups hold data only; what works on them are module functions (Blender 4.2's bpy module crashed at exit
when these were methods of the registered class).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy

from hymotion.shared.jobs import DEFAULT_CFG, DEFAULT_STEPS, MAX_CFG, MAX_DURATION, MAX_STEPS
from hymotion.shared.presets import GenerationPreset

from ..scene import bake

HISTORY_LENGTH = 20

TARGET_ITEMS = [
    ("NEW", "New Armature", "Build a new SMPL-X armature for the result"),
    ("ACTIVE", "Active Armature", "Bake onto the active object, an SMPL-X armature made by HY-Motion"),
]
FPS_MODE_DESCRIPTIONS = {
    "RESAMPLE": ("Resample", "Resample the 30 fps motion to the scene's frame rate (scene settings stay as they are)"),
    "SET_SCENE_FPS": ("Set Scene to 30 fps", "Change the scene's frame rate to the motion's 30 fps"),
}
NLA_LAYOUT_DESCRIPTIONS = {
    "SEQUENCE": ("End to End", "Lay the clips one after another on one NLA track"),
    "STACK": ("Stacked", "Put each clip on its own NLA track, all starting together"),
}
KEY_MODE_DESCRIPTIONS = {
    "EVERY_FRAME": ("Every Frame", "A key on every frame: exactly what the model made"),
    "SPARSE": ("Sparse", "Few Bezier keys an animator can edit, every bone within 0.5 cm and 1 degree of every frame "
                         "(Sparse Keys)"),
}
BATCH_SOURCE_ITEMS = [
    ("TEXT", "Text", "A text datablock in this file (Text Editor), one prompt per line"),
    ("FILE", "File", "A text file on disk, one prompt per line"),
]
# Bake options a preset carries besides the generation settings (stored in GenerationPreset.bake).
PRESET_BAKE_OPTIONS = ("in_place", "fps_mode", "nla_layout", "start_frame")


def _enum_items(names: tuple[str, ...], descriptions: dict[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    return [(name, *descriptions[name]) for name in names]


FPS_MODE_ITEMS = _enum_items(bake.FPS_MODES, FPS_MODE_DESCRIPTIONS)
NLA_LAYOUT_ITEMS = _enum_items(bake.NLA_MODES, NLA_LAYOUT_DESCRIPTIONS)
KEY_MODE_ITEMS = _enum_items(bake.KEY_MODES, KEY_MODE_DESCRIPTIONS)

# Every setting a generation takes, defined once for the panel (scene.hymotion) and the Generate and Batch Bake
# operators that can override it: the bpy property type and its arguments. Defaults and limits come from
# hymotion.shared.jobs where it defines them; a new limit there goes into its row here.
GENERATION_SETTINGS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "duration": (bpy.props.FloatProperty, dict(
        name="Duration", description="Clip length in seconds; 0 estimates it from the prompt (shown under the prompt)",
        default=0.0, min=0.0, max=MAX_DURATION, step=50, precision=2, unit="NONE",
    )),
    "seeds": (bpy.props.StringProperty, dict(
        name="Seeds", description="One Action per seed: e.g. 0, or 0,1,2, or 0-3 for four variations", default="0",
    )),
    "cfg": (bpy.props.FloatProperty, dict(
        name="CFG Scale",
        description="How strongly the motion follows the prompt (official: 5.0; 1.0 turns guidance off)",
        default=DEFAULT_CFG, min=0.1, soft_min=1.0, soft_max=10.0, max=MAX_CFG,
    )),
    "steps": (bpy.props.IntProperty, dict(
        name="Steps", description="Sampling steps (official: 50; fewer is faster and rougher)",
        default=DEFAULT_STEPS, min=1, soft_max=100, max=MAX_STEPS,
    )),
    "smoothing": (bpy.props.BoolProperty, dict(
        name="Smoothing", description="The official temporal smoothing of joint rotations", default=True,
    )),
    "target": (bpy.props.EnumProperty, dict(name="Target", items=TARGET_ITEMS, default="NEW")),
    "with_mesh": (bpy.props.BoolProperty, dict(
        name="Add Body Mesh",
        description="Give a new armature a simple blocky body, so the motion shows without any licensed body model",
        default=False,
    )),
    "fps_mode": (bpy.props.EnumProperty, dict(name="Frame Rate", items=FPS_MODE_ITEMS, default="RESAMPLE")),
    "in_place": (bpy.props.BoolProperty, dict(
        name="In Place", description="Remove the horizontal root motion, keep the height", default=False,
    )),
    "start_frame": (bpy.props.IntProperty, dict(name="Start Frame", description="Frame of the first key", default=1)),
    "keys": (bpy.props.EnumProperty, dict(name="Keys", items=KEY_MODE_ITEMS, default="EVERY_FRAME")),
    "fit_scene_range": (bpy.props.BoolProperty, dict(
        name="Fit Scene Range",
        description="After generating, set the scene's start and end frame to the new motion, so playback shows "
        "all of it and nothing more (the frame rate never changes)",
        default=True,
    )),
    "batch_source": (bpy.props.EnumProperty, dict(name="Prompt List", items=BATCH_SOURCE_ITEMS, default="TEXT")),
    "nla_layout": (bpy.props.EnumProperty, dict(name="NLA Layout", items=NLA_LAYOUT_ITEMS, default="SEQUENCE")),
}


def generation_property(setting: str, for_operator: bool = False) -> Any:
    """The bpy property of one GENERATION_SETTINGS row, for the panel or (``for_operator``) an operator.

    An operator's copy is never saved between calls, and its upper limit is only the slider's end: a script that
    passes a larger value then gets hymotion.shared.jobs' clear error instead of a value clamped without a word.
    """
    kind, arguments = GENERATION_SETTINGS[setting]
    arguments = dict(arguments)
    if for_operator:
        arguments["options"] = {"SKIP_SAVE"}
        if "max" in arguments:
            upper = arguments.pop("max")
            arguments["soft_max"] = min(upper, arguments.get("soft_max", upper))
    return kind(**arguments)


class HYMOTION_PG_history_item(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(name="Prompt")
    duration: bpy.props.FloatProperty(name="Duration", description="Seconds (0 = estimated from the prompt)")
    seeds: bpy.props.StringProperty(name="Seeds")
    accepted_seed: bpy.props.IntProperty(name="Accepted Take", description="Seed of the take accepted (-1: none)",
                                         default=-1)


class HYMOTION_PG_settings(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(
        name="Prompt",
        description="What the body does, in English, e.g. 'a person walks forward, then turns left and waves'",
    )
    duration: generation_property("duration")
    seeds: generation_property("seeds")
    cfg: generation_property("cfg")
    steps: generation_property("steps")
    smoothing: generation_property("smoothing")
    target: generation_property("target")
    with_mesh: generation_property("with_mesh")
    fps_mode: generation_property("fps_mode")
    in_place: generation_property("in_place")
    start_frame: generation_property("start_frame")
    keys: generation_property("keys")
    fit_scene_range: generation_property("fit_scene_range")
    batch_source: generation_property("batch_source")
    batch_text: bpy.props.PointerProperty(
        name="Text", type=bpy.types.Text,
        description="Text datablock with one prompt per line; '4.5 | prompt' sets that line's duration",
    )
    batch_file: bpy.props.StringProperty(
        name="File", subtype="FILE_PATH",
        description="Text file with one prompt per line; '4.5 | prompt' sets that line's duration",
    )
    nla_layout: generation_property("nla_layout")
    timeline_source: bpy.props.EnumProperty(name="Timeline List", items=BATCH_SOURCE_ITEMS, default="TEXT",
                                            description="Where the Timeline's 'seconds | prompt' lines come from")
    timeline_text: bpy.props.PointerProperty(
        name="Text", type=bpy.types.Text,
        description="Text datablock with one 'seconds | prompt' line per part of the timeline",
    )
    timeline_file: bpy.props.StringProperty(
        name="File", subtype="FILE_PATH",
        description="Text file with one 'seconds | prompt' line per part of the timeline",
    )
    preset_name: bpy.props.StringProperty(name="Preset Name", description="Name to save the current settings under")
    history: bpy.props.CollectionProperty(type=HYMOTION_PG_history_item)
    history_index: bpy.props.IntProperty(name="History", default=0)


def to_preset(settings: HYMOTION_PG_settings) -> GenerationPreset:
    return GenerationPreset(
        duration=float(settings.duration),
        seeds=settings.seeds,
        cfg=float(settings.cfg),
        steps=int(settings.steps),
        smoothing=bool(settings.smoothing),
        bake={name: getattr(settings, name) for name in PRESET_BAKE_OPTIONS},
    )


def apply_preset(settings: HYMOTION_PG_settings, preset: GenerationPreset) -> None:
    """Set the panel from a preset; bake options it lacks go back to their defaults (a built-in preset after a user
    preset is the built-in one, not a mix), unknown values raise TypeError."""
    settings.duration = preset.duration
    settings.seeds = preset.seeds
    settings.cfg = preset.cfg
    settings.steps = preset.steps
    settings.smoothing = preset.smoothing
    for name in PRESET_BAKE_OPTIONS:
        if name in preset.bake:
            setattr(settings, name, preset.bake[name])
        else:
            settings.property_unset(name)


def remember(settings: HYMOTION_PG_settings, prompt: str, duration: float, seeds: str) -> None:
    """Put a prompt at the top of the history (once), dropping the oldest beyond HISTORY_LENGTH."""
    history = settings.history
    for index, item in enumerate(history):
        if item.prompt == prompt:
            history.remove(index)
            break
    item = history.add()
    item.prompt, item.duration, item.seeds = prompt, duration, seeds
    history.move(len(history) - 1, 0)
    while len(history) > HISTORY_LENGTH:
        history.remove(len(history) - 1)
    settings.history_index = 0


classes = (HYMOTION_PG_history_item, HYMOTION_PG_settings)


def register_properties() -> None:
    bpy.types.Scene.hymotion = bpy.props.PointerProperty(type=HYMOTION_PG_settings)


def unregister_properties() -> None:
    del bpy.types.Scene.hymotion
