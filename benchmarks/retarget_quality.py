"""What an animator would check on a retarget, measured on rigs built here and synthetic gaits whose feet plant.

Runs in whatever Python has the `bpy` module (or inside Blender: blender -b -P benchmarks/retarget_quality.py -- ...).
Rigs: Rigify generated from its human metarig (face removed), a Mixamo-named rig in A-pose with random bone rolls and
other leg proportions, an Auto-Rig-Pro-named control rig with IK controls, a UE5-Mannequin-named rig with twist and
IK bones. Motions (4 s at 30 fps, tests/blender/retarget_test_rigs.gait_clip): a walk (1.2 m/s), a run (3 m/s), a
jump and a walking turn of 90 degrees, each with heel strike, flat foot, heel-off about the ball and toe-off.

Per rig and motion (target units are metres, shown in cm; every figure read from Blender's own evaluation):
  pen      deepest any foot point (heel, ball, toe tip) goes below the floor, feet cleanup on (the panel default)
  hover    highest the planted heel/ball floats during its contact, cleanup on
  slide    largest horizontal slide of a planted heel or ball over one contact, cleanup off / on
  legs     thigh and shin direction change made by the cleanup, mean / max degrees
  least    the least slide-off any hips path could give with every bone on its source direction: half the largest
           drift between two points planted at once (heel or ball of each foot), which no hips motion can undo
  stride   hip-joint travel against the source's travel times the leg-length ratio, percent off, cleanup off (the
           hips follow the target's planted feet) / on (the hips take the leg-length-scaled path)
  accel    largest horizontal acceleration of the hips bone, m/s^2: its path with cleanup off / the leg-length-scaled
           source path, which the hips take with cleanup on (numpy)
  bones    largest direction error of any mapped bone against its source bone, cleanup off (Rigify: clavicles
           measured head to the upper arm's head), degrees
  time     the whole bake_onto_rig call, cleanup on, ms

A second table shows the trade-off the hips path makes with cleanup off (retarget_feet.smooth_hips_path): for a few
settle times tau (acceleration weight lambda = (tau x fps)^2), the largest planted-point slide and the largest
horizontal hips acceleration, from numpy's poses (the same as Blender's on these rigs to the digits shown).

    python benchmarks/retarget_quality.py [--seconds 4] [--rigs rigify,mixamo,arp,ue5] [--settle 0,0.03,0.1,0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "blender"))

import retarget_test_rigs as rigs  # noqa: E402  (the rigs and gaits the tests build: one definition)
from machine_info import cpu_name  # noqa: E402

from hymotion_addon.core import retarget_feet, retarget_math  # noqa: E402
from hymotion_addon.scene import retarget, target_rig  # noqa: E402

MOTIONS = ("walk", "run", "jump", "turn")
RIGS = {
    "rigify": rigs.generate_rigify_rig,
    "mixamo": lambda: rigs.build_rig("MixamoA", rigs.mixamo_a_pose_bones()),
    "arp": lambda: rigs.build_rig("ARP", rigs.arp_ik_bones()),
    "ue5": lambda: rigs.build_rig("Mannequin", rigs.ue5_bones()),
}


def evaluated(armature, names: list[str], frames: int) -> np.ndarray:
    """Armature-space pose matrices (F, N, 4, 4) of the named bones over the clip's frames."""
    return np.array([rigs.world_matrices(armature, names, frame + 1) for frame in range(frames)]) @ np.linalg.inv(
        np.array(armature.matrix_world))


