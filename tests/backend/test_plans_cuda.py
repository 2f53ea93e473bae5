"""The GPU plans on a real CUDA device (skipped without one; run on the lent H100, see docs/performance.md)."""

import dataclasses

import numpy as np
import pytest
import torch
from backend_helpers import run_guardless_script, settings

from hymotion.model.text_encoder import EarlyQwenUpload
from hymotion.model.tiny import build_tiny_text_encoder
from hymotion.pipeline import memory
from hymotion.pipeline.loading import load_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROMPTS = ("a person walks forward", "someone jumps twice then waves")
# Plans compared in fp32 (PyTorch keeps TF32 off for matmuls unless asked): the same math with other kernels or
# another summation order (CLIP on the CPU under `stream`, eager kernels against the captured graph, longer padded
# attention rows), a few fp32 ulps (~1e-6) in the latent; decoding the tiny model's noise latents amplifies that to a
# few 1e-5 in positions (FP32_DECODED in test_pipeline.py). 1e-4 keeps >= 3x margin. bf16 would turn such ulp
# differences into whole bf16 roundings, which is why cross-plan comparisons run in fp32.
FP32_ACROSS_KERNELS = 1e-4


def clips_for(tmp_path, plan, precision=None, **kwargs):
    pipe = load_pipeline("tiny-random", plan=plan, device="cuda", cache_dir=tmp_path / plan, precision=precision,
                         **kwargs)
    return pipe, list(pipe.generate(settings(PROMPTS, (2.0, 3.0), seeds=(0, 1), smoothing=False)))


def assert_positions_close(a_clips, b_clips):
    for a, b in zip(a_clips, b_clips, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=FP32_ACROSS_KERNELS)


def test_cuda_graph_replay_is_repeatable_and_equals_the_eager_forward(tmp_path):
    graphed_pipe, graphed = clips_for(tmp_path, "gpu")
    assert graphed_pipe._graphs, "the gpu plan must capture its denoising step"
    _, again = clips_for(tmp_path, "gpu")
    for a, b in zip(graphed, again, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)

    _, graphed_fp32 = clips_for(tmp_path, "gpu", precision="fp32")
    eager_pipe = load_pipeline("tiny-random", plan="gpu", device="cuda", cache_dir=tmp_path / "eager", precision="fp32")
    eager_pipe._plan = dataclasses.replace(eager_pipe._plan, cuda_graph=False)
    eager = list(eager_pipe.generate(settings(PROMPTS, (2.0, 3.0), seeds=(0, 1), smoothing=False)))
    assert_positions_close(graphed_fp32, eager)


def test_offload_and_stream_match_gpu_plan_on_cuda(tmp_path):
    _, reference = clips_for(tmp_path, "gpu", precision="fp32")
    for plan in ("offload", "stream"):
        assert_positions_close(reference, clips_for(tmp_path, plan, precision="fp32")[1])


def test_compiled_dit_in_its_cuda_graph_gives_the_eager_motion(tmp_path):
    _, reference = clips_for(tmp_path, "gpu", precision="fp32")
    pipe, compiled = clips_for(tmp_path / "compiled", "gpu", precision="fp32", compile_dit=True)
    assert pipe._forward is not pipe.transformer and pipe._graphs
    assert_positions_close(reference, compiled)


def test_gpu_plan_uploads_qwen_and_clip_onto_the_gpu(tmp_path):
    pipe, _ = clips_for(tmp_path, "gpu")
    encoder = pipe.text_encoder()
    devices = {p.device.type for model in (encoder.qwen_model, encoder.clip_model) for p in model.parameters()}
    assert devices == {"cuda"}


def test_gpu_placement_takes_qwen_from_the_early_upload(tmp_path):
    encoder = build_tiny_text_encoder()
    folder = tmp_path / "qwen"
    encoder.qwen_model.save_pretrained(folder)
    uploaded = EarlyQwenUpload(folder, torch.device("cuda")).result()
    assert uploaded is not None and {tensor.device.type for tensor in uploaded.values()} == {"cuda"}
    memory.place_text_encoder(encoder, memory.PLANS["gpu"], "cuda", uploaded)
    for name, parameter in encoder.qwen_model.named_parameters():
        assert parameter.data_ptr() == uploaded[name].data_ptr(), f"{name} was uploaded again"
        assert torch.equal(parameter.cpu(), encoder.qwen_host_state[name]), name


