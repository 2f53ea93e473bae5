"""How long baking one full-length clip takes: 22 bones x 360 frames plus root translation.

Runs in whatever Python has the `bpy` module (or inside Blender: blender -b -P benchmarks/bake_benchmark.py -- ...).
The time covers the whole `bake_motion` call: validation, the bone-space conversion, creating the Action and its
91 F-curves and writing every key. The target is under 50 ms per clip.

    python benchmarks/bake_benchmark.py [--repeats 30] [--frames 360] [--scene-fps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine_info import cpu_name  # noqa: E402

from hymotion.shared.skeleton import NUM_BODY_JOINTS  # noqa: E402
from hymotion_addon.scene import actions, bake, rig  # noqa: E402

TARGET_MS = 50.0


def random_clip(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rotations = rng.normal(size=(frames, NUM_BODY_JOINTS, 4))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    translation = rng.normal(size=(frames, 3))
    return translation, rotations


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--frames", type=int, default=360)
    parser.add_argument("--scene-fps", type=int, default=30, help="24 measures the resampling path too")
    args = parser.parse_args(argv)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = args.scene_fps
    armature = rig.build_armature(bpy.context)
    translation, rotations = random_clip(args.frames)
    bake.bake_motion(armature, translation, rotations)  # warm-up: first-call imports and RNA lookups

    times_ms = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        action = bake.bake_motion(armature, translation, rotations, prompt="benchmark", seed=repeat)
        times_ms.append((time.perf_counter() - start) * 1000.0)
        bpy.data.actions.remove(action)

    median = statistics.median(times_ms)
    layout = "slotted actions" if actions.uses_slotted_actions() else "legacy actions"
    print(f"Blender {bpy.app.version_string} ({layout}), {cpu_name()}")
    print(
        f"bake {NUM_BODY_JOINTS} bones x {args.frames} frames + root translation, scene {args.scene_fps} fps: "
        f"median {median:.2f} ms, min {min(times_ms):.2f} ms, max {max(times_ms):.2f} ms over {args.repeats} runs "
        f"(target < {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
