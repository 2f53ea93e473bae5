"""Put a HY-Motion clip on the animator's own rig as a plain Action (the bpy side of :mod:`.core.retarget_math`).

The entry point is :func:`bake_onto_rig` (a generated clip as numpy arrays) and :func:`retarget_action` (an Action
already baked onto the SMPL-X armature). Both build one Action on the target rig with a key on every frame for each
mapped bone, written in the bone's own rotation mode, and nothing else on the rig changes: no constraints are added,
and the rig's custom properties are only keyed inside the Action (Rigify's IK/FK switches are keyed to FK, since
the motion drives the FK controls). The rig's known IK controls are keyed to follow their limbs, so switching to IK
keeps the motion (for an IK chain rooted at a keyed control, its second bone's starting pose is keyed too). The
numpy work is :mod:`.core.retarget_math` (the transfer) and :mod:`.core.retarget_feet` (the feet).

Rigs whose mapped bones hang below constrained helper bones (Rigify's MCH bones, for instance) cannot be solved from
rest matrices alone: there the numpy solution is written first and then corrected against Blender's own evaluation,
one hierarchy level per pass, until every mapped bone has the world rotation the retarget asked for.
"""

from __future__ import annotations

import bpy
import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import (
    Y_UP_TO_Z_UP,
    quaternion_to_axis_angle,
    quaternion_to_euler,
)
from hymotion.shared.skeleton import BODY_JOINT_NAMES, FPS, NUM_BODY_JOINTS

from ..core import bone_mapping, motion_math, retarget_feet, retarget_math
from ..core.bone_mapping import BoneMapping
from . import bake, rig, sparse_action, takes
from .actions import action_fcurves, fcurve_bone, fcurve_factory
from .retarget_refine import refine_with_blender
from .target_rig import check_armature, check_keyable, plan_for, resolve_mapping, root_bone_candidate

ROTATION_PATHS = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}
_EULER_PATH = "rotation_euler"
# The options' defaults, one definition for the console API and the panel (retarget_ui reads them).
DEFAULT_FEET_CLEANUP = True
DEFAULT_ROOT_MOTION = "HIPS"
DEFAULT_IN_PLACE = False
DEFAULT_CONTACT_SETTINGS = retarget_feet.ContactSettings()  # frozen: one shared default is safe
RESIDUAL_REPORT_DEGREES = 1.0  # bones turned further than this from their source direction are reported


# --- reading rigs ---------------------------------------------------------------------------------------------------


# --- writing keys ---------------------------------------------------------------------------------------------------


class KeyWriter:
    """Creates the Action's F-curves once and (re)writes their values, in each bone's own rotation mode."""

    def __init__(self, action: bpy.types.Action, armature: bpy.types.Object, frames: np.ndarray) -> None:
        self.armature = armature
        self.frames = frames
        self.new_fcurve, self.slot = fcurve_factory(action, armature)
        self.curves: dict[str, list[bpy.types.FCurve]] = {}

    def _write(self, bone: str, path: str, values: np.ndarray) -> None:
        key = f"{bone}|{path}"
        if key in self.curves:
            self._set(self.curves[key], values)
            return
        data_path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{path}'
        self.curves[key] = []
        for index in range(values.shape[1]):
            fcurve = self.new_fcurve(data_path, index, bone)
            bake.write_keys(fcurve, self.frames, values[:, index])
            self.curves[key].append(fcurve)

    def rotation(self, bone: str, quaternions: np.ndarray) -> None:
        mode = self.armature.pose.bones[bone].rotation_mode
        if mode == "QUATERNION":
            values = quaternions
        elif mode == "AXIS_ANGLE":
            values = quaternion_to_axis_angle(quaternions)
        else:
            values = quaternion_to_euler(quaternions, mode)
        self._write(bone, ROTATION_PATHS.get(mode, _EULER_PATH), values)

    def location(self, bone: str, locations: np.ndarray) -> None:
        self._write(bone, "location", locations)

    def constant(self, bone: str, prop: str, value: float) -> None:
        data_path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]["{bpy.utils.escape_identifier(prop)}"]'
        fcurve = self.new_fcurve(data_path, 0, bone)
        bake.write_keys(fcurve, self.frames, np.full(self.frames.size, value))

    def _set(self, fcurves: list[bpy.types.FCurve], values: np.ndarray) -> None:
        for component, fcurve in enumerate(fcurves):
            flat = np.empty((self.frames.size, 2), dtype=np.float32)
            flat[:, 0] = self.frames
            flat[:, 1] = values[:, component]
            flat = flat.ravel()
            points = fcurve.keyframe_points
            points.foreach_set("co", flat)
            points.foreach_set("handle_left", flat)
            points.foreach_set("handle_right", flat)


