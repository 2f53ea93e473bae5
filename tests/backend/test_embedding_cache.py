"""The prompt-embedding cache with several writers: farm workers share one embeddings folder, so two of them may
encode the same prompt at the same moment."""

from __future__ import annotations

import threading

import pytest
import torch

from hymotion.model import text_encoder
from hymotion.model.text_encoder import EmbeddingCache, PromptEmbedding

BARRIER_TIMEOUT_S = 30.0


def embedding(value: float) -> PromptEmbedding:
    # The real shapes (128 Qwen3 tokens of 4096, one CLIP vector of 768): 2 MB, a write that takes a while.
    return PromptEmbedding(torch.full((1, 128, 4096), value), torch.full((1, 768), value), truncated=False)


def test_two_writers_of_one_prompt_leave_one_whole_entry_and_no_scratch(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    both_written = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)
    real_save = text_encoder.save_file

    def save_then_wait(tensors, filename, metadata=None):
        # Both writers have written their file before either renames it: the moment a shared scratch name breaks.
        real_save(tensors, filename, metadata=metadata)
        both_written.wait()

    monkeypatch.setattr(text_encoder, "save_file", save_then_wait)
    failures: list[BaseException] = []

    def write(value: float) -> None:
        try:
            cache.put("encoder", "a person jumps", embedding(value))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)
            both_written.abort()

    writers = [threading.Thread(target=write, args=(value,)) for value in (1.0, 2.0)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(BARRIER_TIMEOUT_S)
    assert not failures, f"a writer failed: {failures[0]!r}"

    found = cache.get("encoder", "a person jumps")
    assert found is not None, "the entry is unreadable"
    value = float(found.ctxt.flatten()[0])
    assert value in (1.0, 2.0)
    # whole: every number is one writer's, none a mix of two files
    assert torch.equal(found.ctxt, embedding(value).ctxt) and torch.equal(found.vtxt, embedding(value).vtxt)
    left = sorted(path.name for path in tmp_path.rglob("*") if path.is_file())
    assert left == [cache._path("encoder", "a person jumps").name], f"left behind: {left}"


def test_a_failed_write_leaves_no_entry_and_no_scratch(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)

    def fails_halfway(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(text_encoder, "save_file", fails_halfway)
    with pytest.raises(OSError):
        cache.put("encoder", "a person jumps", embedding(1.0))
    assert cache.get("encoder", "a person jumps") is None
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]
