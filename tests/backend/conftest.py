import pytest

from hymotion.jobs import GenerationSettings
from hymotion.pipeline import load_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """One tiny random pipeline for the session (CPU, fp32 plan), with its own embedding cache."""
    return load_pipeline("tiny-random", plan="cpu", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def settings(prompts=("a person walks",), durations=(2.0,), seeds=(0,), steps=6, cfg=5.0, smoothing=True):
    return GenerationSettings(list(prompts), list(durations), list(seeds), cfg_scale=cfg, steps=steps, smoothing=smoothing)