def _rigify_switches(armature: bpy.types.Object, mapping: BoneMapping) -> list[str]:
    """Rigify limb controls holding an IK/FK switch, when the mapping drives Rigify's FK controls."""
    drives_fk = any(bone.endswith(("_fk.L", "_fk.R")) for bone in mapping.mapped().values())
    if mapping.convention != "rigify" and not drives_fk:
        return []
    prop = bone_mapping.RIGIFY_FK_SWITCH[0]
    return [pose_bone.name for pose_bone in armature.pose.bones if prop in pose_bone.keys()]


# --- the entry points -----------------------------------------------------------------------------------------------


def bake_onto_rig(
    target_armature: bpy.types.Object,
    translation: np.ndarray,
    rotations: np.ndarray,
    mapping: BoneMapping | dict[str, str] | None = None,
    *,
    name: str | None = None,
    prompt: str = "",
    seed: int = 0,
    model: str = "",
    duration: float | None = None,
    in_place: bool = DEFAULT_IN_PLACE,
    feet_cleanup: bool = DEFAULT_FEET_CLEANUP,
    root_motion: str = DEFAULT_ROOT_MOTION,
    root_bone: str | None = None,
    start_frame: int = 1,
    scene: bpy.types.Scene | None = None,
    fps_mode: str = "RESAMPLE",
    source_fps: float = FPS,
    contact_settings: retarget_feet.ContactSettings = DEFAULT_CONTACT_SETTINGS,
    keys: str = "EVERY_FRAME",
    loop: bool = False,
    floor: float | None = None,
    pinned_frames: tuple[int, ...] = (),
) -> bpy.types.Action:
    """Retarget a generated clip onto any humanoid rig as a new Action, assign it and return it.

    translation (F, 3) and rotations (F, 22, 4, w x y z) are the model's output, as :func:`.bake.bake_motion` takes
    them. `mapping` is None (detected from the bone names), a :class:`BoneMapping`, or {smplx_joint: bone_name}.
    root_motion 'HIPS' moves the hips bone; 'ROOT_BONE' moves `root_bone` (detected when None) along the ground and
    the hips only up and down. `in_place` drops the horizontal motion; `feet_cleanup` pins the feet during contacts
    by IK, the hips on the leg-length-scaled ground path (without it the hips follow the target's planted feet).
    fps_mode, source_fps, keys and loop work as in bake_motion; `floor` fixes the source floor (see
    :func:`.core.retarget_math.transfer`), for a piece continuing what is on the rig; `pinned_frames` (clip frames,
    its seams) anchor the stances holding them where the feet are there. Prompt, seed, duration and model are stored
    on the Action.
    """
    check_armature(target_armature)
    bake.check_keys(keys)
    if isinstance(start_frame, bool) or not isinstance(start_frame, (int, np.integer)):
        raise bad_request(f"Start frame {start_frame!r} is not a whole number.", "Pass an integer frame, e.g. 1.")
    if fps_mode not in bake.FPS_MODES:
        raise bad_request(f"Unknown fps mode {fps_mode!r}.", f"Use one of {', '.join(bake.FPS_MODES)}.")
    if root_motion not in retarget_math.ROOT_MOTION_MODES:
        raise bad_request(
            f"Unknown root motion mode {root_motion!r}.", f"Use one of {', '.join(retarget_math.ROOT_MOTION_MODES)}."
        )
    scene = scene if scene is not None else bpy.context.scene
    translation, rotations = motion_math.validated_clip(translation, rotations)
    source_frames = rotations.shape[0]
    mapping = resolve_mapping(target_armature, mapping)
    check_keyable(target_armature, mapping)
    if root_motion == "ROOT_BONE" and root_bone is None:
        root_bone = root_bone_candidate(target_armature, mapping)
        if root_bone is None:
            raise bad_request(
                f"'{target_armature.name}' has no bone above its hips to carry root motion.",
                "Use root motion on the hips, or add a root bone at the rig's feet as the hips' parent.",
            )
    plan = plan_for(target_armature, mapping, root_bone if root_motion == "ROOT_BONE" else None)
    _check_hips_can_move(target_armature, plan)

    translation, rotations, target_fps, offsets = bake.match_scene_fps(
        scene, translation, rotations, fps_mode, source_fps, loop)
    wishes = retarget_math.transfer(plan, translation, rotations, in_place=in_place, root_motion=root_motion,
                                    floor=floor)
    transferred = dict(wishes.rotations)
    contacts = None
    seams = tuple(offsets.size - 1 if frame < 0 else int(frame) for frame in pinned_frames)
    if feet_cleanup:  # the hips keep the leg-length-scaled path; the cleanup's IK plants the feet
        contacts = retarget_feet.clean_feet(plan, wishes, target_fps, contact_settings, seams)
    else:  # every bone keeps its source turn: only the hips' path can keep the target's feet put
        contacts = retarget_feet.follow_planted_feet(plan, wishes, target_fps, contact_settings, seams)
    result = retarget_math.solve_keys(plan, wishes)

    action = bake.new_generated_action(name, prompt, seed, model, duration, source_frames, source_fps)
    action["hymotion_target_rig"] = target_armature.name
    action.use_fake_user = True  # like a generated one: the rig's previous Action, or this one, is never lost
    _store_quality(action, plan, result, transferred, wishes, contacts)

    frames = start_frame + offsets
    writer = KeyWriter(action, target_armature, frames)
    names = plan.target.names
    for slot, bone in enumerate(result.keyed_bones):
        writer.rotation(names[bone], result.rotations[:, slot])
    for slot, bone in enumerate(result.location_bones):
        writer.location(names[bone], result.locations[:, slot])
    prop, value = bone_mapping.RIGIFY_FK_SWITCH
    for holder in _rigify_switches(target_armature, mapping):
        writer.constant(holder, prop, value)

    anim_data = target_armature.animation_data or target_armature.animation_data_create()
    anim_data.action = action
    if writer.slot is not None:
        anim_data.action_slot = writer.slot
    if plan.needs_evaluation:
        refine_with_blender(scene, target_armature, plan, result, writer)
    if keys == "SPARSE":
        sparse_action.apply_keys(target_armature, action, keys)
    return action


