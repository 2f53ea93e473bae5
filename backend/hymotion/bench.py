"""``hymotion bench``: memory and speed of each plan at real sizes, with random weights (no downloads).

The run writes random real-size weights once (the DiT of the chosen variant, a Qwen3-8B-shaped base model, a
CLIP-L-shaped text tower, with a small offline tokenizer) and loads them through the same code path as downloaded
weights, so cold start includes reading from disk. Then, per plan, in one process:
- cold start: load the pipeline and produce the first 5 s clip (its prompt not cached yet);
- peak VRAM while encoding (that first request) and while sampling a cached prompt;
- warm latency: one cached prompt, one seed, 5 s;
- throughput: 64 cached prompts x 5 s in one call.
A baseline row runs the official configuration (fp32 DiT on 360 padded frames and 128 text tokens, the causal LM with
every hidden state, everything resident, one request per call) for side-by-side ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024**3
BENCH_PROMPTS = [
    f"a person {verb} {manner}"
    for verb in ("walks forward", "jumps", "waves the right hand", "squats", "turns around", "kicks", "bows", "dances")
    for manner in ("slowly", "quickly", "twice", "then stops", "happily", "carefully", "in a circle", "and claps")
]
BASELINE_THROUGHPUT_CALLS = 8
QWEN3_8B_SHAPE = dict(
    vocab_size=151_936, hidden_size=4096, intermediate_size=12_288, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=40_960, rms_norm_eps=1e-6, rope_theta=1_000_000,
    tie_word_embeddings=False,
)
CLIP_L_SHAPE = dict(vocab_size=49_408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77)
DIT_SHAPES = {"lite": dict(feat_dim=1024, num_layers=18, num_heads=16), "standard": dict(feat_dim=1280, num_layers=27,
                                                                                          num_heads=20)}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", choices=("lite", "standard"), default="lite")
    parser.add_argument("--plans", default="official-baseline,gpu,offload,stream",
                        help="comma-separated plans to measure (cpu is very slow at real size)")
    parser.add_argument("--work-dir", help="where the random real-size weights are written (default: a temp dir)")
    parser.add_argument("--throughput-prompts", type=int, default=64)
    parser.add_argument("--warm-repeats", type=int, default=5)
    parser.add_argument("--json-out", help="write the results as JSON here")


def write_random_weights(folder: Path, variant: str) -> Path:
    """Real-size random checkpoints in the ``--model-dir`` layout, written once and reused."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, Qwen3Config, Qwen3Model

    from .model.loading import LoadedModel, PipelineSettings, save_converted
    from .model.tiny import build_clip_tokenizer, build_tokenizer, randomize_parameters
    from .model.transformer import HunyuanMotionMMDiT
    from .weights import VARIANT_FOLDERS

    model_folder = folder / VARIANT_FOLDERS[variant]
    if not (model_folder / "transformer").is_dir():
        generator = torch.Generator().manual_seed(0)
        transformer = HunyuanMotionMMDiT(**DIT_SHAPES[variant])
        randomize_parameters(transformer, generator)
        conditioning = {"null_vtxt_feat": torch.randn(1, 1, 768), "null_ctxt_input": torch.randn(1, 1, 4096),
                        "mean": torch.zeros(201), "std": torch.full((201,), 0.1)}
        save_converted(LoadedModel(transformer, conditioning, PipelineSettings()), model_folder)
    qwen_folder = folder / "Qwen3-8B"
    if not (qwen_folder / "config.json").is_file():
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            qwen = Qwen3Model(Qwen3Config(**QWEN3_8B_SHAPE)).to(torch.bfloat16)
        qwen.save_pretrained(qwen_folder, max_shard_size="4GB")
        build_tokenizer().save_pretrained(qwen_folder)
        del qwen
    clip_folder = folder / "clip-vit-large-patch14"
    if not (clip_folder / "config.json").is_file():
        tokenizer = build_clip_tokenizer()
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_L_SHAPE, eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>")))
        clip.save_pretrained(clip_folder)
        tokenizer.save_pretrained(clip_folder)
    return folder


def _free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peaks() -> tuple[float, float]:
    import torch

    if not torch.cuda.is_available():
        return 0.0, 0.0
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / GIB, torch.cuda.max_memory_reserved() / GIB


