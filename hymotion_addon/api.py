"""Generating from a script or Blender's Python console.

:func:`generate` blocks until every clip is baked and returns the Actions; it uses the add-on's preferences (backend
Python, model, memory plan) and the session's warm backend, exactly like the panel. Import it from the installed
extension (the repository name, ``user_default`` here, is the one shown in Preferences > Get Extensions)::

    from bl_ext.user_default.hymotion.hymotion_addon import api
    actions = api.generate("a person jumps twice", duration=3.0, seeds=(0, 1))

:func:`retarget_action` puts an Action baked on the SMPL-X armature onto your own rig, with the same defaults as the
panel's Retarget to Rig (docs/retarget-export.md)::

    action = api.retarget_action(bpy.data.objects["SMPLX"], bpy.data.objects["Armature"])

docs/blender.md has more, including the import path when running from a source checkout.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import bpy
from hymotion.errors import HyMotionError, bad_request
from hymotion.jobs import DEFAULT_CFG, DEFAULT_STEPS, parse_seeds
from hymotion.prompt_guide import suggest_duration

from . import generation, preferences, rig
from .retarget import retarget_action
from .sequence import import_clip, make_cyclic, save_pose

__all__ = ["GenerationError", "HyMotionError", "generate", "import_clip", "make_cyclic", "retarget_action", "save_pose"]


class GenerationError(HyMotionError):
    """A generation that failed or was cancelled. ``actions`` are the ones made before it stopped; they stay in the
    file (with a fake user), so a long batch is never lost to a late failure."""

    def __init__(self, error: HyMotionError, actions: Sequence[bpy.types.Action]) -> None:
        super().__init__(error.code, error.message, error.hint)
        self.actions = list(actions)


def generate(
    prompts: str | Sequence[str],
    duration: float | Sequence[float] | None = None,
    seeds: int | str | Iterable[int] = (0,),
    cfg: float = DEFAULT_CFG,
    steps: int = DEFAULT_STEPS,
    smoothing: bool = True,
    armature: bpy.types.Object | None = None,
    in_place: bool = False,
    timeout: float | None = None,
    *,
    fps_mode: str = "RESAMPLE",
    start_frame: int = 1,
    nla_layout: str | None = None,
    with_mesh: bool = False,
    on_action: generation.ActionObserver | None = None,
) -> list[bpy.types.Action]:
    """Generate one Action per prompt x seed, bake them and return them in order (prompt-major).

    ``prompts`` is one prompt or a list. ``duration`` is seconds for all prompts, one per prompt, or None to
    estimate each from its prompt. ``seeds`` is an int, a list of ints or text like "0-3". ``armature`` is an SMPL-X
    armature made by HY-Motion, or None to build a new one. ``nla_layout`` ("SEQUENCE" or "STACK") also pushes each
    Action onto the NLA. ``on_action(run, action)`` is called right after each Action is baked. ``timeout`` (seconds,
    after the backend is up) cancels the job when it runs longer.

    Raises :class:`GenerationError` (a HyMotionError with ``code``, ``message``, ``hint`` and the ``actions`` made so
    far) when the backend fails, dies or the run times out, and HyMotionError ``bad_request`` for bad arguments.
    """
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompt_list or not all(isinstance(prompt, str) for prompt in prompt_list):
        raise bad_request("prompts must be a prompt or a list of prompts (text).", 'e.g. generate("a person waves")')
    durations = _durations(prompt_list, duration)
    if armature is not None and not rig.is_hymotion_armature(armature):
        raise bad_request(
            f"'{getattr(armature, 'name', armature)}' is not an SMPL-X armature made by HY-Motion.",
            "Pass one built by the add-on, or armature=None for a new one.",
        )
    config = preferences.backend_config()
    if config is None:
        raise preferences.not_installed_error()
    context = bpy.context
    spec = generation.RunSpec(
        clips=[generation.Clip(prompt, seconds) for prompt, seconds in zip(prompt_list, durations)],
        seeds=_seeds(seeds),
        cfg=cfg,
        steps=steps,
        smoothing=smoothing,
        fps_mode=fps_mode,
        in_place=in_place,
        start_frame=start_frame,
        nla_layout=nla_layout,
        with_mesh=with_mesh,
    )
    run = generation.Run(
        spec, config, context.scene, context.collection or context.scene.collection, armature, on_action=on_action
    )
    generation.start_run(run, wait=True)
    run.run_until_done(timeout)
    if run.error is not None:
        raise GenerationError(run.error, run.actions)
    return run.actions


def _durations(prompts: list[str], duration: float | Sequence[float] | None) -> list[float]:
    if duration is None:
        return [suggest_duration(prompt) for prompt in prompts]
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return [float(duration)] * len(prompts)
    durations = list(duration)
    if len(durations) != len(prompts):
        raise bad_request(f"Got {len(durations)} durations for {len(prompts)} prompts.",
                          "Give one duration, one per prompt, or None to estimate them.")
    return durations


def _seeds(seeds: int | str | Iterable[int]) -> list[int]:
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [seeds]
    return list(seeds)
