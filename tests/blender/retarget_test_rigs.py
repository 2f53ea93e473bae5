"""Target rigs and source motions for the retarget, feet and export tests, built bone by bone in the test.

Every humanoid here is laid out from the SMPL-X body's rest joints (Blender space, facing -Y, the character's left at
+X), moved to stand on the floor and then changed: scaled, arms dropped into an A-pose, bones rolled oddly, armature
space turned Y-up in centimetres like an FBX import, names from each convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import addon_utils
import bpy
import numpy as np

from hymotion.shared.rotations import Y_UP_TO_Z_UP, axis_angle_matrix, matrix_to_quaternion
from hymotion.shared.skeleton import BODY_JOINT_NAMES
from hymotion_addon.core import retarget_math
from hymotion_addon.scene import rig

SIDES = (("left", "L", "Left", "l"), ("right", "R", "Right", "r"))
JOINT = {name: index for index, name in enumerate(BODY_JOINT_NAMES)}


@dataclass
class RigBone:
    name: str
    parent: str | None
    head: np.ndarray
    tail: np.ndarray
    roll: float = 0.0
    rotation_mode: str = "QUATERNION"


def humanoid_joints(scale: float = 1.0, arm_drop_degrees: float = 0.0, arm_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Joint positions (Blender space, metres) of a humanoid standing on the floor, SMPL-X proportions changed."""
    heads = rig.rest_heads()[: len(BODY_JOINT_NAMES)].copy()
    heads[:, 2] -= heads[[JOINT["left_foot"], JOINT["right_foot"]], 2].min() - 0.03
    joints = {name: heads[index] * scale for index, name in enumerate(BODY_JOINT_NAMES)}
    for side, *_ in SIDES:
        shoulder = joints[f"{side}_shoulder"]
        sign = 1.0 if side == "left" else -1.0
        angle = math.radians(arm_drop_degrees) * sign
        cosine, sine = math.cos(angle), math.sin(angle)
        turn = np.array([[cosine, 0.0, sine], [0.0, 1.0, 0.0], [-sine, 0.0, cosine]])
        for part in ("elbow", "wrist"):
            key = f"{side}_{part}"
            joints[key] = shoulder + turn @ (joints[key] - shoulder) * arm_scale
    return joints


def leaf_tail(joint: str, joints: dict[str, np.ndarray], scale: float = 1.0) -> np.ndarray:
    """Where a leaf bone's tail goes: head up, hands along the forearm, toes forward."""
    head = joints[joint]
    if joint == "head":
        return head + np.array([0.0, 0.0, 0.18 * scale])
    if joint.endswith("wrist"):
        side = joint.split("_")[0]
        along = joints[joint] - joints[f"{side}_elbow"]
        return head + 0.08 * scale * along / np.linalg.norm(along)
    if joint.endswith("foot"):
        return head + np.array([0.0, -0.06 * scale, 0.0])
    raise KeyError(joint)


_CHAIN_CHILD = {
    "pelvis": "spine1", "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
    "left_hip": "left_knee", "left_knee": "left_ankle", "left_ankle": "left_foot",
    "right_hip": "right_knee", "right_knee": "right_ankle", "right_ankle": "right_foot",
    "left_collar": "left_shoulder", "left_shoulder": "left_elbow", "left_elbow": "left_wrist",
    "right_collar": "right_shoulder", "right_shoulder": "right_elbow", "right_elbow": "right_wrist",
}
_PARENT = {
    "pelvis": None, "spine1": "pelvis", "spine2": "spine1", "spine3": "spine2", "neck": "spine3", "head": "neck",
    "left_collar": "spine3", "right_collar": "spine3", "left_hip": "pelvis", "right_hip": "pelvis",
}
for _side, *_ in SIDES:
    _PARENT.update({
        f"{_side}_shoulder": f"{_side}_collar", f"{_side}_elbow": f"{_side}_shoulder",
        f"{_side}_wrist": f"{_side}_elbow", f"{_side}_knee": f"{_side}_hip", f"{_side}_ankle": f"{_side}_knee",
        f"{_side}_foot": f"{_side}_ankle",
    })


def body_bones(names: dict[str, str], joints: dict[str, np.ndarray], rolls=None, scale: float = 1.0) -> list[RigBone]:
    """One bone per SMPL joint, named by `names`, tails toward the chain child (leaves by leaf_tail)."""
    bones = []
    for joint in BODY_JOINT_NAMES:
        child = _CHAIN_CHILD.get(joint)
        tail = joints[child] if child else leaf_tail(joint, joints, scale)
        parent = _PARENT[joint]
        bones.append(RigBone(
            names[joint], names[parent] if parent else None, joints[joint], tail,
            roll=(rolls or {}).get(joint, 0.0),
        ))
    return bones


def sided_names(table: dict[str, str]) -> dict[str, str]:
    """Expand {'hip': '{Side}UpLeg', ...} with {side} (L/R), {Side} (Left/Right), {s} (l/r)."""
    names = {}
    for joint, pattern in table.items():
        if "{" not in pattern:
            names[joint] = pattern
            continue
        for side, letter, word, small in SIDES:
            names[f"{side}_{joint}"] = pattern.format(side=letter, Side=word, s=small)
    return names


