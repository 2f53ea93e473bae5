"""The one backend process of a Blender session: started on the first request (or early, with the model preloaded,
when the sidebar opens), kept warm between clicks (the model stays loaded), restarted when it died or its settings
changed, shut down on unregister and when Blender exits.

Pure Python (no bpy). Starting happens on a thread when the caller must not block (the UI), inline otherwise
(background mode, scripts). The caller reads :meth:`BackendManager.status` to draw the panel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from hymotion.shared import errors
from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import DoneEvent, ErrorEvent, Event, HelloEvent

from .client import BACKEND_RESTARTS_HINT, BackendClient, service_args

START_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 10.0
# How often a preloading backend is asked whether its model is ready: the panel's stage lags the load by at most this.
PRELOAD_POLL_S = 0.25
STATUS_TIMEOUT_S = 10.0

STOPPED = "STOPPED"
STARTING = "STARTING"
READY = "READY"
ERROR = "ERROR"


@dataclass(frozen=True)
class BackendConfig:
    """Everything the backend process is started with; a change means a restart at the next request."""

    python: str
    model: str = "lite"
    model_dir: str = ""
    plan: str = "auto"
    device: str = ""

    def arguments(self, preload: bool = False) -> list[str]:
        return service_args(self.model, self.model_dir or None, self.plan, self.device or None, preload)


@dataclass(frozen=True)
class BackendStatus:
    """What the panel shows: state, the hello of a ready backend, the error (with hint) of a failed one.

    A backend started with preload is READY (a job may be sent; it waits behind the load) with ``loading`` true until
    its model is ready; ``preload_failed`` says the load ended without a model (the first job loads again and
    reports why)."""

    state: str
    hello: HelloEvent | None = None
    error: HyMotionError | None = None
    pid: int | None = None
    loading: bool = False
    preload_failed: bool = False


class BackendManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: BackendClient | None = None
        self._config: BackendConfig | None = None
        self._state = STOPPED
        self._error: HyMotionError | None = None
        self._starter: threading.Thread | None = None
        self._loading = False
        self._preload_failed = False
        self._follower: threading.Thread | None = None
        self._stop_following = threading.Event()

    # --- state ------------------------------------------------------------------------------------------------------

    def status(self) -> BackendStatus:
        """The current state; a backend that died while idle shows as ERROR with its last output."""
        with self._lock:
            client = self._client
            if self._state == READY and client is not None and not client.alive:
                self._state = ERROR
                self._error = _died_error(client.stderr_tail)
            ready = self._state == READY
            return BackendStatus(
                self._state,
                client.hello if client is not None and ready else None,
                self._error,
                client.pid if client is not None else None,
                loading=ready and self._loading,
                preload_failed=ready and self._preload_failed,
            )

    @property
    def pid(self) -> int | None:
        client = self._client
        return client.pid if client is not None else None

    # --- starting and stopping --------------------------------------------------------------------------------------

    def ensure_started(self, config: BackendConfig, wait: bool, preload: bool = False) -> None:
        """Make a backend with ``config`` ready: nothing to do if it is, else (re)start it.

        With ``wait`` this returns once it is ready and raises its HyMotionError if it cannot start; without, it
        returns at once and :meth:`status` moves from STARTING to READY or ERROR. ``preload`` (used only when a
        backend is started here) has it load the model at once rather than at the first job; :meth:`status` shows
        ``loading`` until the model is ready. It is no setting of the backend: a running backend is kept either way.
        """
        with self._lock:
            client = self._client
            usable = client is not None and client.alive and self._config == config
            starting = self._state == STARTING and self._config == config
            if usable and self._state == READY:
                return
            if not starting:
                self._client = None
                self._config = config
                self._state = STARTING
                self._error = None
                self._loading = self._preload_failed = False
                self._stop_following.set()
                self._starter = threading.Thread(
                    target=self._start, args=(config, client, preload), name="hymotion-backend-start", daemon=True
                )
                self._starter.start()
            starter = self._starter
        if wait and starter is not None:
            starter.join()
            status = self.status()
            if status.state != READY:
                raise status.error or HyMotionError(errors.INTERNAL, "The backend did not start.", "Try again.")

    def wait_started(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a start in progress to end (READY or ERROR)."""
        with self._lock:
            starter = self._starter
        if starter is not None:
            starter.join(timeout)

    def wait_preloaded(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a preload being followed to end (status: ``loading`` false)."""
        with self._lock:
            follower = self._follower
        if follower is not None:
            follower.join(timeout)

    def _start(self, config: BackendConfig, previous: BackendClient | None, preload: bool) -> None:
        if previous is not None:
            previous.shutdown(SHUTDOWN_TIMEOUT_S)
        client = BackendClient(config.python, config.arguments(preload))
        try:
            client.start(START_TIMEOUT_S)
        except HyMotionError as error:
            with self._lock:
                if self._config == config:
                    self._state, self._error = ERROR, error
            return
        with self._lock:
            if self._config == config and self._state == STARTING:
                self._client, self._state = client, READY
                if preload:
                    self._loading = True
                    self._stop_following = threading.Event()
                    self._follower = threading.Thread(
                        target=self._follow_preload, args=(client, self._stop_following),
                        name="hymotion-backend-preload", daemon=True,
                    )
                    self._follower.start()
                return
        client.shutdown(SHUTDOWN_TIMEOUT_S)

    def _follow_preload(self, client: BackendClient, stop: threading.Event) -> None:
        """Ask the backend how its preload goes until the model is ready or the load failed (the backend says
        ``loading`` from its hello on), so the panel can show the stage. Ends early when the backend stops."""
        loaded = None
        while not stop.is_set():
            try:
                reply = client.status(STATUS_TIMEOUT_S)
            except (HyMotionError, TimeoutError):
                break
            if reply.state != "loading":
                loaded = reply.loaded
                break
            stop.wait(PRELOAD_POLL_S)
        with self._lock:
            if self._client is client:
                self._loading = False
                self._preload_failed = loaded is False

    def shutdown(self) -> None:
        """Stop the backend (waiting for a start in progress first) and forget it; the next request starts anew."""
        with self._lock:
            starter = self._starter
        if starter is not None:
            starter.join(START_TIMEOUT_S)
        with self._lock:
            client, self._client = self._client, None
            self._config = None
            self._state, self._error = STOPPED, None
            self._loading = self._preload_failed = False
            self._stop_following.set()
        if client is not None:
            client.shutdown(SHUTDOWN_TIMEOUT_S)
        self.wait_preloaded(STATUS_TIMEOUT_S)

    # --- jobs -------------------------------------------------------------------------------------------------------

    def client(self) -> BackendClient:
        """The ready client; raises backend_died when there is none (the caller then reports it)."""
        status = self.status()
        client = self._client
        if status.state != READY or client is None:
            raise status.error or HyMotionError(
                errors.BACKEND_DIED, "The backend is not running.", BACKEND_RESTARTS_HINT
            )
        return client

    def poll_events(self) -> list[Event]:
        client = self._client
        return self._noted(client.poll_events() if client is not None else [])

    def wait_events(self, timeout: float) -> list[Event]:
        client = self._client
        return self._noted(client.wait_events(timeout) if client is not None else [])

    def _noted(self, events: list[Event]) -> list[Event]:
        """A finished job means the model loaded after all: a failed preload is no longer news."""
        if any(isinstance(event, DoneEvent) for event in events):
            with self._lock:
                self._preload_failed = False
        return events


def _died_error(stderr_tail: list[str]) -> HyMotionError:
    tail = "\n".join(stderr_tail[-8:])
    return HyMotionError(
        errors.BACKEND_DIED,
        "The backend stopped unexpectedly." + (f" Its last output:\n{tail}" if tail else ""),
        BACKEND_RESTARTS_HINT,
    )


def error_from_event(event: ErrorEvent) -> HyMotionError:
    """A job's error event as an exception, with the dead backend's last output in the message."""
    message = event.message
    if event.stderr_tail:
        message += "\nLast backend output:\n" + "\n".join(event.stderr_tail[-8:])
    return HyMotionError(event.code, message, event.hint)


MANAGER = BackendManager()
"""The session's backend; the add-on's operators, panel and API all use this one."""
