"""The typed bake job (hymotion.shared.bake_job): what hymotion-bake and the farm hand to Blender's library_bake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hymotion import bake
from hymotion.shared.bake_job import BakeClip, BakeJob, hymotion_package
from hymotion.shared.errors import HyMotionError


def job(**changes) -> BakeJob:
    clip = BakeClip(path="/clips/a.npz", prompt="a person jumps", seed=3, duration=2.5, model="HY-Motion-1.0-lite",
                    action="HYM_a_s3")
    return BakeJob(**{"out": "/out/library.blend", "clips": (clip,), "nla": "SEQUENCE", **changes})


def test_a_job_round_trips_through_its_file(tmp_path):
    written = job(addon_dir="/addon").write(tmp_path / "manifest.json")
    assert BakeJob.read(written) == job(addon_dir="/addon")
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_the_job_names_the_hymotion_package_it_comes_from():
    package = Path(hymotion_package())
    assert (package / "__init__.py").is_file() and (package / "shared" / "bake_job.py").is_file()


def test_a_clip_without_an_action_name_reads_back():
    document = json.loads(job().to_json())
    del document["clips"][0]["action"]
    assert BakeJob.from_json(json.dumps(document)).clips[0].action is None


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(fps=0), "frame rate"),
    (lambda d: d.update(fps=True), "fps is True"),
    (lambda d: d.update(fps=24.5), "fps"),
    (lambda d: d.update(nla="SIDEWAYS"), "nla"),
    (lambda d: d.update(clips=[]), "no clips"),
    (lambda d: d.update(clips={"a": 1}), "clips is"),
    (lambda d: d.update(in_place=1), "in_place"),
    (lambda d: d.update(colour="red"), "unknown keys"),
    (lambda d: d.pop("out"), "lacks"),
    (lambda d: d["clips"][0].update(seed="3"), "seed"),
    (lambda d: d["clips"][0].update(duration=float("nan")), "duration"),
    (lambda d: d["clips"][0].pop("path"), "clip 1"),
    (lambda d: d["clips"].append(["not", "a", "clip"]), "clip 2"),
])
def test_a_damaged_job_is_refused_naming_what_is_wrong(change, words):
    document = json.loads(job().to_json())
    change(document)
    with pytest.raises(HyMotionError, match=words) as error:
        BakeJob.from_json(json.dumps(document))
    assert error.value.code == "bad_request" and error.value.hint


@pytest.mark.parametrize("text", ["[]", "not json", "[" * 100_000])
def test_a_job_that_is_not_an_object_is_refused(text):
    with pytest.raises(HyMotionError) as error:
        BakeJob.from_json(text)
    assert error.value.code == "bad_request"


@pytest.mark.parametrize("fps", ["0", "-30"])
def test_hymotion_bake_refuses_a_frame_rate_blender_cannot_use(tmp_path, fps, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks\n", encoding="utf-8")
    with pytest.raises(SystemExit) as refused:  # argparse refuses it, exiting with status 2
        bake.main([str(prompts), "--out", str(tmp_path / "library.blend"), "--fps", fps])
    assert refused.value.code == 2
    assert "not a frame rate" in capsys.readouterr().err
