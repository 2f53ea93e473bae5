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
from typing import TYPE_CHECKING, Any

from .. import __version__, gpu_info
from ..shared import errors
from ..shared.errors import HyMotionError
from ..shared.models import DEFAULT_MODEL, LITE, STANDARD
from ..shared.protocol import (
    PROTOCOL_VERSION,
    AckEvent,
    AuthRequest,
    CancelRequest,
    DoneEvent,
    ErrorEvent,
    GenerateRequest,
    HelloEvent,
    PingRequest,
    PongEvent,
    ProgressEvent,
    ProtocolError,
    QueuedEvent,
    ShutdownRequest,
    StatusEvent,
    StatusRequest,
    WarningEvent,
    decode_request,
)
from .connection import CLOSE_DRAIN_S, Connection
from .requests import (
    check_plan_name,
    constraint_from_request,
    model_availability,
    result_event,
    settings_from_request,
    torch_device_report,
)

if TYPE_CHECKING:
    from ..pipeline.known_frames import MotionConstraint
    from ..pipeline.sampling import MotionPipeline
    from ..shared.jobs import GenerationSettings

log = logging.getLogger("hymotion.service")

PARENT_POLL_S = 0.5
WORKER_STOP_TIMEOUT_S = 15.0


# --- connections ----------------------------------------------------------------------------------------------------


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
    model: str = DEFAULT_MODEL
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
            models=model_availability(self.options.model_dir),
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
        settings = settings_from_request(request)
        check_plan_name(request)
        constraint = constraint_from_request(request, settings)
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
                from ..pipeline.timeline import TIMELINE_CONTEXT, Segment, generate_timeline

                settings = job.settings
                timeline_constraint = job.constraint
                assert timeline_constraint is not None  # constraint_from_request gives every timeline job one
                clips = generate_timeline(
                    pipeline, [Segment(p, d) for p, d in zip(settings.prompts, settings.durations)], settings.seeds,
                    steps=settings.steps, cfg_scale=settings.cfg_scale, smoothing=settings.smoothing,
                    context_frames=TIMELINE_CONTEXT, start=timeline_constraint.start,
                    end=timeline_constraint.end,
                    on_progress=on_progress, should_cancel=job.should_stop, on_warning=on_warning,
                )
            else:
                clips = pipeline.generate(
                    job.settings, on_progress=on_progress, should_cancel=job.should_stop, on_warning=on_warning,
                    constraint=job.constraint,
                )
            try:
                for clip in clips:
                    job.connection.send(result_event(job.id, sent, clip))
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
        memory = sys.modules.get("hymotion.pipeline.memory")
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
        pipeline = self._pipeline
        if pipeline is None:
            self._load(wanted or self.options.plan)
            pipeline = self._pipeline
            assert pipeline is not None  # _load sets it or raises
        elif wanted is not None and pipeline.plan != wanted:
            log.info("job %s asks for plan %s (was %s)", job.id, wanted, pipeline.plan)
            pipeline.switch_plan(wanted)
        return pipeline

    def _check_plan(self, plan: str) -> None:
        from ..pipeline import memory

        try:
            if self.options.device is None:
                memory.choose_plan(plan, getattr(self._pipeline, "variant", LITE))
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
            from ..pipeline.loading import load_pipeline

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
        from ..pipeline import memory

        _, vram_free, vram_total = self._device_report()
        variant = STANDARD if self.options.model == STANDARD else LITE
        measured = (vram_free, vram_total) if vram_free is not None and vram_total is not None else None
        return memory.choose_plan("auto", variant, memory=measured) if measured else self.options.plan

    def _device_report(self) -> tuple[str | None, int | None, int | None]:
        """Device name and free/total VRAM, without importing torch unless the pipeline already did."""
        if self._pipeline is not None and "torch" in sys.modules:
            return torch_device_report(self._pipeline.device)
        if (self.options.device or "").startswith("cpu"):
            return "cpu", None, None
        return gpu_info.device_report(self.options.device)


def _cancelled_event(job: Job, message: str) -> ErrorEvent:
    return ErrorEvent(code=errors.CANCELLED, message=message, hint="Results already sent stay valid.", job=job.id)


def _error_event(error: HyMotionError, **where: Any) -> ErrorEvent:
    return ErrorEvent(code=error.code, message=error.message, hint=error.hint, **where)


# --- the line loop every transport runs -----------------------------------------------------------------------------


