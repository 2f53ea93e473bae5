"""Which bone of the animator's rig plays which SMPL-X body joint.

Pure Python (no bpy): a rig is described as a list of :class:`BoneInfo` records, so detection is testable anywhere.
Detection runs in three passes, each filling only what the previous ones left open:

1. **Known conventions**, by exact names: SMPL/SMPL-X, Mixamo (any ``mixamorig*:`` namespace), Rigify (the generated
   rig's FK controls, else its DEF- deform bones, else metarig/ORG names), Auto-Rig Pro (controls, else deform bones),
   UE5 and UE4 Mannequin. The convention matching most bones wins.
2. **Aliases and fuzzy names**: every name is split into a side (``.L``, ``_l``, ``Left``, ``left_``, ``L_``, `` L ``)
   and a core word with prefixes and noise removed (``DEF-``, ``c_``, ``_fk``, ``Bip01``, ``CC_Base_``, ``J_Bip_``…);
   the core is looked up in alias tables, then matched by similarity. Spine bones are chosen along the chain.
3. **Hierarchy**: where names say nothing, the skeleton's shape decides (the bone where two legs and the spine
   branch off is the pelvis, the chain up from it is the spine, …), with sides from the bones' rest positions.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from hymotion.shared.errors import bad_request
from hymotion.shared.files import write_text_atomically
from hymotion.shared.skeleton import BODY_JOINT_NAMES

PRESET_FORMAT = "hymotion-bone-map"
PRESET_VERSION = 1
# Rigify's FK/IK switch: the custom property on each limb's parent control, and the value that selects FK.
RIGIFY_FK_SWITCH = ("IK_FK", 1.0)

_SIDED = ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist")
_SPINE = ("spine1", "spine2", "spine3")


@dataclass(frozen=True)
class BoneInfo:
    """One bone of a rig at rest: name, parent name (None at the top), head and tail in armature space."""

    name: str
    parent: str | None
    head: tuple[float, float, float]
    tail: tuple[float, float, float]


@dataclass
class BoneMapping:
    """Source joint -> target bone name for the 22 body joints ('' where unmapped), and how it was found."""

    bones: dict[str, str] = field(default_factory=lambda: {joint: "" for joint in BODY_JOINT_NAMES})
    convention: str = "custom"

    def __post_init__(self) -> None:
        unknown = [joint for joint in self.bones if joint not in BODY_JOINT_NAMES]
        if unknown:
            raise bad_request(
                f"Unknown source joints in the bone mapping: {', '.join(unknown)}.",
                f"Use the SMPL-X body joint names: {', '.join(BODY_JOINT_NAMES)}.",
            )
        self.bones = {joint: str(self.bones.get(joint) or "") for joint in BODY_JOINT_NAMES}

    def mapped(self) -> dict[str, str]:
        return {joint: bone for joint, bone in self.bones.items() if bone}

    def unmapped(self) -> list[str]:
        return [joint for joint, bone in self.bones.items() if not bone]

    def missing_bones(self, bone_names) -> list[str]:
        """Joints whose mapped bone is not in `bone_names` (a preset made for another rig)."""
        names = set(bone_names)
        return [joint for joint, bone in self.bones.items() if bone and bone not in names]

    def to_dict(self) -> dict:
        return {"format": PRESET_FORMAT, "version": PRESET_VERSION, "convention": self.convention, "bones": self.bones}

    @classmethod
    def from_dict(cls, data: dict) -> BoneMapping:
        if not isinstance(data, dict) or data.get("format") != PRESET_FORMAT:
            raise bad_request(
                "This file is not a HY-Motion bone mapping preset.",
                "Pick a .json preset saved by 'Save Mapping Preset'.",
            )
        if data.get("version", 0) > PRESET_VERSION:
            raise bad_request(
                f"The preset was saved by a newer HY-Motion (format version {data.get('version')}).",
                "Update the HY-Motion extension to load it.",
            )
        bones = data.get("bones")
        if not isinstance(bones, dict) or not all(isinstance(value, str) for value in bones.values()):
            raise bad_request("The preset's 'bones' entry is not a joint -> bone name table.", "Save the preset again.")
        return cls(bones=dict(bones), convention=str(data.get("convention", "custom")))


def save_preset(mapping: BoneMapping, path: str | Path) -> Path:
    """Write a mapping as a JSON preset, atomically like every preset (the folder is created if needed)."""
    path = Path(path)
    write_text_atomically(path, json.dumps(mapping.to_dict(), indent=2) + "\n")
    return path


def load_preset(path: str | Path) -> BoneMapping:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad_request(f"No bone mapping preset at {path}.", "Pick an existing preset.") from None
    except (OSError, ValueError) as error:
        raise bad_request(
            f"Cannot read the preset {path}: {error}.", "Pick a .json preset saved by HY-Motion."
        ) from None
    return BoneMapping.from_dict(data)


# --- known conventions ----------------------------------------------------------------------------------------------


def _sided(table: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Expand a table whose sided entries use '{s}' into left_/right_ joints."""
    expanded = {}
    for joint, bone in table.items():
        if joint in _SIDED:
            expanded[f"left_{joint}"] = bone.format(s=left)
            expanded[f"right_{joint}"] = bone.format(s=right)
        else:
            expanded[joint] = bone
    return expanded


