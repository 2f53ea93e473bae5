"""Tests of the add-on's core (hymotion_addon/core) in plain Python, without Blender: the repository root goes on
sys.path so ``hymotion_addon.core`` imports, and its package never loads bpy (tests/test_house_rules.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
