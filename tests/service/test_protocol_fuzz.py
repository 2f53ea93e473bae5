"""Fuzzing the protocol decoder and the service's line loop with Hypothesis: whatever bytes a line holds (arbitrary
bytes, arbitrary JSON, message-shaped JSON, deep nesting, invalid UTF-8 or lone surrogates), it gets exactly one answer,
every error is a ``bad_request`` with a hint, and the service still answers a ping afterwards.

Two levels: the decoder and ``serve_lines`` in this process (many examples, milliseconds each), and the real
``serve --stdio`` process fed batches of the same lines through its stdin. Example counts are fixed so CI stays fast;
docs/protocol.md's reliability section quotes the totals (IN_PROCESS_LINES + PROCESS_LINES).
"""

from __future__ import annotations

import json
import sys
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import TINY_ARGS, AnyEvent, RawBackend, service_argv

from hymotion.service import Connection, ServeOptions, Service, serve_lines
from hymotion.shared.errors import DEFAULT_HINTS
from hymotion.shared.jobs import DEFAULT_DURATION, MAX_TIMELINE_FRAMES, frames_for_duration
from hymotion.shared.protocol import REQUEST_TYPES, ProtocolError, decode_event, decode_request

IN_PROCESS_EXAMPLES = 250
PROCESS_EXAMPLES = 25
LINES_PER_BATCH = 20
STRATEGIES = 6
KNOWN_FRAMES_STRATEGIES = 2  # generate's constraint, and its timeline
IN_PROCESS_LINES = IN_PROCESS_EXAMPLES * (STRATEGIES + KNOWN_FRAMES_STRATEGIES)
PROCESS_LINES = PROCESS_EXAMPLES * LINES_PER_BATCH
DIRECT_ANSWERS = {"error", "pong", "status", "queued", "ack"}

