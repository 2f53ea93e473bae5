"""The job core of ``hymotion serve``: one queue, one worker thread that runs jobs in order, and the answer to every
request line, whichever transport (stdio.py, tcp.py) the line came from.

A client is a :class:`Connection`: ``send`` only queues a line and the connection's own writer thread writes it, so
neither the worker nor another client ever waits on a client that stopped reading. The model loads at the first
``generate`` (or right after start-up with ``--preload``) and stays loaded; nothing here imports torch before that.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from .. import __version__, gpu_info
from ..shared import errors
from ..shared.errors import HyMotionError
from ..shared.protocol import (
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    AckEvent,
    AuthRequest,
    CancelRequest,
    DoneEvent,
    ErrorEvent,
    Event,
    FloatArray,
    GenerateConstraint,
    GenerateRequest,
    HelloEvent,
    ModelAvailability,
    PingRequest,
    PongEvent,
    PoseFrames,
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
    from ..constraints import MotionConstraint, Pose
    from ..shared.jobs import GenerationSettings
    from ..motion import MotionClip
    from ..pipeline import MotionPipeline

log = logging.getLogger("hymotion.service")

PARENT_POLL_S = 0.5
WORKER_STOP_TIMEOUT_S = 15.0
# About 50 full-length (12 s) results: far more than a reading client ever has in flight.
MAX_PENDING_BYTES = 16 << 20
LAGGARD_GRACE_S = 10.0
CLOSE_DRAIN_S = 5.0


# --- connections ----------------------------------------------------------------------------------------------------


class Connection:
    """One client. ``send`` only queues the line; this connection's own writer thread does the write, so a thread
    that answers other clients or runs jobs never waits on a client that stopped reading.

    Past ``max_pending_bytes`` of unsent lines, a droppable client (TCP) is told why, given LAGGARD_GRACE_S to read
    that last line, and hung up on; its jobs stop. The stdio client (the only one, the add-on's reader thread) is
    never dropped: its senders wait instead (back-pressure), except ``wait=False`` sends, which are small replies
    queued under the service's lock.
    """

    def __init__(
        self,
        name: str,
        stream: BinaryIO,
        droppable: bool = False,
        hang_up: Callable[[], None] | None = None,
        max_pending_bytes: int | None = None,
    ) -> None:
        self.name = name
        self._stream = stream
        self._droppable = droppable
        self._hang_up = hang_up or (lambda: None)
        self._max_pending = max_pending_bytes or MAX_PENDING_BYTES
        self._outbox: collections.deque[bytes] = collections.deque()
        self._pending = 0
        self._ending = False
        self._changed = threading.Condition()
        self.closed = threading.Event()
        self._writer = threading.Thread(target=self._write_lines, name=f"hymotion-send {name}", daemon=True)
        self._writer.start()

    def send(self, event: Event, wait: bool = True) -> bool:
        """Queue one line; False if the client is gone (or was just dropped for falling behind)."""
        line = encode(event)
        with self._changed:
            if self.closed.is_set() or self._ending:
                return False
            if self._pending and self._pending + len(line) > self._max_pending:
                if self._droppable:
                    self._drop_behind()
                    return False
                if wait:
                    self._changed.wait_for(lambda: self.closed.is_set() or self._pending + len(line) <= self._max_pending)
                    if self.closed.is_set():
                        return False
            self._outbox.append(line)
            self._pending += len(line)
            self._changed.notify_all()
        return True

    def _drop_behind(self) -> None:
        """Called under the lock: forget what is queued, queue the reason, stop the client's jobs, hang up later."""
        unsent = self._pending
        reason = encode(ErrorEvent(
            code=errors.CANCELLED,
            message=f"This client fell {unsent} bytes of events behind, so the backend closes the connection and "
            "cancels its jobs.",
            hint="Read events as they arrive (keep a thread reading the socket), or ask for fewer results per job.",
        ))
        self._pending -= sum(map(len, self._outbox))
        self._outbox.clear()
        self._outbox.append(reason)
        self._pending += len(reason)
        self._ending = True
        self.closed.set()
        self._changed.notify_all()
        log.warning("%s: fell %d bytes behind; disconnecting it", self.name, unsent)
        timer = threading.Timer(LAGGARD_GRACE_S, self._hang_up)
        timer.daemon = True
        timer.start()

    def _write_lines(self) -> None:
        """The writer thread: one line at a time, taken off the queue first (it counts as pending until written)."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._outbox or self._ending)
                if not self._outbox:
                    break
                line = self._outbox.popleft()
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                log.info("%s: client gone while writing", self.name)
                with self._changed:
                    self.closed.set()
                    self._outbox.clear()
                    self._pending = 0
                    self._changed.notify_all()
                break
            with self._changed:
                self._pending -= len(line)
                self._changed.notify_all()
        try:
            self._stream.close()
        except OSError:
            pass
        self._hang_up()

    def close(self, timeout: float = CLOSE_DRAIN_S) -> None:
        """Accept no more lines, give the writer ``timeout`` seconds to deliver what is queued, then hang up."""
        with self._changed:
            self._ending = True
            self._changed.notify_all()
        self._writer.join(timeout)
        if self._writer.is_alive():
            self.closed.set()
            self._hang_up()
            self._writer.join(timeout)


# --- jobs and the service -------------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    connection: Connection
    settings: GenerationSettings
    plan: str | None
    constraint: MotionConstraint | None = None
    timeline: bool = False
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
    precision: str | None = None
    compile_dit: bool = False
    preload: bool = False


class Service:
    """The job queue, the worker that runs it, and the answers to every request."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self._lock = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        # With preload the service counts as loading from the start, so a status answered after the hello says so.
        self._loading = options.preload
        self._stopping = False
        self._pipeline: MotionPipeline | None = None
        self._connections: set[Connection] = set()
        self.stop_requested = threading.Event()
        self._worker = threading.Thread(target=self._work, name="hymotion-worker", daemon=True)

    # --- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            log.info("stopping: %s", reason)
        self.stop_requested.set()

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> bool:
        """Cancel every job, let the worker finish its sampling step, drop the model. False if the worker is still
        busy: it hung, or it is loading the model, which cannot be interrupted and is of no use to a stopping
        backend, so it is not waited for (the process then exits at once)."""
        with self._lock:
            self._stopping = True
            loading = self._loading
            dropped = list(self._queue)
            self._queue.clear()
            if self._current is not None:
                self._current.cancel_requested.set()
            self._lock.notify_all()
        for job in dropped:
            job.connection.send(_cancelled_event(job, "The backend is shutting down."), wait=False)
        if loading:
            log.info("stopping during the model load; not waiting for it")
            return False
        self._worker.join(timeout)
        if self._worker.is_alive():
            log.error("the worker did not stop within %.0f s", timeout)
            return False
        self._release_pipeline()
        return True

    # --- requests ---------------------------------------------------------------------------------------------------

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
        except Exception as error:  # noqa: BLE001 - no line may end the reader: it answers every one
            request_id = getattr(request, "id", None)
            job = request_id if isinstance(request, GenerateRequest) else None
            connection.send(_error_event(self._unexpected(error), id=request_id, job=job))

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
        constraint = _constraint_from_request(request, settings)
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
            job = Job(request.id, connection, settings, request.plan, constraint, bool(request.timeline))
            self._queue.append(job)
            position = len(self._queue) - 1 + (self._current is not None)
            # Queued before the worker can see the job, so it always precedes the job's first progress event.
            connection.send(QueuedEvent(id=request.id, job=request.id, position=position), wait=False)
            if self._loading:
                self._tell_loading([job], 0)
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

    def attach(self, connection: Connection) -> None:
        """A client that may now send requests; its lines are delivered before the process exits."""
        with self._lock:
            self._connections.add(connection)

    def close_connections(self, timeout: float = CLOSE_DRAIN_S) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close(timeout)

    def drop_connection(self, connection: Connection) -> None:
        """A TCP client went away: its jobs are of no use to anyone."""
        with self._lock:
            self._connections.discard(connection)
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

    # --- the worker -------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        if self.options.preload:
            self._preload()
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

            if job.timeline:
                from ..constraints import TIMELINE_CONTEXT, Segment, generate_timeline

                settings = job.settings
                clips = generate_timeline(
                    pipeline, [Segment(p, d) for p, d in zip(settings.prompts, settings.durations)], settings.seeds,
                    steps=settings.steps, cfg_scale=settings.cfg_scale, smoothing=settings.smoothing,
                    context_frames=TIMELINE_CONTEXT, start=job.constraint.start, end=job.constraint.end,
                    on_progress=on_progress, should_cancel=job.should_stop, on_warning=on_warning,
                )
            else:
                clips = pipeline.generate(
                    job.settings, on_progress=on_progress, should_cancel=job.should_stop, on_warning=on_warning,
                    constraint=job.constraint,
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
                errors.DEFAULT_HINTS[errors.OUT_OF_MEMORY],
            )
        log.error("failed:\n%s", traceback.format_exc())
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
            self._load(wanted or self.options.plan)
        elif wanted is not None and self._pipeline.plan != wanted:
            log.info("job %s asks for plan %s (was %s)", job.id, wanted, self._pipeline.plan)
            self._pipeline.switch_plan(wanted)
        return self._pipeline

    def _check_plan(self, plan: str) -> None:
        from .. import memory

        try:
            if self.options.device is None:
                memory.choose_plan(plan, getattr(self._pipeline, "variant", "lite"))
            elif plan not in memory.PLAN_CHOICES:
                memory.choose_plan(plan)
        except HyMotionError as error:
            raise ProtocolError(error.message, error.hint, field="plan") from None

    def _preload(self) -> None:
        """``--preload``: load the model as the first job would, before any asks; a failure is logged, and the next
        job loads again and reports the error to its client."""
        with self._lock:
            if self._stopping:
                self._loading = False
                return
        try:
            self._load(self.options.plan, prepare_text_encoder=True)
        except Exception as error:  # noqa: BLE001 - the service must survive a failed preload
            failure = error if isinstance(error, HyMotionError) else self._unexpected(error)
            log.warning("preloading the model failed (%s: %s); the next job loads it again", failure.code,
                        failure.message)
            self._free_cached_memory()

    def _load(self, plan: str, prepare_text_encoder: bool = False) -> None:
        """Load the pipeline on ``plan``. The job that needs it (the current one, if any) and every job queued
        meanwhile see the ``loading`` stage: step 0 when it starts (or when they arrive), step 1 when the model is
        ready. ``prepare_text_encoder`` (preload) also readies the text encoder, which otherwise loads at the first
        prompt."""
        with self._lock:
            self._loading = True
            self._tell_loading(self._jobs(), 0)
        try:
            from ..pipeline import load_pipeline

            self._pipeline = load_pipeline(
                model=self.options.model,
                model_dir=self.options.model_dir,
                plan=plan,
                device=self.options.device,
                cache_dir=self.options.cache_dir,
                precision=self.options.precision,
                compile_dit=self.options.compile_dit,
            )
            if prepare_text_encoder:
                self._pipeline.prepare_text_encoder()
        finally:
            with self._lock:
                self._loading = False
                if self._pipeline is not None:
                    self._tell_loading(self._jobs(), 1)
        log.info("model loaded: %s", self._pipeline.describe())

    @staticmethod
    def _tell_loading(jobs: list[Job], step: int) -> None:
        """Called under the lock: each job's ``loading`` progress; the start is told once per job."""
        for job in jobs:
            if step == 0 and job.stage == "loading":
                continue
            job.stage, job.step, job.total = "loading", step, 1
            job.connection.send(ProgressEvent(job=job.id, stage="loading", step=step, total=1), wait=False)

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
        from .. import memory

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
    """GenerationSettings from a request, checked by hymotion.shared.jobs (the CLI's rules and limits too)."""
    from ..shared.jobs import DEFAULT_CFG, DEFAULT_DURATION, DEFAULT_STEPS, GenerationSettings

    settings = GenerationSettings(
        prompts=request.prompts,
        durations=request.durations if request.durations is not None else [DEFAULT_DURATION],
        seeds=request.seeds if request.seeds is not None else [0],
        cfg_scale=request.cfg_scale if request.cfg_scale is not None else DEFAULT_CFG,
        steps=request.steps if request.steps is not None else DEFAULT_STEPS,
        smoothing=request.smoothing if request.smoothing is not None else True,
    )
    try:
        return settings.validate()
    except HyMotionError as error:
        raise ProtocolError(error.message, error.hint, field=error.field, request_id=request.id) from None


def _constraint_from_request(request: GenerateRequest, settings: GenerationSettings) -> MotionConstraint | None:
    """The request's known frames, checked against the model's skeleton and the clips' durations now, so a
    constraint that cannot be met is refused before the job is queued (None: an unconstrained job)."""
    if request.constraint is None and not request.timeline:
        return None
    from ..constraints import TIMELINE_CONTEXT, MotionConstraint, Segment, check_timeline

    spec = request.constraint or GenerateConstraint()
    try:
        start = _pose(spec.start, "constraint.start")
        constraint = MotionConstraint(start, _pose(spec.end, "constraint.end"), spec.loop, _directions(spec, start))
        if not request.timeline:
            constraint.check(settings.durations)
        elif spec.loop:
            raise errors.bad_request("A timeline cannot loop.", "Loop a single clip, or drop loop.", field="timeline")
        elif constraint.directions is not None:
            raise errors.bad_request("A timeline cannot follow a path or meet targets yet.",
                                     "Direct a single clip, or drop path and targets.", field="timeline")
        else:
            segments = [Segment(prompt, duration) for prompt, duration in zip(settings.prompts, settings.durations)]
            check_timeline(segments, TIMELINE_CONTEXT, constraint.start)
    except HyMotionError as error:
        field_name = error.field or ("timeline" if request.timeline else "constraint")
        raise ProtocolError(error.message, error.hint, field=field_name, request_id=request.id) from None
    return constraint


def _directions(spec: GenerateConstraint, start):
    """The constraint's path and targets as directing.Directions (None: neither given), checked for reach."""
    if spec.path is None and not spec.targets:
        return None
    from ..directing import directions_from_fields

    targets = [(t.joint, t.first, t.last, t.position, t.rotation) for t in spec.targets or []]
    return directions_from_fields(spec.path, targets, spec.facing or "path", start)


def _pose(frames: PoseFrames | None, path: str) -> Pose | None:
    from ..constraints import Pose
    from ..shared.skeleton import BODY_JOINT_NAMES

    if frames is None:
        return None
    joints = frames.rotations.shape[1]
    if joints != len(BODY_JOINT_NAMES):
        raise errors.bad_request(
            f"Field '{path}.rotations' holds {joints} joints; this model's skeleton has {len(BODY_JOINT_NAMES)}.",
            f"Send the {len(BODY_JOINT_NAMES)} SMPL-X body joints in the order of a result's joint_names.",
            field=f"{path}.rotations",
        )
    try:
        return Pose(frames.translation.to_numpy(), frames.rotations.to_numpy())
    except HyMotionError as error:
        raise errors.bad_request(f"Field '{path}': {error.message}", error.hint, field=path) from None


def _result_event(job_id: str, index: int, clip: MotionClip) -> ResultEvent:
    from ..shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS, BODY_REST_OFFSETS

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
    from .. import weights

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


# --- the line loop every transport runs -----------------------------------------------------------------------------


def serve_lines(service: Service, connection: Connection, stream: BinaryIO) -> None:
    """Answer each complete request line of ``stream`` until EOF; a line over the size limit is skipped whole and
    refused. Every non-blank line gets exactly one answer (a reply or an error), whatever bytes it holds."""
    while True:
        line = stream.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_REQUEST_BYTES)
            connection.send(_too_long_event())
            continue
        if not line.endswith(b"\n"):
            log.info("input ended inside a line; %d bytes ignored", len(line))
            return
        service.handle_line(connection, line)


def _too_long_event() -> ErrorEvent:
    return ErrorEvent(
        code=errors.BAD_REQUEST,
        message=f"A request line is longer than {MAX_REQUEST_BYTES} bytes and was skipped.",
        hint="Send one JSON object per line; split very long prompt lists into several jobs.",
    )


def wait_for_stop(service: Service) -> None:
    """Block the main thread in short waits, so that SIGTERM/SIGINT handlers get to run."""
    while not service.stop_requested.wait(PARENT_POLL_S):
        continue