def measure_plan(plan: str, model_dir: Path, variant: str, prompts: int, repeats: int) -> dict:
    import torch

    from . import pipeline as pipeline_module
    from .jobs import GenerationSettings
    from .weights import VARIANT_FOLDERS

    _free_cuda()
    baseline = plan == "official-baseline"
    cache_dir = Path(tempfile.mkdtemp(prefix=f"hymotion-bench-{plan}-"))
    started = time.perf_counter()
    pipe = pipeline_module.load_pipeline(
        str(model_dir / VARIANT_FOLDERS[variant]), model_dir=model_dir, plan=plan,
        device="cuda" if torch.cuda.is_available() else "cpu", cache_dir=cache_dir, official_padding=baseline,
    )
    if baseline:
        pipe.cache = None  # the official pipeline encodes the prompt on every request
    list(pipe.generate(GenerationSettings([BENCH_PROMPTS[0]], [5.0], [0])))
    cold = time.perf_counter() - started
    encoding_peak, encoding_reserved = _peaks()

    batch = BENCH_PROMPTS[:prompts]
    pipe.encode(batch)
    _free_cuda()
    latencies = []
    for _ in range(repeats + 1):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        begin = time.perf_counter()
        list(pipe.generate(GenerationSettings([BENCH_PROMPTS[0]], [5.0], [0])))
        latencies.append(time.perf_counter() - begin)
    sampling_peak, sampling_reserved = _peaks()
    warm = statistics.median(latencies[1:])

    _free_cuda()
    if baseline:
        # The official pipeline takes one prompt per call: time BASELINE_THROUGHPUT_CALLS calls and report the rate.
        batch = batch[:BASELINE_THROUGHPUT_CALLS]
        begin = time.perf_counter()
        for prompt in batch:
            list(pipe.generate(GenerationSettings([prompt], [5.0], [0])))
        elapsed = time.perf_counter() - begin
    else:
        list(pipe.generate(GenerationSettings(batch, [5.0], [0])))  # capture this batch shape once
        begin = time.perf_counter()
        list(pipe.generate(GenerationSettings(batch, [5.0], [0])))
        elapsed = time.perf_counter() - begin
    batch_peak, batch_reserved = _peaks()
    result = {
        "plan": plan,
        "ran_on_plan": pipe.plan,
        "cold_start_s": round(cold, 2),
        "peak_alloc_encoding_gib": round(encoding_peak, 2),
        "peak_reserved_encoding_gib": round(encoding_reserved, 2),
        "peak_alloc_sampling_gib": round(sampling_peak, 2),
        "peak_reserved_sampling_gib": round(sampling_reserved, 2),
        "warm_latency_s": round(warm, 3),
        "throughput_clips_per_s": round(len(batch) / elapsed, 1),
        "throughput_batch_s": round(elapsed, 2),
        "throughput_peak_alloc_gib": round(batch_peak, 2),
        "throughput_peak_reserved_gib": round(batch_reserved, 2),
    }
    del pipe
    _free_cuda()
    return result


def environment() -> dict:
    import torch

    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def markdown_table(results: list[dict]) -> str:
    header = ("| plan | cold start (s) | peak alloc encoding (GiB) | peak alloc sampling (GiB) | reserved sampling (GiB) "
              "| warm latency 5 s clip (s) | 64 x 5 s throughput (clips/s) | batch peak alloc (GiB) |")
    lines = [header, "|" + "---|" * 8]
    for r in results:
        lines.append(
            f"| {r['plan']} | {r['cold_start_s']} | {r['peak_alloc_encoding_gib']} | {r['peak_alloc_sampling_gib']} | "
            f"{r['peak_reserved_sampling_gib']} | {r['warm_latency_s']} | {r['throughput_clips_per_s']} | "
            f"{r['throughput_peak_alloc_gib']} |"
        )
    return "\n".join(lines)


def bench_main(args) -> int:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="hymotion-bench-"))
    print(f"writing random {args.variant} weights under {work} ...", file=sys.stderr)
    write_random_weights(work, args.variant)
    results = []
    for plan in args.plans.split(","):
        print(f"measuring plan {plan} ...", file=sys.stderr)
        results.append(measure_plan(plan, work, args.variant, args.throughput_prompts, args.warm_repeats))
        print(json.dumps(results[-1]), file=sys.stderr)
        report = {"environment": environment(), "variant": args.variant, "results": results}
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2))
    print(f"{args.variant}, {report['environment']}\n\n{markdown_table(results)}")
    return 0