_SMPL_ADDON = _sided(
    {
        "pelvis": "Pelvis", "spine1": "Spine1", "spine2": "Spine2", "spine3": "Spine3", "neck": "Neck",
        "head": "Head", "hip": "{s}_Hip", "knee": "{s}_Knee", "ankle": "{s}_Ankle", "foot": "{s}_Foot",
        "collar": "{s}_Collar", "shoulder": "{s}_Shoulder", "elbow": "{s}_Elbow", "wrist": "{s}_Wrist",
    },
    "L", "R",
)
_MIXAMO = _sided(
    {
        "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head",
        "hip": "{s}UpLeg", "knee": "{s}Leg", "ankle": "{s}Foot", "foot": "{s}ToeBase", "collar": "{s}Shoulder",
        "shoulder": "{s}Arm", "elbow": "{s}ForeArm", "wrist": "{s}Hand",
    },
    "Left", "Right",
)
_RIGIFY_CONTROLS = _sided(
    {
        "pelvis": "torso", "spine1": "spine_fk.001", "spine2": "spine_fk.002", "spine3": "spine_fk.003",
        "neck": "neck", "head": "head", "hip": "thigh_fk.{s}", "knee": "shin_fk.{s}", "ankle": "foot_fk.{s}",
        "foot": "toe_fk.{s}", "collar": "shoulder.{s}", "shoulder": "upper_arm_fk.{s}", "elbow": "forearm_fk.{s}",
        "wrist": "hand_fk.{s}",
    },
    "L", "R",
)
_RIGIFY_METARIG = _sided(
    {
        "pelvis": "spine", "spine1": "spine.001", "spine2": "spine.002", "spine3": "spine.003", "neck": "spine.004",
        "head": "spine.006", "hip": "thigh.{s}", "knee": "shin.{s}", "ankle": "foot.{s}", "foot": "toe.{s}",
        "collar": "shoulder.{s}", "shoulder": "upper_arm.{s}", "elbow": "forearm.{s}", "wrist": "hand.{s}",
    },
    "L", "R",
)
_RIGIFY_DEFORM = {joint: f"DEF-{bone}" for joint, bone in _RIGIFY_METARIG.items()}
_AUTO_RIG_PRO_CONTROLS = _sided(
    {
        "pelvis": "c_root_master.x", "spine1": "c_spine_01.x", "spine2": "c_spine_02.x", "spine3": "c_spine_03.x",
        "neck": "c_neck.x", "head": "c_head.x", "hip": "c_thigh_fk.{s}", "knee": "c_leg_fk.{s}",
        "ankle": "c_foot_fk.{s}", "foot": "c_toes_fk.{s}", "collar": "c_shoulder.{s}", "shoulder": "c_arm_fk.{s}",
        "elbow": "c_forearm_fk.{s}", "wrist": "c_hand_fk.{s}",
    },
    "l", "r",
)
_AUTO_RIG_PRO_DEFORM = _sided(
    {
        "pelvis": "root.x", "spine1": "spine_01.x", "spine2": "spine_02.x", "spine3": "spine_03.x", "neck": "neck.x",
        "head": "head.x", "hip": "thigh_stretch.{s}", "knee": "leg_stretch.{s}", "ankle": "foot.{s}",
        "foot": "toes_01.{s}", "collar": "shoulder.{s}", "shoulder": "arm_stretch.{s}",
        "elbow": "forearm_stretch.{s}", "wrist": "hand.{s}",
    },
    "l", "r",
)
_UE5 = _sided(
    {
        "pelvis": "pelvis", "spine1": "spine_01", "spine2": "spine_03", "spine3": "spine_05", "neck": "neck_01",
        "head": "head", "hip": "thigh_{s}", "knee": "calf_{s}", "ankle": "foot_{s}", "foot": "ball_{s}",
        "collar": "clavicle_{s}", "shoulder": "upperarm_{s}", "elbow": "lowerarm_{s}", "wrist": "hand_{s}",
    },
    "l", "r",
)
_UE4 = dict(_UE5, spine2="spine_02", spine3="spine_03")
_SMPLX = {joint: joint for joint in BODY_JOINT_NAMES}