def measure(armature, motion: str, seconds: float, settle_times: list[float]) -> dict:
    translation, rotations, truth = rigs.gait_clip(motion, seconds)
    frames = translation.shape[0]
    mapping = target_rig.detect_mapping(armature)
    plan = target_rig.plan_for(armature, mapping)
    names = list(plan.target.names)
    feet = retarget_feet.plan_feet(plan)
    foot_bones = sorted({bone for foot in feet for bone in (foot.foot, foot.toe) if bone >= 0})
    legs = [bone for foot in feet for bone in (foot.thigh, foot.shin)]
    watched = [names[bone] for bone in foot_bones + legs]

    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    off = evaluated(armature, watched, frames)
    bones = rigs.direction_errors(armature, mapping.mapped(), translation, rotations, frames=range(0, frames, 10))
    bones.update(clavicle_errors(armature, mapping.mapped(), translation, rotations, frames))
    hips_off = hip_travel(armature, mapping.mapped(), frames)
    start = time.perf_counter()
    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=True)
    elapsed = (time.perf_counter() - start) * 1000.0
    on = evaluated(armature, watched, frames)
    hips_on = hip_travel(armature, mapping.mapped(), frames)

    def by_bone(matrices):
        return {bone: matrices[:, slot] for slot, bone in enumerate(foot_bones + legs)}

    reports_off = retarget_feet.measure_contacts(plan, by_bone(off), truth)
    reports_on = retarget_feet.measure_contacts(plan, by_bone(on), truth)
    tracks = retarget_feet.foot_point_tracks(plan, by_bone(on))
    depth = max(float(np.max(feet_by_side.floors - tracks[feet_by_side.side][..., 2])) for feet_by_side in feet)
    flat = truth.all(axis=2)
    hover = max(
        (float(np.max(tracks[foot.side][flat[:, foot.side], point, 2] - foot.floors[point]))
         for foot in feet for point in (0, 1) if flat[:, foot.side].any()), default=0.0)
    leg_slots = slice(len(foot_bones), None)
    directions_off, directions_on = off[:, leg_slots, :3, 1], on[:, leg_slots, :3, 1]
    leg_change = rigs.angle_degrees(directions_off, directions_on)
    leg_ratio = retarget_math._leg_length_ratio(plan.source_rest, plan.target.rest[:, :3, 3] @ plan.axes.T,
                                                joint_bones(plan))
    assert leg_ratio is not None, "the test rigs map both legs"
    _, source = retarget_math.source_world(translation, rotations, target_rig.source_skeleton())
    source_hips = source[:, [rigs.JOINT["left_hip"], rigs.JOINT["right_hip"]]].mean(axis=1)
    source_travel = np.linalg.norm(source_hips[-1, :2] - source_hips[0, :2])
    strides = [
        (100.0 * (travel / (leg_ratio * source_travel) - 1.0)) if source_travel > 0.05 else 0.0
        for travel in (hips_off, hips_on)
    ]
    least = least_slide(retarget_feet.foot_point_tracks(plan, by_bone(off)), truth)
    return {
        "pen": 100.0 * max(depth, 0.0),
        "hover": 100.0 * max(hover, 0.0),
        "slide_off": 100.0 * max(report.slide for report in reports_off),
        "slide_on": 100.0 * max(report.slide for report in reports_on),
        "legs_mean": float(leg_change.mean()),
        "legs_max": float(leg_change.max()),
        "least": 100.0 * least,
        "stride": strides,
        "accel": hips_accelerations(plan, translation, rotations),
        "trade_off": [settle_trade_off(plan, translation, rotations, truth, settle) for settle in settle_times],
        "bones": max(bones.values()),
        "time": elapsed,
    }


def least_slide(tracks: dict[int, np.ndarray], contacts: np.ndarray) -> float:
    """Half the largest path length, over the frames two contacts of different feet share, of the horizontal vector
    between their points (target FK, every bone on its source direction): the hips move both points alike, so the
    two contacts' slides add up to at least that, and one of them slides at least half of it."""
    worst = 0.0
    for heel_or_ball in range(2):
        for other in range(2):
            shared = contacts[:, 0, heel_or_ball] & contacts[:, 1, other]
            between = tracks[0][:, heel_or_ball, :2] - tracks[1][:, other, :2]
            for start, stop in retarget_feet.segments(shared):
                drift = np.linalg.norm(np.diff(between[start:stop], axis=0), axis=-1).sum()
                worst = max(worst, 0.5 * float(drift))
    return worst


def largest_acceleration(plan, wishes, fps: float = 30.0) -> float:
    """Largest horizontal acceleration (m/s^2) of the hips bone of a transfer."""
    path = wishes.positions[plan.hips] @ plan.axes.T
    return float(np.linalg.norm(np.diff(path[:, :2], n=2, axis=0), axis=-1).max() * fps * fps)


def hips_accelerations(plan, translation, rotations, fps: float = 30.0) -> tuple[float, float]:
    """Largest horizontal acceleration (m/s^2) of the hips bone on its path with cleanup off and on the
    leg-length-scaled source path, the one it takes with cleanup on (numpy)."""
    scaled = retarget_math.transfer(plan, translation, rotations)
    wishes = retarget_math.transfer(plan, translation, rotations)
    retarget_feet.follow_planted_feet(plan, wishes, fps)
    return largest_acceleration(plan, wishes, fps), largest_acceleration(plan, scaled, fps)


