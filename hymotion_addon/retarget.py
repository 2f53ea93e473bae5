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

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import bpy
import numpy as np
from hymotion.shared.errors import bad_request
from hymotion.shared.rotations import (
    Y_UP_TO_Z_UP,
    axis_angle_matrix,
    continuous_quaternions,
    matrix_to_quaternion,
    quaternion_to_axis_angle,
    quaternion_to_euler,
    quaternion_to_matrix,
)
from hymotion.shared.skeleton import BODY_JOINT_NAMES, FPS, NUM_BODY_JOINTS

from . import bake, rig
from .core import bone_mapping, motion_math, retarget_feet, retarget_math
from .core.bone_mapping import BoneInfo, BoneMapping

ROTATION_PATHS = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}
_EULER_PATH = "rotation_euler"
_REFINE_TOLERANCE = 1e-4  # radians (and armature units for locations); keys are float32
_MAX_REFINE_PASSES = 16
_PLAN_CACHE_SIZE = 8
_plan_cache: OrderedDict = OrderedDict()
# The options' defaults, one definition for the console API and the panel (retarget_ui reads them).
DEFAULT_FEET_CLEANUP = True
DEFAULT_ROOT_MOTION = "HIPS"
DEFAULT_IN_PLACE = False
RESIDUAL_REPORT_DEGREES = 1.0  # bones turned further than this from their source direction are reported


# --- reading rigs ---------------------------------------------------------------------------------------------------


def source_skeleton() -> retarget_math.SourceSkeleton:
    """The SMPL-X body at rest, exactly as :mod:`.rig` builds it (heads and tails of the 22 body bones)."""
    return retarget_math.SourceSkeleton(
        heads=rig.rest_heads()[:NUM_BODY_JOINTS], tails=rig.rest_tails()[:NUM_BODY_JOINTS]
    )


def _check_armature(armature: bpy.types.Object) -> None:
    if armature is None or getattr(armature, "type", None) != "ARMATURE":
        raise bad_request(
            f"'{getattr(armature, 'name', armature)}' is not an armature.",
            "Pick the character's armature (its rig) as the retarget target.",
        )


def bone_infos(armature: bpy.types.Object) -> list[BoneInfo]:
    """The rig's bones as plain records for :mod:`.core.bone_mapping` (armature space, rest pose)."""
    _check_armature(armature)
    return [
        BoneInfo(
            name=bone.name,
            parent=bone.parent.name if bone.parent else None,
            head=tuple(bone.head_local),
            tail=tuple(bone.tail_local),
        )
        for bone in armature.data.bones
    ]


def detect_mapping(armature: bpy.types.Object) -> BoneMapping:
    """Detect which bones of `armature` play the 22 SMPL-X body joints (see :mod:`.core.bone_mapping`)."""
    return bone_mapping.detect_mapping(bone_infos(armature))


def root_bone_candidate(armature: bpy.types.Object, mapping: BoneMapping) -> str | None:
    return bone_mapping.root_bone_candidate(bone_infos(armature), mapping)


def _active_constraints(pose_bone: bpy.types.PoseBone) -> list[bpy.types.Constraint]:
    return [c for c in pose_bone.constraints if not c.mute and c.is_valid and c.influence > 0.0]


def _driven_bones(armature: bpy.types.Object) -> set[str]:
    """Bones whose transform channels are driven (drivers beat keys, and move children in ways rest can't tell)."""
    anim_data = armature.animation_data
    if anim_data is None:
        return set()
    driven = set()
    for driver in anim_data.drivers:
        path = driver.data_path
        if path.startswith('pose.bones["') and path.rsplit(".", 1)[-1] in (
            "location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale"
        ):
            driven.add(path[len('pose.bones["'):path.index('"]')])
    return driven


