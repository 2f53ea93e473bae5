"""Shared helpers for the backend tests (a module of its own: every test folder has a conftest.py)."""

from hymotion.jobs import GenerationSettings


def settings(prompts=("a person walks",), durations=(2.0,), seeds=(0,), steps=6, cfg=5.0, smoothing=True):
    return GenerationSettings(list(prompts), list(durations), list(seeds), cfg_scale=cfg, steps=steps, smoothing=smoothing)
