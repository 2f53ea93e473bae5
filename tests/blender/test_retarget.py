"""Retargeting onto rigs built in the test: every mapped bone points where its SMPL-X bone points (<= 1 degree) at
several frames, the root follows the source trajectory scaled by hip height, and the result is a plain, tagged
Action on the rig, on Blender 4.2 (legacy Actions) and 5.x (slotted Actions)."""

from __future__ import annotations

import math

import bpy
import numpy as np
import pytest
import retarget_test_rigs as rigs
from addon_helpers import random_unit_quaternions
from blender_helpers import action_fcurves, new_empty_file

from hymotion.shared.errors import BAD_REQUEST, HyMotionError
from hymotion.shared.rotations import EULER_ORDERS, quaternion_to_euler
from hymotion.shared.skeleton import BODY_JOINT_NAMES
from hymotion_addon.core import bone_mapping, retarget_math
from hymotion_addon.scene import bake, retarget, retarget_refine, rig, target_rig
from hymotion_addon.scene.actions import uses_slotted_actions

MAX_DEGREES = 1.0
JOINT = rigs.JOINT

RIGS = {
    "mixamo": lambda: rigs.build_rig("Mixamo", rigs.mixamo_bones()),
    "mixamo_fbx_y_up_cm": lambda: rigs.build_rig("MixamoFBX", rigs.mixamo_bones(), y_up_centimetres=True),
    "ue5": lambda: rigs.build_rig("Mannequin", rigs.ue5_bones()),
    "arp_a_pose": lambda: rigs.build_rig("ARP", rigs.arp_a_pose_bones()),
    "unusual_rolls": lambda: rigs.build_rig("Rolled", rigs.generic_unusual_roll_bones()),
    "smplx": lambda: rig.build_armature(bpy.context),
}


def random_clip(frames: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.4, size=(frames, 3)), random_unit_quaternions(rng, (frames, len(BODY_JOINT_NAMES)))


MOTIONS = {"random": lambda: random_clip(9), "hand_made": lambda: rigs.hand_made_clip(9)}


def world_rotations(armature, names, frame: int) -> np.ndarray:
    matrices = rigs.world_matrices(armature, names, frame)[:, :3, :3]
    return matrices / np.linalg.norm(matrices, axis=1, keepdims=True)


