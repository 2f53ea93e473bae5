# Longer than 700 lines: the protocol is defined in this one file (every message, its fields and their checks, and
# the one encoder and decoder), and tests/test_house_rules.py keeps messages from being made anywhere else.
"""The wire protocol between the Blender add-on and the backend service: every message and field, defined once.

One JSON object per line, UTF-8. Requests (client -> server) and events (server -> client) are dataclasses below;
:func:`encode` turns one into a line, :func:`decode_request` / :func:`decode_event` turn a line back into one and
reject anything malformed with a ``bad_request`` :class:`ProtocolError` that names the field. docs/protocol.md is
the prose version of this module.

Stdlib only (numpy is imported lazily by the two array helpers that need it), so the add-on imports this module
inside Blender and the server imports it before torch.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import re
import sys
import types
import typing
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import BAD_REQUEST, HyMotionError

if TYPE_CHECKING:
    from .jobs import GenerationSettings

PROTOCOL_VERSION = 3  # 2: generate's constraint and timeline fields; 3: the constraint's path, facing and targets
MAX_REQUEST_BYTES = 1 << 20
# The longest event line a client reads. The largest event is a timeline's result: jobs.MAX_TIMELINE_FRAMES (18,000)
# frames at about 840 bytes of base64 each (translation, rotations, positions) is about 15 MB, plus its prompt (at most
# MAX_TIMELINE_SEGMENTS (900) prompts of MAX_PROMPT_CHARS (2,000) characters of up to 4 UTF-8 bytes: 7.2 MB), 22 MB in
# all. 32 MiB keeps a margin above that, and bounds what a broken or hostile server can make the add-on hold
# (tests/service/test_service_limits.py builds that largest result and checks that it fits).
MAX_EVENT_BYTES = 32 << 20
# The deepest real message (hello -> models -> one model -> missing) nests 4 levels; anything far deeper is refused
# before it can exhaust the decoder's recursion.
MAX_NESTING = 16
DEFAULT_HINT = "Each message and its fields are described in docs/protocol.md."
STAGES = ("loading", "encoding", "sampling", "decoding")
ARRAY_DTYPE = "<f4"


class ProtocolError(HyMotionError):
    """A line that is not a valid message; ``field`` names the culprit; ``request_id``/``request_type`` are set when
    they could be read, so the refusal can be addressed to the request (and, for ``generate``, to its job)."""

    def __init__(self, message: str, hint: str = "", field: str | None = None, request_id: str | None = None) -> None:
        super().__init__(BAD_REQUEST, message, hint or DEFAULT_HINT, field)
        self.request_id = request_id
        self.request_type: str | None = None


@dataclass(frozen=True)
class FloatArray:
    """An array of float32 on the wire: C order, little-endian, base64 in JSON as {"dtype", "shape", "base64"}."""

    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        expected = 4 * math.prod(self.shape)
        if len(self.data) != expected:
            raise ProtocolError(
                f"Array data holds {len(self.data)} bytes but shape {list(self.shape)} needs {expected}.",
                "Encode arrays with FloatArray.from_numpy.",
            )

    @classmethod
    def from_numpy(cls, values: Any) -> FloatArray:
        import numpy as np

        contiguous = np.ascontiguousarray(values, dtype=ARRAY_DTYPE)
        return cls(tuple(int(n) for n in contiguous.shape), contiguous.tobytes())

    def to_numpy(self) -> Any:
        import numpy as np

        return np.frombuffer(self.data, dtype=ARRAY_DTYPE).reshape(self.shape).astype(np.float32)

    def to_lists(self) -> list:
        """Nested Python lists, for callers without numpy."""
        flat = array("f")
        flat.frombytes(self.data)
        if sys.byteorder == "big":
            flat.byteswap()
        values: list = flat.tolist()
        for size in reversed(self.shape[1:]):
            values = [values[i : i + size] for i in range(0, len(values), size)]
        return values

    def to_json(self) -> dict[str, Any]:
        return {"dtype": ARRAY_DTYPE, "shape": list(self.shape), "base64": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_json(cls, value: Any, field_name: str) -> FloatArray:
        if not isinstance(value, dict) or set(value) != {"dtype", "shape", "base64"}:
            raise ProtocolError(
                f"Field '{field_name}' must be an object with exactly dtype, shape and base64.", field=field_name
            )
        if value["dtype"] != ARRAY_DTYPE:
            raise ProtocolError(f"Field '{field_name}.dtype' must be {ARRAY_DTYPE!r}.", field=f"{field_name}.dtype")
        shape = value["shape"]
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
            raise ProtocolError(
                f"Field '{field_name}.shape' must be a list of non-negative integers.", field=f"{field_name}.shape"
            )
        try:
            data = base64.b64decode(value["base64"], validate=True)
        except (TypeError, ValueError):
            message = f"Field '{field_name}.base64' is not valid base64."
            raise ProtocolError(message, field=f"{field_name}.base64") from None
        try:
            return cls(tuple(shape), data)
        except ProtocolError as error:
            raise ProtocolError(f"Field '{field_name}': {error.message}", field=field_name) from None


@dataclass
class ModelAvailability:
    """Whether a model variant's files are on this machine, and how to get them if not."""

    name: str
    available: bool
    missing: list[str] = field(default_factory=list)
    download_command: str | None = None


