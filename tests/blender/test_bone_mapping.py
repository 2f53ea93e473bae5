"""Bone mapping on rigs built in Blender: detection for each naming convention, side and prefix variants, fuzzy names,
the hierarchy fallback, and the panel's detect / save / load operators (name parsing and the preset file format are
tested without Blender in tests/addon/test_bone_names_and_presets.py)."""

from __future__ import annotations

import bpy
import pytest
import retarget_test_rigs as rigs

from hymotion.shared.skeleton import BODY_JOINT_NAMES
from hymotion_addon.core import bone_mapping
from hymotion_addon.core.bone_mapping import BoneMapping, detect_mapping
from hymotion_addon.scene import target_rig
from hymotion_addon.ui import retarget_ui


def expected_mapping(names: dict[str, str]) -> dict[str, str]:
    return {joint: names[joint] for joint in BODY_JOINT_NAMES}


@pytest.mark.parametrize("prefix", ["mixamorig:", "mixamorig1:", ""])
def test_mixamo_names_with_any_namespace(prefix):
    mapping = detect_mapping(rigs.bone_infos_of(rigs.mixamo_bones(prefix=prefix)))
    assert mapping.convention == "mixamo"
    assert mapping.bones == {joint: prefix + bone for joint, bone in rigs.MIXAMO_NAMES.items()}


def test_ue5_mannequin_takes_spine_01_03_05_and_ignores_twist_and_ik_bones():
    mapping = detect_mapping(rigs.bone_infos_of(rigs.ue5_bones()))
    assert mapping.convention == "ue5"
    assert mapping.bones == expected_mapping(rigs.UE5_NAMES)


def test_ue4_mannequin_with_three_spine_bones():
    names = dict(rigs.UE5_NAMES, spine2="spine_02", spine3="spine_03")
    bones = [rigs.RigBone("root", None, rigs.np.zeros(3), rigs.np.array([0.0, 0.2, 0.0]))]
    bones += rigs.body_bones(names, rigs.humanoid_joints())
    bones[1].parent = "root"
    mapping = detect_mapping(rigs.bone_infos_of(bones))
    assert mapping.convention == "ue4"
    assert mapping.bones == expected_mapping(names)


def test_auto_rig_pro_controls():
    mapping = detect_mapping(rigs.bone_infos_of(rigs.arp_a_pose_bones()))
    assert mapping.convention == "auto_rig_pro"
    assert mapping.bones == expected_mapping(rigs.ARP_NAMES)


def test_rigify_generated_rig_maps_to_its_fk_controls(scene):
    armature = rigs.generate_rigify_rig()
    mapping = target_rig.detect_mapping(armature)
    assert mapping.convention == "rigify"
    assert not mapping.unmapped()
    assert mapping.bones["pelvis"] == "torso"
    assert mapping.bones["left_shoulder"] == "upper_arm_fk.L" and mapping.bones["right_knee"] == "shin_fk.R"
    assert mapping.bones["spine3"] == "spine_fk.003" and mapping.bones["left_collar"] == "shoulder.L"
    assert target_rig.root_bone_candidate(armature, mapping) == "root"


def test_rigify_deform_only_rig_maps_to_def_bones():
    bones = rigs.body_bones(bone_mapping.CONVENTIONS["rigify_deform"], rigs.humanoid_joints())
    mapping = detect_mapping(rigs.bone_infos_of(bones))
    assert mapping.convention == "rigify_deform"
    assert mapping.bones["left_hip"] == "DEF-thigh.L" and mapping.bones["head"] == "DEF-spine.006"


