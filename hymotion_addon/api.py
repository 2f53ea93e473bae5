"""Generating from a script or Blender's Python console.

:func:`generate` blocks until every clip is baked and returns the Actions; it uses the add-on's preferences (backend
Python, model, memory plan) and the session's warm backend, exactly like the panel. Import it from the installed
extension (the repository name, ``user_default`` here, is the one shown in Preferences > Get Extensions)::

    from bl_ext.user_default.hymotion.hymotion_addon import api
    actions = api.generate("a person jumps twice", duration=3.0, seeds=(0, 1))

:func:`retarget_action` puts an Action baked on the SMPL-X armature onto your own rig, with the same defaults as the
panel's Retarget to Rig (docs/retarget-export.md)::

    action = api.retarget_action(bpy.data.objects["SMPLX_jumps_twice"], bpy.data.objects["Armature"])

Known frames (docs/blender.md, "Beyond one clip"): ``generate(..., armature=rig, start_from=scene.frame_current)``
continues from the rig's pose, ``start_from=20, end_at=80`` in-betweens two poses of its Action (written into it),
``loop=True`` makes a cycle; :func:`generate_timeline` bakes a ``seconds | prompt`` list as one Action;
:func:`regenerate` makes a range of an Action anew, keeping every key outside it.

Takes (docs/blender.md, "Takes"): ``generate(..., seeds="0-3", takes=True)`` makes the results takes of one rig;
:func:`accept_take` keeps one as the rig's Action, :func:`reject_take` drops one, :func:`generate_more_takes` adds
more seeds of the same prompt, :func:`retarget_takes` puts them on your rig as its takes.

docs/blender.md has more, including the import path when running from a source checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import bpy

from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.jobs import DEFAULT_CFG, DEFAULT_STEPS, parse_seeds
from hymotion.shared.prompt_guide import suggest_duration

from .scene import bake, generation, known_frames, rig_pose, sequence, take_runs
from .scene import regenerate as regenerate_scene
from .scene import takes as scene_takes
from .scene.retarget import retarget_action
from .scene.sequence import import_clip, make_cyclic, save_pose, sequence_on_nla
from .ui import preferences, takes_ui

__all__ = ["GenerationError", "HyMotionError", "accept_take", "compare_takes", "generate", "generate_more_takes",
           "generate_timeline", "import_clip", "make_cyclic", "regenerate", "reject_take", "retarget_action",
           "retarget_takes", "save_pose", "sequence_on_nla", "takes_of"]


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
    start_from: int | None = None,
    end_at: int | None = None,
    loop: bool = False,
    context_frames: int = 1,
    keys: str = "EVERY_FRAME",
    takes: bool = False,
) -> list[bpy.types.Action]:
    """Generate one Action per prompt x seed, bake them and return them in order (prompt-major).

    ``prompts`` is one prompt or a list. ``duration`` is seconds for all prompts, one per prompt, or None to
    estimate each from its prompt. ``seeds`` is an int, a list of ints or text like "0-3". ``armature`` is an SMPL-X
    armature made by HY-Motion, the animator's mapped rig (its pose read through the retarget's mapping, the result
    retargeted back onto it with one floor and anchor across the pieces), or None to build a new SMPL-X armature.
    ``nla_layout`` ("SEQUENCE" or "STACK") also pushes each Action onto the NLA. ``on_action(run, action)`` is called
    right after each Action is baked. ``timeout`` (seconds, after the backend is up) cancels the job when it runs
    longer.

    Known frames, from ``armature``'s evaluated pose: ``start_from`` (a scene frame) starts each clip in that pose,
    its Action starting on that frame (``context_frames`` model frames ending there guide it); ``end_at`` ends it in
    that pose, its Action ending on that frame. Both: an in-between of one prompt and seed, its duration the gap,
    written into the armature's active Action between the frames (that Action is returned). ``loop``: the last
    frame equals the first, and every Action gets Cycles modifiers. ``keys`` "SPARSE" bakes sparse Bezier keys (Sparse
    Keys at its defaults: every bone within 0.5 cm and 1 degree) instead of one per frame; an in-between always gets
    every frame (its keys go into the Action around it).

    ``takes``: the Actions become takes of the rig (``armature``, or the new one), added to any it has, the newest
    shown; choose with :func:`accept_take` / :func:`reject_take`.

    Raises :class:`GenerationError` (a HyMotionError with ``code``, ``message``, ``hint`` and the ``actions`` made so
    far) when the backend fails, dies or the run times out, and HyMotionError ``bad_request`` for bad arguments.
    """
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompt_list or not all(isinstance(prompt, str) for prompt in prompt_list):
        raise bad_request("prompts must be a prompt or a list of prompts (text).", 'e.g. generate("a person waves")')
    _check_armature(armature)
    bake.check_keys(keys)
    seed_list = _seeds(seeds)
    if takes and (nla_layout is not None or (start_from is not None and end_at is not None)):
        raise bad_request("Takes are alternatives the rig plays one at a time, so they are not laid out on the NLA "
                          "or written into an in-between.", "Pass takes=False, or drop nla_layout / end_at.")
    known = None
    if start_from is not None or end_at is not None or loop:
        if start_from is not None and end_at is not None and (len(prompt_list) > 1 or len(seed_list) > 1
                                                              or duration is not None):
            raise bad_request("An in-between is one prompt and one seed, its duration the gap between the frames.",
                              "Pass one prompt, one seed and duration=None.")
        if in_place and (start_from is not None or end_at is not None):
            raise bad_request("in_place drops the root's travel, so the clip could not start or end where the rig "
                              "is.", "Use in_place=False with start_from / end_at.")
        durations = _durations(prompt_list, duration)
        if end_at is not None and start_from is None and len(set(durations)) > 1:
            raise bad_request("Clips ending on one frame need one duration.", "Pass a single duration.")
        known = known_frames.known_frames(
            armature, bpy.context.scene, start_from=start_from, end_at=end_at, loop=loop,
            context_frames=context_frames, duration=durations[0], start_frame=start_frame,
        )
        start_frame = known.start_frame
        durations = [known.duration] if known.duration is not None else durations
    else:
        durations = _durations(prompt_list, duration)
    spec = generation.RunSpec(
        clips=[generation.Clip(prompt, seconds) for prompt, seconds in zip(prompt_list, durations)],
        seeds=seed_list,
        cfg=cfg,
        steps=steps,
        smoothing=smoothing,
        fps_mode=fps_mode,
        in_place=in_place,
        start_frame=start_frame,
        nla_layout=nla_layout,
        with_mesh=with_mesh,
        keys="EVERY_FRAME" if known is not None and known.between is not None else keys,
        constraint=known.constraint if known is not None else None,
        takes=bool(takes),
    )
    run = _run(spec, armature, timeout, on_action)
    return known.place_results(run.armature, run.actions) if known is not None else run.actions


def generate_timeline(
    timeline: str | Path | bpy.types.Text,
    seeds: int | str | Iterable[int] = (0,),
    cfg: float = DEFAULT_CFG,
    steps: int = DEFAULT_STEPS,
    smoothing: bool = True,
    armature: bpy.types.Object | None = None,
    in_place: bool = False,
    timeout: float | None = None,
    *,
    duration: float = 0.0,
    fps_mode: str = "RESAMPLE",
    start_frame: int = 1,
    nla_layout: str | None = None,
    with_mesh: bool = False,
    on_action: generation.ActionObserver | None = None,
) -> list[bpy.types.Action]:
    """Bake a timeline as ONE continuous Action per seed: ``timeline`` holds lines ``seconds | prompt`` (the text
    itself, a Text datablock or a Path to a file); each segment continues from the one before, seams blended, so the
    Action's length is the sum of the lines. A line without seconds takes ``duration`` (> 0) or an estimate. A
    malformed line raises ``bad_request`` naming it, before anything runs. Other arguments as :func:`generate`."""
    if isinstance(timeline, bpy.types.Text):
        text, source = timeline.as_string(), f"Text '{timeline.name}'"
    elif isinstance(timeline, Path):
        try:
            text, source = timeline.read_text(encoding="utf-8"), str(timeline)
        except (OSError, UnicodeDecodeError) as error:
            raise bad_request(f"Cannot read the timeline {timeline}: {error}.",
                              "Check the path; save it as UTF-8.") from None
    elif isinstance(timeline, str):
        text, source = timeline, "timeline"
    else:
        raise bad_request("timeline must be its text, a Text datablock or a Path.", 'e.g. "2 | a person walks"')
    _check_armature(armature)
    spec = generation.RunSpec(
        clips=sequence.timeline_clips(text, source, duration), seeds=_seeds(seeds), cfg=cfg, steps=steps,
        smoothing=smoothing, fps_mode=fps_mode, in_place=in_place, start_frame=start_frame, nla_layout=nla_layout,
        with_mesh=with_mesh, timeline=True,
    )
    return _run(spec, armature, timeout, on_action).actions


def takes_of(armature: bpy.types.Object) -> list[bpy.types.Action]:
    """The rig's takes, in the order they were made (empty when it has none)."""
    return scene_takes.takes_of(armature)


