"""The backend starts reading the weight files while it imports torch and the libraries (the day's first start reads
them from disk); Qwen3's are skipped where memory could not keep them cached."""

import os

import pytest

from hymotion import weights


@pytest.fixture
def model_folder(tmp_path):
    """The on-disk layout ``weights.locate`` expects under a ``--model-dir``: DiT, Qwen3 and CLIP folders."""
    dit = tmp_path / weights.VARIANT_FOLDERS["lite"]
    dit.mkdir()
    (dit / "config.yml").write_text("model: {}\n")
    (dit / "latest.ckpt").write_bytes(b"d" * 3000)
    for name, size in (("Qwen3-8B", 5000), ("clip-vit-large-patch14", 2000)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"w" * size)
    return tmp_path


def prefetched(monkeypatch, model_dir, available):
    read = []
    monkeypatch.setattr(weights, "_available_memory", lambda: available)
    monkeypatch.setattr(weights, "_read_into_page_cache", lambda paths: read.extend(p.parent.name for p in paths))
    thread = weights.prefetch_model("lite", model_dir)
    thread.join(timeout=10)
    assert not thread.is_alive() and thread.daemon, "a daemon thread that never holds up the exit"
    return read


def test_every_file_is_read_in_loading_order_where_memory_keeps_them(monkeypatch, model_folder):
    read = prefetched(monkeypatch, model_folder, available=weights.PREFETCH_SPARE + 10**6)
    lite = weights.VARIANT_FOLDERS["lite"]
    assert read == [lite, lite, "clip-vit-large-patch14", "Qwen3-8B"]


def test_qwen_is_skipped_where_memory_could_not_keep_it_cached(monkeypatch, model_folder):
    read = prefetched(monkeypatch, model_folder, available=weights.PREFETCH_SPARE + 9_000)  # the files: 10 kB
    assert "Qwen3-8B" not in read and "clip-vit-large-patch14" in read


def test_missing_weights_or_the_tiny_model_read_nothing(tmp_path):
    assert weights.prefetch_model("lite", tmp_path / "empty") is None, "loading reports missing weights itself"
    assert weights.prefetch_model("tiny-random") is None


@pytest.mark.skipif(not hasattr(os, "POSIX_FADV_WILLNEED"), reason="read-ahead advice is POSIX (Linux)")
def test_linux_asks_the_kernel_to_read_ahead_and_skips_a_file_that_vanished(monkeypatch, model_folder):
    asked = []
    monkeypatch.setattr(weights.os, "posix_fadvise", lambda fd, offset, length, advice: asked.append(advice),
                        raising=False)
    paths = sorted(model_folder.rglob("*.safetensors"))
    weights._read_into_page_cache(paths + [model_folder / "gone.safetensors"])
    assert asked == [os.POSIX_FADV_WILLNEED] * len(paths)


def test_without_read_ahead_the_files_are_read_through_one_buffer(monkeypatch, model_folder):
    monkeypatch.delattr(weights.os, "posix_fadvise", raising=False)
    monkeypatch.setattr(weights, "PREFETCH_CHUNK", 1024)
    read = []
    real_open = open

    class CountingFile:
        def __init__(self, path, *args, **kwargs):
            self.file = real_open(path, *args, **kwargs)

        def readinto(self, buffer):
            count = self.file.readinto(buffer)
            read.append(count)
            return count

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(weights, "open", CountingFile, raising=False)
    paths = sorted(model_folder.rglob("*.safetensors"))
    weights._read_into_page_cache(paths + [model_folder / "gone.safetensors"])
    assert sum(read) == sum(path.stat().st_size for path in paths) and max(read) <= 1024