def test_trimmed_run_matches_official_padded_run_on_cuda(tmp_path):
    _, trimmed = clips_for(tmp_path, "official-baseline")
    _, padded = clips_for(tmp_path, "official-baseline", official_padding=True)
    assert_positions_close(trimmed, padded)


def test_offload_plan_returns_text_encoder_to_host_after_encoding(tmp_path):
    pipe, _ = clips_for(tmp_path, "offload")
    qwen = pipe.text_encoder().qwen_model
    assert next(qwen.parameters()).device.type == "cpu"


def test_new_prompts_and_durations_replay_the_graph_captured_at_start_up(tmp_path):
    from hymotion.shared.jobs import DEFAULT_DURATION

    pipe = load_pipeline("tiny-random", plan="gpu", device="cuda", cache_dir=tmp_path)
    assert len(pipe._graphs) == 1, "load_pipeline captures the default request's graph"
    for prompt, duration in (("a person waves", DEFAULT_DURATION), ("someone kicks with the left leg", 3.6)):
        list(pipe.generate(settings((prompt,), (duration,), seeds=(0,), steps=2)))
    assert len(pipe._graphs) == 1, "another short prompt and a duration in the same second reuse it"


def test_a_script_without_main_guard_generates_on_the_gpu(tmp_path):
    assert run_guardless_script(tmp_path, "gpu", "cuda") == "clips 4 children 0"


# Resident and streamed layers on CUDA: the same bf16 bytes, but cuBLAS may pick another kernel (another summation
# order) for an operand that starts 16 bytes into a slot than for one on its own allocation. Each of the 35 linear
# layers then rounds its bf16 output differently, by at most u = 2^-8 relative; independent roundings add in quadrature
# along the residual stream: sqrt(35) u ~ 6 u over the model. 3x that; a layer run with another layer's weights or a
# slot overwritten too early is an O(1) error.
PARTIAL_ON_CUDA = 3 * 35**0.5 * 2.0**-8


@pytest.mark.parametrize("resident", [0, 2, 5])
def test_partial_streamer_on_cuda_gives_the_resident_models_features(resident):
    from test_plans import deep_tiny_qwen

    from hymotion.layer_streaming import LayerStreamer

    model, batch = deep_tiny_qwen(5)
    batch = {key: value.cuda() for key, value in batch.items()}
    with torch.no_grad():
        reference = model.cuda()(**batch).last_hidden_state.float()
        model.cpu()
        streamer = LayerStreamer(model, torch.device("cuda"), resident=resident)
        streamed = model(**batch).last_hidden_state.float()
        streamer.detach()
    valid = batch["attention_mask"].bool()
    relative = ((streamed - reference)[valid].norm() / reference[valid].norm()).item()
    assert relative <= PARTIAL_ON_CUDA


def test_partial_and_int8_plans_match_on_cuda(tmp_path):
    _, reference = clips_for(tmp_path, "stream", precision="fp32")
    pipe, partial = clips_for(tmp_path, "partial", precision="fp32")
    assert pipe.text_encoder().streamer.resident == len(pipe.text_encoder().qwen_model.layers), "all fit on an H100"
    assert_positions_close(reference, partial)
    _, int8_stream = clips_for(tmp_path / "int8", "stream", precision="fp32", text_encoder_int8=True)
    _, int8_partial = clips_for(tmp_path / "int8", "partial", precision="fp32", text_encoder_int8=True)
    assert_positions_close(int8_stream, int8_partial)


def test_limit_vram_caps_what_auto_and_partial_see():
    free, _ = memory.cuda_memory()
    assert free > 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory, "_vram_limit", int(12 * memory.GIB))
        capped, total = memory.cuda_memory()
        assert total == 12 * memory.GIB and capped <= 12 * memory.GIB
        assert memory.choose_plan("auto", "lite") == "partial"