STYLES = {
    "dot_L": {"hip": "thigh.{side}", "knee": "shin.{side}", "ankle": "foot.{side}", "foot": "toe.{side}",
              "collar": "shoulder.{side}", "shoulder": "upper_arm.{side}", "elbow": "forearm.{side}",
              "wrist": "hand.{side}"},
    "underscore_l": {"hip": "Thigh_{s}", "knee": "Calf_{s}", "ankle": "Foot_{s}", "foot": "Ball_{s}",
                     "collar": "Clavicle_{s}", "shoulder": "UpperArm_{s}", "elbow": "LowerArm_{s}",
                     "wrist": "Hand_{s}"},
    "left_prefix": {"hip": "{Side}UpperLeg", "knee": "{Side}LowerLeg", "ankle": "{Side}Foot", "foot": "{Side}Toes",
                    "collar": "{Side}Shoulder", "shoulder": "{Side}UpperArm", "elbow": "{Side}LowerArm",
                    "wrist": "{Side}Hand"},
    "snake_prefix": {"hip": "{lower}_hip", "knee": "{lower}_knee", "ankle": "{lower}_ankle", "foot": "{lower}_toe",
                     "collar": "{lower}_clavicle", "shoulder": "{lower}_arm", "elbow": "{lower}_elbow",
                     "wrist": "{lower}_wrist"},
    "biped": {"hip": "Bip01 {side} Thigh", "knee": "Bip01 {side} Calf", "ankle": "Bip01 {side} Foot",
              "foot": "Bip01 {side} Toe0", "collar": "Bip01 {side} Clavicle", "shoulder": "Bip01 {side} UpperArm",
              "elbow": "Bip01 {side} Forearm", "wrist": "Bip01 {side} Hand"},
    "character_creator": {"hip": "CC_Base_{side}_Thigh", "knee": "CC_Base_{side}_Calf",
                          "ankle": "CC_Base_{side}_Foot", "foot": "CC_Base_{side}_ToeBase",
                          "collar": "CC_Base_{side}_Clavicle", "shoulder": "CC_Base_{side}_Upperarm",
                          "elbow": "CC_Base_{side}_Forearm", "wrist": "CC_Base_{side}_Hand"},
    "vrm": {"hip": "J_Bip_{side}_UpperLeg", "knee": "J_Bip_{side}_LowerLeg", "ankle": "J_Bip_{side}_Foot",
            "foot": "J_Bip_{side}_ToeBase", "collar": "J_Bip_{side}_Shoulder", "shoulder": "J_Bip_{side}_UpperArm",
            "elbow": "J_Bip_{side}_LowerArm", "wrist": "J_Bip_{side}_Hand"},
}
CENTRES = {"pelvis": "Hips", "spine1": "Spine", "spine2": "Chest", "spine3": "UpperChest", "neck": "Neck",
           "head": "Head"}


def styled_names(style: dict[str, str]) -> dict[str, str]:
    names = dict(CENTRES)
    for kind, pattern in style.items():
        for side, letter, word, small in rigs.SIDES:
            names[f"{side}_{kind}"] = pattern.format(side=letter, Side=word, s=small, lower=side)
    return names


@pytest.mark.parametrize("style", sorted(STYLES))
def test_common_naming_variants_are_found_by_aliases(style):
    names = styled_names(STYLES[style])
    bones = rigs.body_bones(names, rigs.humanoid_joints())
    mapping = detect_mapping(rigs.bone_infos_of(bones))
    assert mapping.bones == expected_mapping(names)


def test_misspelt_names_are_matched_by_similarity():
    names = styled_names(STYLES["dot_L"])
    names.update({"left_elbow": "forarm.L", "right_elbow": "forearrm.R", "left_hip": "thihg.L"})
    mapping = detect_mapping(rigs.bone_infos_of(rigs.body_bones(names, rigs.humanoid_joints())))
    assert mapping.bones == expected_mapping(names)


def test_meaningless_names_are_mapped_from_the_hierarchy():
    names = {joint: f"bone_{index:03d}" for index, joint in enumerate(BODY_JOINT_NAMES)}
    mapping = detect_mapping(rigs.bone_infos_of(rigs.body_bones(names, rigs.humanoid_joints())))
    assert mapping.convention == "hierarchy"
    assert mapping.bones == expected_mapping(names)


