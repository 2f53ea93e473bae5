"""Seams of the known-frames workflows on the animator's own rig (issue 27), measured in Blender's own evaluation.

Runs in whatever Python has the `bpy` module (or inside Blender: blender -b -P benchmarks/rig_workflows.py -- ...).
Rigs: Rigify generated here from its human metarig (face removed) and the Mixamo-named A-pose rig of the tests
(tests/blender/retarget_test_rigs.py). Motion: the tests' synthetic walk (gait_clip, 4 s at 30 fps, feet that plant),
a KNOWN motion, because random-weight models give noise: the backend's answer is stood in for by the walk's own
continuation with the backend's own pin correction (hymotion.pipeline.known_frames.pin_poses: the pinned frame set
to the pose read from the rig, the frames beside it moved along the 6-frame ramp), i.e. a smooth clip meeting the
pins exactly, as the real sampler's output does after decoding. The rig's pose is read and the piece baked back by
the add-on's own code (scene.rig_pose.read_pose, bake_piece; sequence.write_between for in-between and regenerate).

Workflows (scene at 30 fps, Clean Up Feet on, the default):
  continue    the walk's first 2 s retargeted, then Start from Current Pose at frame 60 (10 context frames); the new
              Action from frame 60 on, compared at frame 60 with the old one
  between     In-between frames 30 and 80 of the 4 s walk on the rig; the new piece at 30 and 80 against the Action
  regenerate  Regenerate frames 40-80: pinned at 39 (10 context frames) and 81, compared there
  old route   continue with each piece on its own clip's floor (floor=None: what the SMPL-X route gave before)

Columns: *pos*: largest head distance of any mapped bone at a seam (cm); *rot*: largest rotation angle between the
two poses of any mapped bone (degrees); *floor*: over the new piece, on frames where a foot is down, the largest
distance of the lowest foot point (heel floor point, ball, toe tip, each against its rest height) from the rig's
floor, where the old motion's planted feet stand (cm); *hips jump*: the hips bone's speed change across the seam against
the largest frame-to-frame speed change elsewhere in the motion (m/s).

    python benchmarks/rig_workflows.py [--rigs rigify,mixamo]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "blender"))
sys.path.insert(0, str(ROOT / "backend"))

import retarget_test_rigs as rigs  # noqa: E402
from machine_info import cpu_name  # noqa: E402

from hymotion.pipeline.known_frames import Pin, pin_poses  # noqa: E402
from hymotion_addon.core import retarget_feet  # noqa: E402
from hymotion_addon.scene import retarget, rig_pose, sequence, target_rig  # noqa: E402

RIGS = {
    "rigify": rigs.generate_rigify_rig,
    "mixamo": lambda: rigs.build_rig("MixamoA", rigs.mixamo_a_pose_bones()),
}
SECONDS = 4.0
CONTEXT = 10
_ALL_CHANNELS = np.ones(201, dtype=bool)


def stand_in(translation, rotations, first: int, last: int, start=None, end=None):
    """The walk's frames first..last as the backend would answer: pinned to `start` at the first frame and `end` at
    the last (model-space (translation, rotations) single frames), with the sampler's ramp."""
    pins = []
    if start is not None:
        pins.append(Pin(0, start[0][-1], start[1][-1], None, _ALL_CHANNELS))
    if end is not None:
        pins.append(Pin(last - first, end[0][-1], end[1][-1], None, _ALL_CHANNELS))
    return pin_poses(translation[first:last + 1], rotations[first:last + 1], pins)


def poses(armature, names, frames) -> np.ndarray:
    return np.array([rigs.world_matrices(armature, names, frame) for frame in frames])


def seam(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    centimetres = float(np.linalg.norm(before[..., :3, 3] - after[..., :3, 3], axis=-1).max() * 100.0)
    relative = np.swapaxes(before[..., :3, :3], -1, -2) @ after[..., :3, :3]
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    return centimetres, float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).max())


def floor_error(armature, plan, frames) -> float:
    """How far from the rig's floor (where the old motion's planted feet stand) the feet of the new piece stand over
    `frames`: per frame the lowest foot point (heel floor point, ball, toe tip, each against its own rest height on
    the floor), on frames where a foot is down (within 2 cm, the contact detector's tolerance), the largest
    distance from the floor."""
    feet = retarget_feet.plan_feet(plan)
    bones = sorted({bone for foot in feet for bone in (foot.foot, foot.toe) if bone >= 0})
    matrices = poses(armature, [plan.target.names[bone] for bone in bones], frames)
    by_bone = {bone: matrices[:, slot] for slot, bone in enumerate(bones)}
    tracks = retarget_feet.foot_point_tracks(plan, by_bone, feet)
    by_side = {foot.side: foot for foot in feet}
    lowest = np.min([(track[..., 2] - by_side[side].floors).min(axis=1) for side, track in tracks.items()], axis=0)
    down = lowest < 0.02
    return float(np.abs(lowest[down]).max()) if down.any() else 0.0


