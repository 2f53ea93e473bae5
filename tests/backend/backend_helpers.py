"""Shared helpers for the backend tests (a module of its own: every test folder has a conftest.py)."""

import numpy as np

from hymotion.jobs import GenerationSettings


def settings(prompts=("a person walks",), durations=(2.0,), seeds=(0,), steps=6, cfg=5.0, smoothing=True):
    return GenerationSettings(list(prompts), list(durations), list(seeds), cfg_scale=cfg, steps=steps, smoothing=smoothing)


def random_unit_quaternions(rng: np.random.Generator, shape) -> np.ndarray:
    q = rng.normal(size=tuple(shape) + (4,))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def axis_angle_quaternion(axis, angle) -> np.ndarray:
    """(w, x, y, z) of a turn by ``angle`` radians (any shape) about ``axis``."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    angle = np.asarray(angle, float)[..., None]
    return np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * axis], axis=-1)
