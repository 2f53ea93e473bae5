"""The take workflows that run a generation or a retarget (kept apart from :mod:`.takes`, which both
:mod:`.generation` and :mod:`.retarget` use): Generate More, and Retarget Takes onto the animator's rig."""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from hymotion.shared.errors import bad_request
from hymotion.shared.jobs import DEFAULT_CFG, DEFAULT_STEPS

from ..core.bone_mapping import BoneMapping
from . import generation, retarget, rig, takes


@dataclass
class MoreTakes:
    """What Generate More runs: ``spec`` on ``smplx_rig`` (the rig itself, or the SMPL-X rig a mapped rig's takes came
    from), then, for a mapped rig, each new take retargeted onto ``target`` the way its takes were."""

    smplx_rig: bpy.types.Object
    target: bpy.types.Object | None
    spec: generation.RunSpec
    retarget: dict | None

    def place(self, actions: list[bpy.types.Action]) -> list[bpy.types.Action]:
        """After the run: the new takes as takes of the rig Generate More was asked on, in order."""
        if self.target is None:
            return list(actions)
        how = self.retarget or {}
        mapping = None
        if how.get("mapping") is not None:
            mapping = BoneMapping(bones=how["mapping"], convention=how.get("convention", "custom"))
        options = dict(how.get("options", {}))
        return [retarget.retarget_action(self.smplx_rig, self.target, action, mapping, **dict(options))
                for action in actions]


def more_takes(armature: bpy.types.Object, count: int, take: bpy.types.Action | None = None) -> MoreTakes:
    """Generate More for ``armature``: ``count`` new seeds of ``take``'s prompt (default: the take it shows, else
    its newest), with the duration, start frame and settings that made it."""
    made = takes.takes_of(armature)
    if not made:
        raise bad_request(f"'{getattr(armature, 'name', armature)}' has no takes to make more of.",
                          "Generate with several seeds first (Settings > Seeds, e.g. 0-3).")
    take = take or takes.shown_take(armature) or made[-1]
    takes.owner_of(take, armature)
    recipe = takes.recipe(take)
    if rig.is_hymotion_armature(armature):
        smplx_rig, target = armature, None
    else:
        smplx_rig, target = takes.source_of(armature, take), armature
        if smplx_rig is None or smplx_rig.name not in bpy.data.objects or "retarget" not in recipe:
            raise bad_request(f"'{take.name}' was retargeted from an SMPL-X rig that is no longer in the file, so "
                              "there is nothing to generate more takes on.",
                              "Generate on a HY-Motion armature and retarget its takes again (Retarget Takes).")
    prompt = str(take.get("hymotion_prompt", ""))
    spec = generation.RunSpec(
        clips=[generation.Clip(prompt, float(take.get("hymotion_duration", 0.0)))],
        seeds=takes.next_seeds([smplx_rig, armature], prompt, count),
        cfg=float(recipe.get("cfg", DEFAULT_CFG)),
        steps=int(recipe.get("steps", DEFAULT_STEPS)),
        smoothing=bool(recipe.get("smoothing", True)),
        fps_mode=str(recipe.get("fps_mode", "RESAMPLE")),
        in_place=bool(recipe.get("in_place", False)),
        start_frame=takes.play_range(take)[0],
        takes=True,
    )
    return MoreTakes(smplx_rig, target, spec, recipe.get("retarget"))


def retarget_takes(source: bpy.types.Object, target: bpy.types.Object, mapping=None,
                   **options) -> list[bpy.types.Action]:
    """Retarget every take of the SMPL-X rig ``source`` onto ``target`` as takes of it, in order; ``target`` then
    shows the one ``source`` shows. Options are those of :func:`.retarget.retarget_action`."""
    made = takes.takes_of(source)
    if not made:
        raise bad_request(f"'{getattr(source, 'name', source)}' has no takes to retarget.",
                          "Generate with several seeds on it first, or use Retarget to Rig for one Action.")
    shown = takes.shown_take(source)
    results = [retarget.retarget_action(source, target, action, mapping, **dict(options)) for action in made]
    if shown is not None:
        takes.show(target, results[made.index(shown)])
    return results