def target_skeleton(armature: bpy.types.Object) -> retarget_math.TargetSkeleton:
    """Rest matrices (armature space) of every bone, parents first, with which bones pose as plain FK."""
    _check_armature(armature)
    bones = armature.data.bones
    order: list[bpy.types.Bone] = []
    pending = [bone for bone in bones if bone.parent is None]
    while pending:
        bone = pending.pop(0)
        order.append(bone)
        pending.extend(bone.children)
    index = {bone.name: number for number, bone in enumerate(order)}
    rest = np.empty((len(order), 4, 4))
    flat = np.empty(len(bones) * 16, dtype=np.float32)
    bones.foreach_get("matrix_local", flat)
    by_name = dict(zip([bone.name for bone in bones], flat.reshape(-1, 4, 4).transpose(0, 2, 1)))
    for number, bone in enumerate(order):
        rest[number] = by_name[bone.name]
    rest[:, :3, :3] = _orthonormal(rest[:, :3, :3])
    driven = _driven_bones(armature)
    plain = np.array(
        [
            bone.use_inherit_rotation
            and not _active_constraints(armature.pose.bones[bone.name])
            and bone.name not in driven
            for bone in order
        ]
    )
    return retarget_math.TargetSkeleton(
        names=tuple(bone.name for bone in order),
        parents=np.array([index[bone.parent.name] if bone.parent else -1 for bone in order]),
        rest=rest,
        plain=plain,
        lengths=np.array([bone.length for bone in order]),
    )


def _orthonormal(matrices: np.ndarray) -> np.ndarray:
    """Nearest rotations (polar factor), so float32 rest matrices and scaled parents stay exactly rigid."""
    u, _, vt = np.linalg.svd(matrices)
    return u @ vt


def resolve_mapping(armature: bpy.types.Object, mapping) -> BoneMapping:
    """A BoneMapping from None (detect), a BoneMapping, or a plain {joint: bone} dict."""
    if mapping is None:
        return detect_mapping(armature)
    if isinstance(mapping, BoneMapping):
        return mapping
    if isinstance(mapping, dict):
        return BoneMapping(bones=dict(mapping))
    raise bad_request(
        f"A bone mapping must be a dict of SMPL-X joint -> bone name, not {type(mapping).__name__}.",
        "Pass e.g. {'pelvis': 'Hips', 'left_hip': 'LeftUpLeg', ...}, or None to detect it.",
    )


def _keyable(armature: bpy.types.Object, bone: str) -> bool:
    """No active constraint or driver overrides this bone's keys."""
    return not _active_constraints(armature.pose.bones[bone]) and bone not in _driven_bones(armature)


def _check_keyable(armature: bpy.types.Object, mapping: BoneMapping) -> None:
    """Mapped bones must obey keys: a constraint or driver on them would override the motion."""
    driven = _driven_bones(armature)
    blocked = []
    for joint, bone in mapping.mapped().items():
        pose_bone = armature.pose.bones.get(bone)
        if pose_bone is None:
            continue
        constraints = _active_constraints(pose_bone)
        if constraints or bone in driven:
            reason = constraints[0].type.replace("_", " ").title() if constraints else "a driver"
            blocked.append(f"{bone} ({joint}, driven by {reason})")
    if blocked:
        raise bad_request(
            f"Keys on these bones would be overridden: {'; '.join(blocked[:4])}.",
            "Map the rig's control bones instead (for Rigify its FK controls, e.g. 'thigh_fk.L'), or disable those "
            "constraints.",
        )


