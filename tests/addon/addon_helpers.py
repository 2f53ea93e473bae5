"""Helpers for the add-on's tests that need no Blender; the Blender tests (tests/blender) use them too."""

from __future__ import annotations

import numpy as np


def random_unit_quaternions(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    quaternions = rng.normal(size=shape + (4,))
    return quaternions / np.linalg.norm(quaternions, axis=-1, keepdims=True)
