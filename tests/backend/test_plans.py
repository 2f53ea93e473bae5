"""Every memory plan gives the same motion; an out-of-memory error steps down one plan and loses nothing."""

import copy

import numpy as np
import pytest
import torch
from backend_helpers import settings

from hymotion.model.tiny import build_tiny_model
from hymotion.pipeline import layer_streaming, memory
from hymotion.pipeline.loading import load_pipeline
from hymotion.shared.errors import HyMotionError

PROMPTS = ("a person walks forward", "someone jumps twice then waves")


# fp32 placements against the cpu plan: the same operations on the same CPU in the same batches, so the latents differ
# by a few fp32 ulps at most (kernels may pick another summation order); decoding amplifies that to a few 1e-5 in
# positions on the tiny model's noise latents (see FP32_DECODED in test_pipeline.py), so 1e-4 keeps >= 3x margin.
FP32_PLACEMENT = 1e-4
# bf16 placements against each other: identical bf16 arithmetic on the same device; only where the text encoder's
# weights live differs, which changes no arithmetic, so anything above float noise would be a placement bug.
BF16_PLACEMENT = 1e-6
# One DiT forward in bf16 against fp32. bf16 keeps 8 significant bits: unit roundoff u = 2^-8. Each stage of the tiny
# DiT (input and text embedders, 2 refiner blocks, 1 double and 2 single blocks, final layer: 8 stages) rounds its
# weights, inputs and outputs to bf16, a relative error of about u each (CPU kernels accumulate in fp32 whether they
# use AVX-512 BF16 dot products or convert to fp32 first, so the kernel choice changes this only within u).
# Round-to-nearest errors are independent and add in quadrature: about u * sqrt(8) ~ 2.8 u for the whole forward.
# The bound is 3x that; a wrong dtype, a lost mask or a mixed-up layout gives an O(1) relative error instead.
BF16_UNIT_ROUNDOFF = 2.0**-8
BF16_FORWARD_BOUND = 3 * 2.8 * BF16_UNIT_ROUNDOFF


def run_plan(plan, device, tmp_path, precision=None):
    pipe = load_pipeline(
        "tiny-random", plan=plan, device=device, cache_dir=tmp_path / f"{plan}-{precision}", precision=precision
    )
    clips = list(pipe.generate(settings(PROMPTS, (2.0, 3.0), seeds=(0, 1), smoothing=False)))
    return pipe, clips


def positions_close(a, b, tolerance):
    for clip_a, clip_b in zip(a, b, strict=True):
        assert (clip_a.prompt, clip_a.seed) == (clip_b.prompt, clip_b.seed)
        np.testing.assert_allclose(clip_a.positions, clip_b.positions, atol=tolerance)


def test_every_placement_in_fp32_gives_the_cpu_plans_motion(tmp_path):
    _, reference = run_plan("cpu", "cpu", tmp_path)
    for plan in ("gpu", "stream"):
        pipe, clips = run_plan(plan, "cpu", tmp_path, precision="fp32")
        assert pipe.transformer.dtype == torch.float32
        positions_close(clips, reference, FP32_PLACEMENT)


def test_bf16_placements_agree_with_each_other_and_run_bf16(tmp_path):
    results = {plan: run_plan(plan, "cpu", tmp_path) for plan in ("gpu", "stream", "offload")}
    assert all(pipe.transformer.dtype == torch.bfloat16 for pipe, _ in results.values())
    assert results["offload"][0].plan == "stream", "the retired offload plan means stream"
    positions_close(results["gpu"][1], results["stream"][1], BF16_PLACEMENT)
    _, reference = run_plan("cpu", "cpu", tmp_path)
    assert not np.allclose(results["gpu"][1][0].positions, reference[0].positions, atol=1e-7), "bf16 did not run"