def accept_take(action: bpy.types.Action, armature: bpy.types.Object | None = None,
                keep_others: bool = False) -> bpy.types.Action:
    """Make the take its rig's Action: the rig's other takes are removed from the file (``keep_others``: kept with
    a fake user), the scene's History remembers the accepted seed. Returns ``action``. An Action that is not a take,
    or a take of another rig than ``armature``, raises ``bad_request`` and changes nothing."""
    owner = scene_takes.owner_of(action, armature)
    scene_takes.accept(action, owner, keep_others=keep_others)
    takes_ui.remember_accepted(bpy.context.scene, action)
    return action


def reject_take(action: bpy.types.Action, armature: bpy.types.Object | None = None, keep: bool = False) -> str:
    """Drop one take: removed from the file (``keep``: kept with a fake user). The rig shows the next take, or after
    the last one the Action it had before. Returns 'removed' or 'kept'."""
    return scene_takes.reject(action, armature, keep=keep)


def compare_takes(armature: bpy.types.Object, end: bool = False) -> list[bpy.types.Object]:
    """Copies of the rig beside it, one per take it does not show, playing side by side; ``end`` removes them."""
    if end:
        scene_takes.end_compare(armature)
        return []
    return scene_takes.compare(armature)


def generate_more_takes(armature: bpy.types.Object, count: int = 2, take: bpy.types.Action | None = None,
                        timeout: float | None = None) -> list[bpy.types.Action]:
    """``count`` more takes of ``take``'s prompt (default: the take the rig shows) with seeds not used yet and the
    settings that made it; on a mapped rig they are generated on its SMPL-X rig and retargeted the same way.
    Returns the new takes of ``armature``."""
    more = take_runs.more_takes(armature, count, take)
    return more.place(_run(more.spec, more.smplx_rig, timeout, None).actions)