def settle_trade_off(plan, translation, rotations, contacts, settle: float, fps: float = 30.0) -> tuple[float, float]:
    """Largest planted-point slide (cm) and hips acceleration (m/s^2) with cleanup off, the hips path settling over
    `settle` seconds (numpy poses)."""
    settings = dataclasses.replace(retarget_feet.ContactSettings(), hips_settle_seconds=settle)
    wishes = retarget_math.transfer(plan, translation, rotations)
    retarget_feet.follow_planted_feet(plan, wishes, fps, settings)
    reports = retarget_feet.measure_contacts(plan, retarget_math.pose_matrices(plan, wishes), contacts)
    return 100.0 * max(report.slide for report in reports), largest_acceleration(plan, wishes, fps)


def joint_bones(plan) -> dict[int, int]:
    return {int(joint): int(bone) for joint, bone in zip(plan.joints, plan.bones)}


def hip_travel(armature, mapping: dict[str, str], frames: int) -> float:
    """Horizontal travel (world) of the midpoint of the bones mapped to the hip joints, first to last frame."""
    names = [mapping["left_hip"], mapping["right_hip"]]
    first = rigs.world_matrices(armature, names, 1)[:, :3, 3].mean(axis=0)
    last = rigs.world_matrices(armature, names, frames)[:, :3, 3].mean(axis=0)
    return float(np.linalg.norm(last[:2] - first[:2]))


def clavicle_errors(armature, mapping: dict[str, str], translation, rotations, frames: int) -> dict[str, float]:
    """Collar direction measured from the collar bone's head to the upper arm's head (what an animator sees), for
    rigs whose upper arm does not hang below the collar bone (Rigify)."""
    source = target_rig.source_skeleton()
    _, positions = retarget_math.source_world(translation, rotations, source)
    worst = {}
    for side in ("left", "right"):
        collar, shoulder = mapping.get(f"{side}_collar"), mapping.get(f"{side}_shoulder")
        if not collar or not shoulder or rigs.is_descendant(armature, shoulder, collar):
            continue
        errors = []
        for frame in range(0, frames, 10):
            heads = rigs.world_matrices(armature, [collar, shoulder], frame + 1)[:, :3, 3]
            wanted = positions[frame, rigs.JOINT[f"{side}_shoulder"]] - positions[frame, rigs.JOINT[f"{side}_collar"]]
            errors.append(float(rigs.angle_degrees(heads[1] - heads[0], wanted)))
        worst[f"{side}_collar (head to upper arm)"] = max(errors)
    return worst


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rigs", default=",".join(RIGS))
    parser.add_argument("--settle", default="0,0.03,0.1,0.3", help="settle times (s) for the trade-off table")
    args = parser.parse_args(argv)
    settle_times = [float(value) for value in args.settle.split(",")]
    print(f"Blender {bpy.app.version_string}, CPU: {cpu_name()}, {args.seconds:g} s clips at 30 fps")
    header = ("| rig | motion | pen (cm) | hover (cm) | slide off / on (cm) | least (cm) | legs mean / max (deg) "
              "| stride off / on (%) | accel off / scaled (m/s²) | bones (deg) | time (ms) |")
    print(header)
    print("|" + "---|" * 11)
    trade_offs = []
    for name in args.rigs.split(","):
        rigs.new_empty_file() if hasattr(rigs, "new_empty_file") else bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.context.scene.render.fps = 30
        armature = RIGS[name]()
        for motion in MOTIONS:
            row = measure(armature, motion, args.seconds, settle_times)
            accel = " / ".join(f"{value:.1f}" for value in row["accel"])
            stride = " / ".join(f"{value:+.2f}" for value in row["stride"])
            print(f"| {name} | {motion} | {row['pen']:.2f} | {row['hover']:.2f} | {row['slide_off']:.2f} / "
                  f"{row['slide_on']:.2f} | {row['least']:.2f} | {row['legs_mean']:.1f} / {row['legs_max']:.1f} "
                  f"| {stride} | {accel} | {row['bones']:.2f} | {row['time']:.0f} |", flush=True)
            trade_offs.append((name, motion, row["trade_off"]))
    print()
    print("Cleanup off, hips settling over tau seconds (lambda = (tau x 30)^2): slide (cm) / accel (m/s²)")
    columns = " | ".join(f"τ {settle:g} s, λ {(settle * 30.0) ** 2:g}" for settle in settle_times)
    print(f"| rig | motion | {columns} |")
    print("|" + "---|" * (len(settle_times) + 2))
    for name, motion, figures in trade_offs:
        print(f"| {name} | {motion} | " + " | ".join(f"{slide:.2f} / {accel:.1f}" for slide, accel in figures) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