# Order breaks ties: the more specific convention first (UE5 before UE4, Rigify controls before deform bones).
CONVENTIONS: dict[str, dict[str, str]] = {
    "smplx": _SMPLX,
    "smpl_addon": _SMPL_ADDON,
    "mixamo": _MIXAMO,
    "rigify": _RIGIFY_CONTROLS,
    "rigify_deform": _RIGIFY_DEFORM,
    "rigify_metarig": _RIGIFY_METARIG,
    "auto_rig_pro": _AUTO_RIG_PRO_CONTROLS,
    "auto_rig_pro_deform": _AUTO_RIG_PRO_DEFORM,
    "ue5": _UE5,
    "ue4": _UE4,
}
_MIN_CONVENTION_MATCHES = 10
# Extra bones that turn with a mapped joint where a convention splits one body part over two controls: Rigify's hips
# region and legs hang from 'spine_fk', below the lower-back FK control, so it follows the pelvis.
FOLLOWERS: dict[str, dict[str, str]] = {"rigify": {"spine_fk": "pelvis"}}
# IK controls baked along with the FK motion, so switching a limb to IK keeps it: each follows the bone mapped to its
# joint, keeping their rest offset (a foot IK target sits on the foot, a knee pole stays in front of the knee).
# Rigify's thigh_ik and upper_arm_ik root its IK chains: they are solved so that the IK comes out where FK is.
IK_CONTROLS: dict[str, dict[str, str]] = {
    "rigify": _sided({
        "ankle": "foot_ik.{s}", "foot": "toe_ik.{s}", "hip": "thigh_ik_target.{s}|thigh_ik.{s}",
        "wrist": "hand_ik.{s}", "shoulder": "upper_arm_ik_target.{s}|upper_arm_ik.{s}",
    }, "L", "R"),
    "auto_rig_pro": _sided({
        "ankle": "c_foot_ik.{s}", "wrist": "c_hand_ik.{s}", "hip": "c_leg_pole.{s}", "shoulder": "c_arms_pole.{s}",
    }, "l", "r"),
    "ue5": _sided({"ankle": "ik_foot_{s}", "wrist": "ik_hand_{s}"}, "l", "r"),
}
# Bones the convention's joints never use but whose presence tells the conventions apart.
_CONVENTION_MARKERS = {"ue5": ("spine_04", "spine_05"), "ue4": ()}
_MIXAMO_NAMESPACE = re.compile(r"^(.*?)Hips$")