class Message:
    """Base of every message; ``TYPE`` is the value of the ``type`` key on the wire."""

    TYPE: ClassVar[str] = ""

    def check(self) -> None:
        """Cross-field rules a single field's type cannot express; raise ProtocolError."""


class Request(Message):
    pass


class Event(Message):
    pass


# --- requests (client -> server) ------------------------------------------------------------------------------------


@dataclass
class AuthRequest(Request):
    """First line on a TCP connection; the server answers with ``hello`` or an error and a closed socket."""

    TYPE: ClassVar[str] = "auth"
    token: str
    id: str | None = None


@dataclass
class PoseFrames:
    """Consecutive frames of a pose in the model's space (as in ``result``): root ``translation`` (N, 3) and local
    ``rotations`` (N, joints, 4), w, x, y, z. The backend checks the joint count against its skeleton."""

    translation: FloatArray
    rotations: FloatArray

    def check(self, path: str) -> None:
        frames = self.translation.shape[0] if self.translation.shape else 0
        if len(self.translation.shape) != 2 or self.translation.shape[1] != 3 or frames < 1:
            raise ProtocolError(
                f"Field '{path}.translation' has shape {list(self.translation.shape)}, expected [frames, 3] with "
                "frames >= 1.", "Send the root translation of each frame, as in a result event.",
                field=f"{path}.translation",
            )
        if len(self.rotations.shape) != 3 or self.rotations.shape[0] != frames or self.rotations.shape[2] != 4:
            raise ProtocolError(
                f"Field '{path}.rotations' has shape {list(self.rotations.shape)}, expected [{frames}, joints, 4] "
                "(one quaternion w, x, y, z per joint for each frame of translation).",
                "Send as many rotation sets as translations, as in a result event.", field=f"{path}.rotations",
            )


@dataclass
class GenerateTarget:
    """A joint put on a world position (metres, Y up) over model frames ``first``…``last`` (``last`` left out: one
    frame), optionally with a world ``rotation`` (X, Y, Z Euler degrees). The backend checks the joint name, the
    frames and the reach (docs/directing.md)."""

    joint: str
    first: int
    position: list[float]
    last: int | None = None
    rotation: list[float] | None = None

    def check(self, path: str) -> None:
        for name, values in (("position", self.position), ("rotation", self.rotation)):
            if values is not None and len(values) != 3:
                raise ProtocolError(f"Field '{path}.{name}' holds {len(values)} numbers, expected 3 (x, y, z).",
                                    "Send three numbers.", field=f"{path}.{name}")


@dataclass
class GenerateConstraint:
    """Known frames of every clip of a job (docs/blender.md, "Beyond one clip"). ``start``: the clip begins in the
    last of these frames (earlier ones are context the model sees); ``end``: one frame the clip ends in; ``loop``:
    the last frame equals the first. With ``timeline``, ``start`` and ``end`` apply to the first and last segment.
    Directing (docs/directing.md): ``path`` rows [frame, x, z] or [frame, x, z, yaw degrees] for the pelvis on the
    ground, ``facing`` "path" (default) or "free", ``targets`` joints on positions."""

    start: PoseFrames | None = None
    end: PoseFrames | None = None
    loop: bool = False
    path: list[list[float]] | None = None
    facing: str | None = None
    targets: list[GenerateTarget] | None = None

    def check(self) -> None:
        for number, target in enumerate(self.targets or []):
            target.check(f"constraint.targets[{number}]")
        if self.start is not None:
            self.start.check("constraint.start")
        if self.end is not None:
            self.end.check("constraint.end")
            if self.end.translation.shape[0] != 1:
                raise ProtocolError(
                    f"Field 'constraint.end' holds {self.end.translation.shape[0]} frames; an end pose is one frame.",
                    "Send the single pose the clip should end in.", field="constraint.end",
                )


