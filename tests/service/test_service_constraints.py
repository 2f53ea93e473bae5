"""Known frames through the service: generate's ``constraint`` and ``timeline`` fields, sent by the add-on's client to
a real backend process (tiny random model, CPU), and every way such a request can be wrong.

Tolerances. The issue asks for rotations within 1e-4 and the root within 1 mm. Between the pose sent and the pose
received lie two float32 roundings (the wire and the result's arrays: quaternion components to 6e-8, translations of
a few metres to 5e-7 m) and the float64 canonical-frame move; 1e-4 (rotation-matrix entries) and 1e-3 m keep a
margin above 100x.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from service_helpers import EVENT_TIMEOUT_S, check_result_arrays

from hymotion.shared import skeleton
from hymotion.shared.errors import HyMotionError
from hymotion.shared.jobs import frames_for_duration
from hymotion.shared.protocol import (
    FloatArray,
    GenerateConstraint,
    GenerateRequest,
    PoseFrames,
    ProtocolError,
    decode_request,
    encode,
)

ROTATION_TOLERANCE = 1e-4
ROOT_TOLERANCE = 1e-3  # metres
STEPS = 2


def run(client, prompts, **fields) -> list:
    """The job's events, ending with its done or error."""
    fields.setdefault("steps", STEPS)
    job = client.submit_generate(prompts, **fields)
    return list(client.iter_events(job, timeout=EVENT_TIMEOUT_S))


def results(events) -> list:
    assert events[-1].TYPE == "done", events[-1]
    found = [event for event in events if event.TYPE == "result"]
    for result in found:
        check_result_arrays(result)
    return found


def frames_of(translation, rotations) -> PoseFrames:
    return PoseFrames(FloatArray.from_numpy(translation), FloatArray.from_numpy(rotations))


def assert_same_pose(result, frame, translation, rotations):
    matrices = skeleton.quaternion_to_matrix
    np.testing.assert_allclose(matrices(result.rotations.to_numpy()[frame].astype(np.float64)),
                               matrices(np.asarray(rotations, dtype=np.float64)), atol=ROTATION_TOLERANCE)
    np.testing.assert_allclose(result.translation.to_numpy()[frame], translation, atol=ROOT_TOLERANCE)


@pytest.fixture(scope="module")
def walk(client):
    """An ordinary clip whose frames the constrained requests continue from."""
    (result,) = results(run(client, ["a person walks"], durations=[2.0], seeds=[7]))
    return result.translation.to_numpy(), result.rotations.to_numpy()


def test_continued_clip_starts_in_the_last_context_frame(client, walk):
    translation, rotations = walk
    start = frames_of(translation[-5:], rotations[-5:])
    (result,) = results(run(client, ["a person waves"], durations=[1.0], constraint=GenerateConstraint(start=start)))
    assert result.frames == frames_for_duration(1.0)
    assert_same_pose(result, 0, translation[-1], rotations[-1])


def test_in_between_meets_both_poses(client, walk):
    translation, rotations = walk
    constraint = GenerateConstraint(start=frames_of(translation[5:6], rotations[5:6]),
                                    end=frames_of(translation[50:51], rotations[50:51]))
    (result,) = results(run(client, ["a person turns"], durations=[1.0], constraint=constraint))
    assert_same_pose(result, 0, translation[5], rotations[5])
    assert_same_pose(result, -1, translation[50], rotations[50])


def test_loop_ends_in_its_first_pose(client):
    (result,) = results(run(client, ["a person walks"], durations=[1.0], constraint=GenerateConstraint(loop=True)))
    rotations = result.rotations.to_numpy().astype(np.float64)
    np.testing.assert_allclose(skeleton.quaternion_to_matrix(rotations[-1]),
                               skeleton.quaternion_to_matrix(rotations[0]), atol=ROTATION_TOLERANCE)


def test_timeline_is_one_result_per_seed_of_the_summed_length_starting_in_the_given_pose(client, walk):
    translation, rotations = walk
    start = frames_of(translation[-1:], rotations[-1:])
    events = run(client, ["a person walks", "a person sits down"], durations=[1.0, 0.8], seeds=[0, 1],
                 timeline=True, constraint=GenerateConstraint(start=start))
    found = results(events)
    assert [result.seed for result in found] == [0, 1]
    for result in found:
        assert result.frames == 30 + 24 and result.prompt == "a person walks | a person sits down"
        assert_same_pose(result, 0, translation[-1], rotations[-1])


# --- refusals -------------------------------------------------------------------------------------------------------