@pytest.mark.parametrize("seed", range(3))
def test_one_bf16_dit_step_is_within_bf16_rounding_of_fp32(seed):
    fp32 = build_tiny_model(seed).transformer
    bf16 = copy.deepcopy(fp32)
    torch.nn.Module.to(bf16, torch.bfloat16)
    generator = torch.Generator().manual_seed(seed)
    batch, frames, tokens = 2, 60, 7
    x = torch.randn(batch, frames, fp32.config.input_dim, generator=generator)
    ctxt = torch.randn(batch, tokens, fp32.config.ctxt_input_dim, generator=generator)
    vtxt = torch.randn(batch, 1, fp32.config.vtxt_input_dim, generator=generator)
    t = torch.rand(batch, generator=generator)
    motion_valid = torch.ones(batch, frames, dtype=torch.bool)
    text_valid = torch.ones(batch, tokens, dtype=torch.bool)
    text_valid[1, 5:] = False
    with torch.no_grad():
        exact = fp32(x, ctxt, vtxt, t, fp32.build_layout(motion_valid, text_valid))
        rounded = bf16(x, ctxt, vtxt, t, bf16.build_layout(motion_valid, text_valid)).float()
    relative_error = ((rounded - exact).norm() / exact.norm()).item()
    assert 0 < relative_error < BF16_FORWARD_BOUND


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(HyMotionError, match="Unknown precision 'fp16'") as caught:
        load_pipeline("tiny-random", plan="cpu", device="cpu", precision="fp16")
    assert "bf16" in caught.value.hint


def test_stream_plan_runs_each_layer_from_one_of_two_slots_and_keeps_host_weights(tmp_path):
    pipe = load_pipeline("tiny-random", plan="stream", device="cpu", cache_dir=tmp_path)
    encoder = pipe.text_encoder()
    streamer = encoder.streamer
    layers = encoder.qwen_model.layers
    seen = []

    def where_weights_live(index):
        def hook(module, args):
            pointer = module.mlp.up_proj.weight.data_ptr()
            seen.append([slot.data_ptr() <= pointer < slot.data_ptr() + slot.nbytes for slot in streamer._slots])
        return hook

    handles = [layer.register_forward_pre_hook(where_weights_live(index)) for index, layer in enumerate(layers)]
    list(pipe.generate(settings(PROMPTS, (1.0, 1.0), steps=1)))
    for handle in handles:
        handle.remove()
    assert len(layers) >= 2 and seen == [[index % 2 == 0, index % 2 == 1] for index in range(len(layers))]
    assert streamer._slots == [], "the slots go back after encoding"
    host = encoder.qwen_host_state["layers.0.mlp.up_proj.weight"]
    assert layers[0].mlp.up_proj.weight.data_ptr() == host.data_ptr(), "between prompts the layers hold host weights"


def test_upload_copies_every_dtype_and_splits_tensors_larger_than_its_staging(monkeypatch):
    """The gpu plan's Qwen upload, run on the CPU device: exact copies (bytes moved, no arithmetic)."""
    monkeypatch.setattr(layer_streaming, "UPLOAD_STAGING_BYTES", 1000)
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "larger_than_staging": torch.randn(40, 30, generator=generator).to(torch.bfloat16),  # 2400 bytes: 3 pieces
        "float32": torch.randn(7, generator=generator),
        "transposed": torch.randn(5, 6, generator=generator).t(),
        "integers": torch.arange(9),
    }
    uploaded = layer_streaming.upload(tensors, torch.device("cpu"))
    assert list(uploaded) == list(tensors)
    for name, tensor in tensors.items():
        assert uploaded[name].dtype == tensor.dtype and torch.equal(uploaded[name], tensor), name