def plan_for(
    armature: bpy.types.Object, mapping: BoneMapping, root_bone: str | None = None
) -> retarget_math.RetargetPlan:
    """The rest alignment for this rig and mapping, computed once and reused while the rig's rest is unchanged."""
    target = target_skeleton(armature)
    digest = hashlib.sha1(target.rest.tobytes() + repr((target.names, target.plain.tolist())).encode()).hexdigest()
    key = (armature.data.as_pointer(), digest, tuple(sorted(mapping.mapped().items())), root_bone)
    plan = _plan_cache.get(key)
    if plan is None:
        missing = mapping.missing_bones(target.names)
        if missing:
            raise bad_request(
                f"The mapping names bones that '{armature.name}' does not have (for {', '.join(missing[:5])}).",
                "Run Detect Mapping for this rig, or load a preset made for it.",
            )
        followers = bone_mapping.followers_for(mapping, target.names)
        controls = {
            control: joint for control, joint in bone_mapping.ik_controls_for(mapping, target.names).items()
            if _keyable(armature, control)
        }
        plan = retarget_math.plan_retarget(
            source_skeleton(), target, mapping.mapped(), root_bone, followers, controls
        )
        _plan_cache[key] = plan
        while len(_plan_cache) > _PLAN_CACHE_SIZE:
            _plan_cache.popitem(last=False)
    else:
        _plan_cache.move_to_end(key)
    return plan


# --- writing keys ---------------------------------------------------------------------------------------------------


class _KeyWriter:
    """Creates the Action's F-curves once and (re)writes their values, in each bone's own rotation mode."""

    def __init__(self, action: bpy.types.Action, armature: bpy.types.Object, frames: np.ndarray) -> None:
        self.armature = armature
        self.frames = frames
        self.new_fcurve, self.slot = bake.fcurve_factory(action, armature)
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
    contact_settings: retarget_feet.ContactSettings = retarget_feet.ContactSettings(),
    keys: str = "EVERY_FRAME",
) -> bpy.types.Action:
    """Retarget a generated clip onto any humanoid rig as a new Action, assign it and return it.

    translation (F, 3) and rotations (F, 22, 4, w x y z) are the model's output, as :func:`.bake.bake_motion` takes
    them. `mapping` is None (detected from the bone names), a :class:`BoneMapping`, or {smplx_joint: bone_name}.
    root_motion 'HIPS' moves the hips bone; 'ROOT_BONE' moves `root_bone` (detected when None) along the ground and
    the hips only up and down. `in_place` drops the horizontal motion; `feet_cleanup` pins the feet during contacts
    by IK, the hips on the leg-length-scaled ground path (without it the hips follow the target's planted feet).
    fps_mode, source_fps and keys work as in bake_motion. Prompt, seed, duration and model are stored on the Action.
    """
    _check_armature(target_armature)
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
    _check_keyable(target_armature, mapping)
    if root_motion == "ROOT_BONE" and root_bone is None:
        root_bone = root_bone_candidate(target_armature, mapping)
        if root_bone is None:
            raise bad_request(
                f"'{target_armature.name}' has no bone above its hips to carry root motion.",
                "Use root motion on the hips, or add a root bone at the rig's feet as the hips' parent.",
            )
    plan = plan_for(target_armature, mapping, root_bone if root_motion == "ROOT_BONE" else None)
    _check_hips_can_move(target_armature, plan)

    translation, rotations, target_fps = bake.match_scene_fps(scene, translation, rotations, fps_mode, source_fps)
    wishes = retarget_math.transfer(plan, translation, rotations, in_place=in_place, root_motion=root_motion)
    transferred = dict(wishes.rotations)
    contacts = None
    if feet_cleanup:  # the hips keep the leg-length-scaled path; the cleanup's IK plants the feet
        contacts = retarget_feet.clean_feet(plan, wishes, target_fps, contact_settings)
    else:  # every bone keeps its source turn: only the hips' path can keep the target's feet put
        contacts = retarget_feet.follow_planted_feet(plan, wishes, target_fps, contact_settings)
    result = retarget_math.solve_keys(plan, wishes)

    action = bake.new_generated_action(name, prompt, seed, model, duration, source_frames, source_fps)
    action["hymotion_target_rig"] = target_armature.name
    action.use_fake_user = True  # like a generated one: the rig's previous Action, or this one, is never lost
    _store_quality(action, plan, result, transferred, wishes, contacts)

    frames = start_frame + np.arange(rotations.shape[0], dtype=np.float64)
    writer = _KeyWriter(action, target_armature, frames)
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
        _refine_with_blender(scene, target_armature, plan, result, writer)
    if keys == "SPARSE":
        from . import sparse_keys_bpy  # it reads F-curves through this module

        sparse_keys_bpy.apply_keys(target_armature, action, keys)
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


