"""`hymotion serve`: a long-lived backend that keeps the model warm and streams motion to the Blender add-on.

Requests arrive as protocol lines (hymotion.protocol) on stdin, or on loopback TCP connections that authenticate with
a token. A single worker thread runs jobs in order while the reading side keeps answering ``status``, ``ping`` and
``cancel``. The model loads at the first ``generate`` and stays loaded; ``hello`` goes out before torch is imported.

Only protocol lines ever reach the real stdout: at start the protocol output is moved to a private copy of fd 1, and
fd 1 itself (plus ``sys.stdout``) is pointed at stderr, so a library's print cannot corrupt the stream. The process
exits when stdin closes, when its parent process dies, on ``shutdown`` and on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import collections
import gc
import hmac
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from . import __version__, errors, gpu_info
from .errors import HyMotionError
from .paths import user_cache_dir
from .protocol import (
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    AckEvent,
    AuthRequest,
    CancelRequest,
    DoneEvent,
    ErrorEvent,
    Event,
    FloatArray,
    GenerateRequest,
    HelloEvent,
    ModelAvailability,
    PingRequest,
    PongEvent,
    ProgressEvent,
    ProtocolError,
    QueuedEvent,
    ResultEvent,
    ShutdownRequest,
    StatusEvent,
    StatusRequest,
    WarningEvent,
    decode_request,
    encode,
)

if TYPE_CHECKING:
    from .jobs import GenerationSettings
    from .motion import MotionClip
    from .pipeline import MotionPipeline

log = logging.getLogger("hymotion.service")

PARENT_POLL_S = 0.5
WORKER_STOP_TIMEOUT_S = 15.0
AUTH_TIMEOUT_S = 10.0
KEPT_LOG_FILES = 20
TOKEN_ENV = "HYMOTION_TOKEN"


# ---------------------------------------------------------------- connections


class Connection:
    """One client. ``send`` may be called from any thread; each line is written whole under one lock."""

    def __init__(self, name: str, stream: BinaryIO) -> None:
        self.name = name
        self._stream = stream
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, event: Event) -> bool:
        line = encode(event)
        with self._lock:
            if self.closed.is_set():
                return False
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                log.info("%s: client gone while writing", self.name)
                self.closed.set()
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self.closed.set()
            try:
                self._stream.close()
            except OSError:
                pass


# ---------------------------------------------------------------- jobs and the service


@dataclass
class Job:
    id: str
    connection: Connection
    settings: GenerationSettings
    plan: str | None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    stage: str | None = None
    step: int | None = None
    total: int | None = None

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.connection.closed.is_set()


@dataclass
class ServeOptions:
    model: str = "lite"
    model_dir: str | None = None
    plan: str = "auto"
    device: str | None = None
    cache_dir: str | None = None
    log_file: str | None = None


class Service:
    """The job queue, the worker that runs it, and the answers to every request."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self._lock = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._loading = False
        self._stopping = False
        self._pipeline: MotionPipeline | None = None
        self.stop_requested = threading.Event()
        self._worker = threading.Thread(target=self._work, name="hymotion-worker", daemon=True)

    # ---- lifecycle

    def start(self) -> None:
        self._worker.start()

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            log.info("stopping: %s", reason)
        self.stop_requested.set()

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> bool:
        """Cancel every job, let the worker finish its sampling step, drop the model. False if the worker hung."""
        with self._lock:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            if self._current is not None:
                self._current.cancel_requested.set()
            self._lock.notify_all()
        for job in dropped:
            job.connection.send(_cancelled_event(job, "The backend is shutting down."))
        self._worker.join(timeout)
        if self._worker.is_alive():
            log.error("the worker did not stop within %.0f s", timeout)
            return False
        self._release_pipeline()
        return True

    # ---- requests

    def hello(self) -> HelloEvent:
        device, vram_free, vram_total = self._device_report()
        return HelloEvent(
            protocol=PROTOCOL_VERSION,
            backend_version=__version__,
            pid=os.getpid(),
            model=self.options.model,
            plan=self._plan_name(),
            device=device,
            vram_free=vram_free,
            vram_total=vram_total,
            models=_model_availability(self.options.model_dir),
            log_file=self.options.log_file,
        )

    def handle_line(self, connection: Connection, line: bytes) -> None:
        """Answer one request line; every failure becomes an ``error`` event and the service carries on."""
        if not line.strip():
            return
        request = None
        try:
            request = decode_request(line)
            if isinstance(request, AuthRequest):
                raise ProtocolError(
                    "This connection is already authenticated.",
                    "Send auth only as the first line of a TCP connection.",
                    field="type",
                    request_id=request.id,
                )
            self._dispatch(connection, request)
        except HyMotionError as error:
            request_id = getattr(error, "request_id", None) or getattr(request, "id", None)
            field_name = getattr(error, "field", None)
            refused_job = isinstance(request, GenerateRequest) or getattr(error, "request_type", None) == "generate"
            job = request_id if refused_job and field_name != "id" else None
            connection.send(_error_event(error, id=request_id, job=job, field=field_name))

    def _dispatch(self, connection: Connection, request: Any) -> None:
        if isinstance(request, GenerateRequest):
            self._submit(connection, request)
        elif isinstance(request, CancelRequest):
            self._cancel(connection, request)
        elif isinstance(request, StatusRequest):
            connection.send(self._status(request.id))
        elif isinstance(request, PingRequest):
            connection.send(PongEvent(id=request.id))
        elif isinstance(request, ShutdownRequest):
            connection.send(AckEvent(id=request.id, request=request.TYPE))
            self.request_stop(f"shutdown requested by {connection.name}")

    def _submit(self, connection: Connection, request: GenerateRequest) -> None:
        settings = _settings_from_request(request)
        with self._lock:
            if self._stopping:
                raise HyMotionError(errors.CANCELLED, "The backend is shutting down.", "Start it again.")
            if any(job.id == request.id and job.connection is connection for job in self._jobs()):
                raise ProtocolError(
                    f"A job with id {request.id!r} is already queued or running.",
                    "Give every generate request its own id.",
                    field="id",
                    request_id=request.id,
                )
            job = Job(request.id, connection, settings, request.plan)
            self._queue.append(job)
            position = len(self._queue) - 1 + (self._current is not None)
            connection.send(QueuedEvent(id=request.id, job=request.id, position=position))
            self._lock.notify_all()

    def _cancel(self, connection: Connection, request: CancelRequest) -> None:
        with self._lock:
            queued = next((j for j in self._queue if j.id == request.job and j.connection is connection), None)
            current = self._current if self._current and self._current.id == request.job else None
            if current is not None and current.connection is not connection:
                current = None
            if queued is None and current is None:
                raise ProtocolError(
                    f"No queued or running job with id {request.job!r}.",
                    "It may have finished already; ask for status to see the queue.",
                    field="job",
                    request_id=request.id,
                )
            if queued is not None:
                self._queue.remove(queued)
            if current is not None:
                current.cancel_requested.set()
        connection.send(AckEvent(id=request.id, request=request.TYPE))
        if queued is not None:
            connection.send(_cancelled_event(queued, "The job was cancelled before it started."))

    def drop_connection(self, connection: Connection) -> None:
        """A TCP client went away: its jobs are of no use to anyone."""
        with self._lock:
            self._queue = collections.deque(job for job in self._queue if job.connection is not connection)
            if self._current is not None and self._current.connection is connection:
                self._current.cancel_requested.set()

    def _status(self, request_id: str) -> StatusEvent:
        with self._lock:
            current = self._current
            queue = [job.id for job in self._queue]
            state = "loading" if self._loading else "running" if current else "idle"
        device, vram_free, vram_total = self._device_report()
        return StatusEvent(
            id=request_id,
            state=state,
            queue=queue,
            model=self.options.model,
            plan=self._plan_name(),
            loaded=self._pipeline is not None,
            job=current.id if current else None,
            stage=current.stage if current else None,
            step=current.step if current else None,
            total=current.total if current else None,
            device=device,
            vram_free=vram_free,
            vram_total=vram_total,
        )

    def _jobs(self) -> list[Job]:
        return list(self._queue) + ([self._current] if self._current else [])

    # ---- the worker

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._current = self._queue.popleft()
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._current = None

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        sent = 0
        try:
            pipeline = self._pipeline_for(job)
            if job.should_stop():
                raise HyMotionError(errors.CANCELLED, "The job was cancelled.")

            def on_progress(stage: str, step: int, total: int) -> None:
                job.stage, job.step, job.total = stage, step, total
                job.connection.send(ProgressEvent(job=job.id, stage=stage, step=step, total=total))

            def on_warning(message: str) -> None:
                log.warning("job %s: %s", job.id, message)
                job.connection.send(WarningEvent(job=job.id, message=message))

            clips = pipeline.generate(
                job.settings, on_progress=on_progress, should_cancel=job.should_stop, on_warning=on_warning
            )
            try:
                for clip in clips:
                    job.connection.send(_result_event(job.id, sent, clip))
                    sent += 1
            finally:
                close = getattr(clips, "close", None)
                if close is not None:
                    close()
            job.connection.send(DoneEvent(job=job.id, results=sent, seconds=round(time.monotonic() - started, 3)))
            log.info("job %s done: %d results in %.1f s", job.id, sent, time.monotonic() - started)
        except HyMotionError as error:
            log.info("job %s ended with %s: %s", job.id, error.code, error.message)
            job.connection.send(_error_event(error, job=job.id, field=getattr(error, "field", None)))
        except Exception as error:  # noqa: BLE001 - the service must survive any job
            job.connection.send(_error_event(self._unexpected(error), job=job.id))
            self._free_cached_memory()

    def _unexpected(self, error: Exception) -> HyMotionError:
        memory = sys.modules.get("hymotion.memory")
        if isinstance(error, MemoryError) or (memory is not None and memory.is_out_of_memory(error)):
            log.warning("out of memory with plan %s: %s", self._plan_name(), error)
            return HyMotionError(
                errors.OUT_OF_MEMORY,
                f"Out of memory with the {self._plan_name()} plan: {error}",
                "Pick a leaner plan (offload, stream or cpu), shorter clips or fewer seeds per job.",
            )
        log.error("job failed:\n%s", traceback.format_exc())
        where = f"; the log is at {self.options.log_file}" if self.options.log_file else ""
        return HyMotionError(
            errors.INTERNAL,
            f"The backend failed: {type(error).__name__}: {error}",
            f"This is a bug; please report it with the backend log{where}.",
        )

    def _pipeline_for(self, job: Job) -> MotionPipeline:
        """The warm pipeline, loaded at the first job and moved to another plan when a job asks for one."""
        wanted = job.plan if job.plan not in (None, "auto") else None
        if wanted is not None:
            self._check_plan(wanted)
        if self._pipeline is None:
            self._load(job, wanted or self.options.plan)
        elif wanted is not None and self._pipeline.plan != wanted:
            log.info("job %s asks for plan %s (was %s)", job.id, wanted, self._pipeline.plan)
            self._pipeline.switch_plan(wanted)
        return self._pipeline

    def _check_plan(self, plan: str) -> None:
        from . import memory

        try:
            if self.options.device is None:
                memory.choose_plan(plan, getattr(self._pipeline, "variant", "lite"))
            elif plan not in memory.PLAN_CHOICES:
                memory.choose_plan(plan)
        except HyMotionError as error:
            raise ProtocolError(error.message, error.hint, field="plan") from None

    def _load(self, job: Job, plan: str) -> None:
        job.connection.send(ProgressEvent(job=job.id, stage="loading", step=0, total=1))
        with self._lock:
            self._loading = True
        try:
            from .pipeline import load_pipeline

            self._pipeline = load_pipeline(
                model=self.options.model,
                model_dir=self.options.model_dir,
                plan=plan,
                device=self.options.device,
                cache_dir=self.options.cache_dir,
            )
        finally:
            with self._lock:
                self._loading = False
        log.info("model loaded: %s", self._pipeline.describe())
        job.connection.send(ProgressEvent(job=job.id, stage="loading", step=1, total=1))

    def _release_pipeline(self) -> None:
        self._pipeline = None
        gc.collect()
        self._free_cached_memory()

    @staticmethod
    def _free_cached_memory() -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _plan_name(self) -> str:
        """The plan in use; before the first load, the plan ``auto`` would pick from the free VRAM NVML reports."""
        pipeline = self._pipeline
        if pipeline is not None:
            return pipeline.plan
        if self.options.plan != "auto":
            return self.options.plan
        from . import memory

        _, vram_free, vram_total = self._device_report()
        variant = "standard" if self.options.model == "standard" else "lite"
        measured = (vram_free, vram_total) if vram_free is not None and vram_total is not None else None
        return memory.choose_plan("auto", variant, memory=measured) if measured else self.options.plan

    def _device_report(self) -> tuple[str | None, int | None, int | None]:
        """Device name and free/total VRAM, without importing torch unless the pipeline already did."""
        if self._pipeline is not None and "torch" in sys.modules:
            return _torch_device_report(self._pipeline.device)
        if (self.options.device or "").startswith("cpu"):
            return "cpu", None, None
        return gpu_info.device_report(self.options.device)


