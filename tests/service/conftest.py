"""Fixtures for the service tests: a private cache folder, and a session-end check that no backend was left behind."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_helpers import MARKER_ENV  # noqa: E402


def _processes_with_marker(marker: str) -> list[int]:
    """Live processes (orphans included) whose environment carries this session's marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _zombie_children() -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(int(entry.name))
    return zombies


@pytest.fixture(scope="session")
def backend_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for every backend the tests start; checks at the end that none of them outlived the session."""
    marker = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if key != "HYMOTION_TOKEN"}
    env.update({MARKER_ENV: marker, "HYMOTION_CACHE": str(tmp_path_factory.mktemp("hymotion-cache"))})
    yield env
    if not Path("/proc").is_dir():
        return
    strays = _processes_with_marker(marker)
    for pid in strays:
        os.kill(pid, signal.SIGKILL)
    zombies = _zombie_children()
    assert not strays, f"backend processes outlived the tests: {strays}"
    assert not zombies, f"unreaped child processes: {zombies}"


@pytest.fixture(scope="session")
def client_module():
    from service_helpers import load_client_module

    return load_client_module()


@pytest.fixture(scope="module")
def client(client_module, backend_env) -> Iterator:
    """One warm backend (tiny model, CPU) shared by a module's tests, as the add-on keeps one for a Blender session."""
    from service_helpers import EVENT_TIMEOUT_S

    backend = client_module.BackendClient(
        sys.executable, client_module.service_args(model="tiny-random", device="cpu"), env=backend_env
    )
    backend.start(timeout=EVENT_TIMEOUT_S)
    yield backend
    assert backend.shutdown() == 0