@dataclass
class GenerateRequest(Request):
    """Queue a job; its id is also the job id. Fields left out take the backend's defaults (hymotion.shared.jobs).
    ``timeline`` true makes each seed's clips one continuous motion: the prompts in order, each continuing the one
    before, sent as one result per seed."""

    TYPE: ClassVar[str] = "generate"
    id: str
    prompts: list[str]
    durations: list[float] | None = None
    seeds: list[int] | None = None
    cfg_scale: float | None = None
    steps: int | None = None
    smoothing: bool | None = None
    plan: str | None = None
    constraint: GenerateConstraint | None = None
    timeline: bool | None = None

    @classmethod
    def for_settings(cls, id: str, settings: GenerationSettings, *, plan: str | None = None,
                     constraint: GenerateConstraint | None = None, timeline: bool = False) -> GenerateRequest:
        """The request for settings that :mod:`hymotion.shared.jobs` checked: the one way a client turns settings into
        a request (the service turns it back with ``service.requests.settings_from_request``)."""
        return cls(id=id, prompts=list(settings.prompts), durations=list(settings.durations),
                   seeds=list(settings.seeds), cfg_scale=settings.cfg_scale, steps=settings.steps,
                   smoothing=settings.smoothing, plan=plan, constraint=constraint, timeline=timeline or None)

    def check(self) -> None:
        if not self.id:
            raise ProtocolError("Field 'id' must not be empty.", field="id")
        if self.constraint is not None:
            self.constraint.check()


@dataclass
class CancelRequest(Request):
    TYPE: ClassVar[str] = "cancel"
    id: str
    job: str


@dataclass
class StatusRequest(Request):
    TYPE: ClassVar[str] = "status"
    id: str


@dataclass
class PingRequest(Request):
    TYPE: ClassVar[str] = "ping"
    id: str


@dataclass
class ShutdownRequest(Request):
    TYPE: ClassVar[str] = "shutdown"
    id: str


# --- events (server -> client) --------------------------------------------------------------------------------------


@dataclass
class HelloEvent(Event):
    """First event of a session. ``plan`` is the chosen plan once a model is loaded, else the requested one."""

    TYPE: ClassVar[str] = "hello"
    protocol: int
    backend_version: str
    pid: int
    model: str
    plan: str
    device: str | None = None
    vram_free: int | None = None
    vram_total: int | None = None
    models: list[ModelAvailability] = field(default_factory=list)
    log_file: str | None = None


@dataclass
class QueuedEvent(Event):
    """Reply to ``generate``: the job is accepted; ``position`` 0 means it runs next."""

    TYPE: ClassVar[str] = "queued"
    id: str
    job: str
    position: int


@dataclass
class ProgressEvent(Event):
    TYPE: ClassVar[str] = "progress"
    job: str
    stage: str
    step: int
    total: int

    def check(self) -> None:
        if self.stage not in STAGES:
            raise ProtocolError(f"Field 'stage' must be one of {', '.join(STAGES)}, got {self.stage!r}.", field="stage")


@dataclass
class ResultEvent(Event):
    """One clip (prompt x seed), sent as soon as it is decoded. Y-up metres, quaternions w, x, y, z, local to parent."""

    TYPE: ClassVar[str] = "result"
    job: str
    index: int
    prompt_index: int
    prompt: str
    seed: int
    duration: float
    fps: int
    frames: int
    model: str
    plan: str
    joint_names: list[str]
    parents: list[int]
    rest_offsets: FloatArray
    translation: FloatArray
    rotations: FloatArray
    positions: FloatArray

    def check(self) -> None:
        joints = len(self.joint_names)
        expected = {
            "parents": ((len(self.parents),), (joints,)),
            "rest_offsets": (self.rest_offsets.shape, (joints, 3)),
            "translation": (self.translation.shape, (self.frames, 3)),
            "rotations": (self.rotations.shape, (self.frames, joints, 4)),
            "positions": (self.positions.shape, (self.frames, joints, 3)),
        }
        for name, (shape, wanted) in expected.items():
            if tuple(shape) != wanted:
                raise ProtocolError(f"Field '{name}' has shape {list(shape)}, expected {list(wanted)}.", field=name)