def _namespaces(names: list[str]) -> list[str]:
    """Name prefixes seen before a 'Hips' bone ('mixamorig:', 'mixamorig1:', 'Armature|mixamorig:' …), '' first."""
    found = [""]
    for name in names:
        match = _MIXAMO_NAMESPACE.match(name)
        if match and match.group(1) and match.group(1) not in found:
            found.append(match.group(1))
    return found


def _best_convention(names: list[str]) -> tuple[str, dict[str, str]]:
    present = set(names)
    best: tuple[str, dict[str, str], int, int] = ("", {}, 0, 0)
    for convention, table in CONVENTIONS.items():
        prefixes = _namespaces(names) if convention == "mixamo" else [""]
        for prefix in prefixes:
            found = {joint: prefix + bone for joint, bone in table.items() if prefix + bone in present}
            markers = sum(marker in present for marker in _CONVENTION_MARKERS.get(convention, ()))
            if (len(found), markers) > best[2:]:
                best = (convention, found, len(found), markers)
    convention, found, count, _ = best
    return (convention, found) if count >= _MIN_CONVENTION_MATCHES else ("", {})


# --- aliases and fuzzy names ----------------------------------------------------------------------------------------

# Core words (lowercase letters and digits, side and noise removed) per joint, best first.
ALIASES: dict[str, tuple[str, ...]] = {
    "pelvis": ("hips", "pelvis", "hip", "cog", "centerofgravity", "rootmaster", "torso"),
    "neck": ("neck", "neck1", "neck01", "neckbase"),
    "head": ("head",),
    "hip": ("upleg", "upperleg", "thigh", "hip", "thighstretch", "femur"),
    "knee": ("leg", "lowerleg", "calf", "shin", "knee", "legstretch", "lowleg", "tibia"),
    "ankle": ("foot", "ankle"),
    "foot": ("toebase", "toe", "toes", "ball", "toe0", "toes01", "toe1", "toe01"),
    "collar": ("clavicle", "collar", "collarbone", "shoulder"),
    "shoulder": ("upperarm", "arm", "uparm", "armstretch", "humerus"),
    "elbow": ("forearm", "lowerarm", "elbow", "forearmstretch", "lowarm"),
    "wrist": ("hand", "wrist"),
}
_SPINE_CORE = re.compile(r"^(spine|chest|upperchest|back|abdomen|waist|torso)\d*$")
_NAMESPACE = re.compile(r"^.*[:|]")
_PREFIX_NOISE = re.compile(r"^(def|org|mch|c|ctrl|ctl|jnt|bn|b|bone|cc_base|bip0*1|j_bip|j)[-_. ]", re.IGNORECASE)
_SUFFIX_NOISE = re.compile(r"[-_. ](fk|ik|jnt|ctrl|ctl|bind|def|jt|bone|x)$", re.IGNORECASE)
_SIDE_WORDS = {"l": "L", "left": "L", "r": "R", "right": "R"}
_SIDE_REGEXES = (
    re.compile(r"^(?P<side>left|right|l|r)[-_. ]+(?P<rest>.+)$", re.IGNORECASE),
    re.compile(r"^(?P<side>Left|Right|LEFT|RIGHT)(?P<rest>[A-Z0-9].*)$"),
    re.compile(r"^(?P<rest>.+?)[-_. ]+(?P<side>left|right|l|r)$", re.IGNORECASE),
    re.compile(r"^(?P<rest>.+?[a-z0-9])(?P<side>Left|Right)$"),
    re.compile(r"^(?P<before>.+?)[-_. ]+(?P<side>left|right|l|r)[-_. ]+(?P<rest>.+)$", re.IGNORECASE),
    re.compile(r"^(?P<side>left|right)(?P<rest>[a-z0-9].*)$"),
)
_FUZZY_CUTOFF = 0.84


