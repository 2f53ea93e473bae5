"""Sparse keys against the dense Action and against Blender's own Decimate, on smooth motions baked onto the SMPL-X rig.

Runs in whatever Python has the `bpy` module (or inside Blender: blender -b -P benchmarks/sparse_keys.py -- ...).
Clips (30 fps): the synthetic walk of the retarget tests (tests/blender/retarget_test_rigs.walk_clip, 4 s, feet that
slide), the retarget tests' walk whose feet really plant (gait_clip), and the jump and turn of
tests/addon/smooth_clips.py. Each is baked with a key on every frame (91 F-curves), then:

- Sparse Keys (hymotion.sparse_keys' fit, per-bone key frames and the whole rig's) at the tolerance;
- Blender's Decimate (graph.decimate, 'ERROR' mode, every key selected), its error margin searched (bisection on a
  log scale) for the largest one whose result stays within Sparse Keys' own largest error.

Every error is measured the same way, through Blender: the evaluated world heads and tails of all 55 bones at every
frame, against the dense Action's. Reported: keys per second per F-curve (over all 91, and over the curves that move:
a synthetic clip leaves many bones still, and a still curve needs two keys), the largest position (cm) and rotation
(degrees) errors, and the fit's time. Decimate is not asked to keep planted feet or rotations; Sparse Keys is.

    python benchmarks/sparse_keys.py [--tolerance 0.5] [--rotation-tolerance 1.0] [--markdown]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "tests" / "blender", ROOT / "tests" / "addon", ROOT / "benchmarks"):
    sys.path.insert(0, str(folder))

import retarget_test_rigs as rigs  # noqa: E402  (the clips the tests use: one definition)
import smooth_clips  # noqa: E402
from machine_info import cpu_name  # noqa: E402

from hymotion_addon.core import sparse_keys  # noqa: E402
from hymotion_addon.scene import (  # noqa: E402
    actions,  # noqa: E402
    bake,
    rig,
    sparse_action,
)
from hymotion_addon.scene.actions import action_fcurves  # noqa: E402

FPS = 30
DECIMATE_STEPS = 14  # bisection halvings of the margin's log range (1e-6 .. 1): the margin found to within 6 %


def clips() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    walk = rigs.walk_clip(frames=4 * FPS)
    planted_walk = rigs.gait_clip("walk", 4.0, FPS)
    jump = smooth_clips.jump_clip(FPS)
    return {
        "walk (sliding feet, 4 s)": walk[:2],
        "walk (planted feet, 4 s)": planted_walk[:2],
        "jump (2.4 s)": jump[:2],
        "turn (2.5 s)": smooth_clips.turn_clip(FPS),
    }


def world_poses(armature: bpy.types.Object, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blender's evaluated world heads and tails (F, B, 2, 3) and unit rotations (F, B, 3, 3) of every pose bone."""
    points, rotations = [], []
    for frame in frames.tolist():
        bpy.context.scene.frame_set(int(frame))
        evaluated = armature.evaluated_get(bpy.context.evaluated_depsgraph_get())
        world = np.array(evaluated.matrix_world)
        bones = evaluated.pose.bones
        ends = np.array([[tuple(bone.head), tuple(bone.tail)] for bone in bones])
        points.append(ends @ world[:3, :3].T + world[:3, 3])
        rotation = np.array([world[:3, :3] @ np.array(bone.matrix)[:3, :3] for bone in bones])
        rotations.append(rotation / np.linalg.norm(rotation, axis=-2, keepdims=True))
    return np.array(points), np.array(rotations)


def errors(armature, frames, dense) -> tuple[float, float]:
    points, rotations = world_poses(armature, frames)
    distance = np.linalg.norm(points - dense[0], axis=-1).max() * 100.0
    return float(distance), float(sparse_keys.rotation_angles(rotations, dense[1]).max())


def key_count(action: bpy.types.Action, moving: set | None = None) -> tuple[int, int]:
    """Keys and F-curves of the Action (only the curves in `moving`, by data path and index, where given)."""
    curves = [fcurve for fcurve in action_fcurves(action)
              if moving is None or (fcurve.data_path, fcurve.array_index) in moving]
    return sum(len(fcurve.keyframe_points) for fcurve in curves), len(curves)


def moving_curves(action: bpy.types.Action) -> set:
    """The curves whose keys are not all one value (a synthetic clip leaves many bones still)."""
    return {(fcurve.data_path, fcurve.array_index) for fcurve in action_fcurves(action)
            if np.ptp([key.co[1] for key in fcurve.keyframe_points]) > 1e-6}


