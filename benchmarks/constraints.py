"""Directing metrics in the style of NVIDIA Kimodo's constraint benchmark, on the known-answer flow and the tiny model.

Kimodo reports, for motion made under constraints: full-body keyframe error, end-effector error, 2D root (path)
error, all as positions in cm, and foot skating in cm/s. The definitions here are ours, written for HY-Motion's
22-joint body (numpy, from the clip's world joint positions):

  keyframe   mean distance (cm) of the 22 joints from the pinned pose's, over every whole-pose pin (start / end pose)
  effector   largest distance (cm) of a target's joint from its target position over the target's frames
  root 2D    largest horizontal distance (cm) of the pelvis from its waypoint, over every waypoint
  skate      mean horizontal speed (cm/s) of the ankle and toe joints over the frames where the foot stands (its sole
             within 3 cm of the floor, y = 0, and slower than 0.5 m/s: body_correction.foot_contacts) and that point
             itself is down (its own sole gap within 3 cm), between two such frames: a heel that lifts as the foot rolls
             onto its toe is not skating
  jerk       largest joint jerk (m/s^3, third difference x 30^3) within 10 frames of a constrained frame / elsewhere /
             over the unconstrained clip of the same seed (the clip's own range); a pop shows as the first above the
             last
  leaves     mean distance (cm) of the joints from the unconstrained clip's, each pose seen from its own pelvis and
             heading, over frames more than 10 frames from any target (how much of the motion the directions change)

Scenarios (4 s clips, 30 fps, seed 0): a sparse path bending the walk 40 cm sideways (waypoints every 15 frames, facing
along the path), a dense path (one waypoint per frame) on a 4 m circle arc, waypoints with yaw given on the turning
walk, hand and foot targets (the right wrist at frame 60, the left ankle held over frames 40-46, the head at frame
90), and an in-between (start and end poses) with a path between them.

    PYTHONPATH=backend python benchmarks/constraints.py [--steps 50] [--models known-walk,tiny-random] [--markdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hymotion.pipeline import body_correction, directing
from hymotion.pipeline.body_correction import foot_contacts
from hymotion.pipeline.directing import Directions, Waypoint, parse_target
from hymotion.pipeline.known_frames import MotionConstraint, Pose
from hymotion.pipeline.motion import ANKLE_SOLE_GAP, FOOT_SOLE_GAP
from hymotion.shared import skeleton
from hymotion.shared.jobs import GenerationSettings
from hymotion.shared.skeleton import FPS

NEAR = directing.TARGET_RAMP  # frames around a constrained frame that count as "at the constraint"
DURATION = 4.0
FRAMES = round(DURATION * FPS)
_ANKLES_AND_TOES = ((7, 10), (8, 11))  # per foot: ankle and toe-base joints, left then right
_PELVIS = skeleton.BODY_REST_POSITIONS[0]


# --- metrics --------------------------------------------------------------------------------------------------------


def keyframe_error(positions: np.ndarray, keyframes: dict[int, np.ndarray]) -> float:
    """Mean joint distance (cm) from each pinned whole pose's joints (frame -> (22, 3))."""
    if not keyframes:
        return math.nan
    return float(
        np.mean([np.linalg.norm(positions[f] - wanted, axis=-1).mean() for f, wanted in keyframes.items()]) * 100
    )


def effector_error(positions: np.ndarray, targets) -> float:
    """Largest distance (cm) of a target joint from its target over the target's frames."""
    errors = [np.linalg.norm(positions[target.first : target.last + 1, target.joint] - target.position, axis=-1).max()
              for target in targets]
    return float(max(errors) * 100) if errors else math.nan


def root_error(translation: np.ndarray, waypoints) -> float:
    """Largest horizontal distance (cm) of the pelvis from its waypoint."""
    if not waypoints:
        return math.nan
    pelvis = translation[:, [0, 2]] + _PELVIS[[0, 2]]
    return float(max(math.hypot(*(pelvis[w.frame] - (w.x, w.z))) for w in waypoints) * 100)