@dataclass
class WarningEvent(Event):
    """Something the user should know about a job that does not stop it (e.g. a prompt too long to follow)."""

    TYPE: ClassVar[str] = "warning"
    job: str
    message: str


@dataclass
class DoneEvent(Event):
    """A job finished; ``results`` clips were sent."""

    TYPE: ClassVar[str] = "done"
    job: str
    results: int
    seconds: float


@dataclass
class ErrorEvent(Event):
    """``id`` is set when a request was refused, ``job`` when a job ended with it (a cancel ends with ``cancelled``)."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    hint: str = ""
    id: str | None = None
    job: str | None = None
    field: str | None = None
    exit_code: int | None = None
    stderr_tail: list[str] | None = None


@dataclass
class StatusEvent(Event):
    """Reply to ``status``. ``state`` is idle, loading or running."""

    TYPE: ClassVar[str] = "status"
    id: str
    state: str
    queue: list[str]
    model: str
    plan: str
    loaded: bool
    job: str | None = None
    stage: str | None = None
    step: int | None = None
    total: int | None = None
    device: str | None = None
    vram_free: int | None = None
    vram_total: int | None = None


@dataclass
class PongEvent(Event):
    TYPE: ClassVar[str] = "pong"
    id: str


@dataclass
class AckEvent(Event):
    """Reply to ``cancel`` and ``shutdown``: the request was taken."""

    TYPE: ClassVar[str] = "ack"
    id: str
    request: str


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.TYPE: cls for cls in (AuthRequest, GenerateRequest, CancelRequest, StatusRequest, PingRequest, ShutdownRequest)
}
EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        HelloEvent,
        QueuedEvent,
        ProgressEvent,
        ResultEvent,
        WarningEvent,
        DoneEvent,
        ErrorEvent,
        StatusEvent,
        PongEvent,
        AckEvent,
    )
}
TERMINAL_JOB_EVENTS = ("done", "error")
DecodedMessage = typing.TypeVar("DecodedMessage", bound=Message)


# --- encoding and decoding ------------------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """One message as one protocol line (UTF-8 JSON, newline-terminated); optional fields that are null are left out."""
    message.check()
    payload = {"type": message.TYPE, **_to_json(message)}
    return (json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def decode_request(line: bytes | str) -> Request:
    return _decode(line, REQUEST_TYPES, "request")


def decode_event(line: bytes | str) -> Event:
    return _decode(line, EVENT_TYPES, "event")


def is_terminal(event: Event, job: str) -> bool:
    """True when ``event`` is the last one of ``job`` (its ``done`` or ``error``)."""
    return event.TYPE in TERMINAL_JOB_EVENTS and getattr(event, "job", None) == job


def _decode(line: bytes | str, registry: Mapping[str, type[DecodedMessage]], kind: str) -> DecodedMessage:
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("The line is not valid UTF-8.", "Send UTF-8 JSON, one object per line.") from None
    try:
        payload = json.loads(line, parse_constant=_reject_constant)
    except RecursionError:
        raise _addressed(_too_deep(), _top_level_strings(line)) from None
    except ValueError as error:
        refusal = ProtocolError(
            f"The line is not valid JSON ({error}).", "Send one complete JSON object per line, ending with a newline."
        )
        raise _addressed(refusal, _top_level_strings(line)) from None
    if not isinstance(payload, dict):
        _check_plain(payload)
        raise ProtocolError("The line must hold a JSON object.", "Send e.g. {\"type\": \"ping\", \"id\": \"1\"}.")
    try:
        _check_plain(payload)
    except ProtocolError as error:
        raise _addressed(error, payload) from None
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    message_type = payload.get("type")
    cls = registry.get(message_type) if isinstance(message_type, str) else None
    if cls is None:
        raise ProtocolError(
            f"Unknown {kind} type {message_type!r}.",
            f"Use one of: {', '.join(registry)}.",
            field="type",
            request_id=request_id,
        )
    fields = {key: value for key, value in payload.items() if key != "type"}
    try:
        message = _from_json(cls, fields, "")
        message.check()
    except ProtocolError as error:
        error.request_id = request_id
        error.request_type = message_type
        raise
    return message


def _addressed(error: ProtocolError, fields: dict) -> ProtocolError:
    """``error`` addressed to the line's request: its top-level ``id`` and ``type`` when they are plain text, so a
    refused ``generate`` (a lone surrogate elsewhere, nesting too deep, a NaN or a typo further on) still ends its job
    for the waiting client."""
    request_id, request_type = fields.get("id"), fields.get("type")
    if isinstance(request_id, str) and request_id and _is_text(request_id):
        error.request_id = request_id
        error.request_type = request_type if isinstance(request_type, str) and _is_text(request_type) else None
    return error


def _top_level_strings(line: str) -> dict[str, str]:
    """The string values directly inside a line's outermost object, read without recursion (for a line the JSON
    decoder refused): one pass over its structure, strings skipped whole by the decoder's own scanner and runs of
    brackets taken at once; past MAX_SCAN_TOKENS the scan gives up with what it found (the add-on's client writes
    ``type`` and ``id`` first, so they are found at once)."""
    found: dict[str, str] = {}
    if not line.lstrip().startswith("{"):
        return found
    depth, key, after_colon, position = 0, None, False, 0
    for _ in range(MAX_SCAN_TOKENS):
        match = _STRUCTURE.search(line, position)
        if match is None or ("id" in found and "type" in found):
            break
        token, position = match.group(), match.end()
        if token == '"':
            try:
                text, position = _scan_string(line, position)
            except ValueError:
                return found
            if depth == 1 and not after_colon:
                key = text
            elif depth == 1 and key is not None:
                found.setdefault(key, text)
                key, after_colon = None, False
        elif token[0] in "{[":
            depth += len(token)
        elif token[0] in "}]":
            if depth > 1 >= depth - len(token):
                key, after_colon = None, False
            depth -= len(token)
        elif token == ":" and depth == 1:
            after_colon = True
        elif token == "," and depth == 1:
            key, after_colon = None, False
    return found


# What the scan above stops at: a string's opening quote, a run of opening or of closing brackets, ":" or ",". A
# token costs about 2 microseconds, so 100,000 of them bound the scan of any 1 MiB line to about 0.2 s.
_STRUCTURE = re.compile(r'"|[\[{]+|[\]}]+|[:,]')
MAX_SCAN_TOKENS = 100_000
_scan_string = json.decoder.scanstring  # type: ignore[attr-defined]  # the decoder's own, in C


def _is_text(text: str) -> bool:
    try:
        _check_text(text)
    except ProtocolError:
        return False
    return True


def _too_deep() -> ProtocolError:
    return ProtocolError(
        f"The line nests objects or lists more than {MAX_NESTING} levels deep.",
        "Send the flat objects docs/protocol.md describes.",
    )


def _check_plain(payload: Any) -> None:
    """Refuse nesting past MAX_NESTING and strings (keys included) that are not valid Unicode, such as a lone
    surrogate written as an escape ("\\ud800"): such a string could never be written back out as UTF-8.

    Walks with its own stack, so no input can exhaust Python's recursion."""
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_NESTING:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else ((None, item) for item in value)
            for key, item in items:
                if key is not None:
                    _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "The line holds a string that is not valid Unicode (a lone surrogate such as \\ud800).",
            "Encode text as UTF-8; escape only whole characters (surrogate pairs together).",
        ) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _to_json(value: Any) -> Any:
    if isinstance(value, FloatArray):
        return value.to_json()
    if dataclasses.is_dataclass(value):
        return {
            f.name: _to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.default is None and getattr(value, f.name) is None)
        }
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