def rotation_angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle of the rotation between a and b (float64, robust for tiny angles)."""
    difference = np.linalg.norm(a.astype(np.float64) - b.astype(np.float64), axis=(-2, -1))
    return np.degrees(2.0 * np.arcsin(np.clip(difference / (2.0 * math.sqrt(2.0)), 0.0, 1.0)))


@pytest.mark.parametrize("motion", sorted(MOTIONS))
@pytest.mark.parametrize("rig_name", sorted(RIGS))
def test_every_mapped_bone_points_like_its_source_bone(scene, rig_name, motion):
    scene.render.fps = 30
    armature = RIGS[rig_name]()
    translation, rotations = MOTIONS[motion]()
    mapping = target_rig.detect_mapping(armature)
    assert not mapping.unmapped()
    retarget.bake_onto_rig(armature, translation, rotations, mapping)
    errors = rigs.direction_errors(armature, mapping.mapped(), translation, rotations, frames=(0, 4, 8))
    assert max(errors.values()) <= MAX_DEGREES, {joint: round(e, 3) for joint, e in errors.items() if e > MAX_DEGREES}


def source_relative_rotations(translation, rotations, frame: int, reference: int) -> np.ndarray:
    world, _ = retarget_math.source_world(translation, rotations, target_rig.source_skeleton())
    return world[frame] @ np.swapaxes(world[reference], -1, -2)


@pytest.mark.parametrize("rig_name", ["mixamo_fbx_y_up_cm", "unusual_rolls", "arp_a_pose"])
def test_bones_turn_between_frames_exactly_as_their_source_joints(scene, rig_name):
    scene.render.fps = 30
    armature = RIGS[rig_name]()
    translation, rotations = random_clip(6, seed=3)
    mapping = target_rig.detect_mapping(armature).mapped()
    retarget.bake_onto_rig(armature, translation, rotations, mapping)
    names = list(mapping.values())
    joints = [JOINT[joint] for joint in mapping]
    reference = world_rotations(armature, names, 1)
    for frame in (2, 5):
        turned = world_rotations(armature, names, frame + 1) @ np.swapaxes(reference, -1, -2)
        expected = source_relative_rotations(translation, rotations, frame, 0)[joints]
        assert rotation_angle_degrees(turned, expected).max() <= MAX_DEGREES


# --- Rigify ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rigify_blend(tmp_path_factory) -> tuple[str, str]:
    """A rig generated once by Rigify from its human metarig (face removed), saved to append in each test."""
    new_empty_file()
    armature = rigs.generate_rigify_rig()
    path = tmp_path_factory.mktemp("rigify") / "rigify_rig.blend"
    bpy.data.libraries.write(str(path), {armature}, fake_user=True)
    return str(path), armature.name


def test_rigify_fk_controls_and_the_deform_chain_follow_the_source(scene, rigify_blend):
    scene.render.fps = 30
    armature = rigs.append_object(*rigify_blend)
    constraints_before = sum(len(pose_bone.constraints) for pose_bone in armature.pose.bones)
    translation, rotations = rigs.hand_made_clip(6)
    random_translation, random_rotations = random_clip(6, seed=11)
    rotations[3:] = random_rotations[3:]
    mapping = target_rig.detect_mapping(armature)
    assert target_rig.plan_for(armature, mapping).needs_evaluation
    scene.frame_set(3)
    action = retarget.bake_onto_rig(armature, translation, rotations, mapping, prompt="rigify test", feet_cleanup=False)
    assert scene.frame_current == 3  # the evaluation passes put the frame back

    frames = (0, 2, 5)
    controls = rigs.direction_errors(armature, mapping.mapped(), translation, rotations, frames=frames)
    assert max(controls.values()) <= MAX_DEGREES, controls
    # the clavicles count as the animator sees them, from the shoulder control's head to the upper arm's head (the
    # upper arm hangs from helper bones beside the shoulder, whose own axis is ~6 degrees off that line)
    for side in "LR":
        assert rigs.continues_chain(armature, f"shoulder.{side}", f"upper_arm_fk.{side}")
        assert not rigs.is_descendant(armature, f"upper_arm_fk.{side}", f"shoulder.{side}")
    deform = {joint: "ORG-" + bone.replace("_fk", "") for joint, bone in mapping.mapped().items() if "_fk." in bone
              and not bone.startswith("spine")}
    deform.update({"pelvis": "DEF-spine", "spine1": "DEF-spine.001", "spine2": "DEF-spine.002",
                   "spine3": "DEF-spine.003"})
    deformed = rigs.direction_errors(armature, deform, translation, rotations, frames=frames)
    assert max(deformed.values()) <= MAX_DEGREES, deformed

    names = list(mapping.mapped().values())
    reference = world_rotations(armature, names, 1)
    turned = world_rotations(armature, names, 6) @ np.swapaxes(reference, -1, -2)
    expected = source_relative_rotations(translation, rotations, 5, 0)[[JOINT[j] for j in mapping.mapped()]]
    assert rotation_angle_degrees(turned, expected).max() <= MAX_DEGREES

    switch, fk = bone_mapping.RIGIFY_FK_SWITCH
    switches = [fc for fc in action_fcurves(action) if fc.data_path.endswith(f'["{switch}"]')]
    assert {fc.data_path.split('"')[1] for fc in switches} == {"thigh_parent.L", "thigh_parent.R",
                                                                "upper_arm_parent.L", "upper_arm_parent.R"}
    assert all(key.co[1] == fk for fc in switches for key in fc.keyframe_points)
    assert sum(len(pose_bone.constraints) for pose_bone in armature.pose.bones) == constraints_before


def test_rigify_deform_bones_are_refused_with_a_hint(scene, rigify_blend):
    armature = rigs.append_object(*rigify_blend)
    actions_before = len(bpy.data.actions)
    deform = dict(bone_mapping.CONVENTIONS["rigify_deform"])
    with pytest.raises(HyMotionError, match="would be overridden: DEF-spine") as caught:
        retarget.bake_onto_rig(armature, *random_clip(3), deform)
    assert caught.value.code == BAD_REQUEST and "FK controls" in caught.value.hint
    assert len(bpy.data.actions) == actions_before


# --- root motion ----------------------------------------------------------------------------------------------------


def leg_length_ratio(armature, mapping) -> float:
    """Target leg length over the SMPL-X body's, each hip to knee plus knee to ankle at rest, in world space."""
    world = np.array(armature.matrix_world)
    heads = {joint: (world @ np.append(armature.data.bones[bone].head_local, 1.0))[:3]
             for joint, bone in mapping.items()}
    source = target_rig.source_skeleton().heads
    ratios: list[float] = []
    for side in ("left", "right"):
        chain = [f"{side}_hip", f"{side}_knee", f"{side}_ankle"]
        target = sum(np.linalg.norm(heads[b] - heads[a]) for a, b in zip(chain, chain[1:]))
        rest = sum(np.linalg.norm(source[JOINT[b]] - source[JOINT[a]]) for a, b in zip(chain, chain[1:]))
        ratios.append(float(target / rest))
    return float(np.mean(ratios))