def decimate(armature: bpy.types.Object, action: bpy.types.Action, margin: float) -> bpy.types.Action:
    """A copy of `action` on the armature, decimated by Blender's Graph Editor operator at `margin`."""
    copy = action.copy()
    armature.animation_data.action = copy
    if actions.uses_slotted_actions():
        armature.animation_data.action_slot = copy.slots[0]
    for fcurve in action_fcurves(copy):
        fcurve.select = True
        fcurve.hide = False
        for point in fcurve.keyframe_points:
            point.select_control_point = point.select_left_handle = point.select_right_handle = True
    window = bpy.context.window
    area = window.screen.areas[0]
    area.type = "GRAPH_EDITOR"
    area.spaces.active.dopesheet.show_only_selected = False
    region = next(region for region in area.regions if region.type == "WINDOW")
    with bpy.context.temp_override(window=window, area=area, region=region):
        result = bpy.ops.graph.decimate(mode="ERROR", remove_error_margin=margin)
    if result != {"FINISHED"}:
        raise RuntimeError(f"graph.decimate returned {result}")
    return copy


def decimate_at(armature, action, frames, dense, largest_cm: float, moving: set):
    """Decimate with the largest margin whose result stays within `largest_cm`: ((keys, curves) over all curves and
    over the moving ones, cm, degrees, margin)."""
    low, high = np.log(1e-6), np.log(1.0)
    best = None
    for _ in range(DECIMATE_STEPS):
        middle = 0.5 * (low + high)
        copy = decimate(armature, action, float(np.exp(middle)))
        distance, angle = errors(armature, frames, dense)
        if distance <= largest_cm:
            best = (key_count(copy), key_count(copy, moving), distance, angle, float(np.exp(middle)))
            low = middle
        else:
            high = middle
        armature.animation_data.action = action
        bpy.data.actions.remove(copy)
    return best


def run_clip(name, translation, rotations, tolerance, rotation_tolerance) -> list[dict]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = FPS
    armature = rig.build_armature(bpy.context)
    dense_action = bake.bake_motion(armature, translation, rotations, name="dense")
    frames = np.arange(1, translation.shape[0] + 1)
    seconds = frames.size / FPS
    dense = world_poses(armature, frames)
    keys, curves = key_count(dense_action)
    moving = moving_curves(dense_action)
    rows = [dict(clip=name, method="every frame (baked)", per_second=keys / curves / seconds, moving=30.0,
                 cm=0.0, degrees=0.0, keys=keys, curves=curves, seconds=None,
                 note=f"{len(moving)} of {curves} curves move")]
    largest = None
    for share, label in (("BONE", "Sparse Keys, per bone"), ("RIG", "Sparse Keys, whole rig")):
        action = dense_action.copy()
        armature.animation_data.action = action
        if actions.uses_slotted_actions():
            armature.animation_data.action_slot = action.slots[0]
        start = time.perf_counter()
        report = sparse_action.reduce_action(armature, None, tolerance, rotation_tolerance, share)
        took = time.perf_counter() - start
        distance, angle = errors(armature, frames, dense)
        keys, curves = key_count(action)
        moving_keys, moving_count = key_count(action, moving)
        rows.append(dict(clip=name, method=label, per_second=keys / curves / seconds,
                         moving=moving_keys / moving_count / seconds, cm=distance, degrees=angle,
                         keys=keys, curves=curves, seconds=took,
                         note=f"planted {report.max_planted_error_cm:.2f} cm"))
        largest = distance if share == "BONE" else largest
        armature.animation_data.action = dense_action
        if actions.uses_slotted_actions():
            armature.animation_data.action_slot = dense_action.slots[0]
    assert largest is not None, "the per-bone fit ran first"
    found = decimate_at(armature, dense_action, frames, dense, largest, moving)
    if found is not None:
        (keys, curves), (moving_keys, moving_count), distance, angle, margin = found
        rows.append(dict(clip=name, method="Blender Decimate (error mode)", per_second=keys / curves / seconds,
                         moving=moving_keys / moving_count / seconds, cm=distance, degrees=angle, keys=keys,
                         curves=curves, seconds=None,
                         note=f"margin {margin:.2g}"))
    return rows


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.5, help="centimetres (default 0.5)")
    parser.add_argument("--rotation-tolerance", type=float, default=1.0, help="degrees (default 1.0)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    print(f"Blender {bpy.app.version_string}, CPU: {cpu_name()}, {datetime.date.today()}, commit {commit()}; "
          f"tolerance {args.tolerance} cm, {args.rotation_tolerance} degrees")
    rows = []
    for name, (translation, rotations) in clips().items():
        rows.extend(run_clip(name, translation, rotations, args.tolerance, args.rotation_tolerance))
    if args.markdown:
        print("| clip | keys | keys / s / curve | on moving curves | largest error | fit time | note |")
        print("|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        took = f"{row['seconds']:.1f} s" if row["seconds"] is not None else ""
        error = f"{row['cm']:.3f} cm, {row['degrees']:.2f}\N{DEGREE SIGN}"
        if args.markdown:
            print(f"| {row['clip']} | {row['method']} | {row['per_second']:.2f} | {row['moving']:.2f} | {error} | "
                  f"{took} | {row['note']} |")
        else:
            print(f"{row['clip']:<26} {row['method']:<30} {row['per_second']:6.2f} keys/s/curve "
                  f"({row['moving']:5.2f} on moving curves)  {error:<20} {took:>7}  {row['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
