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
    results = {plan: run_plan(plan, "cpu", tmp_path) for plan in ("gpu", "partial", "stream", "offload")}
    assert all(pipe.transformer.dtype == torch.bfloat16 for pipe, _ in results.values())
    assert results["offload"][0].plan == "stream", "the retired offload plan means stream"
    positions_close(results["gpu"][1], results["stream"][1], BF16_PLACEMENT)
    positions_close(results["partial"][1], results["stream"][1], BF16_PLACEMENT)
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
    assert pipe.plan == "partial"
    assert [(c.prompt_index, c.seed) for c in clips] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(c.plan == "partial" for c in clips)
    assert any("retrying on plan 'partial'" in w for w in warnings)


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
    assert failed_on == ["gpu", "partial", "stream"] and pipe.plan == "cpu" and clips[0].plan == "cpu"
    assert [w for w in warnings if "retrying" in w] == [
        "Out of GPU memory on plan 'gpu'; retrying on plan 'partial'.",
        "Out of GPU memory on plan 'partial'; retrying on plan 'stream'.",
        "Out of GPU memory on plan 'stream'; retrying on plan 'cpu'.",
    ]


def test_auto_plan_follows_free_vram(monkeypatch):
    monkeypatch.setattr(memory, "cuda_memory", lambda: None)
    gib = memory.GIB
    assert memory.choose_plan("auto", "lite", memory=(80 * gib, 80 * gib)) == "gpu"
    assert memory.choose_plan("auto", "lite", memory=(20 * gib, 20 * gib)) == "gpu"
    assert memory.choose_plan("auto", "lite", memory=(16 * gib, 16 * gib)) == "partial"
    assert memory.choose_plan("auto", "lite", memory=(12 * gib, 12 * gib)) == "partial"
    assert memory.choose_plan("auto", "lite", memory=(8 * gib, 8 * gib)) == "partial"
    assert memory.choose_plan("auto", "lite", memory=(4 * gib, 4 * gib)) == "stream"
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


# --- the partial plan: k layers resident, the rest streamed ---------------------------------------------------------


def deep_tiny_qwen(layers=5):
    """A random bf16 Qwen3 with enough layers that streaming reuses both slots whatever k is resident."""
    from transformers import Qwen3Config, Qwen3Model

    from hymotion.model.tiny import randomize_parameters

    config = Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                         tie_word_embeddings=False)
    model = Qwen3Model(config)
    randomize_parameters(model, torch.Generator().manual_seed(layers), scale=1.0)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, config.vocab_size, (2, 40), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 29:] = 0  # a padded prompt
    return model.to(torch.bfloat16).eval(), dict(input_ids=input_ids, attention_mask=attention_mask)


# Resident or streamed, a layer computes with the same bf16 bytes through the same CPU kernels in the same order: the
# placement copies bytes and does no arithmetic, so within bf16 rounding here means bit for bit (tolerance 0). Any
# difference at all would be a layer run with another layer's weights or a slot overwritten too early. (On CUDA the
# kernels may differ with the operands' alignment: test_plans_cuda.py allows bf16 rounding there.)
PARTIAL_VS_STREAM = 0.0


@pytest.mark.parametrize("resident", [0, 1, 2, 4, 5])
def test_partial_keeps_k_layers_resident_and_gives_the_stream_embeddings(resident):
    model, batch = deep_tiny_qwen(5)
    with torch.no_grad():
        on_host = model(**batch).last_hidden_state
        streamer = layer_streaming.LayerStreamer(model, torch.device("cpu"), resident=0)
        streamed = model(**batch).last_hidden_state
        streamer.detach()
        host = {name: tensor.data_ptr() for name, tensor in model.state_dict().items()}
        streamer = layer_streaming.LayerStreamer(model, torch.device("cpu"), resident=resident)
        first = model(**batch).last_hidden_state
        streamer.release()
        moved = [model.layers[i].mlp.up_proj.weight.data_ptr() != host[f"layers.{i}.mlp.up_proj.weight"]
                 for i in range(5)]
        second = model(**batch).last_hidden_state  # the slots are made again; the resident layers stayed
        streamer.detach()
    assert moved == [i < resident for i in range(5)], "between prompts only the resident layers hold device copies"
    assert streamer.streamed == list(range(resident, 5))
    for output in (first, second, streamed):
        torch.testing.assert_close(output, on_host, atol=PARTIAL_VS_STREAM, rtol=PARTIAL_VS_STREAM)
    assert all(tensor.data_ptr() == host[name] for name, tensor in model.state_dict().items()), "detach restores"