def _cancelled_event(job: Job, message: str) -> ErrorEvent:
    return ErrorEvent(code=errors.CANCELLED, message=message, hint="Results already sent stay valid.", job=job.id)


def _error_event(error: HyMotionError, **where: Any) -> ErrorEvent:
    return ErrorEvent(code=error.code, message=error.message, hint=error.hint, **where)


def _settings_from_request(request: GenerateRequest) -> GenerationSettings:
    """GenerationSettings from a request, each rule checked alone first so that a refusal names its field."""
    from .jobs import DEFAULT_CFG, DEFAULT_DURATION, DEFAULT_STEPS, GenerationSettings

    values = {
        "prompts": request.prompts,
        "durations": request.durations if request.durations is not None else [DEFAULT_DURATION],
        "seeds": request.seeds if request.seeds is not None else [0],
        "cfg_scale": request.cfg_scale if request.cfg_scale is not None else DEFAULT_CFG,
        "steps": request.steps if request.steps is not None else DEFAULT_STEPS,
        "smoothing": request.smoothing if request.smoothing is not None else True,
    }
    valid_prompt = "a person stands"
    for name in ("prompts", "durations", "seeds", "cfg_scale", "steps"):
        trial = {"prompts": [valid_prompt], "durations": [DEFAULT_DURATION], name: values[name]}
        if name == "durations":
            trial["prompts"] = [valid_prompt] * max(1, len(values[name]))
        try:
            GenerationSettings(**trial).validate()
        except HyMotionError as error:
            raise ProtocolError(error.message, error.hint, field=name, request_id=request.id) from None
    try:
        return GenerationSettings(**values).validate()
    except HyMotionError as error:
        raise ProtocolError(error.message, error.hint, field="durations", request_id=request.id) from None