def test_hierarchy_fills_only_what_names_left_open():
    names = styled_names(STYLES["dot_L"])
    names.update({"left_knee": "segment_a", "left_ankle": "segment_b", "right_elbow": "segment_c"})
    mapping = detect_mapping(rigs.bone_infos_of(rigs.body_bones(names, rigs.humanoid_joints())))
    assert mapping.bones == expected_mapping(names)


def test_joints_a_rig_does_not_have_stay_unmapped():
    names = styled_names(STYLES["dot_L"])
    bones = [bone for bone in rigs.body_bones(names, rigs.humanoid_joints())
             if bone.name not in ("toe.L", "toe.R", "Neck")]
    for bone in bones:
        if bone.parent == "Neck":
            bone.parent = "UpperChest"
    mapping = detect_mapping(rigs.bone_infos_of(bones))
    assert set(mapping.unmapped()) == {"left_foot", "right_foot", "neck"}
    assert mapping.bones["head"] == "Head"


@pytest.fixture
def retarget_ui_registered(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(retarget_ui, "preset_directory", lambda: tmp_path)
    registered = rigs.register_retarget_ui()
    yield bpy.context.scene.hymotion_retarget
    rigs.unregister_retarget_ui(registered)


def test_detect_save_and_load_operators_fill_the_list_and_reuse_presets(retarget_ui_registered, tmp_path):
    settings = retarget_ui_registered
    with pytest.raises(RuntimeError, match="Pick your character's armature"):  # operators' errors raise in scripts
        bpy.ops.hymotion.detect_bone_mapping()

    ue5 = rigs.build_rig("Mannequin", rigs.ue5_bones())
    settings.target_armature = ue5
    assert bpy.ops.hymotion.detect_bone_mapping() == {"FINISHED"}
    assert [item.joint for item in settings.bone_map] == list(BODY_JOINT_NAMES)
    assert {item.joint: item.bone for item in settings.bone_map} == expected_mapping(rigs.UE5_NAMES)
    assert settings.convention == "ue5" and settings.root_bone == "root"

    settings.bone_map[BODY_JOINT_NAMES.index("head")].bone = "neck_02"  # a hand edit survives the preset
    assert bpy.ops.hymotion.save_bone_map_preset(name="Mannequin Edited") == {"FINISHED"}
    assert (tmp_path / "Mannequin Edited.json").is_file()
    assert retarget_ui.preset_names() == ["Mannequin Edited"]  # what the presets menu lists

    retarget_ui.store_mapping(settings, BoneMapping())
    assert all(not item.bone for item in settings.bone_map)
    assert bpy.ops.hymotion.load_bone_map_preset(name="Mannequin Edited") == {"FINISHED"}
    assert settings.bone_map[BODY_JOINT_NAMES.index("head")].bone == "neck_02"
    assert settings.bone_map[BODY_JOINT_NAMES.index("left_knee")].bone == "calf_l"
    with pytest.raises(RuntimeError, match="No bone mapping preset"):
        bpy.ops.hymotion.load_bone_map_preset(name="Nothing Here")


def test_presets_live_in_the_add_ons_user_folder_and_are_written_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("HYMOTION_USER_DIR", str(tmp_path / "user"))
    assert retarget_ui.preset_directory() == tmp_path / "user" / retarget_ui.PRESET_FOLDER
    path = bone_mapping.save_preset(BoneMapping(bones={"pelvis": "Hips"}), retarget_ui.preset_path("Hero"))
    assert path.parent == tmp_path / "user" / retarget_ui.PRESET_FOLDER
    assert [entry.name for entry in path.parent.iterdir()] == ["Hero.json"]  # no scratch file left behind
    assert bone_mapping.load_preset(path).bones["pelvis"] == "Hips"