@dataclass(frozen=True)
class ParsedName:
    side: str | None  # "L", "R" or None for the middle
    core: str


def parse_bone_name(name: str) -> ParsedName:
    """Side and core word of a bone name: 'mixamorig:LeftUpLeg' -> (L, 'upleg'), 'DEF-thigh.L' -> (L, 'thigh')."""
    text = _NAMESPACE.sub("", name).strip()
    for _ in range(3):
        stripped = _PREFIX_NOISE.sub("", text)
        stripped = _SUFFIX_NOISE.sub("", stripped)
        if stripped == text or not stripped:
            break
        text = stripped
    side = None
    for pattern in _SIDE_REGEXES:
        match = pattern.match(text)
        if match:
            side = _SIDE_WORDS[match.group("side").lower()]
            text = (match.groupdict().get("before") or "") + match.group("rest")
            break
    for _ in range(2):
        stripped = _SUFFIX_NOISE.sub("", _PREFIX_NOISE.sub("", text))
        if stripped == text or not stripped:
            break
        text = stripped
    core = re.sub(r"[^a-z0-9]", "", text.lower())
    return ParsedName(side=side, core=core)


def _joint_side_and_kind(joint: str) -> tuple[str | None, str]:
    if joint.startswith("left_"):
        return "L", joint[5:]
    if joint.startswith("right_"):
        return "R", joint[6:]
    return None, joint


def _alias_pass(bones: list[BoneInfo], taken: dict[str, str]) -> dict[str, str]:
    """Joints found by alias tables, then by fuzzy similarity, for joints not in `taken`."""
    parsed = {bone.name: parse_bone_name(bone.name) for bone in bones}
    depth = _depths(bones)
    used = set(taken.values())
    found: dict[str, str] = {}

    def candidates(side: str | None, aliases: tuple[str, ...], fuzzy: bool) -> list[str]:
        scored = []
        for bone in bones:
            if bone.name in used or bone.name in found.values():
                continue
            info = parsed[bone.name]
            if info.side != side:
                continue
            if info.core in aliases:
                scored.append((aliases.index(info.core), depth[bone.name], bone.name))
            elif fuzzy:
                close = difflib.get_close_matches(info.core, aliases, n=1, cutoff=_FUZZY_CUTOFF)
                if close:
                    scored.append((len(aliases) + aliases.index(close[0]), depth[bone.name], bone.name))
        return [name for *_, name in sorted(scored)]

    for fuzzy in (False, True):
        # Arms before collars: 'shoulder' is a collar only where a separate upper-arm bone exists.
        for joint in ("pelvis", "neck", "head") + tuple(
            f"{side}_{kind}" for kind in ("shoulder", "elbow", "wrist", "collar", "hip", "knee", "ankle", "foot")
            for side in ("left", "right")
        ):
            if joint in taken or joint in found:
                continue
            side, kind = _joint_side_and_kind(joint)
            names = candidates(side, ALIASES[kind], fuzzy)
            if names:
                found[joint] = names[0]
    return found