def _result_event(job_id: str, index: int, clip: MotionClip) -> ResultEvent:
    from .skeleton import BODY_JOINT_NAMES, BODY_PARENTS, BODY_REST_OFFSETS

    return ResultEvent(
        job=job_id,
        index=index,
        prompt_index=int(clip.prompt_index),
        prompt=clip.prompt,
        seed=int(clip.seed),
        duration=float(clip.duration),
        fps=int(clip.fps),
        frames=clip.frames,
        model=clip.model_id,
        plan=clip.plan,
        joint_names=list(BODY_JOINT_NAMES),
        parents=list(BODY_PARENTS),
        rest_offsets=FloatArray.from_numpy(BODY_REST_OFFSETS),
        translation=FloatArray.from_numpy(clip.translation),
        rotations=FloatArray.from_numpy(clip.rotations),
        positions=FloatArray.from_numpy(clip.positions),
    )


def _model_availability(model_dir: str | None) -> list[ModelAvailability]:
    """Which released variants are on disk, and the command that fetches a missing one."""
    from . import weights

    found = []
    for variant in weights.VARIANT_FOLDERS:
        try:
            weights.locate(variant, model_dir)
            found.append(ModelAvailability(name=variant, available=True))
        except Exception as error:  # noqa: BLE001 - any failure to find the files means "not available here"
            found.append(
                ModelAvailability(
                    name=variant,
                    available=False,
                    missing=[getattr(error, "message", str(error))],
                    download_command=weights.download_command(variant, model_dir),
                )
            )
    return found