def test_partial_plan_places_as_many_layers_as_the_budget_allows(monkeypatch, tmp_path):
    gib = memory.GIB
    layer = int(0.36 * gib)
    assert memory.resident_layers(40 * gib, layer, 36) == 36, "all fit: nothing streams"
    assert memory.resident_layers(36 * layer + memory.PARTIAL_WORKING, layer, 36) == 36
    fits = 10 * gib - memory.PARTIAL_WORKING - 2 * layer  # two slots come first once anything streams
    assert memory.resident_layers(10 * gib, layer, 36) == fits // layer
    assert memory.resident_layers(memory.PARTIAL_WORKING, layer, 36) == 0
    monkeypatch.setattr(memory, "PARTIAL_RESIDENT_ON_CPU", 1)
    pipe = load_pipeline("tiny-random", plan="partial", device="cpu", cache_dir=tmp_path)
    encoder = pipe.text_encoder()
    assert encoder.streamer.resident == 1 and encoder.streamer.streamed == [1]
    assert memory.expected_vram("partial")["peak"] > memory.expected_vram("stream")["peak"]


# --- the opt-in 8-bit text encoder ------------------------------------------------------------------------------------


def weight_rounding(model):
    """Relative rounding error of the int8 weights against the bf16 ones, over all quantized matrices together."""
    from hymotion.model.quantized import is_quantized, quantize_weight

    error = total = 0.0
    for name, weight in model.state_dict().items():
        if is_quantized(name, weight):
            values, scale = quantize_weight(weight)
            error += ((values.float() * scale[:, None] - weight.float()) ** 2).sum().item()
            total += (weight.float() ** 2).sum().item()
    return (error / total) ** 0.5


def test_int8_text_encoder_is_within_its_weight_rounding_of_bf16():
    from hymotion.model.quantized import Int8Linear, quantize_model

    model, batch = deep_tiny_qwen(5)
    quantized = quantize_model(model)
    linears = [m for m in quantized.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 5 * 7 and {m.weight.dtype for m in linears} == {torch.int8}
    with torch.no_grad():
        exact = model(**batch).last_hidden_state.float()
        rounded = quantized(**batch).last_hidden_state.float()
        streamer = layer_streaming.LayerStreamer(quantized, torch.device("cpu"), resident=2)
        streamed = quantized(**batch).last_hidden_state.float()
        streamer.detach()
    valid = batch["attention_mask"].bool()
    relative = ((rounded - exact)[valid].norm() / exact[valid].norm()).item()
    # Each weight is off by at most half a step, max|row| / 254: relative to the weights' rms that is `rounding`
    # (about 0.5% on these Gaussian rows of 64-96). Every one of the 35 linear layers adds its own independent error
    # of that relative size to the activations it feeds, and the errors add in quadrature along the residual stream:
    # about sqrt(35) x rounding ~ 3%; the bound is 3x that. Above bf16's own rounding (2^-8 ~ 0.4%), or int8 did not
    # run.
    rounding = weight_rounding(model)
    assert 2.0**-8 < relative < 3 * 35**0.5 * rounding, (relative, rounding)
    torch.testing.assert_close(streamed, rounded, atol=0.0, rtol=0.0)  # streaming mixed dtypes moves bytes only


def test_int8_copy_on_disk_loads_as_the_in_memory_quantization(tmp_path):
    from hymotion.model.quantized import load_qwen_int8, quantize_model, quantize_qwen_folder

    model, batch = deep_tiny_qwen(3)
    model.save_pretrained(tmp_path / "qwen")
    folder = quantize_qwen_folder(tmp_path / "qwen")
    assert folder == tmp_path / "qwen-int8" and quantize_qwen_folder(tmp_path / "qwen") == folder, "written once"
    loaded = load_qwen_int8(folder)
    weight = loaded.layers[0].mlp.up_proj.weight
    assert weight.dtype == torch.int8
    bf16_bytes = sum(f.stat().st_size for f in (tmp_path / "qwen").glob("*.safetensors"))
    int8_bytes = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    assert int8_bytes < 0.75 * bf16_bytes
    from hymotion.model.text_encoder import load_qwen_base

    with torch.no_grad():  # against the bf16 folder loaded as the pipeline does (fp32 rotary tables, as here)
        expected = quantize_model(load_qwen_base(tmp_path / "qwen"))(**batch).last_hidden_state
        torch.testing.assert_close(loaded(**batch).last_hidden_state, expected, atol=0.0, rtol=0.0)


def test_int8_pipeline_runs_on_every_gpu_placement(tmp_path):
    clips = {}
    for plan in ("gpu", "partial", "stream"):
        pipe = load_pipeline("tiny-random", plan=plan, device="cpu", cache_dir=tmp_path / plan, text_encoder_int8=True)
        assert pipe.encoder_identity.endswith("|int8"), "int8 embeddings are cached apart from bf16 ones"
        clips[plan] = list(pipe.generate(settings(PROMPTS, (2.0,), seeds=(0,), smoothing=False)))
    positions_close(clips["gpu"], clips["stream"], BF16_PLACEMENT)
    positions_close(clips["partial"], clips["stream"], BF16_PLACEMENT)