def foot_skate(positions: np.ndarray) -> float:
    """Mean horizontal speed (cm/s) of ankle and toe while the foot stands: its sole within 3 cm of the floor (y = 0,
    where the decoder puts the clip's lowest sole) and slower than 0.5 m/s (body_correction.foot_contacts)."""
    contacts = foot_contacts(positions, floor=0.0)
    speeds = []
    for side, joints in enumerate(_ANKLES_AND_TOES):
        for joint, gap in zip(joints, (ANKLE_SOLE_GAP, FOOT_SOLE_GAP)):
            # each point only while it is down itself: a heel lifting as the foot rolls onto its toe does not count
            down = contacts[:, side] & (positions[:, joint, 1] - gap < body_correction.CONTACT_HEIGHT)
            both = down[1:] & down[:-1]
            step = np.linalg.norm(np.diff(positions[:, joint, [0, 2]], axis=0), axis=-1) * FPS
            speeds.append(step[both])
    speeds = np.concatenate(speeds)
    return float(speeds.mean() * 100) if speeds.size else 0.0


def jerk(positions: np.ndarray) -> np.ndarray:
    """Per frame (F - 3,), the largest joint jerk (m/s^3) of the third difference centred between frames."""
    third = np.diff(positions, n=3, axis=0) * FPS**3
    return np.linalg.norm(third, axis=-1).max(axis=-1)


def near_frames(frames: int, constrained) -> np.ndarray:
    """Mask (F - 3,) of jerk samples within NEAR frames of a constrained frame (a sample spans frames k … k + 3)."""
    mask = np.zeros(frames - 3, dtype=bool)
    for frame in constrained:
        mask[max(frame - NEAR - 3, 0) : min(frame + NEAR + 1, frames - 3)] = True
    return mask