def test_qwen_weights_are_the_memory_mapped_files(tmp_path):
    from hymotion.model.text_encoder import load_qwen_base
    from hymotion.model.tiny import build_tiny_text_encoder

    folder = tmp_path / "qwen"
    build_tiny_text_encoder().qwen_model.save_pretrained(folder)
    model = load_qwen_base(folder)
    weight = model.layers[0].mlp.up_proj.weight
    assert weight.dtype == torch.bfloat16
    mapped = [line.split(maxsplit=5) for line in open("/proc/self/maps") if ".safetensors" in line]
    regions = [(int(span.split("-")[0], 16), int(span.split("-")[1], 16), path.strip()) for span, *_, path in mapped]
    assert any(start <= weight.data_ptr() < end and path.startswith(str(folder)) for start, end, path in regions), (
        "the weight must live in the file's memory map, not in a copy"
    )


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
    assert pipe.plan == "stream"
    assert [(c.prompt_index, c.seed) for c in clips] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(c.plan == "stream" for c in clips)
    assert any("retrying on plan 'stream'" in w for w in warnings)


def test_out_of_memory_on_every_gpu_plan_walks_down_to_the_cpu_plan(tmp_path, monkeypatch):
    pipe = load_pipeline("tiny-random", plan="gpu", device="cpu", cache_dir=tmp_path)
    original = pipe._sample
    failed_on = []

    def fail_on_gpu_plans(*args, **kwargs):
        if pipe.plan != "cpu":
            failed_on.append(pipe.plan)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe, "_sample", fail_on_gpu_plans)
    warnings = []
    clips = list(pipe.generate(settings(PROMPTS[:1], (1.0,), seeds=(0,), steps=2), on_warning=warnings.append))
    assert failed_on == ["gpu", "stream"] and pipe.plan == "cpu" and clips[0].plan == "cpu"
    assert [w for w in warnings if "retrying" in w] == [
        "Out of GPU memory on plan 'gpu'; retrying on plan 'stream'.",
        "Out of GPU memory on plan 'stream'; retrying on plan 'cpu'.",
    ]


def test_auto_plan_follows_free_vram(monkeypatch):
    monkeypatch.setattr(memory, "cuda_memory", lambda: None)
    gib = memory.GIB
    assert memory.choose_plan("auto", "lite", memory=(80 * gib, 80 * gib)) == "gpu"
    assert memory.choose_plan("auto", "lite", memory=(12 * gib, 12 * gib)) == "stream"
    assert memory.choose_plan("auto", "lite", memory=(8 * gib, 8 * gib)) == "stream"
    assert memory.choose_plan("auto", "lite", memory=(1 * gib, 4 * gib)) == "cpu"
    assert memory.choose_plan("auto", "lite", memory=None) == "cpu"
    assert memory.expected_vram("stream", "lite")["peak"] <= 3.25 * gib
    assert memory.expected_vram("stream", "lite")["sampling"] <= 3 * gib
    assert memory.choose_plan("offload", memory=(80 * gib, 80 * gib)) == "stream", "retired, means stream"


def test_unknown_or_impossible_plan_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(memory, "cuda_memory", lambda: None)
    with pytest.raises(Exception, match="Unknown memory plan"):
        memory.choose_plan("turbo")
    with pytest.raises(Exception, match="needs a CUDA GPU"):
        memory.choose_plan("gpu")


def test_compiled_dit_gives_the_eager_motion(tmp_path):
    """--compile only fuses kernels: in fp32 the motion equals the eager cpu plan's within FP32_PLACEMENT (fused
    elementwise kernels keep intermediates in registers and may sum in another order, a few fp32 ulps per stage)."""
    one_shape = settings(PROMPTS[:1], (2.0,), seeds=(0, 1), smoothing=False)  # each new shape compiles again
    eager = list(load_pipeline("tiny-random", plan="cpu", device="cpu", cache_dir=tmp_path / "eager",
                               precision="fp32").generate(one_shape))
    compiled_pipe = load_pipeline("tiny-random", plan="gpu", device="cpu", cache_dir=tmp_path / "compiled",
                                  precision="fp32", compile_dit=True)
    assert compiled_pipe._forward is not compiled_pipe.transformer
    compiled = list(compiled_pipe.generate(one_shape))
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=FP32_PLACEMENT)
