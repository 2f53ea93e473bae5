"""Fixtures for tests that run inside real Blender (the `bpy` module): a fresh empty scene per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from blender_helpers import new_empty_file

REPO_ROOT = Path(__file__).resolve().parents[2]
# The repository root (hymotion_addon) and the add-on's bpy-free test helpers (tests/addon/addon_helpers.py).
for folder in (REPO_ROOT, REPO_ROOT / "tests" / "addon"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def scene() -> bpy.types.Scene:
    """An empty factory-settings scene (24 fps, like a new file), so no test sees another's data."""
    new_empty_file()
    return bpy.context.scene


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)



_session_status: list[int] = []


def pytest_sessionfinish(session, exitstatus) -> None:
    _session_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Blender 4.2/4.3 as a module crashes in its own teardown at interpreter exit once an add-on with Python property
    callbacks (Rigify, the glTF exporter) was enabled: every test has passed by then, but the process would report
    SIGSEGV. End the process here with pytest's real exit status instead; 4.4 and later exit normally."""
    if bpy.app.version < (4, 4) and _session_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_session_status[-1])