def hips_speed_change(armature, plan, frames, seam_frame: int) -> tuple[float, float]:
    """The hips bone's speed change across `seam_frame` and the largest elsewhere (m/s at 30 fps)."""
    heads = poses(armature, [plan.target.names[plan.hips]], frames)[:, 0, :3, 3]
    changes = np.linalg.norm(np.diff(heads, n=2, axis=0), axis=-1) * 30.0
    at = list(frames).index(seam_frame) - 1
    return float(changes[at]), float(np.delete(changes, at).max())


def assign(armature, action) -> None:
    armature.animation_data.action = action
    if "action_slot" in armature.animation_data.bl_rna.properties:
        armature.animation_data.action_slot = action.slots[0]


def measure(name: str, armature) -> list[tuple]:
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    translation, rotations, _ = rigs.gait_clip("walk", SECONDS)
    mapping = target_rig.detect_mapping(armature)
    plan = target_rig.plan_for(armature, mapping)
    names = [plan.target.names[bone] for bone in plan.bones.tolist()]
    rows = []

    # continue: the first 2 s on the rig, then from frame 60 on
    for label, continues in (("continue", True), ("old route", False)):
        first_piece = retarget.bake_onto_rig(armature, translation[:60], rotations[:60], mapping, scene=scene)
        old_pose = poses(armature, names, [60])
        context = rig_pose.read_pose(armature, 60, CONTEXT, scene)
        piece_t, piece_r = stand_in(translation, rotations, 59, 119, start=context)
        piece = rig_pose.bake_piece(armature, piece_t, piece_r, continues=continues, scene=scene, start_frame=60)
        new_pose = poses(armature, names, [60])
        floor = floor_error(armature, plan, range(60, 121))
        hips = [plan.target.names[plan.hips]]
        heads_after = poses(armature, hips, [60, 61])[:, 0, :3, 3]  # the new piece plays from frame 60 on
        assign(armature, first_piece)
        heads_before = poses(armature, hips, [59, 60])[:, 0, :3, 3]
        assign(armature, piece)
        jump = float(np.linalg.norm(np.diff(heads_after, axis=0) - np.diff(heads_before, axis=0)) * 30.0)
        elsewhere = hips_speed_change(armature, plan, range(60, 121), 90)[1]
        rows.append((name, label, *seam(old_pose, new_pose), floor * 100.0, jump, elsewhere))
        for action in (first_piece, piece):
            bpy.data.actions.remove(action)

    # in-between 30-80 and regenerate 40-80 (pinned at 39 and 81) on the whole walk
    for label, low, high, context_frames in (("between", 30, 80, 1), ("regenerate", 39, 81, CONTEXT)):
        action = retarget.bake_onto_rig(armature, translation, rotations, mapping, scene=scene)
        before = poses(armature, names, [low, high])
        start = rig_pose.read_pose(armature, low, context_frames, scene)
        end = rig_pose.read_pose(armature, high, 1, scene)
        piece_t, piece_r = stand_in(translation, rotations, low - 1, high - 1, start=start, end=end)
        piece = rig_pose.bake_piece(armature, piece_t, piece_r, continues=True, pinned_end=True, scene=scene,
                                    start_frame=low)
        after = poses(armature, names, [low, high])
        floor = floor_error(armature, plan, range(low, high + 1))
        sequence.write_between(action, piece, armature, low, high)
        jumps = [hips_speed_change(armature, plan, range(low - 5, high + 6), frame) for frame in (low, high)]
        rows.append((name, label, *seam(before, after), floor * 100.0,
                     max(jump for jump, _ in jumps), max(other for _, other in jumps)))
        bpy.data.actions.remove(action)
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", default=",".join(RIGS))
    args = parser.parse_args(argv)
    version = ".".join(str(part) for part in bpy.app.version)
    print(f"Blender {version}, CPU: {cpu_name()}, walk of {SECONDS:g} s at 30 fps, Clean Up Feet on")
    print("| rig | workflow | pos (cm) | rot (°) | floor (cm) | hips jump / elsewhere (m/s) |")
    print("|---|---|---|---|---|---|")
    for name in args.rigs.split(","):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        armature = RIGS[name]()
        for rig_name, label, centimetres, degrees, floor, jump, elsewhere in measure(name, armature):
            print(f"| {rig_name} | {label} | {centimetres:.2f} | {degrees:.2f} | {floor:.2f} | {jump:.2f} / "
                  f"{elsewhere:.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