MIXAMO_NAMES = sided_names({
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head",
    "hip": "{Side}UpLeg", "knee": "{Side}Leg", "ankle": "{Side}Foot", "foot": "{Side}ToeBase",
    "collar": "{Side}Shoulder", "shoulder": "{Side}Arm", "elbow": "{Side}ForeArm", "wrist": "{Side}Hand",
})
UE5_NAMES = sided_names({
    "pelvis": "pelvis", "spine1": "spine_01", "spine2": "spine_03", "spine3": "spine_05", "neck": "neck_01",
    "head": "head", "hip": "thigh_{s}", "knee": "calf_{s}", "ankle": "foot_{s}", "foot": "ball_{s}",
    "collar": "clavicle_{s}", "shoulder": "upperarm_{s}", "elbow": "lowerarm_{s}", "wrist": "hand_{s}",
})
ARP_NAMES = sided_names({
    "pelvis": "c_root_master.x", "spine1": "c_spine_01.x", "spine2": "c_spine_02.x", "spine3": "c_spine_03.x",
    "neck": "c_neck.x", "head": "c_head.x", "hip": "c_thigh_fk.{s}", "knee": "c_leg_fk.{s}",
    "ankle": "c_foot_fk.{s}", "foot": "c_toes_fk.{s}", "collar": "c_shoulder.{s}", "shoulder": "c_arm_fk.{s}",
    "elbow": "c_forearm_fk.{s}", "wrist": "c_hand_fk.{s}",
})
GENERIC_NAMES = sided_names({
    "pelvis": "hips", "spine1": "spine", "spine2": "chest", "spine3": "upper_chest", "neck": "neck",
    "head": "head", "hip": "upper_leg.{side}", "knee": "lower_leg.{side}", "ankle": "foot.{side}",
    "foot": "toes.{side}", "collar": "clavicle.{side}", "shoulder": "upper_arm.{side}",
    "elbow": "lower_arm.{side}", "wrist": "hand.{side}",
})


def mixamo_bones(prefix: str = "mixamorig:", scale: float = 1.1) -> list[RigBone]:
    """A 65-bone Mixamo skeleton: body, head top, toe ends and four bones per finger."""
    joints = humanoid_joints(scale=scale, arm_scale=1.05)
    names = {joint: prefix + name for joint, name in MIXAMO_NAMES.items()}
    bones = body_bones(names, joints, scale=scale)
    head = joints["head"]
    top = head + np.array([0.0, 0.0, 0.18 * scale])
    bones.append(RigBone(prefix + "HeadTop_End", names["head"], top, top + np.array([0.0, 0.0, 0.06 * scale])))
    for side, _, word, _ in SIDES:
        toe = leaf_tail(f"{side}_foot", joints, scale)
        bones.append(RigBone(f"{prefix}{word}Toe_End", names[f"{side}_foot"], toe, toe + [0, -0.03 * scale, 0]))
        wrist, elbow = joints[f"{side}_wrist"], joints[f"{side}_elbow"]
        along = (wrist - elbow) / np.linalg.norm(wrist - elbow)
        for number, finger in enumerate(("Thumb", "Index", "Middle", "Ring", "Pinky")):
            base = wrist + along * 0.09 * scale + np.array([0.0, (number - 2) * 0.02 * scale, 0.0])
            parent = names[f"{side}_wrist"]
            for segment in range(1, 5):
                start = base + along * 0.03 * scale * (segment - 1)
                name = f"{prefix}{word}Hand{finger}{segment}"
                bones.append(RigBone(name, parent, start, start + along * 0.03 * scale))
                parent = name
    return bones