def retarget_takes(source: bpy.types.Object, target: bpy.types.Object, mapping=None,
                   **options) -> list[bpy.types.Action]:
    """Every take of the SMPL-X rig ``source`` retargeted onto ``target`` as its takes (options as
    :func:`retarget_action`)."""
    return take_runs.retarget_takes(source, target, mapping, **options)


def regenerate(
    armature: bpy.types.Object,
    frame_start: int | None = None,
    frame_end: int | None = None,
    prompt: str | None = None,
    seed: int = 1,
    cfg: float = DEFAULT_CFG,
    steps: int = DEFAULT_STEPS,
    smoothing: bool = True,
    timeout: float | None = None,
    *,
    context_frames: int = regenerate_scene.REGENERATE_CONTEXT,
    on_action: generation.ActionObserver | None = None,
) -> bpy.types.Action:
    """Make scene frames ``frame_start``..``frame_end`` (default: the scene's preview range) of ``armature``'s active
    Action anew with ``prompt`` (default: the one the Action was made with) and ``seed``, and return that Action.
    Every key outside the range stays exactly as it was; the new motion starts from the frame before the range
    (``context_frames`` model frames ending there guide it) and ends in the frame after it. Bad ranges raise
    ``bad_request`` before anything runs; a failed run raises :class:`GenerationError` and changes nothing."""
    if armature is None:
        raise bad_request("Regenerating needs the armature whose Action holds the clip.", "Pass armature=...")
    _check_armature(armature)
    scene = bpy.context.scene
    first, last = regenerate_scene.segment_range(scene, frame_start, frame_end)
    known = regenerate_scene.regenerate_frames(armature, scene, first, last, context_frames)
    assert known.action is not None and known.duration is not None  # regenerate_frames always sets both
    text = prompt if prompt is not None else regenerate_scene.clip_prompt(armature)
    if not text.strip():
        raise bad_request(f"The Action '{known.action.name}' holds no prompt to regenerate with.",
                          'Pass one: regenerate(rig, 40, 80, prompt="a person turns round")')
    spec = generation.RunSpec(
        clips=[generation.Clip(text, known.duration)], seeds=_seeds(seed)[:1], cfg=cfg, steps=steps,
        smoothing=smoothing, start_frame=known.start_frame, constraint=known.constraint,
    )
    run = _run(spec, armature, timeout, on_action)
    (action,) = known.place_results(run.armature, run.actions)
    return action


def _check_armature(armature: bpy.types.Object | None) -> None:
    if armature is not None:
        rig_pose.require_target(armature, "Pass one built by the add-on, your mapped rig, or armature=None for a "
                                          "new SMPL-X armature.")


def _run(spec: generation.RunSpec, armature: bpy.types.Object | None, timeout: float | None,
         on_action: generation.ActionObserver | None) -> generation.Run:
    """Run ``spec`` on the session's backend until done; GenerationError when it did not finish."""
    config = preferences.backend_config()
    if config is None:
        raise preferences.not_installed_error()
    context = bpy.context
    run = generation.Run(
        spec, config, context.scene, context.collection or context.scene.collection, armature, on_action=on_action
    )
    generation.start_run(run, wait=True)
    run.run_until_done(timeout)
    if run.error is not None:
        raise GenerationError(run.error, run.actions)
    return run


def _durations(prompts: list[str], duration: float | Sequence[float] | None) -> list[float]:
    if duration is None:
        return [suggest_duration(prompt) for prompt in prompts]
    if isinstance(duration, bool):
        raise bad_request(f"Duration {duration!r} is not a number of seconds.", "Pass e.g. duration=4.0, or None.")
    if isinstance(duration, (int, float)):
        return [float(duration)] * len(prompts)
    durations = list(duration)
    if len(durations) != len(prompts):
        raise bad_request(f"Got {len(durations)} durations for {len(prompts)} prompts.",
                          "Give one duration, one per prompt, or None to estimate them.")
    return durations


def _seeds(seeds: int | str | Iterable[int]) -> list[int]:
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    if isinstance(seeds, bool):
        raise bad_request(f"Seeds {seeds!r} are not whole numbers.", "Pass e.g. seeds=0, seeds=\"0-3\" or [0, 1].")
    if isinstance(seeds, int):
        return [seeds]
    return list(seeds)
