"""Every memory plan gives the same motion; an out-of-memory error steps down one plan and loses nothing."""

import numpy as np
import pytest
import torch
from backend_helpers import settings

from hymotion import memory
from hymotion.pipeline import load_pipeline

PROMPTS = ("a person walks forward", "someone jumps twice then waves")


def run_plan(plan, device, tmp_path):
    pipe = load_pipeline("tiny-random", plan=plan, device=device, cache_dir=tmp_path / plan)
    clips = list(pipe.generate(settings(PROMPTS, (2.0, 3.0), seeds=(0, 1), smoothing=False)))
    return pipe, clips


def latents_close(a, b, tolerance):
    for clip_a, clip_b in zip(a, b, strict=True):
        assert (clip_a.prompt, clip_a.seed) == (clip_b.prompt, clip_b.seed)
        np.testing.assert_allclose(clip_a.positions, clip_b.positions, atol=tolerance)


def test_gpu_offload_and_stream_placements_agree_with_cpu_plan(tmp_path):
    _, reference = run_plan("cpu", "cpu", tmp_path)
    results = {plan: run_plan(plan, "cpu", tmp_path)[1] for plan in ("gpu", "offload", "stream")}
    latents_close(results["gpu"], results["offload"], 1e-6)
    latents_close(results["gpu"], results["stream"], 1e-6)
    # bf16 DiT against the fp32 cpu plan: same motion within bf16 rounding (positions in metres; a few joints at
    # the end of the chain collect the rounding of every parent rotation).
    for bf16_clip, fp32_clip in zip(results["gpu"], reference, strict=True):
        difference = np.abs(bf16_clip.positions - fp32_clip.positions)
        assert difference.mean() < 0.01 and difference.max() < 0.15
    assert not np.allclose(results["gpu"][0].positions, reference[0].positions, atol=1e-7), "bf16 plan did not run bf16"


def test_stream_plan_keeps_qwen_weights_off_the_execution_device(tmp_path):
    pipe, _ = run_plan("stream", "cpu", tmp_path)
    layer = pipe.text_encoder().qwen_model.layers[0].mlp.up_proj
    assert hasattr(layer, "_hf_hook"), "stream plan must attach accelerate's per-module offload hooks"
    assert layer.weight.device.type == "meta", "streamed weights must not stay materialised on the device"


def test_out_of_memory_steps_down_one_plan_and_keeps_every_clip(tmp_path, monkeypatch):
    pipe = load_pipeline("tiny-random", plan="gpu", device="cpu", cache_dir=tmp_path)
    original = pipe._sample
    failures = []

    def fail_once(*args, **kwargs):
        if not failures:
            failures.append(pipe.plan)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe, "_sample", fail_once)
    warnings = []
    clips = list(pipe.generate(settings(PROMPTS, (2.0, 2.0), seeds=(0, 1)), on_warning=warnings.append))
    assert failures == ["gpu"]
    assert pipe.plan == "offload"
    assert [(c.prompt_index, c.seed) for c in clips] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(c.plan == "offload" for c in clips)
    assert any("retrying on plan 'offload'" in w for w in warnings)


def test_auto_plan_follows_free_vram(monkeypatch):
    monkeypatch.setattr(memory, "cuda_memory", lambda: None)
    gib = memory.GIB
    assert memory.choose_plan("auto", "lite", memory=(80 * gib, 80 * gib)) == "gpu"
    assert memory.choose_plan("auto", "lite", memory=(17 * gib, 24 * gib)) == "offload"
    assert memory.choose_plan("auto", "lite", memory=(12 * gib, 12 * gib)) == "stream"
    assert memory.choose_plan("auto", "lite", memory=(8 * gib, 8 * gib)) == "stream"
    assert memory.choose_plan("auto", "lite", memory=(1 * gib, 4 * gib)) == "cpu"
    assert memory.choose_plan("auto", "lite", memory=None) == "cpu"
    assert memory.expected_vram("stream", "lite")["peak"] <= 3.25 * gib
    assert memory.expected_vram("offload", "lite")["sampling"] <= 3 * gib


def test_unknown_or_impossible_plan_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(memory, "cuda_memory", lambda: None)
    with pytest.raises(Exception, match="Unknown memory plan"):
        memory.choose_plan("turbo")
    with pytest.raises(Exception, match="needs a CUDA GPU"):
        memory.choose_plan("gpu")