def hip_joints_midpoint(armature, mapping, frame: int) -> np.ndarray:
    return rigs.world_matrices(armature, [mapping["left_hip"], mapping["right_hip"]], frame)[:, :3, 3].mean(axis=0)


@pytest.mark.parametrize("rig_name", ["mixamo", "mixamo_fbx_y_up_cm", "ue5", "arp_a_pose"])
def test_hip_joints_follow_the_source_trajectory_scaled_by_leg_length(scene, rig_name):
    scene.render.fps = 30
    armature = RIGS[rig_name]()
    translation, rotations = rigs.hand_made_clip(12)
    mapping = target_rig.detect_mapping(armature).mapped()
    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    scale = leg_length_ratio(armature, mapping)
    _, source = retarget_math.source_world(translation, rotations, target_rig.source_skeleton())
    source_hips = source[:, [JOINT["left_hip"], JOINT["right_hip"]]].mean(axis=1)
    hips = np.array([hip_joints_midpoint(armature, mapping, frame + 1) for frame in range(12)])
    # 1e-4 m: float32 keys and matrices (~1e-7 relative) over a few metres of travel, with a wide margin
    np.testing.assert_allclose(hips - hips[0], scale * (source_hips - source_hips[0]), atol=1e-4)


def test_leg_length_not_the_hips_bone_height_scales_the_stride(scene):
    """Two rigs alike but for where their hips bone sits travel the same distance."""
    scene.render.fps = 30
    translation, rotations, _ = rigs.walk_clip(30)
    travelled = []
    for raise_hips in (0.0, 0.12):
        bones = rigs.mixamo_bones()
        bones[0].head = bones[0].head + np.array([0.0, 0.0, raise_hips])  # the pelvis bone's head, higher
        armature = rigs.build_rig(f"Hips{raise_hips}", bones)
        mapping = target_rig.detect_mapping(armature).mapped()
        retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
        travelled.append(hip_joints_midpoint(armature, mapping, 30) - hip_joints_midpoint(armature, mapping, 1))
    np.testing.assert_allclose(travelled[1], travelled[0], atol=1e-4)
    assert np.linalg.norm(travelled[0]) > 0.5