def _spine_pass(bones: list[BoneInfo], known: dict[str, str]) -> dict[str, str]:
    """spine1-3 from the spine-named bones, ordered up the chain (between pelvis and neck where both are known)."""
    if all(joint in known for joint in _SPINE):
        return {}
    by_name = {bone.name: bone for bone in bones}
    used = set(known.values())
    spine = [
        bone.name for bone in bones
        if bone.name not in used and parse_bone_name(bone.name).side is None
        and _SPINE_CORE.match(parse_bone_name(bone.name).core)
    ]
    neck = known.get("neck") or known.get("head")
    if neck in by_name:
        on_path = set(_ancestor_names(by_name, neck))
        pelvis = known.get("pelvis")
        if pelvis in by_name:
            on_path -= set(_ancestor_names(by_name, pelvis)) | {pelvis}
        chain = [name for name in spine if name in on_path]
        spine = chain or spine
    depth = _depths(bones)
    spine.sort(key=lambda name: depth[name])
    open_joints = [joint for joint in _SPINE if joint not in known]
    if not spine or not open_joints:
        return {}
    if len(spine) == 1:
        picks = {"spine3": spine[0]} if "spine3" in open_joints else {open_joints[-1]: spine[0]}
    elif len(spine) == 2:
        picks = {"spine1": spine[0], "spine3": spine[1]}
    else:
        picks = {"spine1": spine[0], "spine2": spine[len(spine) // 2], "spine3": spine[-1]}
    return {joint: bone for joint, bone in picks.items() if joint in open_joints}


# --- hierarchy ------------------------------------------------------------------------------------------------------


def _depths(bones: list[BoneInfo]) -> dict[str, int]:
    by_name = {bone.name: bone for bone in bones}
    return {bone.name: len(_ancestor_names(by_name, bone.name)) for bone in bones}


def _ancestor_names(by_name: dict[str, BoneInfo], name: str) -> list[str]:
    chain = []
    parent = by_name[name].parent
    while parent in by_name and parent not in chain:
        chain.append(parent)
        parent = by_name[parent].parent
    return chain


def _up_axis(bones: list[BoneInfo]) -> int:
    """The armature axis the rig stands along: Z for Blender-built rigs, Y for Y-up imports."""
    extents = [max(bone.head[axis] for bone in bones) - min(bone.head[axis] for bone in bones) for axis in range(3)]
    return 1 if extents[1] > 1.5 * extents[2] else 2


def _hierarchy_pass(bones: list[BoneInfo], known: dict[str, str]) -> dict[str, str]:
    """Joints found from the skeleton's shape: legs hang from the pelvis, arms branch off the chest."""
    if len(bones) < 3:
        return {}
    by_name = {bone.name: bone for bone in bones}
    children: dict[str | None, list[str]] = {}
    for bone in bones:
        children.setdefault(bone.parent if bone.parent in by_name else None, []).append(bone.name)
    up = _up_axis(bones)
    depth = _depths(bones)
    subtree_size: dict[str, int] = {}
    lowest_head: dict[str, float] = {}
    highest_head: dict[str, float] = {}
    for bone in sorted(bones, key=lambda item: -depth[item.name]):  # children before parents
        kids = children.get(bone.name, [])
        subtree_size[bone.name] = 1 + sum(subtree_size[kid] for kid in kids)
        lowest_head[bone.name] = min([bone.head[up]] + [lowest_head[kid] for kid in kids])
        highest_head[bone.name] = max([bone.head[up]] + [highest_head[kid] for kid in kids])
    size, lowest, highest = subtree_size.__getitem__, lowest_head.__getitem__, highest_head.__getitem__

    def chain_from(name: str, length: int) -> list[str]:
        chain = [name]
        while len(chain) < length and children.get(chain[-1]):
            chain.append(max(children[chain[-1]], key=size))
        return chain

    used = set(known.values())
    found: dict[str, str] = {}
    pelvis = known.get("pelvis")
    if pelvis is None:
        for bone in sorted(bones, key=lambda item: depth[item.name]):
            kids = children.get(bone.name, [])
            down = [kid for kid in kids if lowest(kid) < bone.head[up] - 0.3 * (highest(bone.name) - lowest(bone.name))]
            if len(down) >= 2 and len(kids) >= 3:
                pelvis = bone.name
                found["pelvis"] = pelvis
                break
    if pelvis is None:
        return found
    height = highest(pelvis) - lowest(pelvis)
    kids = children.get(pelvis, [])
    legs = sorted(
        (kid for kid in kids if lowest(kid) < by_name[pelvis].head[up] - 0.3 * height),
        key=lambda kid: lowest(kid),
    )[:2]
    for leg in legs:
        side = "left" if by_name[leg].head[0] > by_name[pelvis].head[0] else "right"
        for joint, leg_bone in zip(("hip", "knee", "ankle", "foot"), chain_from(leg, 4)):
            found[f"{side}_{joint}"] = leg_bone
    spine_roots = [kid for kid in kids if kid not in legs]
    if spine_roots:
        chain = [max(spine_roots, key=size)]
        while children.get(chain[-1]) and len(children[chain[-1]]) < 3:
            chain.append(max(children[chain[-1]], key=size))
        chest = chain[-1]
        branches = children.get(chest, [])
        if len(branches) >= 3:
            neck = max(branches, key=lambda kid: by_name[kid].head[up])
            found["neck"] = neck
            head = chain_from(neck, 2)
            if len(head) == 2:
                found["head"] = head[1]
            for joint, spine_bone in zip(("spine1", "spine2", "spine3"), _three_of(chain)):
                found[joint] = spine_bone
            for arm in (kid for kid in branches if kid != neck):
                side = "left" if by_name[arm].head[0] > by_name[chest].head[0] else "right"
                for joint, arm_bone in zip(("collar", "shoulder", "elbow", "wrist"), chain_from(arm, 4)):
                    found[f"{side}_{joint}"] = arm_bone
    return {joint: bone for joint, bone in found.items() if joint not in known and bone not in used}


def _three_of(chain: list[str]) -> list[str]:
    if len(chain) >= 3:
        return [chain[0], chain[len(chain) // 2], chain[-1]]
    return chain


# --- detection ------------------------------------------------------------------------------------------------------


def detect_mapping(bones: list[BoneInfo]) -> BoneMapping:
    """The mapping for a rig, from its bones (see the module docstring for the three passes)."""
    names = [bone.name for bone in bones]
    convention, found = _best_convention(names)
    mapping = dict(found)
    alias = _alias_pass(bones, mapping)
    mapping.update(alias)
    mapping.update(_spine_pass(bones, mapping))
    hierarchy = _hierarchy_pass(bones, mapping)
    mapping.update(hierarchy)
    if not convention:
        convention = "hierarchy" if hierarchy and len(hierarchy) >= len(alias) else "generic"
    return BoneMapping(bones=mapping, convention=convention)


def followers_for(mapping: BoneMapping, bone_names) -> dict[str, str]:
    """{bone: joint} follower bones of the convention whose pelvis bone the mapping uses, where the rig has them."""
    names = set(bone_names)
    used = set(mapping.mapped().values())
    followers = {}
    for convention, table in FOLLOWERS.items():
        if mapping.bones.get("pelvis") == CONVENTIONS[convention]["pelvis"]:
            followers.update({
                bone: joint for bone, joint in table.items()
                if bone in names and bone not in used and mapping.bones.get(joint)
            })
    return followers


def ik_controls_for(mapping: BoneMapping, bone_names) -> dict[str, str]:
    """{IK control: joint} for the IK controls of any known rig that the rig has, where their joint is mapped."""
    names = set(bone_names)
    used = set(mapping.mapped().values())
    controls = {}
    for table in IK_CONTROLS.values():
        for joint, patterns in table.items():
            if not mapping.bones.get(joint):
                continue
            for control in patterns.split("|"):
                if control in names and control not in used:
                    controls[control] = joint
    return controls


def root_bone_candidate(bones: list[BoneInfo], mapping: BoneMapping) -> str | None:
    """The bone that carries ground motion in root-bone layouts: one named 'root' at the top, else the hips' top
    ancestor; None if the hips have no bone above them."""
    by_name = {bone.name: bone for bone in bones}
    hips = mapping.bones.get("pelvis")
    used = set(mapping.mapped().values())
    for bone in bones:
        is_top = bone.parent not in by_name
        if is_top and parse_bone_name(bone.name).core in ("root", "rootx") and bone.name not in used:
            return bone.name
    if hips in by_name:
        ancestors = _ancestor_names(by_name, hips)
        if ancestors:
            return ancestors[-1]
    return None