def _from_json(cls: type, payload: dict[str, Any], prefix: str) -> Any:
    hints = _type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in payload:
        if key not in known:
            raise ProtocolError(
                f"Unknown field '{prefix}{key}' in {getattr(cls, 'TYPE', '') or cls.__name__}.",
                f"Known fields: {', '.join(known)}.",
                field=f"{prefix}{key}",
            )
    values = {}
    for name, spec in known.items():
        path = f"{prefix}{name}"
        if name not in payload:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"Missing field '{path}'.", field=path)
            continue
        values[name] = _convert(payload[name], hints[name], path)
    return cls(**values)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if value is None:
            return None
        return _convert(value, options[0], path)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ProtocolError(f"Field '{path}' must be a list.", field=path)
        return [_convert(item, item_hint, f"{path}[{i}]") for i, item in enumerate(value)]
    if hint is FloatArray:
        return FloatArray.from_json(value, path)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProtocolError(f"Field '{path}' must be an object.", field=path)
        return _from_json(hint, value, f"{path}.")
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = _is_int(value)
    elif hint is float:
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"protocol field {path} has unsupported type {hint!r}")
    if not ok:
        raise ProtocolError(f"Field '{path}' must be {_TYPE_WORDS[hint]}, got {value!r}.", field=path)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
