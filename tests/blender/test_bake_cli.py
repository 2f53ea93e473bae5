"""`hymotion-bake`: the console script generates with the backend's Python and bakes with this test run's bpy (5.0 or
4.2); the .blend it writes is opened in a fresh Blender process and checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import BACKEND_PYTHON, TEST_STEPS

from hymotion.shared.prompt_guide import suggest_duration

BAKE_SCRIPT = Path(BACKEND_PYTHON).parent / "hymotion-bake"
PROMPTS = "a person walks forward\n\n2.5 | a person jumps twice\n"

INSPECT = """
import json, sys
import bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])
armatures = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
print(json.dumps({
    "armatures": [(obj.name, len(obj.data.bones), obj.get("hymotion_rig")) for obj in armatures],
    "actions": [
        {"name": action.name, "prompt": action.get("hymotion_prompt"), "seed": action.get("hymotion_seed"),
         "duration": action.get("hymotion_duration"), "fake_user": action.use_fake_user,
         "range": list(action.frame_range)}
        for action in bpy.data.actions
    ],
    "strips": [strip.action.name for obj in armatures for track in obj.animation_data.nla_tracks
               for strip in track.strips],
    "strip_ends": [strip.frame_end for obj in armatures for track in obj.animation_data.nla_tracks
                   for strip in track.strips],
    "scene_range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
    "fps": bpy.context.scene.render.fps,
}))
"""


def bake(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Run hymotion-bake with an empty weights cache, so 'no downloaded weights' holds on any machine."""
    environment = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_HUB_OFFLINE": "1",
        "HYMOTION_CACHE": str(tmp_path / "cache"),
    }
    command = [str(BAKE_SCRIPT)] if BAKE_SCRIPT.exists() else [BACKEND_PYTHON, "-m", "hymotion.bake"]
    return subprocess.run([*command, *arguments], capture_output=True, text=True, env=environment, cwd=tmp_path,
                          timeout=600)


def inspect_blend(path: Path) -> dict:
    completed = subprocess.run([sys.executable, "-c", INSPECT, str(path)], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_hymotion_bake_writes_the_rig_and_one_action_per_prompt(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS, encoding="utf-8")
    out = tmp_path / "library" / "motions.blend"

    completed = bake(tmp_path, str(prompts), "--out", str(out), "--steps", str(TEST_STEPS), "--seed", "3",
                     "--nla", "sequence", "--bpy-python", sys.executable)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "tiny model with RANDOM weights is used" in completed.stderr and "is noise" in completed.stderr
    library = inspect_blend(out)
    assert library["armatures"] == [["SMPLX", 55, 1]]
    assert library["fps"] == 30
    by_prompt = {action["prompt"]: action for action in library["actions"]}
    assert len(library["actions"]) == 2
    walk, jump = by_prompt["a person walks forward"], by_prompt["a person jumps twice"]
    assert (walk["name"], walk["prompt"], walk["seed"]) == ("HYM_walks_forward_s3", "a person walks forward", 3)
    assert (jump["name"], jump["prompt"], jump["seed"]) == ("HYM_jumps_twice_s3", "a person jumps twice", 3)
    assert walk["duration"] == pytest.approx(suggest_duration("a person walks forward"), abs=1 / 30)
    assert jump["duration"] == pytest.approx(2.5) and jump["range"] == [1.0, 75.0]
    assert walk["fake_user"] and jump["fake_user"]
    assert library["strips"] == [walk["name"], jump["name"]]
    # laid end to end, the second strip ends after the longest Action: playback must reach the end of the last strip
    walk_frames = walk["range"][1] - walk["range"][0] + 1
    assert library["strip_ends"] == [walk["range"][1], walk["range"][1] + 75]
    assert library["scene_range"] == [1, walk_frames + 75]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.txt", "--out", "x.blend"], "Prompt file missing.txt does not exist"),
        (["{prompts}", "--out", "x.txt"], "does not end in .blend"),
        (["{prompts}", "--out", "x.blend", "--bpy-python", "/nonexistent/python"], "cannot import bpy"),
        (["{prompts}", "--out", "x.blend", "--blender", "/nonexistent/blender"], "does not exist"),
        (["{prompts}", "--out", "x.blend", "--preset", "Nope"], "Unknown preset 'Nope'"),
        (["{prompts}", "--out", "x.blend", "--duration", "30"], "Duration 30 s is outside"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_a_hint(tmp_path, arguments, message):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS, encoding="utf-8")
    completed = bake(tmp_path, *[argument.format(prompts=prompts) for argument in arguments])
    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr and "hint:" in completed.stderr
    assert not list(tmp_path.glob("*.blend"))