def _torch_device_report(device: str) -> tuple[str | None, int | None, int | None]:
    torch = sys.modules["torch"]
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return str(device), None, None
    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    return torch.cuda.get_device_name(index), int(free), int(total)


# ---------------------------------------------------------------- front ends


def _read_lines(stream: BinaryIO, handle: Callable[[bytes], None], too_long: Callable[[], None]) -> None:
    """Feed complete lines to ``handle`` until EOF; a line over the size limit is skipped whole and reported."""
    while True:
        line = stream.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_REQUEST_BYTES)
            too_long()
            continue
        if not line.endswith(b"\n"):
            log.info("input ended inside a line; %d bytes ignored", len(line))
            return
        handle(line)


def _too_long_event() -> ErrorEvent:
    return ErrorEvent(
        code=errors.BAD_REQUEST,
        message=f"A request line is longer than {MAX_REQUEST_BYTES} bytes and was skipped.",
        hint="Send one JSON object per line; split very long prompt lists into several jobs.",
    )


def _serve_stdio(service: Service, parent: int) -> None:
    """Move the protocol off fds 0/1 so that nothing but protocol lines can reach the client, then serve.

    ``parent`` is the parent pid seen at start: the backend stops as soon as it is orphaned.
    """
    protocol_in = os.fdopen(os.dup(0), "rb")
    connection = Connection("stdio", os.fdopen(os.dup(1), "wb"))
    _route_standard_streams_away()

    def read() -> None:
        _read_lines(
            protocol_in,
            lambda line: service.handle_line(connection, line),
            lambda: connection.send(_too_long_event()),
        )
        service.request_stop("stdin closed")

    def watch_parent() -> None:
        while os.getppid() == parent:
            if service.stop_requested.wait(PARENT_POLL_S):
                return
        service.request_stop("parent process gone")

    threading.Thread(target=watch_parent, name="hymotion-parent", daemon=True).start()
    connection.send(service.hello())
    threading.Thread(target=read, name="hymotion-stdin", daemon=True).start()
    _wait_for_stop(service)


