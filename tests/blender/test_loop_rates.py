"""Loops close at every scene frame rate (issue 27): resampled to the scene's rate, a loop's last key lies exactly on
the loop point (between two scene frames at 24, 25 and the NTSC rates), equals its first key, and the Cycles period
is the clip's own; no frame is held at 60 fps. On the SMPL-X armature and on a mapped rig."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from blender_helpers import action_fcurves
from retarget_test_rigs import JOINT, axis_angle_quaternions, build_rig, identity_clip, mixamo_bones

from hymotion_addon.scene import bake, retarget, rig, sequence

SOURCE_FPS = 30.0
LOOP_FRAMES = 60  # a 1.967 s cycle (59 source frames), the smooth walk loop
# (fps, fps_base) as Blender stores each rate; the NTSC ones are 24000/1001, 30000/1001 and 60000/1001.
RATES = {"24": (24, 1.0), "25": (25, 1.0), "30": (30, 1.0), "50": (50, 1.0), "60": (60, 1.0),
         "23.976": (24, 1.001), "29.97": (30, 1.001), "59.94": (60, 1.001)}
# Key times are stored as float32: a frame number below 200 is exact to 1.5e-5 frames; 1e-4 frames (4 us at 24 fps)
# keeps a margin and is 2000x below the quarter frame the old resampling lost.
FRAME_TOLERANCE = 1e-4
# Key values are float32 (unit roundoff 6e-8) of quaternion components and locations of a few metres: 1e-5.
VALUE_TOLERANCE = 1e-5


def smooth_loop(frames: int = LOOP_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """A closed loop in the model frame: every joint swings with the cycle (sine of the phase, so the last frame is
    the first exactly), the pelvis bobs and drifts 1.2 m forward over one cycle."""
    translation, rotations = identity_clip(frames)
    phase = 2.0 * np.pi * np.arange(frames) / (frames - 1)
    for joint, amplitude in ((JOINT["left_hip"], 0.4), (JOINT["right_hip"], -0.4), (JOINT["left_knee"], 0.6),
                             (JOINT["spine1"], 0.1), (JOINT["left_shoulder"], 0.3), (JOINT["pelvis"], 0.15)):
        rotations[:, joint] = axis_angle_quaternions([1.0, 0.0, 0.0], amplitude * np.sin(phase + joint))
    translation[:, 1] = 0.9 + 0.03 * np.sin(2.0 * phase)
    translation[:, 2] = 1.2 * np.arange(frames) / (frames - 1)
    rotations[-1] = rotations[0]
    translation[-1, 1] = translation[0, 1]
    return translation, rotations


def set_rate(scene: bpy.types.Scene, rate: str) -> float:
    scene.render.fps, scene.render.fps_base = RATES[rate]
    return bake.scene_fps(scene)


def check_closed(action: bpy.types.Action, start: int, fps: float, root_paths: set[str]) -> None:
    period = (LOOP_FRAMES - 1) * fps / SOURCE_FPS
    curves = action_fcurves(action)
    assert curves
    for fcurve in curves:
        points = fcurve.keyframe_points
        times = np.array([point.co.x for point in points])
        values = np.array([point.co.y for point in points])
        assert times[0] == pytest.approx(start, abs=FRAME_TOLERANCE)
        assert times[-1] - times[0] == pytest.approx(period, abs=FRAME_TOLERANCE), fcurve.data_path
        assert np.all(np.diff(times) > 0.1)  # no held or doubled key
        np.testing.assert_allclose(times[:-1], start + np.arange(times.size - 1), atol=FRAME_TOLERANCE)
        cycles = [modifier for modifier in fcurve.modifiers if modifier.type == "CYCLES"]
        assert len(cycles) == 1
        if fcurve.data_path.rpartition(".")[0] + "." + fcurve.data_path.rpartition(".")[2] in root_paths:
            continue  # the root's location carries on with the drift (REPEAT_OFFSET)
        assert values[-1] == pytest.approx(values[0], abs=VALUE_TOLERANCE), fcurve.data_path
        # One period on, half a frame in: Cycles repeats the same motion.
        assert fcurve.evaluate(start + period + 0.5) == pytest.approx(fcurve.evaluate(start + 0.5),
                                                                      abs=VALUE_TOLERANCE)


@pytest.mark.parametrize("rate", list(RATES))
def test_a_loop_baked_on_the_smplx_armature_closes_at_the_scene_rate(scene, rate):
    fps = set_rate(scene, rate)
    translation, rotations = smooth_loop()
    armature = rig.build_armature(bpy.context)
    action = bake.bake_motion(armature, translation, rotations, scene=scene, start_frame=5, loop=True)
    sequence.make_cyclic(action, armature)
    check_closed(action, 5, fps, {f'pose.bones["{bake.ROOT_BONE}"].location'})
    # The key at a whole scene frame k is the clip at time k / fps (the motion keeps its speed).
    middle = 20
    expected = bake.motion_math.resample_clip(translation, rotations, SOURCE_FPS, fps)[1][middle, JOINT["left_knee"]]
    bone = armature.pose.bones["left_knee"]
    scene.frame_set(5 + middle)
    got = np.array(bone.rotation_quaternion)
    assert abs(got[0]) == pytest.approx(abs(expected[0]), abs=VALUE_TOLERANCE)  # the rest frame keeps the angle


@pytest.mark.parametrize("rate", list(RATES))
def test_a_loop_retargeted_onto_a_mapped_rig_closes_at_the_scene_rate(scene, rate):
    fps = set_rate(scene, rate)
    target = build_rig("Mixamo", mixamo_bones())
    translation, rotations = smooth_loop()
    action = retarget.bake_onto_rig(target, translation, rotations, scene=scene, start_frame=1, loop=True,
                                    feet_cleanup=False)
    sequence.make_cyclic(action, target)
    hips = 'pose.bones["mixamorig:Hips"].location'
    check_closed(action, 1, fps, {hips})


def test_an_imported_loop_clip_closes_at_24_fps(scene, tmp_path):
    fps = set_rate(scene, "24")
    translation, rotations = smooth_loop()
    from hymotion.shared.skeleton import BODY_JOINT_NAMES

    np.savez(tmp_path / "loop.npz", joint_names=np.asarray(BODY_JOINT_NAMES), translation=translation,
             rotations=rotations, fps=30)
    armature = rig.build_armature(bpy.context)
    action = sequence.import_clip(tmp_path / "loop.npz", armature, start_frame=1, scene=scene, loop=True)
    check_closed(action, 1, fps, {f'pose.bones["{bake.ROOT_BONE}"].location'})
