"""The backend manager's early start, without Blender or a backend process: a backend started with preload is READY at
once (a Generate may queue behind the load) and ``loading`` until the backend says its model is ready; a failed
preload shows; nothing starts twice; preload is no reason to restart; shutdown during the load stops following it.

The client is a stand-in whose ``status`` says ``loading`` until the test releases the load, so "during the load" is
certain.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from hymotion.shared import errors
from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import PROTOCOL_VERSION, DoneEvent, HelloEvent, StatusEvent
from hymotion_addon.core import backend_manager
from hymotion_addon.core.backend_manager import READY, STOPPED, BackendConfig, BackendManager

WAIT_S = 30.0
CONFIG = BackendConfig(python="/stand-in/python", model="tiny-random", plan="cpu")


class StandInClient:
    """Stands in for BackendClient: says hello at once; a preloading one reports ``loading`` until ``release``."""

    pids = itertools.count(1000)

    def __init__(self, python: str, args: list[str]) -> None:
        self.args = args
        self.pid = next(self.pids)
        self.alive = False
        self.hello: HelloEvent | None = None
        self.stderr_tail: list[str] = []
        self.released = threading.Event()
        self.asked = threading.Event()
        self.model_loads = True
        self.events: list = []

    def start(self, timeout: float) -> HelloEvent:
        self.alive = True
        self.hello = HelloEvent(protocol=PROTOCOL_VERSION, backend_version="test", pid=self.pid, model="tiny-random",
                                plan="cpu")
        return self.hello

    def status(self, timeout: float) -> StatusEvent:
        if not self.alive:
            raise HyMotionError(errors.BACKEND_DIED, "The backend is not running.", "Generate again.")
        self.asked.set()
        loading = "--preload" in self.args and not self.released.is_set()
        loaded = not loading and self.model_loads
        return StatusEvent(id="s", state="loading" if loading else "idle", queue=[], model="tiny-random", plan="cpu",
                           loaded=loaded)

    def poll_events(self) -> list:
        events, self.events = self.events, []
        return events

    def shutdown(self, timeout: float) -> int:
        self.alive = False
        return 0


@pytest.fixture
def clients(monkeypatch) -> list[StandInClient]:
    made: list[StandInClient] = []

    def make(python: str, args: list[str]) -> StandInClient:
        made.append(StandInClient(python, args))
        return made[-1]

    monkeypatch.setattr(backend_manager, "BackendClient", make)
    return made


@pytest.fixture
def manager(clients) -> Iterator[BackendManager]:
    made = BackendManager()
    yield made
    for client in clients:
        client.released.set()
    made.shutdown()


def test_a_preloading_backend_is_ready_at_once_and_loading_until_its_model_is_ready(manager, clients) -> None:
    manager.ensure_started(CONFIG, wait=True, preload=True)
    (client,) = clients
    assert "--preload" in client.args
    assert client.asked.wait(WAIT_S)
    status = manager.status()
    assert (status.state, status.loading, status.pid) == (READY, True, client.pid)

    client.released.set()
    manager.wait_preloaded(WAIT_S)

    status = manager.status()
    assert (status.state, status.loading, status.preload_failed) == (READY, False, False)


def test_a_failed_preload_is_noted_until_a_job_finishes(manager, clients) -> None:
    manager.ensure_started(CONFIG, wait=True, preload=True)
    clients[0].model_loads = False
    clients[0].released.set()
    manager.wait_preloaded(WAIT_S)

    status = manager.status()
    assert (status.state, status.loading, status.preload_failed) == (READY, False, True)
    clients[0].events = [DoneEvent(job="g", results=1, seconds=1.0)]
    assert len(manager.poll_events()) == 1
    assert not manager.status().preload_failed


def test_nothing_starts_twice_and_preload_is_no_reason_to_restart(manager, clients) -> None:
    manager.ensure_started(CONFIG, wait=False, preload=True)
    manager.ensure_started(CONFIG, wait=True)  # a Generate while the early start runs
    manager.ensure_started(CONFIG, wait=True, preload=True)  # the panel's timer again
    assert len(clients) == 1 and clients[0].alive

    changed = BackendConfig(python=CONFIG.python, model=CONFIG.model, plan="stream")
    manager.ensure_started(changed, wait=True)

    assert len(clients) == 2 and not clients[0].alive
    assert "--preload" not in clients[1].args and "stream" in clients[1].args
    assert not manager.status().loading


def test_shutdown_during_a_preload_stops_following_it(manager, clients) -> None:
    manager.ensure_started(CONFIG, wait=True, preload=True)
    assert clients[0].asked.wait(WAIT_S)

    manager.shutdown()

    follower = manager._follower
    assert follower is not None and not follower.is_alive()
    status = manager.status()
    assert (status.state, status.loading) == (STOPPED, False) and not clients[0].alive
