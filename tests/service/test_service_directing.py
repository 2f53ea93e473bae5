"""Directing through the service: generate's ``constraint.path``, ``facing`` and ``targets``, sent by the add-on's
client to a real backend process (tiny random model, CPU), and the ways such a request can be wrong.

Tolerances: between the correction (float64) and the test lie the float32 result arrays (translations of a few
metres to 5e-7 m); 1e-4 m keeps a margin above 100x, and is far below the issue's 0.5 cm (targets) and 1 cm (path).
"""

from __future__ import annotations

import numpy as np
import pytest
from service_helpers import EVENT_TIMEOUT_S, check_result_arrays

from hymotion.shared import skeleton
from hymotion.shared.protocol import (
    GenerateConstraint,
    GenerateRequest,
    GenerateTarget,
    ProtocolError,
)

EXACT = 1e-4  # metres
STEPS = 2


def events_of(client, **fields) -> list:
    fields.setdefault("steps", STEPS)
    job = client.submit_generate(["a person walks"], durations=[2.0], **fields)
    return list(client.iter_events(job, timeout=EVENT_TIMEOUT_S))


def test_a_path_and_a_target_are_met_by_the_result(client):
    path = [[0, 0.0, 0.0], [30, 0.3, 0.8], [59, 0.5, 1.6, 15.0]]
    target = GenerateTarget("left_wrist", 20, [0.4, 1.0, 0.6], last=24)
    events = events_of(client, constraint=GenerateConstraint(path=path, targets=[target]))
    assert events[-1].TYPE == "done", events[-1]
    (result,) = [event for event in events if event.TYPE == "result"]
    check_result_arrays(result)
    translation = result.translation.to_numpy().astype(np.float64)
    pelvis = translation[:, [0, 2]] + skeleton.BODY_REST_POSITIONS[0, [0, 2]]
    np.testing.assert_allclose(pelvis[[0, 30, 59]], [row[1:3] for row in path], atol=EXACT)
    positions = skeleton.forward_kinematics(result.rotations.to_numpy().astype(np.float64), translation)
    wrist = skeleton.BODY_JOINT_NAMES.index("left_wrist")
    np.testing.assert_allclose(positions[20:25, wrist], np.tile([0.4, 1.0, 0.6], (5, 1)), atol=EXACT)


@pytest.mark.parametrize(
    ("constraint", "words"),
    [
        (GenerateConstraint(targets=[GenerateTarget("left_hand", 10, [0, 1, 0])]), "there is no joint 'left_hand'"),
        (GenerateConstraint(path=[[0, 0, 0], [90, 1, 1]]), "frames 0-59"),
        (GenerateConstraint(targets=[GenerateTarget("right_wrist", 10, [6.0, 1.0, 0.0])]), "reaches"),
        (GenerateConstraint(path=[[0, 0, 0], [10, 1]]), "Row 2"),
        (GenerateConstraint(path=[[0, 0, 0]], facing="sideways"), "Unknown facing"),
    ],
    ids=["unknown joint", "frame outside the clip", "unreachable", "short row", "facing"],
)
def test_directions_that_cannot_be_met_are_refused_before_the_job_runs(client, constraint, words):
    events = events_of(client, constraint=constraint)
    assert [event.TYPE for event in events] == ["error"], events
    (error,) = events
    assert error.code == "bad_request" and words in error.message and error.hint and error.field == "constraint"


def test_a_path_with_nan_is_refused_by_the_protocol_itself():
    request = GenerateRequest(id="j", prompts=["a"], constraint=GenerateConstraint(path=[[0, 0.0, float("nan")]]))
    with pytest.raises((ProtocolError, ValueError)):
        from hymotion.shared.protocol import decode_request, encode

        decode_request(encode(request))


def test_a_target_with_two_numbers_is_refused_naming_its_field():
    constraint = GenerateConstraint(targets=[GenerateTarget("head", 3, [0.0, 1.5])])
    with pytest.raises(ProtocolError) as error:
        constraint.check()
    assert error.value.field == "constraint.targets[0].position"


def test_a_path_too_fast_is_a_warning_event_and_the_clip_is_still_made(client):
    events = events_of(client, constraint=GenerateConstraint(path=[[0, 0, 0], [15, 0, 5.0]]))
    assert events[-1].TYPE == "done"
    assert any(event.TYPE == "warning" and "faster than a body runs" in event.message for event in events)
    assert [event.TYPE for event in events].count("result") == 1