def ue5_bones(scale: float = 0.95, rng: np.random.Generator | None = None) -> list[RigBone]:
    """UE5 Mannequin names: root at the feet, five spine bones, two neck bones, twist and IK bones, odd rolls."""
    joints = humanoid_joints(scale=scale)
    rng = rng or np.random.default_rng(5)
    positions = dict(joints)
    positions["spine_02"] = (joints["spine1"] + joints["spine2"]) / 2
    positions["spine_04"] = (joints["spine2"] + joints["spine3"]) / 2
    positions["neck_02"] = (joints["neck"] + joints["head"]) / 2
    bones = [RigBone("root", None, np.zeros(3), np.array([0.0, 0.25, 0.0]))]
    chain = [("pelvis", "pelvis"), ("spine_01", "spine1"), ("spine_02", "spine_02"), ("spine_03", "spine2"),
             ("spine_04", "spine_04"), ("spine_05", "spine3"), ("neck_01", "neck"), ("neck_02", "neck_02"),
             ("head", "head")]
    parent = "root"
    for number, (name, key) in enumerate(chain):
        head = positions[key]
        tail = positions[chain[number + 1][1]] if number + 1 < len(chain) else leaf_tail("head", joints, scale)
        bones.append(RigBone(name, parent, head, tail, roll=float(rng.uniform(-math.pi, math.pi))))
        parent = name
    limb_parents = {"collar": "spine_05", "hip": "pelvis"}
    for side, _, _, small in SIDES:
        for limb in (("collar", "shoulder", "elbow", "wrist"), ("hip", "knee", "ankle", "foot")):
            parent = limb_parents[limb[0]]
            for number, part in enumerate(limb):
                joint = f"{side}_{part}"
                name = UE5_NAMES[joint]
                last = number + 1 == len(limb)
                tail = leaf_tail(joint, joints, scale) if last else joints[f"{side}_{limb[number + 1]}"]
                bones.append(RigBone(name, parent, joints[joint], tail, roll=float(rng.uniform(-math.pi, math.pi))))
                parent = name
        for twist, (start, end) in {"upperarm": ("shoulder", "elbow"), "thigh": ("hip", "knee")}.items():
            middle = (joints[f"{side}_{start}"] + joints[f"{side}_{end}"]) / 2
            tail = middle + 0.3 * (joints[f"{side}_{end}"] - middle)
            bones.append(RigBone(f"{twist}_twist_01_{small}", f"{twist}_{small}", middle, tail))
    bones.append(RigBone("ik_foot_root", "root", np.zeros(3), np.array([0.0, 0.0, 0.1])))
    for side, _, _, small in SIDES:
        ankle = joints[f"{side}_ankle"]
        bones.append(RigBone(f"ik_foot_{small}", "ik_foot_root", ankle, ankle + [0.0, -0.1, 0.0]))
    return bones


def arp_a_pose_bones(scale: float = 1.2) -> list[RigBone]:
    """Auto-Rig Pro control names, arms 45 degrees down (A-pose), a trajectory root, Euler rotation modes."""
    joints = humanoid_joints(scale=scale, arm_drop_degrees=45.0, arm_scale=0.95)
    bones = [RigBone("c_traj", None, np.zeros(3), np.array([0.0, 0.3, 0.0]))]
    body = body_bones(ARP_NAMES, joints, scale=scale)
    for bone in body:
        if bone.parent is None:
            bone.parent = "c_traj"
        bone.rotation_mode = "XYZ" if "arm" in bone.name or "leg" in bone.name else "ZXY"
    return bones + body


def mixamo_a_pose_bones(scale: float = 1.05, rng: np.random.Generator | None = None) -> list[RigBone]:
    """The Mixamo skeleton in an A-pose (arms 40 degrees down), every bone rolled at random, and other proportions:
    shins 8 % longer, thighs 4 % shorter, the hips bone 6 cm above the hip joints' line."""
    rng = rng or np.random.default_rng(12)
    bones = mixamo_bones(scale=scale)
    joints = humanoid_joints(scale=scale, arm_drop_degrees=40.0, arm_scale=1.05)
    for side, _, word, _ in SIDES:
        hip, knee, ankle = (joints[f"{side}_{part}"] for part in ("hip", "knee", "ankle"))
        new_knee = hip + 0.96 * (knee - hip)
        shift = new_knee + 1.08 * (ankle - knee) - ankle
        for bone in bones:
            if bone.name == f"mixamorig:{word}UpLeg":
                bone.tail = new_knee
            elif bone.name == f"mixamorig:{word}Leg":
                bone.head, bone.tail = new_knee, ankle + shift
            elif bone.name.startswith(f"mixamorig:{word}") and any(
                    part in bone.name for part in ("Foot", "Toe")):
                bone.head, bone.tail = bone.head + shift, bone.tail + shift
        arm_names = {"Arm": "elbow", "ForeArm": "wrist"}
        for bone in bones:
            for suffix, child in arm_names.items():
                if bone.name == f"mixamorig:{word}{suffix}":
                    start = "shoulder" if suffix == "Arm" else "elbow"
                    bone.head, bone.tail = joints[f"{side}_{start}"], joints[f"{side}_{child}"]
            if bone.name == f"mixamorig:{word}Hand":
                along = joints[f"{side}_wrist"] - joints[f"{side}_elbow"]
                bone.head = joints[f"{side}_wrist"]
                bone.tail = bone.head + 0.08 * scale * along / np.linalg.norm(along)
    lift = np.array([0.0, 0.0, 0.06])
    bones[0].head = bones[0].head + lift
    for bone in bones:
        bone.roll = float(rng.uniform(-math.pi, math.pi))
    # the fingers would hang off the moved hands: this rig goes without them
    return [bone for bone in bones if "Hand" not in bone.name or bone.name.endswith("Hand")]