# Any Unicode code point, lone surrogates made common: json.dumps writes them as \udxxx escapes, as a careless client
# would, and they decode to strings that cannot be written back out as UTF-8.
any_text = st.text(st.characters(exclude_categories=()) | st.characters(categories=["Cs"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def _message_shaped(types: list[str]) -> st.SearchStrategy[dict]:
    """Objects with a real message type and a mix of real and made-up fields, so decoding gets past the type check."""
    fields = st.sampled_from(["id", "job", "token", "prompts", "durations", "seeds", "cfg_scale", "steps", "plan"])
    return st.builds(
        lambda kind, extra: {"type": kind, **extra},
        st.sampled_from(types),
        st.dictionaries(fields | any_text, json_values, max_size=5),
    )


def _deeply_nested() -> st.SearchStrategy[bytes]:
    shapes = st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"type":"ping","id":', b"}")])
    return st.builds(lambda depth, shape: shape[0] * depth + b"1" + shape[1] * depth, st.integers(1, 20_000), shapes)


def _lone_surrogates(types: list[str]) -> st.SearchStrategy[bytes]:
    """A real message whose id, or one field name, is a lone surrogate escape (the issue-17 wedge)."""
    escape = st.integers(0xD800, 0xDFFF).map(lambda code: f"\\u{code:04x}")
    return st.builds(
        lambda kind, text, as_key: (
            f'{{"type": "{kind}", "{text}": "x"}}' if as_key else f'{{"type": "{kind}", "id": "{text}"}}'
        ).encode(),
        st.sampled_from(types), escape, st.booleans(),
    )


# --- generate's known frames and timelines (issue 30) ----------------------------------------------------------------

FUZZ_JOB = "fuzz-job"
# float32 values as a careless or hostile client sends them: NaN, infinities, the largest finite, far from the origin.
wire_floats = st.floats(width=32) | st.sampled_from([1e25, -1e30, 3.4e38, 1e4, -0.0])
POSE_SHAPES = [(1, 3), (2, 3), (1, 22, 4), (2, 22, 4), (1, 24, 4), (0, 3), (0, 22, 4), (3,), (1, 3, 1), ()]


def _wire_array(shape: tuple[int, ...], values: list[float] | int, short: bool) -> dict:
    """An array as the protocol carries it; ``values`` a list of floats, or a seed for normal ones (unit quaternions
    for (…, 4) shapes, so some poses are valid); ``short`` drops the last value's bytes."""
    import base64
    import math

    import numpy as np

    if isinstance(values, int):
        array = np.random.default_rng(values).normal(size=shape)
        if shape and shape[-1] == 4:
            array /= np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), 1e-6)
    else:
        array = np.resize(np.asarray(values, dtype=np.float64), math.prod(shape))
    data = np.asarray(array, dtype="<f4").tobytes()
    data = data[:-4] if short and data else data
    return {"dtype": "<f4", "shape": list(shape), "base64": base64.b64encode(data).decode()}


def _arrays() -> st.SearchStrategy[dict]:
    shapes = st.sampled_from(POSE_SHAPES) | st.lists(st.integers(0, 4), max_size=4).map(tuple)
    values = st.lists(wire_floats, min_size=1, max_size=8) | st.integers(0, 1000)
    return st.builds(_wire_array, shapes, values, st.booleans())


def _poses() -> st.SearchStrategy:
    pose = st.fixed_dictionaries({}, optional={
        "translation": _arrays() | json_values, "rotations": _arrays() | json_values, "frame": json_values,
    })
    return pose | json_values


def _known_frames_generates(timeline: bool) -> st.SearchStrategy[dict]:
    """Generate requests with fuzzed ``constraint`` poses and flags; with ``timeline``, long and odd segment lists
    too (past the timeline's length limit, durations past a segment's)."""
    flags = st.booleans() | json_values
    constraint = st.fixed_dictionaries({}, optional={"start": _poses(), "end": _poses(), "loop": flags})
    durations = st.lists(st.floats(0.3, 13.0) | json_values, max_size=4)
    prompts = st.lists(st.sampled_from(["a person walks", "a person waves", "走路"]), min_size=1, max_size=3)
    if timeline:
        many = st.integers(1, 2_000).map(lambda count: ["a person walks"] * count)
        prompts = prompts | many
        durations = durations | st.sampled_from([[12.0], [0.67], [11.9], [4.0]])
    required: dict[str, st.SearchStrategy[object]] = {
        "type": st.just("generate"), "id": st.just(FUZZ_JOB), "prompts": prompts,
    }
    optional = {"durations": durations, "constraint": constraint | json_values,
                "seeds": st.lists(st.integers(0, 3), max_size=2, unique=True)}
    if timeline:
        required["timeline"] = st.just(True)
    else:
        optional["timeline"] = st.booleans() | json_values
    return st.fixed_dictionaries(required, optional=optional)


def _known_frames_lines() -> dict[str, st.SearchStrategy[bytes]]:
    return {name: _known_frames_generates(name == "timeline").map(lambda value: _one_line(json.dumps(value).encode()))
            for name in ("constraint", "timeline")}


def _one_line(data: bytes) -> bytes:
    return data.replace(b"\n", b" ") + b"\n"


def _lines(types: list[str]) -> dict[str, st.SearchStrategy[bytes]]:
    return {
        "bytes": st.binary(max_size=300).map(_one_line),
        "json": json_values.map(lambda value: _one_line(json.dumps(value).encode())),
        "messages": _message_shaped(types).map(lambda value: _one_line(json.dumps(value).encode())),
        "nested": _deeply_nested().map(_one_line),
        "lone surrogates": _lone_surrogates(types).map(_one_line),
        "invalid utf-8": st.builds(
            lambda raw: b'{"type": "ping", "id": "' + raw + b'"}\n',
            st.binary(min_size=1, max_size=8).filter(_not_utf8).map(lambda raw: raw.replace(b"\n", b" ")),
        ),
    }


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class _Sink:
    """A client's end of the connection: keeps what the server writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _answers(lines: list[bytes]) -> list[AnyEvent]:
    """What one fresh service (worker not started: a valid generate only queues) writes back for these lines."""
    import io

    service = Service(ServeOptions(model="tiny-random", device="cpu"))
    sink = _Sink()
    connection = Connection("fuzz", sink)
    serve_lines(service, connection, io.BytesIO(b"".join(lines)))
    connection.close(timeout=10)
    return [decode_event(line) for line in bytes(sink.data).splitlines()]


def _check_answer(event: AnyEvent) -> None:
    assert event.TYPE in DIRECT_ANSWERS, event
    if event.TYPE == "error":
        assert event.code == "bad_request", event
        assert event.hint.strip(), f"an error without a hint: {event}"
        assert event.hint != DEFAULT_HINTS["internal"]


def _check_decoder(line: bytes) -> None:
    """The decoder alone: a message or a ProtocolError, never another exception."""
    try:
        decode_request(line)
    except ProtocolError as error:
        assert error.hint


@pytest.mark.parametrize("kind", sorted(_lines(list(REQUEST_TYPES))))
def test_every_fuzzed_line_gets_one_answer_and_the_service_still_answers_a_ping(kind: str) -> None:
    @settings(max_examples=IN_PROCESS_EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(_lines(list(REQUEST_TYPES))[kind])
    def property_holds(line: bytes) -> None:
        _check_decoder(line)
        answers = _answers([line, b'{"type": "ping", "id": "after"}\n'])
        expected = 1 if line.strip() else 0
        assert len(answers) == expected + 1, answers
        for answer in answers[:expected]:
            _check_answer(answer)
        assert (answers[-1].TYPE, answers[-1].id) == ("pong", "after")

    property_holds()


@pytest.mark.parametrize("kind", sorted(_known_frames_lines()))
def test_every_fuzzed_known_frames_generate_is_queued_or_refused_with_its_job(kind: str) -> None:
    """A generate with fuzzed constraint poses (any shape, NaN, infinity, 1e25, bytes one value short) or timeline
    segments (up to 2,000, past every limit) gets one answer: ``queued``, or one ``bad_request`` that carries the
    job's id, so the client waiting for that job hears back; the service still answers a ping."""
    @settings(max_examples=IN_PROCESS_EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(_known_frames_lines()[kind])
    def property_holds(line: bytes) -> None:
        answers = _answers([line, b'{"type": "ping", "id": "after"}\n'])
        assert len(answers) == 2, answers
        answer = answers[0]
        _check_answer(answer)
        assert answer.TYPE in ("queued", "error"), answer
        assert (answer.id, answer.job) == (FUZZ_JOB, FUZZ_JOB), answer
        assert (answers[-1].TYPE, answers[-1].id) == ("pong", "after")
        if answer.TYPE == "queued" and kind == "timeline":
            request = json.loads(line)
            durations = request.get("durations") or [DEFAULT_DURATION]
            durations = durations * len(request["prompts"]) if len(durations) == 1 else durations
            assert sum(map(frames_for_duration, durations)) <= MAX_TIMELINE_FRAMES, "a timeline past its limit ran"

    property_holds()


# --- the real process -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(backend_env) -> Iterator[RawBackend]:
    server = RawBackend(service_argv("--stdio", *TINY_ARGS), backend_env)
    assert server.next_event().TYPE == "hello"
    yield server
    assert server.close() == 0
    assert server.unreadable == [], "only protocol lines may reach stdout"


# generate would start real jobs (more events than one answer), shutdown would end the process under test.
PROCESS_TYPES = [kind for kind in REQUEST_TYPES if kind not in ("generate", "shutdown")]
any_line = st.one_of(*_lines(PROCESS_TYPES).values())


@settings(max_examples=PROCESS_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(st.lists(any_line, min_size=LINES_PER_BATCH, max_size=LINES_PER_BATCH))
def test_the_stdio_process_answers_each_fuzzed_line_once_and_then_a_ping(
    backend: RawBackend, lines: list[bytes]
) -> None:
    for line in lines:
        backend.send(line)
    marker = f"ping-after-{id(lines)}"
    backend.send(json.dumps({"type": "ping", "id": marker}).encode() + b"\n")
    answers = backend.events_until(lambda event: event.TYPE == "pong" and event.id == marker)
    assert len(answers) - 1 == sum(1 for line in lines if line.strip()), answers
    for answer in answers[:-1]:
        _check_answer(answer)
    assert backend.process.poll() is None, "the backend must survive every line"


def test_the_fuzz_totals_quoted_in_the_docs_match_the_settings() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"{IN_PROCESS_LINES + PROCESS_LINES:,} fuzzed lines" in text, sys.modules[__name__].__doc__
