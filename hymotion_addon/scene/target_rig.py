"""The animator's rig as the retarget reads it: its bones, the mapping onto the SMPL-X joints (detected or given),
which bones can be keyed (constraints and drivers that would override them), and the cached plan that the
retarget math (:mod:`hymotion_addon.core.retarget_math`) builds for a rig and a mapping."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import bpy
import numpy as np

from hymotion.shared.errors import bad_request
from hymotion.shared.skeleton import NUM_BODY_JOINTS

from ..core import bone_mapping, retarget_math
from ..core.bone_mapping import BoneInfo, BoneMapping
from . import rig

_PLAN_CACHE_SIZE = 8

_plan_cache: OrderedDict = OrderedDict()


def source_skeleton() -> retarget_math.SourceSkeleton:
    """The SMPL-X body at rest, exactly as :mod:`.rig` builds it (heads and tails of the 22 body bones)."""
    return retarget_math.SourceSkeleton(
        heads=rig.rest_heads()[:NUM_BODY_JOINTS], tails=rig.rest_tails()[:NUM_BODY_JOINTS]
    )


def check_armature(armature: bpy.types.Object) -> None:
    if armature is None or getattr(armature, "type", None) != "ARMATURE":
        raise bad_request(
            f"'{getattr(armature, 'name', armature)}' is not an armature.",
            "Pick the character's armature (its rig) as the retarget target.",
        )
    if is_rigify_metarig(armature):
        raise bad_request(f"'{armature.name}' is a Rigify metarig: it only describes a rig, and motion on it moves "
                          "nothing.", metarig_hint(armature))


def is_rigify_metarig(armature: bpy.types.Object) -> bool:
    """Whether an armature is a Rigify metarig (its bones carry a Rigify type), not the rig generated from it: a
    generated rig keeps the types on its ORG- bones but carries the ``rig_id`` Rigify gives every rig it generates."""
    if armature.pose is None or "rig_id" in armature.data:
        return False
    return any(getattr(pose_bone, "rigify_type", "") or pose_bone.get("rigify_type")
               for pose_bone in armature.pose.bones)


def metarig_hint(metarig: bpy.types.Object) -> str:
    """Which rig to pick instead of a metarig: the one Rigify generated from it, or how to generate one."""
    generated = getattr(metarig.data, "rigify_target_rig", None)
    if generated is not None:
        return f"Pick the rig generated from it, '{generated.name}', as Target Rig."
    return ("Generate the rig first (Armature properties > Rigify > Generate Rig), then pick the generated rig as "
            "Target Rig.")


def bone_infos(armature: bpy.types.Object) -> list[BoneInfo]:
    """The rig's bones as plain records for :mod:`.core.bone_mapping` (armature space, rest pose)."""
    check_armature(armature)
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


def active_constraints(pose_bone: bpy.types.PoseBone) -> list[bpy.types.Constraint]:
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
    check_armature(armature)
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
    rest[:, :3, :3] = orthonormal(rest[:, :3, :3])
    driven = _driven_bones(armature)
    plain = np.array(
        [
            bone.use_inherit_rotation
            and not active_constraints(armature.pose.bones[bone.name])
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


def orthonormal(matrices: np.ndarray) -> np.ndarray:
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
    return not active_constraints(armature.pose.bones[bone]) and bone not in _driven_bones(armature)


def check_keyable(armature: bpy.types.Object, mapping: BoneMapping) -> None:
    """Mapped bones must obey keys: a constraint or driver on them would override the motion."""
    driven = _driven_bones(armature)
    blocked = []
    for joint, bone in mapping.mapped().items():
        pose_bone = armature.pose.bones.get(bone)
        if pose_bone is None:
            continue
        constraints = active_constraints(pose_bone)
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