def test_the_clips_lowest_foot_point_lands_on_the_target_floor(scene):
    scene.render.fps = 30
    armature = RIGS["ue5"]()
    translation, rotations, _ = rigs.walk_clip(40)
    translation[:, 1] += 0.5  # the clip floats: its lowest foot point still maps to the rig's floor
    mapping = target_rig.detect_mapping(armature).mapped()
    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    feet = [mapping[joint] for joint in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    rest = np.array([armature.data.bones[name].head_local[2] for name in feet])
    toe_level = rest.min()
    lowest = min(
        (rigs.world_matrices(armature, feet, frame + 1)[:, 2, 3] - (rest - toe_level)).min() for frame in range(40)
    )
    assert lowest == pytest.approx(toe_level, abs=1e-3)


def test_in_place_keeps_the_hips_over_their_rest_spot(scene):
    scene.render.fps = 30
    armature = RIGS["mixamo"]()
    translation, rotations = rigs.hand_made_clip(8)
    mapping = target_rig.detect_mapping(armature).mapped()
    moving = retarget.bake_onto_rig(armature, translation, rotations, mapping)
    moving_hips = [rigs.world_matrices(armature, [mapping["pelvis"]], f)[0, :3, 3] for f in range(1, 9)]
    retarget.bake_onto_rig(armature, translation, rotations, mapping, in_place=True)
    hips = np.array([rigs.world_matrices(armature, [mapping["pelvis"]], f)[0, :3, 3] for f in range(1, 9)])
    rest = np.array(armature.data.bones[mapping["pelvis"]].head_local)
    np.testing.assert_allclose(hips[:, :2], np.tile(rest[:2], (8, 1)), atol=1e-5)
    np.testing.assert_allclose(hips[:, 2], np.array(moving_hips)[:, 2], atol=1e-5)
    assert np.ptp(np.array(moving_hips)[:, 0]) > 0.5 and moving.name != ""


def test_root_bone_layout_moves_the_root_along_the_ground(scene):
    scene.render.fps = 30
    armature = RIGS["ue5"]()
    translation, rotations = rigs.hand_made_clip(8)
    mapping = target_rig.detect_mapping(armature)
    retarget.bake_onto_rig(armature, translation, rotations, mapping)
    reference = [rigs.world_matrices(armature, ["pelvis", "hand_l"], f)[:, :3, 3] for f in range(1, 9)]
    action = retarget.bake_onto_rig(armature, translation, rotations, mapping, root_motion="ROOT_BONE")
    rest_pelvis = np.array(armature.data.bones["pelvis"].head_local)
    for frame in range(1, 9):
        root, pelvis, hand = rigs.world_matrices(armature, ["root", "pelvis", "hand_l"], frame)
        np.testing.assert_allclose(np.stack([pelvis[:3, 3], hand[:3, 3]]), reference[frame - 1], atol=1e-5)
        np.testing.assert_allclose(root[:3, :3], np.array(armature.data.bones["root"].matrix_local)[:3, :3], atol=1e-6)
        assert root[2, 3] == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(root[:2, 3], pelvis[:2, 3] - rest_pelvis[:2], atol=1e-5)
    paths = {fc.data_path for fc in action_fcurves(action) if fc.data_path.endswith(".location")}
    assert paths == {f'pose.bones["{bone}"].location' for bone in ("root", "pelvis", "ik_foot_l", "ik_foot_r")}
    rigless = RIGS["mixamo"]()
    with pytest.raises(HyMotionError, match="no bone above its hips"):
        retarget.bake_onto_rig(rigless, translation, rotations, root_motion="ROOT_BONE")


# --- the Action -----------------------------------------------------------------------------------------------------


def test_result_is_a_plain_tagged_action_keyed_in_each_bones_rotation_mode(scene):
    scene.render.fps = 30
    armature = RIGS["arp_a_pose"]()
    translation, rotations = rigs.hand_made_clip(10)
    rotations[1::2] *= -1.0  # the same rotations with flipped signs: keys must still be continuous
    action = retarget.bake_onto_rig(
        armature, translation, rotations, prompt="A person squats and turns", seed=4, model="HY-Motion-1.0",
        start_frame=5,
    )
    assert action.name == "HYM_squats_and_turns_s4"
    assert (action["hymotion_prompt"], action["hymotion_seed"], action["hymotion_model"]) == (
        "A person squats and turns", 4, "HY-Motion-1.0",
    )
    assert action["hymotion_duration"] == pytest.approx(10 / 30, abs=1e-3)
    assert action["hymotion_target_rig"] == armature.name
    assert armature.animation_data.action == action
    assert not any(pose_bone.constraints for pose_bone in armature.pose.bones)
    if uses_slotted_actions():
        assert armature.animation_data.action_slot == action.slots[0]

    fcurves = action_fcurves(action)
    for fcurve in fcurves:
        assert [key.co[0] for key in fcurve.keyframe_points] == list(range(5, 15))
        assert {key.interpolation for key in fcurve.keyframe_points} == {"LINEAR"}
    by_bone = {}
    for fcurve in fcurves:
        bone = fcurve.data_path.split('"')[1]
        by_bone.setdefault(bone, set()).add(fcurve.data_path.rsplit(".", 1)[1])
    for bone, paths in by_bone.items():
        mode = armature.pose.bones[bone].rotation_mode
        rotation_path = retarget.ROTATION_PATHS.get(mode, "rotation_euler")
        assert paths == ({rotation_path, "location"} if bone == "c_root_master.x" else {rotation_path})
    euler = [fc for fc in fcurves if fc.data_path == 'pose.bones["c_forearm_fk.l"].rotation_euler']
    values = np.array([[key.co[1] for key in fc.keyframe_points] for fc in sorted(euler, key=lambda f: f.array_index)])
    assert np.abs(np.diff(values, axis=1)).max() < math.pi  # unwrapped, no 360-degree jumps between keys
    errors = rigs.direction_errors(armature, target_rig.detect_mapping(armature).mapped(), translation, rotations,
                                   frame_offset=5, frames=(0, 5, 9))
    assert max(errors.values()) <= MAX_DEGREES


@pytest.mark.parametrize("order", EULER_ORDERS)
def test_euler_keys_match_blenders_own_conversion(order, rng):
    from mathutils import Euler, Quaternion

    quaternions = random_unit_quaternions(rng, (5,))
    angles = quaternion_to_euler(quaternions, order)
    for quaternion, euler in zip(quaternions, angles):
        expected = Quaternion(quaternion).to_matrix()
        got = Euler(euler, order).to_matrix()
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=0, atol=1e-6)


