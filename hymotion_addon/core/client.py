"""The add-on's side of the backend service: owns the backend process (or a TCP connection to one), sends requests and
collects events on background threads, so Blender's UI thread never blocks on the model.

Pure Python: no bpy, numpy or torch. Events are the dataclasses of ``hymotion.shared.protocol``; a ``result`` event's
arrays turn into numpy with ``event.rotations.to_numpy()`` (or into lists with ``to_lists()``).

Typical use from a modal operator::

    client = BackendClient(python, service_args(model="lite"))
    hello = client.start(timeout=60)
    job = client.submit_generate(["a person waves"], durations=[3.0])
    ...  # on each timer tick:
    for event in client.poll_events(): ...
"""

from __future__ import annotations

import atexit
import collections
import itertools
import signal
import socket
import subprocess
import threading
import time
import uuid
from typing import IO, TYPE_CHECKING, Callable, Iterator, Sequence

from hymotion.shared import errors
from hymotion.shared.errors import HyMotionError
from hymotion.shared.processes import end_group, own_group
from hymotion.shared.protocol import (
    MAX_EVENT_BYTES,
    PROTOCOL_VERSION,
    AckEvent,
    AuthRequest,
    CancelRequest,
    ErrorEvent,
    Event,
    GenerateConstraint,
    GenerateRequest,
    HelloEvent,
    PingRequest,
    PongEvent,
    ProtocolError,
    Request,
    ShutdownRequest,
    StatusEvent,
    StatusRequest,
    decode_event,
    decode_request,
    encode,
    is_terminal,
)

if TYPE_CHECKING:
    from hymotion.shared.jobs import GenerationSettings

# What helps after the backend died: the add-on starts a new one at the next Generate, with nothing for the user to do.
BACKEND_RESTARTS_HINT = errors.DEFAULT_HINTS[errors.BACKEND_DIED]

STDERR_TAIL_LINES = 20
EXIT_WAIT_S = 5.0
TERMINATE_WAIT_S = 3.0
REPLY_TYPES = (AckEvent, PongEvent, StatusEvent)


def service_args(
    model: str = "lite",
    model_dir: str | None = None,
    plan: str = "auto",
    device: str | None = None,
    preload: bool = False,
) -> list[str]:
    """Interpreter arguments that start the service on stdio with these model settings; ``preload`` loads the model
    right after start-up instead of at the first generate."""
    args = ["-m", "hymotion.service", "--stdio", "--model", model, "--plan", plan]
    if model_dir:
        args += ["--model-dir", model_dir]
    if device:
        args += ["--device", device]
    if preload:
        args.append("--preload")
    return args


class _Session:
    """One live connection to a backend: a way to write lines, a stream of lines to read, a way to end it."""

    description = "The backend"

    def __init__(self, reader: IO[bytes]) -> None:
        self.reader = reader
        self.closing = False
        self.dead = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close_input(self) -> None:
        raise NotImplementedError

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code once the backend is gone (None where unknown or still running)."""
        return None

    def force_stop(self) -> None:
        """Make sure nothing of this session keeps running; called on shutdown, always."""

    def close_streams(self) -> None:
        """Release the pipes or socket once the reader is done with them."""

    def join_output(self, timeout: float) -> None:
        """Wait for side channels (stderr) to drain so the tail is complete."""


class _ProcessSession(_Session):
    def __init__(self, process: subprocess.Popen[bytes], on_stderr_line: Callable[[str], None] | None) -> None:
        # ProcessBackendClient.start opens all three streams with subprocess.PIPE.
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        super().__init__(process.stdout)
        self.process = process
        self._stdin: IO[bytes] = process.stdin
        self._stderr: IO[bytes] = process.stderr
        self.description = f"The backend (pid {process.pid})"
        self._on_stderr_line = on_stderr_line
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="hymotion-stderr", daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        for raw in iter(self._stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stderr_tail.append(line)
            if self._on_stderr_line is not None:
                self._on_stderr_line(line)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._stdin.write(view)
            view = view[written:]
        self._stdin.flush()

    def close_input(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def force_stop(self) -> None:
        """Terminate, then kill, the backend's whole process group, and reap it: no zombie, no orphan."""
        end_group(self.process, TERMINATE_WAIT_S)

    def close_streams(self) -> None:
        for stream in (self._stdin, self.reader, self._stderr):
            try:
                stream.close()
            except OSError:
                pass

    def join_output(self, timeout: float) -> None:
        self._stderr_thread.join(timeout)