def arp_ik_bones(scale: float = 1.2) -> list[RigBone]:
    """The Auto-Rig Pro control rig of :func:`arp_a_pose_bones` with its IK controls: foot and hand IK targets at the
    ankles and wrists and the knee and elbow poles in front of and behind the limbs, all under the trajectory root."""
    bones = arp_a_pose_bones(scale)
    by_name = {bone.name: bone for bone in bones}
    for _, _, _, small in SIDES:
        ankle, wrist = by_name[f"c_foot_fk.{small}"], by_name[f"c_hand_fk.{small}"]
        knee, elbow = by_name[f"c_leg_fk.{small}"], by_name[f"c_forearm_fk.{small}"]
        bones.append(RigBone(f"c_foot_ik.{small}", "c_traj", ankle.head, ankle.head + [0.0, -0.12 * scale, 0.0]))
        bones.append(RigBone(f"c_hand_ik.{small}", "c_traj", wrist.head, wrist.tail))
        pole = knee.head + np.array([0.0, -0.4 * scale, 0.0])
        bones.append(RigBone(f"c_leg_pole.{small}", "c_traj", pole, pole + [0.0, 0.0, 0.05 * scale]))
        pole = elbow.head + np.array([0.0, 0.4 * scale, 0.0])
        bones.append(RigBone(f"c_arms_pole.{small}", "c_traj", pole, pole + [0.0, 0.0, 0.05 * scale]))
    return bones


def generic_unusual_roll_bones(scale: float = 0.8) -> list[RigBone]:
    """Generic names; rolls of 90/180/-135 degrees, spine bones pointing forward instead of up, mixed rotation modes."""
    joints = humanoid_joints(scale=scale)
    rolls = {joint: math.radians(angle) for joint, angle in zip(BODY_JOINT_NAMES, [90, 180, -135, 45] * 6)}
    bones = body_bones(GENERIC_NAMES, joints, rolls=rolls, scale=scale)
    for bone in bones:
        if bone.name in ("spine", "chest", "upper_chest"):
            bone.tail = bone.head + np.array([0.0, -0.1, 0.0])
    modes = ("QUATERNION", "YXZ", "AXIS_ANGLE", "XZY")
    for number, bone in enumerate(bones):
        bone.rotation_mode = modes[number % len(modes)]
    return bones


