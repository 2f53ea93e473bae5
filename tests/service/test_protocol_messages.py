"""The protocol module alone: every message round-trips, bad lines are refused naming the field, arrays keep bytes."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from service_helpers import REPO_ROOT

from hymotion.shared import errors, protocol
from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import (
    FloatArray,
    GenerateRequest,
    ProtocolError,
    ResultEvent,
    decode_event,
    decode_request,
    encode,
)


def _result(frames: int = 3, joints: int = 2) -> ResultEvent:
    rng = np.random.default_rng(0)
    return ResultEvent(
        job="j", index=0, prompt_index=0, prompt="p", seed=1, duration=0.1, fps=30, frames=frames, model="m",
        plan="cpu", joint_names=["a", "b"][:joints], parents=[-1, 0][:joints],
        rest_offsets=FloatArray.from_numpy(rng.normal(size=(joints, 3))),
        translation=FloatArray.from_numpy(rng.normal(size=(frames, 3))),
        rotations=FloatArray.from_numpy(rng.normal(size=(frames, joints, 4))),
        positions=FloatArray.from_numpy(rng.normal(size=(frames, joints, 3))),
    )


def test_generate_request_round_trips_with_defaults_left_out() -> None:
    request = GenerateRequest(id="j1", prompts=["a person jumps"], durations=[2.5], seeds=[0, 1])
    line = encode(request)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"type": "generate", "id": "j1", "prompts": ["a person jumps"], "durations": [2.5],
                                "seeds": [0, 1]}
    assert decode_request(line) == request


def test_result_event_round_trips_with_identical_array_bytes() -> None:
    result = _result()
    decoded = decode_event(encode(result))
    assert decoded == result
    np.testing.assert_array_equal(decoded.rotations.to_numpy(), result.rotations.to_numpy())


@pytest.mark.parametrize(
    ("line", "field", "request_id"),
    [
        ('{"type": "ping", "id": "1", "colour": "red"}', "colour", "1"),
        ('{"type": "ping"}', "id", None),
        ('{"type": "generate", "id": "1", "prompts": ["a", 3]}', "prompts[1]", "1"),
        ('{"type": "generate", "id": "1", "prompts": ["a"], "steps": 2.5}', "steps", "1"),
        ('{"type": "generate", "id": "1", "prompts": ["a"], "smoothing": 1}', "smoothing", "1"),
        # not JSON (NaN), but its top-level id is read, so a refused generate still ends its job
        ('{"type": "generate", "id": "1", "prompts": ["a"], "durations": [NaN]}', None, "1"),
        ('{"type": "launch", "id": "1"}', "type", "1"),
        ('{"type": "cancel", "id": "1"}', "job", "1"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(line: str, field: str | None, request_id: str | None) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_request(line)
    assert refused.value.code == "bad_request"
    assert refused.value.field == field
    assert refused.value.request_id == request_id
    if field:
        assert field in refused.value.message


@pytest.mark.parametrize("line", [b"garbage", b'{"type": "ping", "id": "1"', b"\xff\xfe", b"[1, 2]", b'"ping"'])
def test_lines_that_are_not_json_objects_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_request(line)
    assert refused.value.code == "bad_request" and refused.value.hint


def test_float_arrays_travel_as_little_endian_float32_base64() -> None:
    values = np.array([[1.5, -2.0], [0.25, 3.0e-8]])
    wire = FloatArray.from_numpy(values).to_json()
    assert wire["dtype"] == "<f4" and wire["shape"] == [2, 2]
    assert base64.b64decode(wire["base64"]) == struct.pack("<4f", 1.5, -2.0, 0.25, 3.0e-8)
    decoded = FloatArray.from_json(wire, "x")
    np.testing.assert_array_equal(decoded.to_numpy(), values.astype(np.float32))
    assert decoded.to_lists() == values.astype(np.float32).tolist()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"shape": [2, 3]}, "x"),
        ({"dtype": "<f8"}, "x.dtype"),
        ({"base64": "not base64!"}, "x.base64"),
        ({"shape": [2, -2]}, "x.shape"),
    ],
)
def test_malformed_arrays_are_refused(change: dict, field: str) -> None:
    wire = {**FloatArray.from_numpy(np.zeros((2, 2))).to_json(), **change}
    with pytest.raises(ProtocolError) as refused:
        FloatArray.from_json(wire, "x")
    assert refused.value.field == field


def test_result_with_inconsistent_shapes_is_refused() -> None:
    wire = json.loads(encode(_result(frames=3)))
    wire["frames"] = 4
    with pytest.raises(ProtocolError) as refused:
        decode_event(json.dumps(wire))
    assert refused.value.field == "translation"


def test_every_message_type_is_registered_once_with_its_wire_name() -> None:
    for registry in (protocol.REQUEST_TYPES, protocol.EVENT_TYPES):
        for name, cls in registry.items():
            assert cls.TYPE == name
    assert not set(protocol.REQUEST_TYPES) & set(protocol.EVENT_TYPES) - {"status"}


def test_protocol_and_client_import_without_numpy_torch_or_bpy() -> None:
    """What the add-on's core needs must load in a Python where numpy, torch and bpy do not exist."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numpy", "torch", "bpy", "scipy"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(REPO_ROOT)!r})
from hymotion_addon.core import client
from hymotion.shared.protocol import FloatArray, decode_event, encode
array = FloatArray((2, 1), bytes(8))
assert array.to_lists() == [[0.0], [0.0]]
print("ok")
"""
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "ok"


@pytest.mark.parametrize("code", sorted(errors.DEFAULT_HINTS))
def test_an_error_raised_without_a_hint_gets_its_codes_default(code: str) -> None:
    """53 error events once reached users with an empty hint; now none can."""
    assert HyMotionError(code, "Something went wrong.").hint == errors.DEFAULT_HINTS[code] != ""
    assert ProtocolError("Field 'x' is wrong.").hint


def test_every_error_code_has_a_default_hint() -> None:
    codes = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)}
    assert codes == set(errors.DEFAULT_HINTS)