def _pose_matrices(scene: bpy.types.Scene, armature: bpy.types.Object, frames: np.ndarray) -> np.ndarray:
    """Evaluated armature-space pose matrices (F, bones, 4, 4) at each frame, in pose-bone order."""
    count = len(armature.pose.bones)
    matrices = np.empty((frames.size, count, 4, 4))
    flat = np.empty(count * 16, dtype=np.float32)
    for row, frame in enumerate(frames):
        scene.frame_set(int(frame))
        depsgraph = bpy.context.evaluated_depsgraph_get()
        armature.evaluated_get(depsgraph).pose.bones.foreach_get("matrix", flat)
        matrices[row] = flat.reshape(count, 4, 4).transpose(0, 2, 1)
    return matrices


@dataclass(frozen=True)
class _IkChain:
    """A two-bone IK chain whose root is a keyed control (Rigify's upper_arm_ik, thigh_ik), as pose-bone indices."""

    root: int
    root_parent: int
    tip: int  # the IK constraint's owner (Rigify's MCH-forearm_ik): only its starting pose is keyed
    target: int  # the IK target bone
    tip_follows: int  # the keyed bone whose pose the tip should take (the FK forearm or shin)


def _ik_chains(armature: bpy.types.Object, keyed: list[str]) -> list[_IkChain]:
    """Two-bone IK chains rooted at a keyed bone, with a keyed bone at rest where the tip is (its FK twin).

    Blender's IK starts from the chain's keyed pose and stops as soon as the tip reaches the target, so keying the
    chain exactly as FK poses those bones makes the IK's result FK's pose. Without those keys the IK starts from
    the tip's rest bend and shortens the limb partly by IK stretch instead of bending, which turns the limb away
    from FK by several degrees."""
    index = {pose_bone.name: number for number, pose_bone in enumerate(armature.pose.bones)}
    bones = armature.data.bones
    chains = []
    for pose_bone in armature.pose.bones:
        for constraint in _active_constraints(pose_bone):
            if constraint.type != "IK" or constraint.target != armature or constraint.chain_count != 2:
                continue
            root = pose_bone.parent
            twin = next((name for name in keyed if _same_rest(bones[name], pose_bone.bone)), None)
            if root is None or root.name not in keyed or root.parent is None or twin is None:
                continue
            if constraint.subtarget in index:
                chains.append(_IkChain(
                    index[root.name], index[root.parent.name], index[pose_bone.name], index[constraint.subtarget],
                    index[twin],
                ))
    return chains


def _same_rest(bone: bpy.types.Bone, other: bpy.types.Bone) -> bool:
    """Whether two bones sit in the same place at rest (Rigify builds its FK and IK chains as copies of one)."""
    return bool(np.allclose(bone.matrix_local, other.matrix_local, atol=1e-4 * max(bone.length, 1e-3)))


