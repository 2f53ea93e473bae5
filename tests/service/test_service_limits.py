"""Every bad generate is answered by one ``error`` carrying its job id before anything runs (issue 30, points 2, 4
and 7): known frames far from the origin, a timeline past its length, an unknown plan, a prompt past its length, a
lone surrogate or nesting too deep elsewhere in the line; no result with NaN is ever sent; the largest result the
limits allow fits under the line limit the add-on's client reads with.

The service runs in this process: lines go through ``serve_lines`` and the answers are read back from its stream.
"""

from __future__ import annotations

import io
import json
import sys
import types

import numpy as np
import pytest
from service_helpers import InstantPipeline

from hymotion.pipeline.motion import MotionClip
from hymotion.service import Connection, ServeOptions, Service, serve_lines
from hymotion.service.requests import result_event
from hymotion.shared import skeleton
from hymotion.shared.errors import HyMotionError
from hymotion.shared.jobs import MAX_POSE_TRANSLATION, MAX_PROMPT_CHARS, MAX_TIMELINE_FRAMES, MAX_TIMELINE_SEGMENTS
from hymotion.shared.protocol import MAX_EVENT_BYTES, MAX_REQUEST_BYTES, ErrorEvent, FloatArray, decode_event, encode

IDENTITY = np.tile([1.0, 0.0, 0.0, 0.0], (1, 22, 1))
JOB_WAIT_S = 30.0


class _Stream(io.BytesIO):
    """The client's end: keeps what the server writes (the connection closes its stream when done)."""

    def close(self) -> None:
        pass


def answers(*lines: bytes, service: Service | None = None) -> list:
    service = service or Service(ServeOptions(model="tiny-random", device="cpu"))
    stream = _Stream()
    connection = Connection("test", stream)
    serve_lines(service, connection, io.BytesIO(b"".join(lines)))
    connection.close(timeout=10)
    return [decode_event(line) for line in stream.getvalue().splitlines()]


def generate_line(**fields) -> bytes:
    return json.dumps({"type": "generate", "id": "job-1", "prompts": ["a person walks"], **fields}).encode() + b"\n"


def pose(translation) -> dict:
    return {"translation": FloatArray.from_numpy(np.asarray(translation, dtype=np.float32)).to_json(),
            "rotations": FloatArray.from_numpy(IDENTITY).to_json()}


def refused(line: bytes):
    (event,) = answers(line)
    assert (event.TYPE, event.code, event.id, event.job) == ("error", "bad_request", "job-1", "job-1"), event
    assert event.hint
    return event


def test_known_frames_far_from_the_origin_are_refused_before_they_can_give_nan():
    event = refused(generate_line(durations=[1.0], constraint={"start": pose([[1e25, 0.0, 0.0]])}))
    assert event.field == "constraint.start" and f"{MAX_POSE_TRANSLATION:g} m" in event.message
    (queued,) = answers(generate_line(durations=[1.0], constraint={"start": pose([[MAX_POSE_TRANSLATION, 0, 0]])}))
    assert queued.TYPE == "queued"


def test_a_timeline_past_its_total_length_is_refused_naming_the_limit():
    segments = MAX_TIMELINE_FRAMES // 300 + 1
    event = refused(generate_line(prompts=["a person walks"] * segments, durations=[10.0], timeline=True))
    assert event.field == "timeline" and str(MAX_TIMELINE_FRAMES) in event.message
    event = refused(generate_line(prompts=["a person walks"] * 10_000, durations=[0.67], timeline=True))
    assert event.field == "timeline" and str(MAX_TIMELINE_SEGMENTS) in event.message


@pytest.mark.parametrize("plan", ["", "turbo", "GPU"])
def test_an_unknown_plan_is_refused_when_queued(plan):
    event = refused(generate_line(plan=plan))
    assert event.field == "plan" and repr(plan) in event.message and "auto" in event.hint


def test_a_prompt_past_its_length_is_refused():
    event = refused(generate_line(prompts=["a person walks " + "x" * MAX_PROMPT_CHARS]))
    assert event.field == "prompts" and str(MAX_PROMPT_CHARS) in event.message