def body_view(positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Joints seen from each frame's pelvis, turned by its heading (so a path and a heading change are not counted)."""
    heading = body_correction.heading_of(skeleton.quaternion_to_matrix(rotations[:, 0]))
    turn = body_correction.yaw_matrix(-heading)
    return np.einsum("fij,fkj->fki", turn, positions - positions[:, :1])


def leaves(clip, free, targets) -> float:
    """Mean joint distance (cm) from the unconstrained clip in the body's own view, away from targets."""
    far = np.ones(clip.frames, dtype=bool)
    for target in targets:
        far[max(target.first - NEAR, 0) : target.last + NEAR + 1] = False
    ours = body_view(clip.positions.astype(np.float64), clip.rotations)
    theirs = body_view(free.positions.astype(np.float64), free.rotations)
    return float(np.linalg.norm(ours - theirs, axis=-1)[far].mean() * 100)


@dataclass
class Result:
    model: str
    scenario: str
    keyframe: float
    effector: float
    root: float
    skate: float
    skate_free: float
    jerk_near: float
    jerk_else: float
    jerk_own: float
    leaves: float
    seconds: float
    warnings: list[str] = field(default_factory=list)


# --- scenarios ------------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    directions: Directions
    start_frames: tuple[int, int] | None = None  # (first, last) frames of the free clip taken as a start pose
    end_frame: int | None = None  # frame of the free clip taken as the end pose


def scenarios() -> list[Scenario]:
    bend = [Waypoint(f, 0.4 * math.sin(math.pi * f / FRAMES), 1.08 * f / FPS) for f in range(0, FRAMES, 15)]
    radius, speed = 4.0, 1.1
    arc = [Waypoint(f, radius - radius * math.cos(speed * f / FPS / radius),
                    radius * math.sin(speed * f / FPS / radius))
           for f in range(FRAMES)]
    yawed = [Waypoint(f, 0.45 * f / FPS * math.sin(0.15 * f / FPS), 0.9 * f / FPS, math.radians(10.0 * f / FPS))
             for f in range(0, FRAMES, 20)]
    # Targets are given as offsets from where the unconstrained clip has the joint (run_scenario places them): a hand
    # raised 25 cm and 15 cm inward, a foot put 8 cm out and 5 cm on over 7 frames of its stance, the head 10 cm
    # forward.
    targets = tuple(parse_target(spec) for spec in (
        "right_wrist:60:0.15,0.25,0.1", "left_ankle:48-54:0.08,0.0,0.05", "head:90:0.0,0.0,0.1",
    ))
    between = [Waypoint(f, 0.25 * math.sin(math.pi * f / (FRAMES - 1)), 1.1 * f / FPS)
               for f in range(10, FRAMES - 10, 20)]
    return [
        Scenario("sparse path", Directions(tuple(bend))),
        Scenario("dense path", Directions(tuple(arc))),
        Scenario("path + yaw", Directions(tuple(yawed))),
        Scenario("targets", Directions((), targets)),
        Scenario("in-between + path", Directions(tuple(between), facing="free"), start_frames=(0, 0),
                 end_frame=FRAMES - 1),
    ]


def run_scenario(pipeline, model: str, scenario: Scenario, steps: int) -> Result:
    settings = GenerationSettings(["a person walks forward"], [DURATION], [0], steps=steps)
    (free,) = pipeline.generate(settings)
    start = end = None
    keyframes = {}
    if scenario.start_frames is not None:
        first, last = scenario.start_frames
        start = Pose(free.translation[first : last + 1], free.rotations[first : last + 1])
        keyframes[0] = free.positions[last].astype(np.float64)
    if scenario.end_frame is not None:
        end = Pose(free.translation[scenario.end_frame], free.rotations[scenario.end_frame])
        keyframes[FRAMES - 1] = free.positions[scenario.end_frame].astype(np.float64)
    if start is not None:  # the in-between: the path is where the free clip goes, bent; frame 0 is the start pose
        pelvis = free.translation[:, [0, 2]] + _PELVIS[[0, 2]]
        moved = tuple(Waypoint(w.frame, float(pelvis[w.frame, 0] + w.x), float(pelvis[w.frame, 1]), w.yaw)
                      for w in scenario.directions.waypoints)
        scenario = Scenario(scenario.name, Directions(moved, scenario.directions.targets, scenario.directions.facing),
                            scenario.start_frames, scenario.end_frame)
    if scenario.directions.targets:  # offsets from the free clip's joint at the target's first frame
        placed = tuple(dataclasses.replace(target, position=tuple(
            free.positions[target.first, target.joint].astype(np.float64) + target.position))
            for target in scenario.directions.targets)
        scenario = Scenario(scenario.name,
                            Directions(scenario.directions.waypoints, placed, scenario.directions.facing),
                            scenario.start_frames, scenario.end_frame)
    directions = scenario.directions
    constraint = MotionConstraint(start=start, end=end, directions=directions)
    began = time.perf_counter()
    (clip,) = pipeline.generate(settings, constraint=constraint)
    seconds = time.perf_counter() - began
    positions = clip.positions.astype(np.float64)
    constrained = [w.frame for w in directions.waypoints] + list(keyframes)
    for target in directions.targets:
        constrained += list(range(target.first, target.last + 1))
    series = jerk(positions)
    near = near_frames(clip.frames, constrained)
    return Result(
        model, scenario.name,
        keyframe=keyframe_error(positions, keyframes),
        effector=effector_error(positions, directions.targets),
        root=root_error(clip.translation.astype(np.float64), directions.waypoints),
        skate=foot_skate(positions),
        skate_free=foot_skate(free.positions.astype(np.float64)),
        jerk_near=float(series[near].max()) if near.any() else math.nan,
        jerk_else=float(series[~near].max()) if (~near).any() else math.nan,
        jerk_own=float(jerk(free.positions.astype(np.float64)).max()),
        leaves=leaves(clip, free, directions.targets),
        seconds=seconds,
        warnings=list(directions.warnings),
    )


def run(models: list[str], steps: int) -> list[Result]:
    from hymotion.pipeline.loading import load_pipeline

    results = []
    for model in models:
        pipeline = load_pipeline(model, plan="cpu", device="cpu", cache_dir=Path("/tmp") / "hymotion-bench-cache")
        for scenario in scenarios():
            results.append(run_scenario(pipeline, model, scenario, steps))
    return results


# --- the table ------------------------------------------------------------------------------------------------------


def _cell(value: float, digits: int = 2) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def table(results: list[Result]) -> str:
    lines = [
        ("| model | scenario | keyframe cm | effector cm | root 2D cm | skate cm/s (free) "
         "| jerk m/s³ near / else / own | leaves cm | s |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.scenario} | {_cell(r.keyframe)} | {_cell(r.effector)} | {_cell(r.root)} | "
            f"{_cell(r.skate)} ({_cell(r.skate_free)}) | {_cell(r.jerk_near, 0)} / {_cell(r.jerk_else, 0)} / "
            f"{_cell(r.jerk_own, 0)} | {_cell(r.leaves, 1)} | {r.seconds:.2f} |"
        )
    return "\n".join(lines)


def header() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "?"
    return (f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.processor() or platform.machine()} CPU "
            f"({platform.system()}), commit {commit}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--models", default="known-walk,tiny-random")
    args = parser.parse_args(argv)
    results = run(args.models.split(","), args.steps)
    print(header())
    print(table(results))
    for result in results:
        for note in result.warnings:
            print(f"warning ({result.model}, {result.scenario}): {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