def _roll_onto_hinge(root: np.ndarray, hinge: np.ndarray, tip_direction: np.ndarray) -> np.ndarray:
    """The root rotations (F, 3, 3) rolled about their own Y axis, as little as possible, so that the tip's hinge
    axis (`hinge`, the tip's X axis in the root's frame: Blender's IK bends Rigify's forearm and shin about X only)
    is perpendicular to the tip's wanted direction, i.e. the tip can point there by bending alone.

    Rolling about Y keeps the root pointing where it did. With the root's Y axis u and the hinge axis v(psi) turned
    by psi about u, the condition v(psi) . f = 0 reads A cos psi + B sin psi = -C; the smaller of its two solutions
    is taken. A straight limb (f along u) keeps its roll."""
    axis = root[:, :, 1]
    hinge_now = root @ hinge
    along = np.sum(hinge_now * axis, axis=-1, keepdims=True) * axis
    across = hinge_now - along
    a = np.sum(across * tip_direction, axis=-1)
    b = np.sum(np.cross(axis, across) * tip_direction, axis=-1)
    c = np.sum(along * tip_direction, axis=-1)
    reach = np.hypot(a, b)
    offset = np.arccos(np.clip(-c / np.maximum(reach, 1e-12), -1.0, 1.0))
    centre = np.arctan2(b, a)
    candidates = np.stack([centre + offset, centre - offset], axis=-1)
    candidates = (candidates + np.pi) % (2.0 * np.pi) - np.pi
    roll = np.take_along_axis(candidates, np.argmin(np.abs(candidates), axis=-1)[:, None], axis=-1)[:, 0]
    roll = np.where(reach > 1e-6, roll, 0.0)
    return axis_angle_matrix(axis, roll) @ root


def _refine_with_blender(
    scene: bpy.types.Scene,
    armature: bpy.types.Object,
    plan: retarget_math.RetargetPlan,
    result: retarget_math.RetargetResult,
    writer: _KeyWriter,
) -> None:
    """Correct the keys against Blender's evaluation where constraints sit between mapped bones.

    A keyed bone's evaluated matrix is M = P B, with B its keys and P whatever its parents and their constraints make
    of its rest. Each pass reads M, takes P = M B^-1 and sets B = P^-1 D for the wanted matrix D (rotation for every
    keyed bone, position too for the hips, the root and IK controls). Bones whose parents are already right come out
    right, so one pass settles one more hierarchy level. The root of an IK chain is the exception: Blender's
    evaluated matrix is the IK's result, so P is its parent's evaluated pose times its rest offset, and its chain's
    starting pose is keyed as FK (see :func:`_ik_chains`).
    """
    if scene != bpy.context.scene:
        raise bad_request(
            f"'{armature.name}' has constraints between its mapped bones, which only the active scene can evaluate.",
            "Make the scene holding the rig the active scene and retarget again.",
        )
    names = plan.target.names
    pose_bones = armature.pose.bones
    pose_index = {pose_bone.name: number for number, pose_bone in enumerate(pose_bones)}
    keyed_bones = result.keyed_bones.tolist()
    keyed = [pose_index[names[bone]] for bone in keyed_bones]
    columns = {int(bone): column for column, bone in enumerate(keyed_bones)}
    pose_columns = {pose: column for column, pose in enumerate(keyed)}
    location_slots = {int(bone): slot for slot, bone in enumerate(result.location_bones)}
    # A bone without 'Local Location' (Rigify's IK controls) moves along its parent's axes, not its own rest axes.
    location_axes = {
        bone: np.eye(3) if armature.data.bones[names[bone]].use_local_location
        else plan.target.relative_rest[bone, :3, :3]
        for bone in location_slots
    }
    rotations = result.rotations.copy()
    locations = result.locations.copy()
    desired = result.desired.copy()
    rest = plan.target.rest
    followers = [  # IK controls follow where Blender puts their limb bones, which numpy's rest chain cannot tell
        (columns[control], columns[followed], np.linalg.inv(rest[followed]) @ rest[control])
        for control, followed in plan.ik_controls
    ]
    for control, followed, offset in followers:  # turned as their limb bone is wanted; placed where it evaluates
        desired[:, control] = result.desired[:, followed] @ offset
    chains = _ik_chains(armature, [names[bone] for bone in keyed_bones])
    rest_pose = np.array([np.array(pose_bone.bone.matrix_local) for pose_bone in pose_bones])
    for chain in chains:
        _key_ik_chain_start(chain, desired, pose_columns, rest_pose, writer, pose_bones[chain.tip].name)
    keyed_children = [  # plain bones whose parent is keyed: their parent's pose is known before Blender evaluates it
        (column, pose_columns[pose_index[pose_bones[pose].parent.name]], plan.target.relative_rest[keyed_bones[column]])
        for column, pose in enumerate(keyed)
        if pose_bones[pose].parent is not None and pose_index[pose_bones[pose].parent.name] in pose_columns
        and plan.target.plain[keyed_bones[column]] and pose not in {chain.root for chain in chains}
    ]
    frames = writer.frames
    original_frame = scene.frame_current
    window_manager = bpy.context.window_manager
    window_manager.progress_begin(0, _MAX_REFINE_PASSES)
    try:
        for number in range(_MAX_REFINE_PASSES):
            window_manager.progress_update(number)
            basis = np.zeros(desired.shape)
            basis[..., :3, :3] = quaternion_to_matrix(rotations)
            basis[..., 3, 3] = 1.0
            for bone, slot in location_slots.items():
                basis[:, columns[bone], :3, 3] = locations[:, slot] @ location_axes[bone]
            every_bone = _pose_matrices(scene, armature, frames)
            evaluated = every_bone[:, keyed]
            for control, followed, offset in followers:
                desired[:, control, :3, 3] = evaluated[:, followed, :3, 3] + (
                    result.desired[:, followed, :3, :3] @ offset[:3, 3]
                )
            parent_like = evaluated @ np.linalg.inv(basis)
            for chain in chains:
                parent_like[:, pose_columns[chain.root]] = every_bone[:, chain.root_parent] @ (
                    np.linalg.inv(rest_pose[chain.root_parent]) @ rest_pose[chain.root]
                )
            for column, parent_column, relative_rest in keyed_children:
                parent_like[:, column] = desired[:, parent_column] @ relative_rest
            parent_rotation = _orthonormal(parent_like[..., :3, :3])
            new_rotation = np.swapaxes(parent_rotation, -1, -2) @ desired[..., :3, :3]
            new_quaternions = continuous_quaternions(matrix_to_quaternion(new_rotation))
            worst = _largest_turn(new_quaternions, rotations)
            new_locations = locations.copy()
            for bone, slot in location_slots.items():
                solved = np.linalg.inv(parent_like[:, columns[bone]]) @ desired[:, columns[bone]]
                new_locations[:, slot] = solved[:, :3, 3] @ location_axes[bone].T
            moved = float(np.max(np.abs(new_locations - locations))) if location_slots else 0.0
            if worst < _REFINE_TOLERANCE and moved < _REFINE_TOLERANCE:
                break
            rotations, locations = new_quaternions, new_locations
            for slot, bone in enumerate(keyed_bones):
                writer.rotation(names[bone], rotations[:, slot])
            for bone, slot in location_slots.items():
                writer.location(names[bone], locations[:, slot])
            writer.armature.animation_data.action.update_tag()
    finally:
        window_manager.progress_end()
        scene.frame_set(original_frame)


