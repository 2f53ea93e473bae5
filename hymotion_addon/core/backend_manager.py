"""The one backend process of a Blender session: started on the first request, kept warm between clicks (the model
stays loaded), restarted when it died or its settings changed, shut down on unregister and when Blender exits.

Pure Python (no bpy). Starting happens on a thread when the caller must not block (the UI), inline otherwise
(background mode, scripts). The caller reads :meth:`BackendManager.status` to draw the panel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from hymotion import errors
from hymotion.errors import HyMotionError
from hymotion.protocol import ErrorEvent, Event, HelloEvent

from .client import BACKEND_RESTARTS_HINT, BackendClient, service_args

START_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 10.0

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

    def arguments(self) -> list[str]:
        return service_args(self.model, self.model_dir or None, self.plan, self.device or None)


@dataclass(frozen=True)
class BackendStatus:
    """What the panel shows: state, the hello of a ready backend, the error (with hint) of a failed one."""

    state: str
    hello: HelloEvent | None = None
    error: HyMotionError | None = None
    pid: int | None = None


class BackendManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: BackendClient | None = None
        self._config: BackendConfig | None = None
        self._state = STOPPED
        self._error: HyMotionError | None = None
        self._starter: threading.Thread | None = None

    # --- state ------------------------------------------------------------------------------------------------------

    def status(self) -> BackendStatus:
        """The current state; a backend that died while idle shows as ERROR with its last output."""
        with self._lock:
            client = self._client
            if self._state == READY and client is not None and not client.alive:
                self._state = ERROR
                self._error = _died_error(client.stderr_tail)
            return BackendStatus(
                self._state,
                client.hello if client is not None and self._state == READY else None,
                self._error,
                client.pid if client is not None else None,
            )

    @property
    def pid(self) -> int | None:
        client = self._client
        return client.pid if client is not None else None

    # --- starting and stopping --------------------------------------------------------------------------------------

    def ensure_started(self, config: BackendConfig, wait: bool) -> None:
        """Make a backend with ``config`` ready: nothing to do if it is, else (re)start it.

        With ``wait`` this returns once it is ready and raises its HyMotionError if it cannot start; without, it
        returns at once and :meth:`status` moves from STARTING to READY or ERROR.
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
                self._starter = threading.Thread(
                    target=self._start, args=(config, client), name="hymotion-backend-start", daemon=True
                )
                self._starter.start()
            starter = self._starter
        if wait:
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

    def _start(self, config: BackendConfig, previous: BackendClient | None) -> None:
        if previous is not None:
            previous.shutdown(SHUTDOWN_TIMEOUT_S)
        client = BackendClient(config.python, config.arguments())
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
                return
        client.shutdown(SHUTDOWN_TIMEOUT_S)

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
        if client is not None:
            client.shutdown(SHUTDOWN_TIMEOUT_S)

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
        return client.poll_events() if client is not None else []

    def wait_events(self, timeout: float) -> list[Event]:
        client = self._client
        return client.wait_events(timeout) if client is not None else []


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