def refusal(client, prompts, **fields):
    events = run(client, prompts, **fields)
    assert [event.TYPE for event in events] == ["error"], "a refused job must end before anything runs"
    (error,) = events
    assert error.code == "bad_request" and error.hint
    return error


def test_a_pose_of_another_skeleton_is_refused_naming_the_field(client):
    start = frames_of(np.zeros((1, 3)), np.tile([1.0, 0.0, 0.0, 0.0], (1, 24, 1)))
    error = refusal(client, ["a person waves"], durations=[1.0], constraint=GenerateConstraint(start=start))
    assert error.field == "constraint.start.rotations" and "24 joints" in error.message and "22" in error.message


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"durations": [0.8], "constraint": GenerateConstraint(loop=True)}, "shorter than 1 s"),
        ({"durations": [12.0],
          "constraint": GenerateConstraint(start=frames_of(np.zeros((30, 3)), np.tile([1.0, 0, 0, 0], (30, 22, 1))))},
         "at most 360"),
        ({"durations": [1.0], "constraint": GenerateConstraint()}, "pins nothing"),
        ({"durations": [1.0], "timeline": True, "constraint": GenerateConstraint(loop=True)}, "cannot loop"),
        ({"durations": [12.0], "timeline": True}, "line 2"),
    ],
    ids=["short loop", "context past 360 frames", "nothing pinned", "looping timeline", "timeline line too long"],
)
def test_constraints_that_cannot_be_met_are_refused_before_the_job_runs(client, fields, words):
    prompts = ["a person walks", "a person waves"] if fields.get("timeline") else ["a person walks"]
    error = refusal(client, prompts, **fields)
    assert words in error.message and error.field in ("constraint", "timeline")


def test_a_pose_with_nan_is_refused(client):
    translation = np.array([[0.0, np.nan, 0.0]])
    start = frames_of(translation, np.tile([1.0, 0.0, 0.0, 0.0], (1, 22, 1)))
    error = refusal(client, ["a person waves"], durations=[1.0], constraint=GenerateConstraint(start=start))
    assert error.field == "constraint.start" and "NaN" in error.message


@pytest.mark.parametrize(
    ("which", "translation", "rotations", "field"),
    [
        ("start", np.zeros((2, 3)), np.zeros((3, 22, 4)), "constraint.start.rotations"),
        ("start", np.zeros((2, 2)), np.zeros((2, 22, 4)), "constraint.start.translation"),
        ("end", np.zeros((2, 3)), np.zeros((2, 22, 4)), "constraint.end"),
    ],
    ids=["rotations of another frame count", "translation not (N, 3)", "end of two frames"],
)
def test_malformed_constraints_are_refused_by_the_protocol_naming_the_field(client, which, translation, rotations,
                                                                             field):
    constraint = GenerateConstraint(**{which: frames_of(translation, rotations)})
    with pytest.raises(HyMotionError) as refused:
        client.submit_generate(["a person jumps"], constraint=constraint)
    assert refused.value.code == "bad_request" and refused.value.field == field
    # The server decodes with the same rule a line that never went through the client.
    payload = json.loads(encode(GenerateRequest(id="raw", prompts=["a person jumps"])))
    payload["constraint"] = {which: {"translation": FloatArray.from_numpy(translation).to_json(),
                                     "rotations": FloatArray.from_numpy(rotations).to_json()}}
    with pytest.raises(ProtocolError) as decoded:
        decode_request(json.dumps(payload))
    assert decoded.value.field == field and decoded.value.request_id == "raw"


def test_a_generate_that_fails_unexpectedly_before_queueing_still_ends_its_job(monkeypatch):
    """Whatever breaks while a generate is taken (here: checking its constraint), the error carries the job id, so a
    client waiting on that job (the add-on's run) ends instead of waiting forever."""
    import io

    from hymotion.service import Connection, ServeOptions, Service, core, serve_lines
    from hymotion.shared.protocol import decode_event

    def broken(request, settings):
        raise RuntimeError("the constraint check broke")

    monkeypatch.setattr(core, "constraint_from_request", broken)
    written = io.BytesIO()
    written.close = lambda: None  # the connection closes its stream when done; keep the bytes readable
    connection = Connection("test", written)
    serve_lines(Service(ServeOptions(model="tiny-random", device="cpu")), connection,
                io.BytesIO(encode(GenerateRequest(id="job-x", prompts=["a person waves"]))))
    connection.close(timeout=10)
    (event,) = [decode_event(line) for line in written.getvalue().splitlines()]
    assert (event.TYPE, event.code, event.id, event.job) == ("error", "internal", "job-x", "job-x")
    assert "the constraint check broke" in event.message