@pytest.mark.parametrize("line", [
    b'{"type": "generate", "id": "job-1", "prompts": ["a person \\ud800 walks"]}\n',
    b'{"type": "generate", "id": "job-1", "\\udc00": 1, "prompts": ["a"]}\n',
    b'{"type": "generate", "id": "job-1", "prompts": ' + b"[" * 40 + b"]" * 40 + b"}\n",
    b'{"type": "generate", "id": "job-1", "prompts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    b'{"prompts": {"id": "inner", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b'}, "type": "generate", "id": "job-1"}\n',
], ids=["lone surrogate in a prompt", "lone surrogate as a key", "nesting too deep", "nesting past the decoder",
        "nesting past the decoder, id last"])
def test_a_generate_refused_for_its_line_still_carries_its_job(line):
    assert len(line) < MAX_REQUEST_BYTES
    refused(line)


def test_a_line_whose_id_itself_is_broken_is_refused_without_one():
    (event,) = answers(b'{"type": "generate", "id": "\\ud800", "prompts": ["a"]}\n')
    assert (event.TYPE, event.code, event.id, event.job) == ("error", "bad_request", None, None)


class NanPipeline(InstantPipeline):
    """Makes one good clip, then one whose translation is NaN."""

    def generate(self, settings, on_progress=None, should_cancel=lambda: False, on_warning=None, constraint=None):
        for number, clip in enumerate(super().generate(settings, on_progress, should_cancel, on_warning, constraint)):
            if number == 1:
                clip.translation = np.full_like(clip.translation, np.nan)
            yield clip


def test_a_clip_with_nan_never_leaves_the_service_the_job_ends_with_its_cause(monkeypatch):
    monkeypatch.setitem(sys.modules, "hymotion.pipeline.loading",
                        types.SimpleNamespace(load_pipeline=lambda **_: NanPipeline()))
    service = Service(ServeOptions(model="tiny-random", device="cpu"))
    service.start()
    stream = _Stream()
    connection = Connection("test", stream)
    try:
        service.handle_line(connection, generate_line(seeds=[0, 1, 2], durations=[1.0]))
        for _ in range(int(JOB_WAIT_S / 0.05)):
            events = [decode_event(line) for line in stream.getvalue().splitlines()]
            if events and events[-1].TYPE in ("done", "error"):
                break
            service.stop_requested.wait(0.05)
    finally:
        assert service.stop()
        connection.close(timeout=5)
    kinds = [event.TYPE for event in events if event.TYPE != "progress"]
    assert kinds == ["queued", "result", "error"], kinds
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.job == "job-1" and error.code == "bad_checkpoint" and "seed 1" in error.message
    assert "NaN" in error.message and "translation" in error.message


def test_result_event_refuses_a_clip_with_infinite_numbers():
    clip = MotionClip(np.zeros((30, 3)), np.tile(IDENTITY, (30, 1, 1)), np.zeros((30, 22, 3)))
    clip.positions[3, 4, 1] = np.inf
    with pytest.raises(HyMotionError) as caught:
        result_event("j", 0, clip)
    assert "1 in positions" in caught.value.message


def test_the_largest_result_the_limits_allow_fits_under_the_clients_line_limit():
    """A timeline of MAX_TIMELINE_FRAMES frames whose prompt joins MAX_TIMELINE_SEGMENTS prompts of MAX_PROMPT_CHARS
    four-byte characters: the worst case of the argument beside MAX_EVENT_BYTES."""
    frames = MAX_TIMELINE_FRAMES
    rng = np.random.default_rng(0)
    rotations = rng.normal(size=(frames, 22, 4)).astype(np.float32)
    translation = rng.normal(size=(frames, 3)).astype(np.float32)
    prompt = " | ".join(["😀" * MAX_PROMPT_CHARS] * MAX_TIMELINE_SEGMENTS)
    clip = MotionClip(translation, rotations, skeleton.forward_kinematics(rotations, translation).astype(np.float32),
                      prompt=prompt, duration=frames / 30)
    line = encode(result_event("a-job-id", 0, clip))
    assert len(line) < MAX_EVENT_BYTES, len(line)
