"""Fixtures for tests that run inside real Blender (the `bpy` module): a fresh empty scene per test."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture
def scene() -> bpy.types.Scene:
    """An empty factory-settings scene (24 fps, like a new file), so no test sees another's data."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)

