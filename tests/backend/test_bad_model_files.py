"""Crafted or damaged model files end as one clear ``bad_checkpoint`` error naming the file, and no pickle inside them
is ever unpickled (each carries a payload that would leave a marker file if it ran)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from hymotion.cli import main
from hymotion.model.loading import load_stats
from hymotion.pipeline.motion import LATENT_DIM
from hymotion.shared.errors import HyMotionError


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def stats_folder(tmp_path: Path, mean: bytes | None = None, mean_values=None) -> Path:
    folder = tmp_path / "HY-Motion-1.0-Lite"
    (folder / "stats").mkdir(parents=True)
    (folder / "config.yml").write_text("train_pipeline_args:\n  test_cfg:\n    mean_std_dir: ./stats/\n")
    np.save(folder / "stats" / "Std.npy", np.ones(LATENT_DIM, dtype=np.float32))
    if mean is not None:
        (folder / "stats" / "Mean.npy").write_bytes(mean)
    else:
        np.save(folder / "stats" / "Mean.npy", mean_values)
    return folder


def pickled_npy(marker: Path) -> bytes:
    """A valid .npy header for an object array, followed by a pickle: what np.save writes for dtype=object."""
    array = np.empty(1, dtype=object)
    array[0] = Payload(marker)
    path = marker.with_suffix(".npy")
    np.save(path, array, allow_pickle=True)
    return path.read_bytes()


def test_a_pickled_mean_npy_is_bad_checkpoint_and_never_unpickled(tmp_path) -> None:
    marker = tmp_path / "ran"
    folder = stats_folder(tmp_path, mean=pickled_npy(marker))
    with pytest.raises(HyMotionError) as caught:
        load_stats(folder, {}, folder / "config.yml")
    assert caught.value.code == "bad_checkpoint"
    assert "Mean.npy" in caught.value.message and "official" in caught.value.hint
    assert not marker.exists()


@pytest.mark.parametrize("values", [np.zeros(7), np.full(LATENT_DIM, np.nan)], ids=["wrong size", "not finite"])
def test_statistics_of_the_wrong_size_or_not_finite_are_bad_checkpoint(tmp_path, values) -> None:
    folder = stats_folder(tmp_path, mean_values=values.astype(np.float32))
    with pytest.raises(HyMotionError) as caught:
        load_stats(folder, {}, folder / "config.yml")
    assert caught.value.code == "bad_checkpoint" and "Mean.npy" in caught.value.message


def test_a_pickled_text_encoder_bin_exits_2_naming_it_and_is_never_unpickled(tmp_path, capsys, empty_hub_cache):
    marker = tmp_path / "ran"
    weights = tmp_path / "weights"
    variant = weights / "HY-Motion-1.0-Lite"
    variant.mkdir(parents=True)
    (variant / "config.yml").write_text("network_module_args: {}\n")
    (variant / "latest.ckpt").write_bytes(b"")
    for name in ("Qwen3-8B", "clip-vit-large-patch14"):
        (weights / name).mkdir()
        (weights / name / "config.json").write_text("{}")
    (weights / "Qwen3-8B" / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    (weights / "clip-vit-large-patch14" / "model.safetensors").write_bytes(b"")
    code = main(["generate", "--model", "lite", "--model-dir", str(weights), "a person walks", "--duration", "1",
                 "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "pytorch_model.bin" in err and "pickled" in err and "hint:" in err
    assert not marker.exists()