def build_rig(name: str, bones: list[RigBone], y_up_centimetres: bool = False) -> bpy.types.Object:
    """Create an armature object from bone specs; with `y_up_centimetres` the armature space is Y-up in cm and the
    object carries a 90-degree X rotation and 0.01 scale, as Blender's FBX import of a Mixamo file does."""
    data = bpy.data.armatures.new(name)
    armature = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    armature.select_set(True)
    to_armature = np.eye(3)
    if y_up_centimetres:
        to_armature = 100.0 * np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
        armature.rotation_euler = (math.pi / 2, 0.0, 0.0)
        armature.scale = (0.01, 0.01, 0.01)
    bpy.ops.object.mode_set(mode="EDIT")
    edit_bones = data.edit_bones
    for spec in bones:
        bone = edit_bones.new(spec.name)
        bone.head = tuple(to_armature @ spec.head)
        bone.tail = tuple(to_armature @ spec.tail)
        bone.roll = spec.roll
    for spec in bones:
        if spec.parent:
            edit_bones[spec.name].parent = edit_bones[spec.parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    for spec in bones:
        armature.pose.bones[spec.name].rotation_mode = spec.rotation_mode
    bpy.context.view_layer.update()
    return armature


def generate_rigify_rig() -> bpy.types.Object:
    """Rigify's human metarig without its face (the face alone takes ~20 s to generate), generated into a rig."""
    addon_utils.enable("rigify", default_set=True)
    existing = set(bpy.data.objects)
    bpy.ops.object.armature_human_metarig_add()
    metarig = bpy.context.active_object
    bpy.ops.object.mode_set(mode="EDIT")
    edit_bones = metarig.data.edit_bones
    face = [bone for bone in edit_bones if bone.name == "face"]
    for bone in face:
        for child in bone.children_recursive:
            edit_bones.remove(child)
        edit_bones.remove(bone)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.pose.rigify_generate()
    generated = [obj for obj in bpy.data.objects if obj.type == "ARMATURE" and obj not in existing and obj != metarig]
    return generated[0]


def append_object(blend_path: str, name: str) -> bpy.types.Object:
    """Append an object saved by a module fixture into the current scene (faster than generating it again)."""
    with bpy.data.libraries.load(blend_path) as (source, target):
        target.objects = [name]
    obj = target.objects[0]
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.update()
    return obj


# --- measuring ------------------------------------------------------------------------------------------------------


def world_matrices(armature: bpy.types.Object, bone_names, frame: int) -> np.ndarray:
    """World matrices (N, 4, 4) of the named pose bones at `frame`, from the evaluated depsgraph."""
    bpy.context.scene.frame_set(frame)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = armature.evaluated_get(depsgraph)
    world = np.array(evaluated.matrix_world)
    return np.array([world @ np.array(evaluated.pose.bones[name].matrix) for name in bone_names])


def angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def is_descendant(armature: bpy.types.Object, bone: str, ancestor: str) -> bool:
    parent = armature.data.bones[bone].parent
    while parent is not None:
        if parent.name == ancestor:
            return True
        parent = parent.parent
    return False


def continues_chain(armature, bone: str, child: str) -> bool:
    """The child bone hangs below the bone, or starts within a quarter of its length of its tail (Rigify's upper arm
    beside its shoulder control): then the bone's direction is the one from its head to the child's head."""
    bones = armature.data.bones
    gap = np.linalg.norm(np.array(bones[child].head_local) - np.array(bones[bone].tail_local))
    return is_descendant(armature, child, bone) or gap < 0.25 * bones[bone].length


def direction_errors(armature, mapping: dict[str, str], translation, rotations, frame_offset: int = 1,
                     frames=(0,)) -> dict[str, float]:
    """Worst angle (degrees) per mapped joint between the target bone's world direction and its source bone's.

    A target bone's direction runs from its head to the head of the bone mapped to the source joint's chain child
    when that bone continues its chain (:func:`continues_chain`), else along its own axis (head to tail); the source's
    from the joint to its child, or along the SMPL-X rig's leaf bone.
    """
    from hymotion_addon.scene import target_rig

    source = target_rig.source_skeleton()
    world, positions = retarget_math.source_world(np.asarray(translation), np.asarray(rotations), source)
    children = source.direction_children()
    names = list(mapping.values())
    worst: dict[str, float] = {}
    for frame in frames:
        matrices = world_matrices(armature, names, frame + frame_offset)
        by_name = dict(zip(names, matrices))
        for joint, bone in mapping.items():
            index = JOINT[joint]
            child = children[index]
            child_joint = BODY_JOINT_NAMES[child] if child >= 0 else None
            if child_joint in mapping and continues_chain(armature, bone, mapping[child_joint]):
                target_direction = by_name[mapping[child_joint]][:3, 3] - by_name[bone][:3, 3]
                source_direction = positions[frame, child] - positions[frame, index]
            else:
                target_direction = by_name[bone][:3, 1]
                source_direction = world[frame, index] @ (source.tails[index] - source.heads[index])
            error = float(angle_degrees(target_direction, source_direction))
            worst[joint] = max(worst.get(joint, 0.0), error)
    return worst


# --- source motions -------------------------------------------------------------------------------------------------


def axis_angle_quaternions(axis, angle) -> np.ndarray:
    """Quaternions (w, x, y, z) turning `angle` radians (any shape) about a unit `axis` (model frame)."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.concatenate([np.cos(angle / 2)[..., None], np.sin(angle / 2)[..., None] * np.asarray(axis, float)], -1)


def identity_clip(frames: int) -> tuple[np.ndarray, np.ndarray]:
    rotations = np.zeros((frames, len(BODY_JOINT_NAMES), 4))
    rotations[..., 0] = 1.0
    return np.zeros((frames, 3)), rotations


def hand_made_clip(frames: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A person turning round while squatting, raising both arms, bending elbows and nodding (model frame)."""
    translation, rotations = identity_clip(frames)
    ramp = np.linspace(0.0, 1.0, frames)
    rotations[:, JOINT["pelvis"]] = axis_angle_quaternions([0, 1, 0], 2.5 * ramp)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        rotations[:, JOINT[f"{side}_shoulder"]] = axis_angle_quaternions([0, 0, 1], sign * 1.2 * ramp)
        rotations[:, JOINT[f"{side}_elbow"]] = axis_angle_quaternions([0, 1, 0], sign * 1.4 * ramp)
        rotations[:, JOINT[f"{side}_hip"]] = axis_angle_quaternions([1, 0, 0], -1.0 * ramp)
        rotations[:, JOINT[f"{side}_knee"]] = axis_angle_quaternions([1, 0, 0], 1.6 * ramp)
        rotations[:, JOINT[f"{side}_ankle"]] = axis_angle_quaternions([1, 0, 0], -0.5 * ramp)
    rotations[:, JOINT["spine2"]] = axis_angle_quaternions([1, 0, 0], 0.4 * ramp)
    rotations[:, JOINT["head"]] = axis_angle_quaternions([1, 0, 0], 0.5 * np.sin(6.0 * ramp))
    translation[:, 1] = -0.35 * ramp
    translation[:, 0] = 0.8 * ramp
    translation[:, 2] = 0.4 * ramp
    return translation, rotations


def walk_clip(frames: int = 90, fps: float = 30.0, amplitude: float = 0.3, cycle_seconds: float = 1.0,
              slip: float = 0.25, knee: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic walk (model frame, forward +Z) whose planted feet slide: the body moves `slip` (25 %) faster than
    the stance leg sweeps back. Hips swing linearly during stance, knees bend in swing, the pelvis bobs so the
    stance leg stays on the ground. Returns translation, rotations and the true stance phases (F, 2: left, right)."""
    from hymotion_addon.scene import target_rig

    source = target_rig.source_skeleton()
    leg = float(np.linalg.norm(source.heads[JOINT["left_ankle"]] - source.heads[JOINT["left_hip"]]))
    seconds = np.arange(frames) / fps
    translation, rotations = identity_clip(frames)
    stance = np.zeros((frames, 2), dtype=bool)
    hip_angles = np.zeros((frames, 2))
    for column, (side, shift) in enumerate((("left", 0.0), ("right", 0.5))):
        phase = (seconds / cycle_seconds + shift) % 1.0
        stance[:, column] = phase < 0.5
        hip = np.where(stance[:, column], -amplitude + 4.0 * amplitude * phase,
                       amplitude * np.cos(2.0 * np.pi * (phase - 0.5)))
        bend = np.where(stance[:, column], 0.0, knee * np.sin(2.0 * np.pi * (phase - 0.5)))
        rotations[:, JOINT[f"{side}_hip"]] = axis_angle_quaternions([1, 0, 0], hip)
        rotations[:, JOINT[f"{side}_knee"]] = axis_angle_quaternions([1, 0, 0], bend)
        hip_angles[:, column] = hip
    stance_angle = np.where(stance[:, 0], hip_angles[:, 0], hip_angles[:, 1])
    sweep_speed = leg * 4.0 * amplitude / cycle_seconds
    translation[:, 2] = sweep_speed * (1.0 + slip) * seconds
    standing = -source.heads[[JOINT["left_foot"], JOINT["right_foot"]], 2].min() + 0.02
    translation[:, 1] = standing - leg * (1.0 - np.cos(stance_angle))
    return translation, rotations, stance


# --- the add-on's retarget UI, registered for a test module ---------------------------------------------------------


class _StandInMainPanel(bpy.types.Panel):
    """The HY-Motion main panel the retarget panel hangs under, for tests run without the rest of the UI."""

    bl_label = "HY-Motion"
    bl_idname = "HYMOTION_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HY-Motion"

    def draw(self, context):
        pass


def register_retarget_ui() -> list[type]:
    """Register the retarget UI classes (after a stand-in main panel if the real one is not registered)."""
    from hymotion_addon.ui import retarget_ui

    registered: list[type] = []
    if not hasattr(bpy.types, "HYMOTION_PT_main"):
        bpy.utils.register_class(_StandInMainPanel)
        registered.append(_StandInMainPanel)
    for cls in retarget_ui.classes:
        bpy.utils.register_class(cls)
        registered.append(cls)
    retarget_ui.register_properties()
    return registered


def unregister_retarget_ui(registered: list[type]) -> None:
    from hymotion_addon.ui import retarget_ui

    retarget_ui.unregister_properties()
    for cls in reversed(registered):
        bpy.utils.unregister_class(cls)


def bone_infos_of(bones: list[RigBone]):
    """The pure-Python BoneInfo records of a rig spec (no Blender objects needed)."""
    from hymotion_addon.core.bone_mapping import BoneInfo

    return [BoneInfo(bone.name, bone.parent, tuple(bone.head), tuple(bone.tail)) for bone in bones]


# --- gaits: walk, run, jump, turn with planted heels and balls ------------------------------------------------------


@dataclass
class Stance:
    """One foot on the ground, seconds: it lands at t0 pitched `first` (toes up < 0: on the heel; toes down > 0: on
    the ball) and rolls flat by t1, stays flat to t2, then rolls to pitch `last` about the ball by t3 and lifts."""

    t0: float
    t1: float
    t2: float
    t3: float
    ankle: np.ndarray  # (2,) horizontal ankle position while flat, Blender frame
    heading: float = 0.0
    first: float = -0.3
    last: float = 0.6


def _rz(angle: float | np.ndarray) -> np.ndarray:
    return axis_angle_matrix(np.array([0.0, 0.0, 1.0]), angle)


def _rx(angle: float | np.ndarray) -> np.ndarray:
    return axis_angle_matrix(np.array([1.0, 0.0, 0.0]), angle)


def _smooth(s: float | np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _foot_track(stances: list[Stance], times: np.ndarray, heads: np.ndarray, side: int, lift: float):
    """Ankle goal (F, 3), foot pitch and heading (F,), toe pitch (F,), heel/ball contacts (F, 2) of one foot."""
    ankle_joint, ball_joint = JOINT[f"{SIDES[side][0]}_ankle"], JOINT[f"{SIDES[side][0]}_foot"]
    floor = heads[[JOINT["left_foot"], JOINT["right_foot"]], 2].min()
    heel_offset = np.array([0.0, 0.0, floor - heads[ankle_joint, 2]])
    ball_offset = heads[ball_joint] - heads[ankle_joint]

    def pose(stance: Stance, t: float):
        """Ankle, pitch and contacts of a stance at time t (inside it)."""
        turn = _rz(stance.heading)
        flat_ankle = np.array([*stance.ankle, heads[ankle_joint, 2]])
        heel_pin, ball_pin = flat_ankle + turn @ heel_offset, flat_ankle + turn @ ball_offset
        pitch: float | np.ndarray
        if t < stance.t1:
            pitch = stance.first * (1.0 - _smooth((t - stance.t0) / (stance.t1 - stance.t0)))
        elif t < stance.t2:
            pitch = 0.0
        else:
            pitch = stance.last * _smooth((t - stance.t2) / (stance.t3 - stance.t2))
        rotation = turn @ _rx(pitch)
        on_heel = pitch <= 0.0
        ankle = heel_pin - rotation @ heel_offset if on_heel else ball_pin - rotation @ ball_offset
        return ankle, pitch, (pitch <= 0.0, pitch >= 0.0)

    frames = times.size
    ankle, pitch, heading, toe = np.zeros((frames, 3)), np.zeros(frames), np.zeros(frames), np.zeros(frames)
    contacts = np.zeros((frames, 2), dtype=bool)
    for row, t in enumerate(times):
        current = next((stance for stance in stances if stance.t0 <= t < stance.t3), None)
        if current is not None:
            ankle[row], pitch[row], contacts[row] = pose(current, t)
            heading[row] = current.heading
            toe[row] = 0.0  # the toe lies flat on the ground while the ball is down
            continue
        before = [stance for stance in stances if stance.t3 <= t]
        after = [stance for stance in stances if stance.t0 > t]
        if not before or not after:
            edge = before[-1] if before else after[0]
            ankle[row], pitch[row], _ = pose(edge, edge.t3 - 1e-6 if before else edge.t0)
            heading[row] = edge.heading
            toe[row] = 0.0
            continue
        start, end = before[-1], after[0]
        s = (t - start.t3) / (end.t0 - start.t3)
        a0, p0, _ = pose(start, start.t3 - 1e-6)
        a1, p1, _ = pose(end, end.t0)
        ankle[row] = a0 + _smooth(s) * (a1 - a0) + np.array([0.0, 0.0, lift * np.sin(np.pi * s)])
        pitch[row] = p0 + s * (p1 - p0)
        heading[row] = start.heading + s * (end.heading - start.heading)
        toe[row] = pitch[row] * _smooth((s - 0.3) / 0.4)  # the toe leaves the ground flat, then follows the foot
    return ankle, pitch, heading, toe, contacts


def gait_clip(kind: str, seconds: float = 4.0, fps: float = 30.0):
    """A synthetic `kind` ('walk', 'run', 'jump', 'turn') whose source feet really plant: ankle goals designed first
    (heel strike, flat, heel-off about the ball, toe-off), legs solved onto them by two-bone IK. Returns translation
    (F, 3) and rotations (F, 22, 4) in the model frame, and the true heel/ball contacts (F, 2 sides, 2 points)."""
    from hymotion_addon.core import retarget_feet
    from hymotion_addon.scene import target_rig

    source = target_rig.source_skeleton()
    heads = source.heads
    times = np.arange(int(round(seconds * fps))) / fps
    pelvis, heading, stances, lift = _gait_design(kind, times, heads)
    frames = times.size
    body = _rz(heading)
    rotations = np.zeros((frames, len(BODY_JOINT_NAMES), 3, 3))
    rotations[:] = np.eye(3)
    rotations[:, JOINT["pelvis"]] = body
    contacts = np.zeros((frames, 2, 2), dtype=bool)
    tracks = [_foot_track(stances[side], times, heads, side, lift) for side in range(2)]
    pelvis = _reachable_pelvis(pelvis, body, tracks, heads)
    for side, (ankle_goal, pitch, foot_heading, toe_pitch, contact) in enumerate(tracks):
        name = SIDES[side][0]
        hip_joint, knee_joint, ankle_joint = (JOINT[f"{name}_{part}"] for part in ("hip", "knee", "ankle"))
        thigh_world = body @ _rx(-0.3)
        shin_world = body @ _rx(0.3)
        hip = pelvis + body @ (heads[hip_joint] - heads[JOINT["pelvis"]])
        knee = hip + thigh_world @ (heads[knee_joint] - heads[hip_joint])
        ankle = knee + shin_world @ (heads[ankle_joint] - heads[knee_joint])
        upper = float(np.linalg.norm(heads[knee_joint] - heads[hip_joint]))
        lower = float(np.linalg.norm(heads[ankle_joint] - heads[knee_joint]))
        forward = body @ np.array([0.0, -1.0, 0.0])
        turn_thigh, turn_shin = retarget_feet.two_bone_ik(
            hip, knee, ankle, ankle_goal, upper, lower, forward, np.ones(frames, dtype=bool))
        thigh_world, shin_world = turn_thigh @ thigh_world, turn_shin @ shin_world
        foot_world = _rz(foot_heading) @ _rx(pitch)
        toe_world = _rz(foot_heading) @ _rx(toe_pitch)
        rotations[:, hip_joint] = np.swapaxes(body, -1, -2) @ thigh_world
        rotations[:, knee_joint] = np.swapaxes(thigh_world, -1, -2) @ shin_world
        rotations[:, ankle_joint] = np.swapaxes(shin_world, -1, -2) @ foot_world
        rotations[:, JOINT[f"{name}_foot"]] = np.swapaxes(foot_world, -1, -2) @ toe_world
        contacts[:, side] = contact
    to_model = Y_UP_TO_Z_UP.T  # Blender -> model frame
    model_rotations = to_model @ rotations @ to_model.T
    quaternions = matrix_to_quaternion(model_rotations)
    translation = (pelvis - heads[JOINT["pelvis"]]) @ to_model.T
    return translation, quaternions, contacts


def _reachable_pelvis(pelvis: np.ndarray, body: np.ndarray, tracks, heads: np.ndarray) -> np.ndarray:
    """The pelvis lowered where a planted foot's ankle would be out of the leg's reach (98 % of its length)."""
    pelvis = pelvis.copy()
    for side, (ankle_goal, _, _, _, contact) in enumerate(tracks):
        name = SIDES[side][0]
        hip_joint, knee_joint, ankle_joint = (JOINT[f"{name}_{part}"] for part in ("hip", "knee", "ankle"))
        reach = 0.98 * (np.linalg.norm(heads[knee_joint] - heads[hip_joint])
                        + np.linalg.norm(heads[ankle_joint] - heads[knee_joint]))
        hip = pelvis + body @ (heads[hip_joint] - heads[JOINT["pelvis"]])
        horizontal = np.linalg.norm(ankle_goal[:, :2] - hip[:, :2], axis=-1)
        highest = ankle_goal[:, 2] + np.sqrt(np.maximum(reach**2 - horizontal**2, 0.0))
        excess = np.where(contact.any(axis=1), np.maximum(hip[:, 2] - highest, 0.0), 0.0)
        pelvis[:, 2] -= excess
    return pelvis


def _gait_design(kind: str, times: np.ndarray, heads: np.ndarray):
    """Pelvis path (F, 3), body heading (F,), stances per side and swing lift for a gait."""
    standing = heads[JOINT["pelvis"]].copy()
    offsets = [heads[JOINT[f"{side}_ankle"], :2] - standing[:2] for side, *_ in SIDES]
    if kind in ("walk", "run", "turn"):
        speed, cycle, stance_part, lift, dip = {"walk": (1.2, 1.1, 0.6, 0.08, 0.04),
                                                "run": (3.0, 0.72, 0.36, 0.15, 0.10),
                                                "turn": (0.8, 1.2, 0.6, 0.07, 0.04)}[kind]
        turn_rate = np.radians(90.0) / times[-1] if kind == "turn" else 0.0
        heading = turn_rate * times
        forward = np.stack([np.sin(heading), -np.cos(heading)], axis=1)  # facing -Y, turning left
        ground = np.concatenate([[0.0], np.cumsum(speed / (times.size / times[-1]) * np.ones(times.size - 1))])
        position = np.cumsum(np.concatenate([[np.zeros(2)], forward[1:] * np.diff(ground)[:, None]]), axis=0)
        pelvis = np.column_stack([position + standing[:2], np.full(times.size, standing[2] - dip)])
        pelvis[:, 2] += 0.5 * dip * np.cos(4.0 * np.pi * times / cycle)
        stances: list[list[Stance]] = [[], []]
        for side in range(2):
            start = -cycle * (0.5 * side)
            while start < times[-1] + cycle:
                t0, t3 = start, start + stance_part * cycle
                middle = (t0 + t3) / 2.0
                at = int(np.clip(round(middle / times[-1] * (times.size - 1)), 0, times.size - 1))
                spot = position[at] + (forward[at] - forward[at]) + standing[:2]
                spot = spot + _rz(heading[at])[:2, :2] @ offsets[side]
                if kind == "run":
                    spot = spot + (middle - times[at]) * speed * forward[at]
                span = t3 - t0
                stances[side].append(Stance(t0, t0 + 0.12 * span, t0 + 0.55 * span, t3, spot, float(heading[at])))
                start += cycle
        return pelvis, heading, stances, lift
    if kind == "jump":
        heading = np.zeros(times.size)
        takeoff, landing, forward = 1.2, 1.75, 0.4
        crouch = 0.2 * (_smooth((times - 0.5) / 0.5) * (times < takeoff)
                        + (1.0 - _smooth((times - landing) / 0.8)) * (times >= landing))
        flight = np.clip((times - takeoff) / (landing - takeoff), 0.0, 1.0)
        rise = np.where((times >= takeoff) & (times < landing), 0.35 * np.sin(np.pi * flight), 0.0)
        pelvis = np.column_stack([np.full(times.size, standing[0]),
                                  standing[1] - forward * _smooth(flight),
                                  standing[2] - 0.02 - crouch + rise])
        stances = [[Stance(-1.0, -0.9, takeoff - 0.2, takeoff, offsets[side] + standing[:2], first=0.0, last=0.7),
                    Stance(landing, landing + 0.12, times[-1] + 1.0, times[-1] + 1.1,
                           offsets[side] + standing[:2] + np.array([0.0, -forward]), first=0.4, last=0.0)]
                   for side in range(2)]
        return pelvis, heading, stances, 0.3
    raise ValueError(f"Unknown gait {kind!r}")