def _key_ik_chain_start(
    chain: _IkChain,
    desired: np.ndarray,
    pose_columns: dict[int, int],
    rest_pose: np.ndarray,
    writer: _KeyWriter,
    tip_name: str,
) -> None:
    """Roll the chain root's wanted rotation onto the tip's hinge and key the tip's starting pose as its FK twin's.

    Both come from wanted rotations only (the FK twin's and the root's), never from Blender's evaluation, so they
    are solved once, before the passes. Taken from the evaluated FK twin instead, they change with its float noise
    every pass, and the roll amplifies that noise by 1 / sin(bend): on Rigify's nearly straight arms (1.7 degrees at
    the elbow in the test gaits) about 34 times, over the passes' tolerance, so the solve never settled (the turn ran
    all 16 passes)."""
    column = pose_columns[chain.root]
    tip_wanted = desired[:, pose_columns[chain.tip_follows], :3, :3] @ (
        np.linalg.inv(rest_pose[chain.tip_follows]) @ rest_pose[chain.tip]
    )[:3, :3]
    tip_in_root = np.linalg.inv(rest_pose[chain.root]) @ rest_pose[chain.tip]
    desired[:, column, :3, :3] = _roll_onto_hinge(desired[:, column, :3, :3], tip_in_root[:3, 0], tip_wanted[:, :, 1])
    tip_parent = _orthonormal(desired[:, column, :3, :3] @ tip_in_root[:3, :3])
    writer.rotation(tip_name, continuous_quaternions(matrix_to_quaternion(
        np.swapaxes(tip_parent, -1, -2) @ tip_wanted
    )))


