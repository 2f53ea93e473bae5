"""The GPU plans on a real CUDA device (skipped without one; run on the lent H100, see docs/performance.md)."""

import dataclasses

import numpy as np
import pytest
import torch
from backend_helpers import settings

from hymotion.pipeline import load_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROMPTS = ("a person walks forward", "someone jumps twice then waves")


def clips_for(tmp_path, plan, **kwargs):
    pipe = load_pipeline("tiny-random", plan=plan, device="cuda", cache_dir=tmp_path / plan, **kwargs)
    return pipe, list(pipe.generate(settings(PROMPTS, (2.0, 3.0), seeds=(0, 1), smoothing=False)))


def test_cuda_graph_replay_equals_eager_forward(tmp_path):
    graphed_pipe, graphed = clips_for(tmp_path, "gpu")
    assert graphed_pipe._graphs, "the gpu plan must capture its denoising step"
    _, again = clips_for(tmp_path, "gpu")
    eager_pipe = load_pipeline("tiny-random", plan="gpu", device="cuda", cache_dir=tmp_path / "eager")
    eager_pipe._plan = dataclasses.replace(eager_pipe._plan, cuda_graph=False)
    eager = list(eager_pipe.generate(settings(PROMPTS, (2.0, 3.0), seeds=(0, 1), smoothing=False)))
    for a, b, c in zip(graphed, again, eager, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_allclose(a.positions, c.positions, atol=1e-4)


def test_offload_and_stream_match_gpu_plan_on_cuda(tmp_path):
    _, reference = clips_for(tmp_path, "gpu")
    for plan in ("offload", "stream"):
        _, clips = clips_for(tmp_path, plan)
        for a, b in zip(reference, clips, strict=True):
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)


def test_trimmed_run_matches_official_padded_run_on_cuda(tmp_path):
    # fp32 on both sides: exactness is a property of the math, bf16 would only add rounding noise.
    _, trimmed = clips_for(tmp_path, "official-baseline")
    _, padded = clips_for(tmp_path, "official-baseline", official_padding=True)
    for a, b in zip(trimmed, padded, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-3)


def test_offload_plan_returns_text_encoder_to_host_after_encoding(tmp_path):
    pipe, _ = clips_for(tmp_path, "offload")
    qwen = pipe.text_encoder().qwen_model
    assert next(qwen.parameters()).device.type == "cpu"