def _route_standard_streams_away() -> None:
    """fd 0 reads nothing, fd 1 and sys.stdout write to stderr: what libraries print can never pass for protocol."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _serve_tcp(service: Service, host: str, port: int, token: str) -> None:
    _route_standard_streams_away()
    server = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    server.settimeout(PARENT_POLL_S)
    bound_host, bound_port = server.getsockname()[:2]
    print(f"hymotion serve: listening on {bound_host}:{bound_port}", file=sys.stderr, flush=True)
    log.info("listening on %s:%s", bound_host, bound_port)
    with server:
        while not service.stop_requested.is_set():
            try:
                client, address = server.accept()
            except TimeoutError:
                continue
            threading.Thread(
                target=_serve_socket, args=(service, client, address, token), name="hymotion-client", daemon=True
            ).start()


def _serve_socket(service: Service, client: socket.socket, address: Any, token: str) -> None:
    name = f"tcp {address[0]}:{address[1]}"
    client.settimeout(AUTH_TIMEOUT_S)
    reader = client.makefile("rb")
    connection = Connection(name, client.makefile("wb"))
    try:
        first = reader.readline(MAX_REQUEST_BYTES + 1)
        if not _authenticated(first, token):
            log.warning("%s: refused (no valid token)", name)
            connection.send(
                ErrorEvent(
                    code=errors.BAD_REQUEST,
                    message="The first line must be an auth request with the server's token.",
                    hint=f"Send {{\"type\": \"auth\", \"token\": ...}}; the token is in the server's token file "
                    f"or its {TOKEN_ENV} environment variable.",
                    field="token",
                )
            )
            return
        client.settimeout(None)
        log.info("%s: connected", name)
        connection.send(service.hello())
        _read_lines(
            reader,
            lambda line: service.handle_line(connection, line),
            lambda: connection.send(_too_long_event()),
        )
    except OSError as error:
        log.info("%s: %s", name, error)
    finally:
        log.info("%s: disconnected", name)
        service.drop_connection(connection)
        connection.close()
        reader.close()
        client.close()


def _authenticated(line: bytes, token: str) -> bool:
    try:
        request = decode_request(line)
    except ProtocolError:
        return False
    return isinstance(request, AuthRequest) and hmac.compare_digest(request.token.encode(), token.encode())


def _wait_for_stop(service: Service) -> None:
    """Block the main thread in short waits, so that SIGTERM/SIGINT handlers get to run."""
    while not service.stop_requested.wait(PARENT_POLL_S):
        continue


# ---------------------------------------------------------------- set-up, arguments, entry point


def _set_up_logging(log_file: str | None) -> str | None:
    """Log to stderr and to a file (the newest few are kept); returns the file's path, None if it cannot be written."""
    logger = logging.getLogger("hymotion")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    logger.addHandler(console)
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.propagate = False
    warnings_logger.addHandler(console)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(log_file) if log_file else user_cache_dir() / "logs" / f"serve-{stamp}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as error:
        logger.warning("cannot write the log file %s (%s); logging to stderr only", path, error)
        return None
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    warnings_logger.addHandler(handler)
    if not log_file:
        for old in sorted(path.parent.glob("serve-*.log"), key=lambda p: p.stat().st_mtime)[:-KEPT_LOG_FILES]:
            old.unlink(missing_ok=True)
    return str(path)


