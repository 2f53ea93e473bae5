import pytest

from hymotion.pipeline import load_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """One tiny random pipeline for the session (CPU, fp32 plan), with its own embedding cache."""
    return load_pipeline("tiny-random", plan="cpu", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))

