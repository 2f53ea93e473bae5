"""Bone mapping without Blender: bone names split into side and core word, presets round-trip and bad ones are
refused with a message. Detection on whole rigs is tested in tests/blender/test_bone_mapping.py (its rigs are built
in Blender)."""

from __future__ import annotations

import json

import pytest

from hymotion.shared.errors import HyMotionError
from hymotion.shared.skeleton import BODY_JOINT_NAMES
from hymotion_addon.core import bone_mapping
from hymotion_addon.core.bone_mapping import BoneMapping, parse_bone_name


@pytest.mark.parametrize(
    "name, side, core",
    [
        ("mixamorig:LeftUpLeg", "L", "upleg"),
        ("mixamorig1:RightHand", "R", "hand"),
        ("DEF-thigh.L", "L", "thigh"),
        ("upper_arm_fk.R", "R", "upperarm"),
        ("c_thigh_fk.l", "L", "thigh"),
        ("c_root_master.x", None, "rootmaster"),
        ("thigh_l", "L", "thigh"),
        ("Bip01 L Thigh", "L", "thigh"),
        ("CC_Base_R_Calf", "R", "calf"),
        ("J_Bip_L_UpperArm", "L", "upperarm"),
        ("J_Bip_C_Hips", None, "hips"),
        ("UpperLegLeft", "L", "upperleg"),
        ("left_knee", "L", "knee"),
        ("L_Hip", "L", "hip"),
        ("Leg_R", "R", "leg"),
        ("spine_01", None, "spine01"),
    ],
)
def test_bone_names_split_into_side_and_core_word(name, side, core):
    assert parse_bone_name(name) == bone_mapping.ParsedName(side=side, core=core)


def test_preset_round_trip_and_bad_presets(tmp_path):
    mapping = BoneMapping(bones={"pelvis": "Hips", "left_hip": "LeftUpLeg"}, convention="mixamo")
    path = bone_mapping.save_preset(mapping, tmp_path / "rigs" / "hero.json")
    loaded = bone_mapping.load_preset(path)
    assert loaded.bones == mapping.bones and loaded.convention == "mixamo"
    assert loaded.unmapped() == [joint for joint in BODY_JOINT_NAMES if joint not in ("pelvis", "left_hip")]
    assert loaded.missing_bones(["Hips"]) == ["left_hip"]

    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(HyMotionError, match="not a HY-Motion bone mapping preset"):
        bone_mapping.load_preset(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(HyMotionError, match="Cannot read the preset"):
        bone_mapping.load_preset(tmp_path / "broken.json")
    with pytest.raises(HyMotionError, match="No bone mapping preset"):
        bone_mapping.load_preset(tmp_path / "missing.json")
    newer = dict(mapping.to_dict(), version=bone_mapping.PRESET_VERSION + 1)
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(HyMotionError, match="newer HY-Motion"):
        bone_mapping.load_preset(tmp_path / "newer.json")
    with pytest.raises(HyMotionError, match="Unknown source joints"):
        BoneMapping(bones={"tail": "Tail"})