def test_retargeting_an_smplx_action_equals_retargeting_its_clip(scene):
    scene.render.fps = 30
    smplx = rig.build_armature(bpy.context)
    translation, rotations = random_clip(7, seed=21)
    baked = bake.bake_motion(smplx, translation, rotations, prompt="A person waves", seed=3, model="m",
                             start_frame=10)
    target = RIGS["mixamo"]()
    action = retarget.retarget_action(smplx, target, feet_cleanup=False)
    assert action.name == f"{baked.name}_{target.name}"
    assert (action["hymotion_prompt"], action["hymotion_seed"], action["hymotion_model"]) == ("A person waves", 3, "m")
    assert tuple(action.frame_range) == (10.0, 16.0)
    names = list(target_rig.detect_mapping(target).mapped().values())
    via_action = [rigs.world_matrices(target, names, frame) for frame in (10, 13, 16)]
    retarget.bake_onto_rig(target, translation, rotations, start_frame=10)
    direct = [rigs.world_matrices(target, names, frame) for frame in (10, 13, 16)]
    np.testing.assert_allclose(np.array(via_action), np.array(direct), atol=2e-4)


def test_scene_rate_resampling_keeps_the_clip_duration(scene):
    assert scene.render.fps == 24
    armature = RIGS["mixamo"]()
    translation, rotations = random_clip(31)
    action = retarget.bake_onto_rig(armature, translation, rotations)
    assert {len(fc.keyframe_points) for fc in action_fcurves(action)} == {25}
    assert scene.render.fps == 24


def test_rest_alignment_is_computed_once_per_rig_and_mapping(scene):
    armature = RIGS["mixamo"]()
    mapping = target_rig.detect_mapping(armature)
    first = target_rig.plan_for(armature, mapping)
    assert target_rig.plan_for(armature, mapping) is first
    edited = bone_mapping.BoneMapping(bones=dict(mapping.bones, head=""), convention="custom")
    assert target_rig.plan_for(armature, edited) is not first


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pelvis": ""}, "no bone for the pelvis"),
        ({"head": "NoSuchBone"}, "does not have"),
        ({"neck": "mixamorig:Head"}, "more than one source joint"),
    ],
)
def test_bad_mappings_are_refused_with_a_hint(scene, change, message):
    armature = RIGS["mixamo"]()
    mapping = dict(target_rig.detect_mapping(armature).bones, **change)
    with pytest.raises(HyMotionError, match=message) as caught:
        retarget.bake_onto_rig(armature, *random_clip(2), mapping)
    assert caught.value.code == BAD_REQUEST and caught.value.hint
    assert len(bpy.data.actions) == 0


def test_bad_arguments_are_refused_with_a_hint(scene):
    armature = RIGS["mixamo"]()
    empty = bpy.data.objects.new("Empty", None)
    cases = [
        (lambda: retarget.bake_onto_rig(empty, *random_clip(2)), "not an armature"),
        (lambda: retarget.bake_onto_rig(armature, *random_clip(2), root_motion="SIDEWAYS"), "Unknown root motion"),
        (lambda: retarget.bake_onto_rig(armature, *random_clip(2), start_frame=1.5), "not a whole number"),
        (lambda: retarget.bake_onto_rig(armature, np.zeros((3, 3)), random_clip(2)[1]), "expected \\(2, 3\\)"),
        (lambda: retarget.bake_onto_rig(armature, *random_clip(2), mapping=["Hips"]), "must be a dict"),
        (lambda: retarget.retarget_action(armature, armature), "is not an SMPL-X armature made by HY-Motion"),
    ]
    for call, message in cases:
        with pytest.raises(HyMotionError, match=message):
            call()
    assert len(bpy.data.actions) == 0


