"""How long retargeting one full-length clip onto a 65-bone rig takes, foot contact cleanup included.

Runs in whatever Python has the `bpy` module (or inside Blender: blender -b -P benchmarks/retarget_benchmark.py -- ...).
The rig is the 65-bone Mixamo skeleton the tests build (body, head top, toe ends, four bones per finger); the clip is
a 360-frame synthetic walk whose feet slide, so contact cleanup has real work. The time covers the whole
`retarget.bake_onto_rig` call: mapping detection, reading the rig, the (cached) rest alignment, the world-space
transfer, contact detection and pinning (the hips keep the leg-length-scaled ground path), creating the Action and
writing every key. The target is under 100 ms.
Also reported: the numpy part alone, the first call (rest alignment not yet cached), and a Rigify rig, which is
solved against Blender's own evaluation (constraints between its controls) and so takes far longer, with the number
of passes over the clip that solve took. --motion picks another clip: one of the quality benchmark's gaits (walk,
run, jump, turn; feet that really plant, tests/blender/retarget_test_rigs.gait_clip) instead of the sliding walk.

    python benchmarks/retarget_benchmark.py [--repeats 20] [--frames 360] [--rigify] [--motion sliding-walk]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "blender"))

import retarget_test_rigs as rigs  # noqa: E402  (the rigs the tests build: one definition)
from machine_info import cpu_name  # noqa: E402

from hymotion_addon.core import retarget_feet, retarget_math  # noqa: E402
from hymotion_addon.scene import retarget, retarget_refine, target_rig  # noqa: E402

TARGET_MS = 100.0
MOTIONS = ("sliding-walk", "walk", "run", "jump", "turn")


def timed(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def summary(label: str, times: list[float]) -> str:
    return (f"{label:<44} median {statistics.median(times):7.1f} ms   min {min(times):7.1f} ms   "
            f"max {max(times):7.1f} ms   (n={len(times)})")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--frames", type=int, default=360)
    parser.add_argument("--rigify", action="store_true", help="also time a Rigify rig (slow: evaluated solve)")
    parser.add_argument("--motion", choices=MOTIONS, default=MOTIONS[0], help="the clip (default: sliding-walk)")
    args = parser.parse_args(argv)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 30
    armature = rigs.build_rig("Mixamo", rigs.mixamo_bones())
    if args.motion == "sliding-walk":
        translation, rotations, _ = rigs.walk_clip(args.frames)
    else:
        translation, rotations, _ = rigs.gait_clip(args.motion, args.frames / 30.0)
    print(f"Blender {bpy.app.version_string}, CPU: {cpu_name()}")
    print(f"rig: {len(armature.data.bones)} bones, clip: {args.motion}, {args.frames} frames at 30 fps, "
          "contact cleanup on")

    def full() -> None:
        retarget.bake_onto_rig(armature, translation, rotations, feet_cleanup=True)

    target_rig._plan_cache.clear()
    first = timed(full, 1)
    times = timed(full, args.repeats)
    mapping = target_rig.detect_mapping(armature)
    plan = target_rig.plan_for(armature, mapping)

    def numpy_part() -> None:  # the steps bake_onto_rig takes, in its order
        wishes = retarget_math.transfer(plan, translation, rotations)
        retarget_feet.clean_feet(plan, wishes, 30.0)
        retarget_math.solve_keys(plan, wishes)

    numpy_only = timed(numpy_part, args.repeats)
    without_feet = timed(
        lambda: retarget.bake_onto_rig(armature, translation, rotations, feet_cleanup=False), args.repeats
    )

    print(summary("bake_onto_rig, feet cleanup (the figure)", times))
    print(summary("  first call (rest alignment computed)", first))
    print(summary("  without feet cleanup", without_feet))
    print(summary("  numpy part (transfer, feet, keys)", numpy_only))
    verdict = "PASS" if statistics.median(times) < TARGET_MS else "FAIL"
    print(f"target < {TARGET_MS:.0f} ms: {verdict}")

    if args.rigify:
        rigify = rigs.generate_rigify_rig()
        evaluate, passes = retarget_refine.pose_matrices, []

        def counted(*pass_args):  # one call per refinement pass
            passes.append(1)
            return evaluate(*pass_args)

        retarget_refine.pose_matrices = counted
        try:
            rigify_times = timed(lambda: retarget.bake_onto_rig(rigify, translation, rotations, feet_cleanup=True), 1)
        finally:
            retarget_refine.pose_matrices = evaluate
        print(summary(f"Rigify rig ({len(rigify.data.bones)} bones, {len(passes)} passes)", rigify_times))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
