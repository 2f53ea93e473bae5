from collections.abc import Iterator

import huggingface_hub
import pytest
from backend_helpers import StubPrompter

from hymotion.pipeline.loading import load_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """One tiny random pipeline for the session (CPU, fp32 plan), with its own embedding cache."""
    return load_pipeline("tiny-random", plan="cpu", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))



@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """Weights are looked up in an empty private Hugging Face cache, never the machine's, and nothing is downloaded."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def prompter() -> Iterator[StubPrompter]:
    """A prompt rewriter on 127.0.0.1 that answers what the test sets; shut down after the test."""
    stub = StubPrompter()
    yield stub
    stub.close()