# --- the operator ---------------------------------------------------------------------------------------------------


@pytest.fixture
def retarget_settings(scene):
    registered = rigs.register_retarget_ui()
    yield bpy.context.scene.hymotion_retarget
    rigs.unregister_retarget_ui(registered)


def test_operator_retargets_the_active_action_or_every_hymotion_action_as_nla_strips(retarget_settings):
    bpy.context.scene.render.fps = 30
    smplx = rig.build_armature(bpy.context)
    target = RIGS["ue5"]()
    settings = retarget_settings
    settings.source_armature, settings.target_armature = smplx, target
    with pytest.raises(RuntimeError, match="no HY-Motion Action"):
        bpy.ops.hymotion.retarget_action()

    first = bake.bake_motion(smplx, *rigs.hand_made_clip(6), prompt="first", seed=1)
    bake.push_to_nla(smplx, first)
    second = bake.bake_motion(smplx, *random_clip(4), prompt="second", seed=2)
    assert bpy.ops.hymotion.retarget_action() == {"FINISHED"}
    assert target.animation_data.action.name == f"{second.name}_{target.name}"
    assert len(settings.bone_map) == len(BODY_JOINT_NAMES)  # detected on the way

    settings.scope = "ALL"
    assert bpy.ops.hymotion.retarget_action() == {"FINISHED"}
    strips = [strip for track in target.animation_data.nla_tracks for strip in track.strips]
    assert [strip.action["hymotion_prompt"] for strip in strips] == ["second", "first"]
    assert target.animation_data.action is None


def test_an_empty_action_is_refused_and_nothing_is_lost(retarget_settings):
    bpy.context.scene.render.fps = 30
    smplx = rig.build_armature(bpy.context)
    target = RIGS["mixamo"]()
    settings = retarget_settings
    settings.source_armature, settings.target_armature = smplx, target
    bake.bake_motion(smplx, *random_clip(4), prompt="earlier", seed=1)
    assert bpy.ops.hymotion.retarget_action() == {"FINISHED"}
    previous = target.animation_data.action
    assert previous.use_fake_user  # kept in the file even once the rig plays another Action

    smplx.animation_data.action = bpy.data.actions.new("Empty")
    actions_before = {action.name for action in bpy.data.actions}
    with pytest.raises(RuntimeError, match="no keys on the SMPL-X body bones"):
        bpy.ops.hymotion.retarget_action()
    with pytest.raises(HyMotionError, match="no keys on the SMPL-X body bones") as caught:
        retarget.retarget_action(smplx, target)
    assert caught.value.hint
    assert target.animation_data.action == previous
    assert {action.name for action in bpy.data.actions} == actions_before  # no one-frame T-pose Action made


def test_the_console_api_and_the_panel_share_their_defaults(retarget_settings):
    import inspect

    from hymotion_addon import api
    from hymotion_addon.ui import retarget_ui

    signature = inspect.signature(retarget.bake_onto_rig).parameters
    panel = retarget_ui.HYMOTION_PG_retarget.bl_rna.properties
    for option in ("feet_cleanup", "in_place", "root_motion"):
        assert signature[option].default == panel[option].default, option
    assert signature["feet_cleanup"].default is True  # the panel's Clean Up Feet is on, so is the API's
    assert api.retarget_action is retarget.retarget_action


# --- IK controls ----------------------------------------------------------------------------------------------------