def _store_quality(
    action: bpy.types.Action,
    plan: retarget_math.RetargetPlan,
    result: retarget_math.RetargetResult,
    transferred: dict[int, np.ndarray],
    wishes: retarget_math.Transfer,
    contacts: np.ndarray | None,
) -> None:
    """Put what the user should know on the Action: per bone, how far (degrees) the feet cleanup turned it away from
    its source direction where that is over 1 degree (``hymotion_residual_degrees``), and per foot contact its slide,
    penetration and hover in the rig's units (``hymotion_contacts``: "left heel 12-40" -> [slide, penetration,
    hover]), both from the solved pose, with the cleanup on or off (off, the slide is what the user accepts)."""
    names = plan.target.names
    residual = {}
    for bone, wanted in transferred.items():
        if wishes.rotations[bone] is wanted:  # untouched by the cleanup
            continue
        cosine = (np.trace(np.swapaxes(wanted, -1, -2) @ wishes.rotations[bone], axis1=-2, axis2=-1) - 1.0) / 2.0
        worst = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).max())
        if worst > RESIDUAL_REPORT_DEGREES:
            residual[names[bone]] = round(worst, 2)
    action["hymotion_residual_degrees"] = residual
    if contacts is None:
        return
    matrices = {int(bone): result.desired[:, slot] for slot, bone in enumerate(result.keyed_bones)}
    reports = retarget_feet.measure_contacts(plan, matrices, contacts)
    action["hymotion_contacts"] = {
        f"{report.side} {report.point} {report.start}-{report.stop}": [report.slide, report.penetration, report.hover]
        for report in reports
    }


def residual_summary(action: bpy.types.Action, limit: int = 4) -> str:
    """The bones turned more than 1 degree from their source direction, worst first, for a report ('' for none)."""
    residual = dict(action.get("hymotion_residual_degrees", {}))
    worst = sorted(residual.items(), key=lambda item: -item[1])[:limit]
    return ", ".join(f"{bone} {degrees:.1f}°" for bone, degrees in worst)


def _check_hips_can_move(armature: bpy.types.Object, plan: retarget_math.RetargetPlan) -> None:
    for bone in (plan.hips, plan.root):
        if bone >= 0 and armature.data.bones[plan.target.names[bone]].use_connect:
            raise bad_request(
                f"Bone '{plan.target.names[bone]}' is connected to its parent, so it cannot move (root motion).",
                "Disconnect it in Edit Mode (Bone properties > Relations > Connected), or map another hips bone.",
            )