def parse_listen_address(text: str, allow_remote: bool) -> tuple[str, int]:
    """"127.0.0.1:8765" or "[::1]:8765" to (host, port); a non-loopback host needs ``allow_remote``."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise errors.bad_request(f"--listen {text!r} is not HOST:PORT.", "Write it as 127.0.0.1:8765.")
    if not allow_remote and not _is_loopback(host):
        raise errors.bad_request(
            f"Refusing to listen on {host}: it is not a loopback address, so other machines could connect.",
            "Use 127.0.0.1, or pass --allow-remote if you mean it (the token is then the only protection and traffic "
            "is not encrypted: tunnel it through ssh instead where you can).",
        )
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def _write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        if hasattr(os, "fchmod"):
            os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="speak the protocol on stdin/stdout (the default)")
    transport.add_argument("--listen", metavar="HOST:PORT", help="speak the protocol over TCP, e.g. 127.0.0.1:8765")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --listen on a non-loopback address (token-protected, unencrypted)",
    )
    parser.add_argument(
        "--token-file",
        help=f"where --listen writes its token, mode 0600 (default: the cache folder; {TOKEN_ENV} sets the token)",
    )
    parser.add_argument("--model", default="lite", help="model variant, as for generate (default: lite)")
    parser.add_argument("--model-dir", help="folder holding the weights (default: the download folder)")
    parser.add_argument("--plan", default="auto", help="memory plan: auto, gpu, offload, stream or cpu (default: auto)")
    parser.add_argument("--device", help="torch device, e.g. cuda:1 or cpu (default: the first GPU, else cpu)")
    parser.add_argument("--cache-dir", help="where prompt embeddings are cached (default: ~/.cache/hymotion)")
    parser.add_argument("--log-file", help="log here instead of a new file in the cache folder")


def serve_main(args: argparse.Namespace) -> int:
    """Run the service until it is told to stop; 0 on a clean stop, 2 for bad arguments.

    Once torch is loaded a clean stop ends the process right here (os._exit after flushing the logs): Python's own
    teardown of torch takes seconds, and the user is waiting for the GPU to be free or for a restart.
    """
    parent = os.getppid()
    log_file = _set_up_logging(args.log_file)
    options = ServeOptions(args.model, args.model_dir, args.plan, args.device, args.cache_dir, log_file)
    log.info("hymotion %s serving (protocol %d, pid %d, model %s)", __version__, PROTOCOL_VERSION, os.getpid(),
             args.model)
    try:
        address = parse_listen_address(args.listen, args.allow_remote) if args.listen else None
    except HyMotionError as error:
        print(f"hymotion serve: {error}", file=sys.stderr)
        return 2
    service = Service(options)
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda number, _frame: service.request_stop(f"signal {number}"))
    service.start()
    if address is None:
        _serve_stdio(service, parent)
    else:
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
        token_file = Path(args.token_file) if args.token_file else user_cache_dir() / "serve-token"
        _write_token(token_file, token)
        print(f"hymotion serve: token written to {token_file}", file=sys.stderr, flush=True)
        _serve_tcp(service, *address, token)
    stopped = service.stop()
    log.info("stopped")
    logging.shutdown()
    sys.stderr.flush()
    if not stopped or "torch" in sys.modules:
        os._exit(0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hymotion serve", description="Serve HY-Motion generation to a client.")
    add_serve_arguments(parser)
    return serve_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