class _SocketSession(_Session):
    def __init__(self, connection: socket.socket, address: str) -> None:
        super().__init__(connection.makefile("rb"))
        self.socket = connection
        self.description = f"The backend at {address}"

    def write(self, data: bytes) -> None:
        self.socket.sendall(data)

    def close_input(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def force_stop(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close_streams(self) -> None:
        self.reader.close()
        self.socket.close()


class _ClientBase:
    """Everything but how a session starts: sending, the event store, replies, death detection, shutdown."""

    def __init__(self) -> None:
        self.hello: HelloEvent | None = None
        self._refusal: ErrorEvent | None = None
        self._session: _Session | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()
        self._events: collections.deque[Event] = collections.deque()
        self._replies: dict[str, Event] = {}
        self._awaited: set[str] = set()
        self._open_jobs: set[str] = set()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    # --- public API -------------------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        session = self._session
        return session is not None and not session.dead

    @property
    def stderr_tail(self) -> list[str]:
        """The backend's last stderr lines (its log), newest last."""
        return list(self._session.stderr_tail) if self._session else []

    def submit_generate(
        self,
        prompts: Sequence[str],
        durations: Sequence[float] | None = None,
        seeds: Sequence[int] | None = None,
        cfg_scale: float | None = None,
        steps: int | None = None,
        smoothing: bool | None = None,
        plan: str | None = None,
        job: str | None = None,
        constraint: GenerateConstraint | None = None,
        timeline: bool | None = None,
    ) -> str:
        """Queue a generation and return its job id at once; its events arrive through poll_events / iter_events.

        ``constraint`` pins known frames (start, end, loop); ``timeline`` makes the prompts one continuous motion
        per seed (docs/protocol.md). Fields left as None take the backend's defaults. Raises ``bad_request`` naming the
        field for a malformed request, ``backend_died`` when the backend is not running.
        """
        return self._submit(GenerateRequest(
            id=job or self._new_id("job"),
            prompts=list(prompts),
            durations=None if durations is None else list(durations),
            seeds=None if seeds is None else list(seeds),
            cfg_scale=cfg_scale,
            steps=steps,
            smoothing=smoothing,
            plan=plan,
            constraint=constraint,
            timeline=timeline,
        ))

    def submit_settings(self, settings: GenerationSettings, *, constraint: GenerateConstraint | None = None,
                        timeline: bool = False) -> str:
        """Queue settings already checked by hymotion.shared.jobs (what the add-on's runs send); returns the job id."""
        return self._submit(GenerateRequest.for_settings(self._new_id("job"), settings, constraint=constraint,
                                                         timeline=timeline))

    def _submit(self, request: GenerateRequest) -> str:
        with self._changed:
            self._open_jobs.add(request.id)
        try:
            self._send(request)
        except HyMotionError:
            with self._changed:
                self._open_jobs.discard(request.id)
            raise
        return request.id

    def cancel(self, job: str) -> None:
        """Ask the backend to stop ``job``; its last event will be an ``error`` with code ``cancelled``."""
        self._send(CancelRequest(id=self._new_id("cancel"), job=job))

    def status(self, timeout: float = 10.0) -> StatusEvent:
        """The backend's state (queue, running job and its step, plan, VRAM); answered even while a job runs."""
        return self._ask(StatusRequest(id=self._new_id("status")), timeout)  # type: ignore[return-value]

    def ping(self, timeout: float = 10.0) -> float:
        """Round-trip time in seconds; answered even while a job runs."""
        started = time.monotonic()
        self._ask(PingRequest(id=self._new_id("ping")), timeout)
        return time.monotonic() - started

    def poll_events(self) -> list[Event]:
        """Every event that arrived since the last call (never blocks): for a modal operator's timer."""
        with self._changed:
            events = list(self._events)
            self._events.clear()
        return events

    def wait_events(self, timeout: float) -> list[Event]:
        """Like poll_events, but waits up to ``timeout`` seconds for at least one event (empty list if none came)."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._events), timeout)
            events = list(self._events)
            self._events.clear()
        return events

    def iter_events(self, job: str, timeout: float | None = None) -> Iterator[Event]:
        """Events of ``job`` in order, ending after its ``done`` or ``error``.

        ``timeout`` bounds the wait for each next event (TimeoutError). Other jobs' events stay for poll_events.
        """
        while True:
            with self._changed:
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    event = next((e for e in self._events if getattr(e, "job", None) == job), None)
                    if event is not None:
                        self._events.remove(event)
                        break
                    if job not in self._open_jobs:
                        return
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"No event for job {job!r} within {timeout:g} s.")
                    self._changed.wait(remaining)
            yield event
            if is_terminal(event, job):
                return

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """Stop the backend (asking first, then terminating, then killing) and reap it; returns its exit code."""
        session = self._session
        if session is None:
            return None
        session.closing = True
        if not session.dead:
            try:
                self._send(ShutdownRequest(id=self._new_id("shutdown")))
            except HyMotionError:
                pass
        session.close_input()
        code = session.wait_exit(timeout)
        session.force_stop()
        if code is None:
            code = session.wait_exit(0)
        self._finish(session, timeout)
        return code

    # --- internals --------------------------------------------------------------------------------------------------

    def _finish(self, session: _Session, timeout: float) -> None:
        """Let the reader see the end of the stream, then release the pipes."""
        if self._reader is not None:
            self._reader.join(timeout)
        session.close_streams()
        atexit.unregister(self.shutdown)

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{self._prefix}-{next(self._ids)}"

    def _attach(self, session: _Session, timeout: float) -> HelloEvent:
        """Start reading ``session`` and wait for its hello."""
        self._session = session
        self.hello = None
        self._refusal = None
        self._reader = threading.Thread(target=self._read, args=(session,), name="hymotion-events", daemon=True)
        self._reader.start()
        atexit.register(self.shutdown)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.hello is None and not session.dead:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            hello = self.hello
        if hello is None and self._refusal is not None:
            self.shutdown(timeout=0)
            raise HyMotionError(self._refusal.code, self._refusal.message, self._refusal.hint)
        if hello is None:
            died = session.dead
            self.shutdown(timeout=0)
            reason = "stopped before it was ready" if died else f"did not answer within {timeout:g} s"
            raise HyMotionError(
                errors.BACKEND_DIED,
                f"{session.description} {reason}." + _tail_text(session.stderr_tail),
                "Check the backend's Python environment in the preferences; its log lines are above.",
            )
        if hello.protocol != PROTOCOL_VERSION:
            self.shutdown()
            raise HyMotionError(
                errors.INTERNAL,
                f"The backend speaks protocol {hello.protocol}, this add-on protocol {PROTOCOL_VERSION}.",
                "Update the add-on and the backend (pip install -U the backend wheel) to the same version.",
            )
        return hello

    def _send(self, request: Request) -> None:
        line = encode(request)
        decode_request(line)
        session = self._session
        if session is None or session.dead:
            raise _not_running()
        with self._write_lock:
            try:
                session.write(line)
            except (OSError, ValueError):
                raise _not_running() from None

    def _ask(self, request: StatusRequest | PingRequest, timeout: float) -> Event:
        with self._changed:
            self._awaited.add(request.id)
        try:
            self._send(request)
            deadline = time.monotonic() + timeout
            with self._changed:
                while request.id not in self._replies:
                    remaining = deadline - time.monotonic()
                    if self._session is None or self._session.dead:
                        raise _not_running()
                    if remaining <= 0:
                        raise TimeoutError(f"The backend did not answer {request.TYPE} within {timeout:g} s.")
                    self._changed.wait(remaining)
                reply = self._replies.pop(request.id)
        finally:
            with self._changed:
                self._awaited.discard(request.id)
                self._replies.pop(request.id, None)
        if isinstance(reply, ErrorEvent):
            raise HyMotionError(reply.code, reply.message, reply.hint)
        return reply

    def _read(self, session: _Session) -> None:
        for line in _lines(session.reader):
            try:
                if line is None:
                    raise ProtocolError(f"a line longer than {MAX_EVENT_BYTES} bytes, skipped")
                event = decode_event(line)
            except ProtocolError as error:
                event = ErrorEvent(
                    code=errors.INTERNAL,
                    message=f"The backend sent a line this add-on cannot read: {error.message}",
                    hint="Update the add-on and the backend to the same version.",
                )
            self._deliver(event)
        self._on_disconnect(session)

    def _deliver(self, event: Event) -> None:
        with self._changed:
            reply_id = getattr(event, "id", None)
            if isinstance(event, HelloEvent):
                self.hello = event
            elif self.hello is None and isinstance(event, ErrorEvent):
                self._refusal = event
            elif reply_id is not None and reply_id in self._awaited:
                self._replies[reply_id] = event
            elif not isinstance(event, REPLY_TYPES):
                job = getattr(event, "job", None)
                if job is not None and is_terminal(event, job):
                    self._open_jobs.discard(job)
                self._events.append(event)
            self._changed.notify_all()

    def _on_disconnect(self, session: _Session) -> None:
        code = session.wait_exit(EXIT_WAIT_S)
        session.join_output(EXIT_WAIT_S)
        with self._changed:
            session.dead = True
            open_jobs = sorted(self._open_jobs) if session is self._session else []
            self._open_jobs.difference_update(open_jobs)
            if session.closing:
                ended = [_job_ended(job, errors.CANCELLED, "The backend was shut down.") for job in open_jobs]
            else:
                died = _died_event(session, code)
                ended = [died] + [_job_ended(job, errors.BACKEND_DIED, died.message, died) for job in open_jobs]
            self._events.extend(ended)
            self._changed.notify_all()


class BackendClient(_ClientBase):
    """Runs the backend as a child process speaking the protocol on its stdin/stdout.

    ``args`` follow the interpreter (see :func:`service_args`). The child gets its own process group, so Blender's
    Ctrl+C does not hit it and shutdown can stop all of it; it also exits by itself when Blender goes away.
    ``on_stderr_line`` receives each line the backend logs, on a background thread (so it must not touch bpy).
    """

    def __init__(
        self,
        python_executable: str,
        args: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.python_executable = python_executable
        self.args = list(args) if args is not None else service_args()
        self.env = env
        self.cwd = cwd
        self.on_stderr_line = on_stderr_line

    @property
    def pid(self) -> int | None:
        session = self._session
        return session.process.pid if isinstance(session, _ProcessSession) else None

    def start(self, timeout: float = 120.0) -> HelloEvent:
        """Spawn the backend and wait for its hello (which comes before any model loads)."""
        if self.alive:
            raise HyMotionError(errors.BAD_REQUEST, "The backend is already running.", "Use restart() to start anew.")
        try:
            process = subprocess.Popen(
                [self.python_executable, *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                bufsize=0,
                **own_group(hide_window=True),
            )
        except OSError as error:
            raise HyMotionError(
                errors.BACKEND_DIED,
                f"Cannot start the backend with {self.python_executable}: {error}.",
                "Check the backend Python path in the add-on preferences.",
            ) from None
        return self._attach(_ProcessSession(process, self.on_stderr_line), timeout)

    def restart(self, timeout: float = 120.0) -> HelloEvent:
        self.shutdown()
        return self.start(timeout)


class RemoteBackendClient(_ClientBase):
    """Talks to a ``hymotion serve --listen`` backend over TCP; shutdown() disconnects, the server keeps running."""

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__()
        self.host, self.port, self.token = host, port, token

    def start(self, timeout: float = 30.0) -> HelloEvent:
        address = f"{self.host}:{self.port}"
        try:
            connection = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as error:
            raise HyMotionError(
                errors.BACKEND_DIED,
                f"Cannot reach the backend at {address}: {error}.",
                "Check that hymotion serve --listen runs there and that host and port are right.",
            ) from None
        connection.settimeout(None)
        connection.sendall(encode(AuthRequest(token=self.token)))
        session = _SocketSession(connection, address)
        hello = self._attach(session, timeout)
        return hello

    def shutdown(self, timeout: float = 10.0) -> int | None:
        session = self._session
        if session is not None:
            session.closing = True
            session.force_stop()
            self._finish(session, timeout)
        return None

    def restart(self, timeout: float = 30.0) -> HelloEvent:
        self.shutdown()
        return self.start(timeout)


def _lines(reader: IO[bytes]) -> Iterator[bytes | None]:
    """Lines until the stream ends or breaks (a reset socket counts as the end), each read with a limit: a line
    longer than MAX_EVENT_BYTES is skipped whole, a piece at a time, and stands as None (memory holds one piece)."""
    while True:
        try:
            line = reader.readline(MAX_EVENT_BYTES + 1)
            if len(line) > MAX_EVENT_BYTES and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):
                    line = reader.readline(MAX_EVENT_BYTES)
                yield None
                continue
        except (OSError, ValueError):
            return
        if not line:
            return
        yield line


def _not_running() -> HyMotionError:
    return HyMotionError(errors.BACKEND_DIED, "The backend is not running.", BACKEND_RESTARTS_HINT)


def _tail_text(tail: Sequence[str]) -> str:
    return "\nLast backend output:\n" + "\n".join(tail) if tail else ""


def _died_event(session: _Session, code: int | None) -> ErrorEvent:
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name if -code in signal.valid_signals() else -code}"
    elif code is not None:
        how = f"exited with code {code}"
    else:
        how = "closed the connection"
    return ErrorEvent(
        code=errors.BACKEND_DIED,
        message=f"{session.description} {how}.",
        hint=f"{BACKEND_RESTARTS_HINT} Its last output (below) says why it stopped.",
        exit_code=code,
        stderr_tail=list(session.stderr_tail),
    )


def _job_ended(job: str, code: str, message: str, died: ErrorEvent | None = None) -> ErrorEvent:
    return ErrorEvent(
        code=code,
        message=message,
        hint=died.hint if died else "Results already received stay valid.",
        job=job,
        exit_code=died.exit_code if died else None,
        stderr_tail=died.stderr_tail if died else None,
    )