def clip_from_action(
    smplx_armature: bpy.types.Object, action: bpy.types.Action | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a clip back from an Action baked onto the SMPL-X armature: translation (F, 3), rotations (F, 22, 4) in
    the model frame, one frame per scene frame over the Action's range, and the first frame.

    The inverse of :func:`.core.motion_math.bone_local_rotations`: a pose-bone quaternion (w, v) is (w, C^T B v) in the
    model frame, the pelvis location l is the translation C^T B l. Channels the Action does not key read as rest.
    """
    rig.require_hymotion_armature(
        smplx_armature, "Pick the SMPL-X armature HY-Motion baked the motion onto as the retarget source."
    )
    if action is None:
        raise bad_request(
            f"'{smplx_armature.name}' has no active Action to retarget.", "Generate a motion or pick an Action first."
        )
    joint_index = {name: number for number, name in enumerate(BODY_JOINT_NAMES)}
    body_curves = [fcurve for fcurve in action_fcurves(action, smplx_armature) if fcurve_bone(fcurve) in joint_index]
    if not any(len(fcurve.keyframe_points) for fcurve in body_curves):
        raise bad_request(
            f"The Action '{action.name}' has no keys on the SMPL-X body bones, so there is no motion to retarget.",
            "Pick an Action HY-Motion generated on this armature (or key the SMPL-X bones first).",
        )
    start, end = (int(round(value)) for value in action.frame_range)
    frames = np.arange(start, end + 1)
    local = np.zeros((frames.size, NUM_BODY_JOINTS, 4))
    local[..., 0] = 1.0
    location = np.zeros((frames.size, 3))
    for fcurve in body_curves:
        path, bone = fcurve.data_path, fcurve_bone(fcurve)
        assert bone is not None  # body_curves holds only curves of bones in joint_index
        values = np.array([fcurve.evaluate(float(frame)) for frame in frames])
        if path.endswith(".rotation_quaternion"):
            local[:, joint_index[bone], fcurve.array_index] = values
        elif path.endswith(".location") and bone == bake.ROOT_BONE:
            location[:, fcurve.array_index] = values
    bones = smplx_armature.data.bones
    rest = np.array([np.array(bones[name].matrix_local)[:3, :3] for name in BODY_JOINT_NAMES])
    to_model = Y_UP_TO_Z_UP.T
    vectors = np.einsum("ab,jbc,fjc->fja", to_model, rest, local[..., 1:])
    rotations = np.concatenate([local[..., :1], vectors], axis=-1)
    translation = location @ rest[0].T @ to_model.T
    return translation, rotations, start


def retarget_action(
    source_armature: bpy.types.Object,
    target_armature: bpy.types.Object,
    action: bpy.types.Action | None = None,
    mapping: BoneMapping | dict[str, str] | None = None,
    **options,
) -> bpy.types.Action:
    """Retarget an Action baked on the SMPL-X armature (its active one by default) onto `target_armature`.

    The new Action starts on the same frame, runs at the scene's rate (the SMPL-X Action already does) and carries
    over the prompt, seed, model and duration tags. Other keyword options are those of :func:`bake_onto_rig`. A take
    of the source rig becomes a take of the target rig (:mod:`.takes`).
    """
    if action is None and source_armature is not None and source_armature.animation_data:
        action = source_armature.animation_data.action
    translation, rotations, start = clip_from_action(source_armature, action)
    assert action is not None  # clip_from_action raises for a missing Action
    scene = options.pop("scene", None) or bpy.context.scene
    # The Action's tags, each unless the caller passed it as an option.
    prompt = options.pop("prompt") if "prompt" in options else str(action.get("hymotion_prompt", ""))
    seed = options.pop("seed") if "seed" in options else int(action.get("hymotion_seed", 0))
    model = options.pop("model") if "model" in options else str(action.get("hymotion_model", ""))
    duration = options.pop("duration") if "duration" in options else (
        float(action["hymotion_duration"]) if "hymotion_duration" in action else None
    )
    options.setdefault("start_frame", start)
    options.setdefault("name", f"{action.name}_{target_armature.name}")
    previous = target_armature.animation_data.action if target_armature.animation_data else None
    made = bake_onto_rig(
        target_armature,
        translation,
        rotations,
        mapping,
        scene=scene,
        source_fps=bake.scene_fps(scene),
        prompt=prompt,
        seed=seed,
        model=model,
        duration=duration,
        **options,
    )
    takes.carry_over(source_armature, action, target_armature, made, previous, takes.retarget_recipe(mapping, options))
    return made