def _largest_turn(quaternions: np.ndarray, before: np.ndarray) -> float:
    """The largest rotation angle (radians) between two sets of unit quaternions."""
    change = np.abs(np.sum(quaternions * before, axis=-1))
    return float(np.max(2.0 * np.arccos(np.clip(change, 0.0, 1.0))))


def _action_fcurves(action: bpy.types.Action, armature: bpy.types.Object | None = None) -> list[bpy.types.FCurve]:
    """The Action's F-curves for `armature` (its slot's channelbag on 4.4+, the Action's own list before)."""
    if not bake.uses_slotted_actions():
        return list(action.fcurves)
    slot = None
    if armature is not None and armature.animation_data and armature.animation_data.action == action:
        slot = armature.animation_data.action_slot
    curves = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                if slot is None or bag.slot == slot:
                    curves.extend(bag.fcurves)
    return curves


def _fcurve_bone(fcurve: bpy.types.FCurve) -> str | None:
    """The pose bone an F-curve animates, None for other channels."""
    path = fcurve.data_path
    return path[len('pose.bones["'):path.index('"]')] if path.startswith('pose.bones["') else None


def clip_from_action(
    smplx_armature: bpy.types.Object, action: bpy.types.Action
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a clip back from an Action baked onto the SMPL-X armature: translation (F, 3), rotations (F, 22, 4) in
    the model frame, one frame per scene frame over the Action's range, and the first frame.

    The inverse of :func:`.core.motion_math.bone_local_rotations`: a pose-bone quaternion (w, v) is (w, C^T B v) in the
    model frame, the pelvis location l is the translation C^T B l. Channels the Action does not key read as rest.
    """
    if not rig.is_hymotion_armature(smplx_armature):
        raise bad_request(
            f"'{getattr(smplx_armature, 'name', smplx_armature)}' is not a HY-Motion SMPL-X armature.",
            "Pick the SMPL-X armature HY-Motion baked the motion onto as the retarget source.",
        )
    if action is None:
        raise bad_request(
            f"'{smplx_armature.name}' has no active Action to retarget.", "Generate a motion or pick an Action first."
        )
    joint_index = {name: number for number, name in enumerate(BODY_JOINT_NAMES)}
    body_curves = [fcurve for fcurve in _action_fcurves(action, smplx_armature) if _fcurve_bone(fcurve) in joint_index]
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
        path, bone = fcurve.data_path, _fcurve_bone(fcurve)
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
    over the prompt, seed, model and duration tags. Other keyword options are those of :func:`bake_onto_rig`.
    """
    if action is None and source_armature is not None and source_armature.animation_data:
        action = source_armature.animation_data.action
    translation, rotations, start = clip_from_action(source_armature, action)
    scene = options.pop("scene", None) or bpy.context.scene
    tags = {
        "prompt": str(action.get("hymotion_prompt", "")),
        "seed": int(action.get("hymotion_seed", 0)),
        "model": str(action.get("hymotion_model", "")),
        "duration": float(action["hymotion_duration"]) if "hymotion_duration" in action else None,
    }
    tags.update({key: options.pop(key) for key in list(options) if key in tags})
    options.setdefault("start_frame", start)
    options.setdefault("name", f"{action.name}_{target_armature.name}")
    return bake_onto_rig(
        target_armature,
        translation,
        rotations,
        mapping,
        scene=scene,
        source_fps=bake.scene_fps(scene),
        **tags,
        **options,
    )