def test_ik_controls_follow_their_limbs_so_switching_to_ik_keeps_the_motion(scene, rigify_blend):
    """Rigify: with all four limbs switched to IK (IK_FK keys set to 0) the limbs do what FK did."""
    scene.render.fps = 30
    armature = rigs.append_object(*rigify_blend)
    translation, rotations = rigs.hand_made_clip(6)
    mapping = target_rig.detect_mapping(armature)
    action = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    keyed = {fc.data_path.split('"')[1] for fc in action_fcurves(action)}
    assert {f"{control}.{side}" for side in "LR" for control in (
        "foot_ik", "toe_ik", "thigh_ik", "thigh_ik_target", "hand_ik", "upper_arm_ik", "upper_arm_ik_target",
    )} <= keyed
    chain = [f"ORG-{part}.{side}" for part in ("thigh", "shin", "foot", "toe", "upper_arm", "forearm", "hand")
             for side in "LR"]
    frames = (1, 3, 6)
    fk = np.array([rigs.world_matrices(armature, chain, frame) for frame in frames])
    switch, _ = bone_mapping.RIGIFY_FK_SWITCH
    switches = [fcurve for fcurve in action_fcurves(action) if fcurve.data_path.endswith(f'["{switch}"]')]
    assert len(switches) == 4
    for fcurve in switches:
        for key in fcurve.keyframe_points:
            key.co[1] = 0.0  # IK
    action.update_tag()
    ik = np.array([rigs.world_matrices(armature, chain, frame) for frame in frames])
    # Every joint lands where FK put it and every bone points the same way. The keys are solved until no key moves
    # by more than 1e-4 rad (0.006 degrees; 0.1 mm on a 1 m limb), over at most 4 solved levels from the torso to a
    # hand: 0.025 degrees and 0.4 mm, so 0.1 degree and 1 mm leave 3x margin (measured: 0.03 degree, 0.003 mm).
    np.testing.assert_allclose(ik[..., :3, 3], fk[..., :3, 3], atol=1e-3)
    assert rigs.angle_degrees(fk[..., :3, 1].reshape(-1, 3), ik[..., :3, 1].reshape(-1, 3)).max() <= 0.1


def test_rigify_turn_settles_in_as_few_evaluation_passes_as_the_walk(scene, rigify_blend, monkeypatch):
    """Rigify's keys are corrected against Blender's evaluation, one pass per evaluation of the clip. A 90-degree
    turn must settle as the walk does, every bone still on its source direction.

    Four passes: the first reads what numpy's keys give under Rigify's helper bones; the second sees the controls
    under helpers of the torso and spine right, so hand, foot and toe FK (under scale helpers) come right and the IK
    targets go where FK puts hands and feet; the third sees the IK swings aim at those targets, so upper_arm_ik and
    thigh_ik come right; the fourth only confirms that no key moves by more than 1e-4 rad. The turn used to run all
    16 (also this 2 s one): the IK roots' hinge roll was taken from the evaluated FK forearm, and on nearly straight
    arms it amplified that bone's float noise (about 0.0004 degrees per pass mid-turn) some 34 times, over the
    tolerance in every pass."""
    scene.render.fps = 30
    armature = rigs.append_object(*rigify_blend)
    passes = []
    evaluate = retarget_refine.pose_matrices
    monkeypatch.setattr(retarget_refine, "pose_matrices", lambda *args: passes.append(1) or evaluate(*args))
    counts = {}
    for motion in ("walk", "turn"):
        translation, rotations, _ = rigs.gait_clip(motion, 2.0)  # the whole 90 degrees turn, in 60 frames
        mapping = target_rig.detect_mapping(armature)
        passes.clear()
        retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
        counts[motion] = len(passes)
        frames = range(0, translation.shape[0], 10)
        errors = rigs.direction_errors(armature, mapping.mapped(), translation, rotations, frames=frames)
        assert max(errors.values()) <= MAX_DEGREES, (motion, errors)
    assert counts == {"walk": 4, "turn": 4}


def test_auto_rig_pro_and_ue5_ik_controls_keep_their_rest_offset_to_the_limb(scene):
    scene.render.fps = 30
    translation, rotations = rigs.hand_made_clip(6)
    for bones, pairs in (
        (rigs.arp_ik_bones(), {"c_foot_ik.l": "c_foot_fk.l", "c_leg_pole.r": "c_thigh_fk.r",
                               "c_hand_ik.r": "c_hand_fk.r", "c_arms_pole.l": "c_arm_fk.l"}),
        (rigs.ue5_bones(), {"ik_foot_l": "foot_l", "ik_foot_r": "foot_r"}),
    ):
        armature = rigs.build_rig("IK", bones)
        retarget.bake_onto_rig(armature, translation, rotations, feet_cleanup=False)
        for control, followed in pairs.items():
            rest = [np.array(armature.data.bones[name].matrix_local) for name in (followed, control)]
            offset = np.linalg.inv(rest[0]) @ rest[1]
            for frame in (1, 4, 6):
                moved, control_pose = rigs.world_matrices(armature, [followed, control], frame)
                np.testing.assert_allclose(control_pose, moved @ offset, atol=1e-4)  # float32 keys, 1 m scale
