"""``hymotion bench``: what a user meets on each plan, at real sizes with random weights (no downloads).

The run writes random real-size weights once (the DiT of the chosen variant, a Qwen3-8B-shaped base model, a
CLIP-L-shaped text tower, with a small offline tokenizer) and loads them through the same code path as downloaded
weights. Each plan then runs in a fresh process, as the add-on's backend does, and reports:
- first clip: from starting the process to the first 5 s clip of a new prompt (imports and loading included);
- new prompts: three different prompts in a row, each not cached yet; then eight new prompts in one call;
- cached: median latency of a prompt whose embedding is cached;
- host RAM: peak RSS, anonymous (the process's own memory) and file-backed (memory-mapped weights, evictable);
- GPU: peak allocated; throughput: 64 cached prompts x 5 s in one call.
``PLAN+compile`` runs the DiT through ``torch.compile`` (its compile time counts in the first clip); ``PLAN+int8``
runs the 8-bit text encoder; ``PLAN+cold`` times new prompts with the weight files dropped from the page cache before
each (``bench_small_cards``) instead of the warm rows' later stages. Options combine: ``partial+int8+cold@12``.
``PLAN@GIB`` caps the process's CUDA memory (``memory.limit_vram``), as a small card would: an out-of-memory error
then steps down the plan ladder for real, ``auto`` and ``partial`` size themselves to the cap, and the row says which
plan finished and how many of Qwen3's layers stayed on the GPU.
A baseline row runs the official configuration (fp32 DiT on 360 padded frames and 128 text tokens, the causal LM with
every hidden state, everything resident, no prompt cache) in the same run, for side-by-side ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .shared.models import DEFAULT_MODEL, VARIANTS, variant_help

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
    parser.add_argument("--variant", choices=VARIANTS, default=DEFAULT_MODEL, help=variant_help())
    parser.add_argument("--plans", default="official-baseline,gpu,stream",
                        help="comma-separated plans; PLAN@GIB caps CUDA memory, e.g. gpu@6; PLAN+compile uses "
                        "torch.compile (cpu is slow at real size)")
    parser.add_argument("--work-dir", help="where the random real-size weights are written (default: a temp dir)")
    parser.add_argument("--throughput-prompts", type=int, default=64)
    parser.add_argument("--warm-repeats", type=int, default=5)
    parser.add_argument("--precision-prompts", type=int, default=0,
                        help="also compare bf16 against fp32 on the gpu plan over this many prompts")
    parser.add_argument("--official-reference-prompts", type=int, default=0,
                        help="also compare the GPU plans in fp32 against the official computation over this many "
                        "prompts")
    parser.add_argument("--int8-deviation-prompts", type=int, default=0,
                        help="also compare the 8-bit text encoder's token features with bf16's over this many prompts")
    parser.add_argument("--cold-prompts", type=int, default=3, help="new prompts timed cold on PLAN+cold rows")
    parser.add_argument("--json-out", help="write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one plan's measurement, in its own process


def write_random_weights(folder: Path, variant: str, int8: bool = False) -> Path:
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
        clip = CLIPTextModel(
            CLIPTextConfig(**CLIP_L_SHAPE, eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        )
        clip.save_pretrained(clip_folder)
        tokenizer.save_pretrained(clip_folder)
    if int8:
        from .model.quantized import quantize_qwen_folder

        quantize_qwen_folder(qwen_folder)
    return folder


class _HostMemoryPeaks:
    """Peak resident memory of this process, split as /proc/self/status does: anonymous and file-backed."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.anonymous = self.file_backed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(interval_s,), daemon=True)
        self._thread.start()

    def _watch(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.sample()

    def sample(self) -> None:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
        self.anonymous = max(self.anonymous, fields.get("RssAnon", 0))
        self.file_backed = max(self.file_backed, fields.get("RssFile", 0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _timed(pipe, prompts: list[str], synchronize, stages: dict | None = None) -> float:
    """Seconds for one call; ``stages`` gets the time from the start to the first event of each stage."""
    from .shared.jobs import GenerationSettings

    synchronize()
    begin = time.perf_counter()

    def on_progress(stage: str, step: int, total: int) -> None:
        if stages is not None:
            stages.setdefault(stage, round(time.perf_counter() - begin, 2))

    list(pipe.generate(GenerationSettings(list(prompts), [5.0], [0]), on_progress=on_progress))
    return time.perf_counter() - begin


def parse_spec(spec: str) -> tuple[str, set[str], float | None]:
    """``PLAN[+OPTION...][@GIB]`` as (plan, options, cap in GiB or None)."""
    name, _, cap = spec.partition("@")
    plan, *options = name.split("+")
    unknown = set(options) - {"compile", "int8", "cold"}
    if unknown:
        raise SystemExit(f"unknown plan option(s) {', '.join(sorted(unknown))} in {spec!r}: use compile, int8, cold")
    return plan, set(options), float(cap) if cap else None


def measure_plan(spec: str, model_dir: Path, variant: str, prompts: int, repeats: int, started: float,
                 cold_prompts: int = 3) -> dict:
    """One plan in this process (started at monotonic time ``started``): the figures the module docstring lists."""
    import torch

    from .pipeline import memory
    from .pipeline.loading import load_pipeline
    from .weights import VARIANT_FOLDERS

    imported = time.monotonic()
    plan, options, cap = parse_spec(spec)
    cuda = torch.cuda.is_available() and plan != "cpu"
    if cuda and cap:
        memory.limit_vram(int(cap * GIB))
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    host = _HostMemoryPeaks()
    baseline = plan == "official-baseline"
    pipe = load_pipeline(
        str(model_dir / VARIANT_FOLDERS[variant]), model_dir=model_dir, plan=plan, device="cuda" if cuda else "cpu",
        cache_dir=tempfile.mkdtemp(prefix=f"hymotion-bench-{plan}-"), official_padding=baseline,
        compile_dit="compile" in options, text_encoder_int8="int8" in options,
    )
    if baseline:
        pipe.cache = None  # the official pipeline encodes the prompt on every request
    loaded = time.monotonic()
    stages: dict = {}
    peaks: dict[str, float] = {}

    def stage_peak(name: str) -> None:
        if cuda:
            peaks[name] = round(torch.cuda.max_memory_allocated() / GIB, 2)
            torch.cuda.reset_peak_memory_stats()

    stage_peak("load")
    first_new = _timed(pipe, BENCH_PROMPTS[:1], synchronize, stages)
    stage_peak("first_new_prompt")
    result = {
        "plan": spec, "first_clip_s": round(time.monotonic() - started, 2), "first_new_prompt_s": round(first_new, 2),
        "start_up_s": {"imports": round(imported - started, 2), "load_pipeline": round(loaded - imported, 2),
                       "first_call_stages": stages},
    }
    on_gpu = pipe.plan != "cpu"  # a capped GPU may have stepped down to the cpu plan: time it as the cpu plan
    if "cold" in options:
        from .bench_small_cards import cold_new_prompts

        prompts_cold = BENCH_PROMPTS[1 : 1 + cold_prompts]
        result.update(cold_new_prompts(pipe, prompts_cold, model_dir, lambda batch: _timed(pipe, batch, synchronize)))
        stage_peak("cold_new_prompts")
        on_gpu = False  # the warm stages are the warm rows' business
    elif on_gpu:
        result["new_prompt_s"] = [round(_timed(pipe, [prompt], synchronize), 3) for prompt in BENCH_PROMPTS[1:4]]
        stage_peak("new_prompts")
        result["eight_new_prompts_s"] = round(_timed(pipe, BENCH_PROMPTS[4:12], synchronize), 2)
        stage_peak("eight_new_prompts")
    cached = [_timed(pipe, BENCH_PROMPTS[:1], synchronize) for _ in range(repeats if on_gpu else 1)]
    result["cached_s"] = round(statistics.median(cached), 3)
    stage_peak("cached")
    if on_gpu:
        batch = BENCH_PROMPTS[:prompts] if not baseline else BENCH_PROMPTS[:BASELINE_THROUGHPUT_CALLS]
        if baseline:  # one prompt per call, as the official pipeline takes them
            elapsed = sum(_timed(pipe, [prompt], synchronize) for prompt in batch)
        else:
            _timed(pipe, batch, synchronize)  # encode these prompts and capture this batch shape once
            elapsed = _timed(pipe, batch, synchronize)
        result["throughput_clips_per_s"] = round(len(batch) / elapsed, 1)
        stage_peak("throughput")
    host.stop()
    streamer = pipe._text_encoder.streamer if pipe._text_encoder is not None else None
    result.update(
        text_layers_resident=streamer.resident if streamer is not None else None,
        ran_on_plan=pipe.plan,
        host_rss_anonymous_gib=round(host.anonymous / GIB, 2),
        host_rss_file_gib=round(host.file_backed / GIB, 2),
        gpu_peak_alloc_gib=max(peaks.values(), default=0.0),
        gpu_peak_alloc_by_stage_gib=peaks,
    )
    return result


def compare_runs(model_dir: Path, variant: str, prompts: int, runs: dict[str, dict]) -> dict:
    """Joint positions (prompts x 5 s, one seed) from each named ``load_pipeline`` configuration, one after another."""
    import numpy as np
    import torch

    from .pipeline.loading import load_pipeline
    from .shared.jobs import GenerationSettings
    from .weights import VARIANT_FOLDERS

    settings = GenerationSettings(BENCH_PROMPTS[:prompts], [5.0], [0])
    cache = tempfile.mkdtemp(prefix="hymotion-bench-compare-")
    positions = {}
    for name, options in runs.items():
        pipe = load_pipeline(str(model_dir / VARIANT_FOLDERS[variant]), model_dir=model_dir, cache_dir=cache, **options)
        positions[name] = np.stack([clip.positions for clip in pipe.generate(settings)])
        del pipe
        torch.cuda.empty_cache()
    return positions


def compare_precisions(model_dir: Path, variant: str, prompts: int) -> dict:
    """bf16 against fp32 on the gpu plan: joint positions in metres."""
    runs = {precision: dict(plan="gpu", device="cuda", precision=precision) for precision in ("fp32", "bf16")}
    clips = compare_runs(model_dir, variant, prompts, runs)
    deviation = abs(clips["bf16"] - clips["fp32"])
    return {
        "prompts": prompts,
        "bf16_vs_fp32_mean_m": float(deviation.mean()),
        "bf16_vs_fp32_max_m": float(deviation.max()),
    }


def compare_with_official(model_dir: Path, variant: str, prompts: int) -> dict:
    """The GPU plans in fp32 against the official computation (fp32 DiT on 360 padded frames and 128 text tokens), on
    the same GPU: the same noise (the official configs draw it on the GPU, so a CPU run has other noise) and the same
    embeddings (one shared cache), so what differs is only what our pipeline computes differently. Metres."""
    runs: dict[str, dict] = {plan: dict(plan=plan, device="cuda", precision="fp32") for plan in ("gpu", "stream")}
    runs["official"] = dict(plan="official-baseline", device="cuda", official_padding=True)
    clips = compare_runs(model_dir, variant, prompts, runs)
    report: dict = {"prompts": prompts}
    for plan in ("gpu", "stream"):
        deviation = abs(clips[plan] - clips["official"])
        report[f"{plan}_fp32_vs_official_mean_m"] = float(deviation.mean())
        report[f"{plan}_fp32_vs_official_max_m"] = float(deviation.max())
    return report


def environment() -> dict:
    import torch

    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def markdown_table(results: list[dict]) -> str:
    header = ("| plan | ran on | first clip from start (s) | 1st new prompt (s) | next new prompts (s) "
              "| 8 new prompts (s) | cached (s) | 64 x 5 s (clips/s) | host RSS anon / file (GiB) | GPU peak (GiB) |")
    lines = [header, "|" + "---|" * 10]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['plan']} | failed: {r['error']} |" + " |" * 8)
            continue
        ran_on = r["ran_on_plan"]
        if ran_on == "partial" and r.get("text_layers_resident") is not None:
            ran_on += f" ({r['text_layers_resident']} layers resident)"
        new = ", ".join(map(str, r.get("new_prompt_s", [])))
        if "cold_new_prompt_s" in r:
            new = "cold: " + ", ".join(f"{t} ({gb} GB read)" for t, gb in zip(r["cold_new_prompt_s"],
                                                                            r["cold_disk_read_gb"]))
        lines.append(
            f"| {r['plan']} | {ran_on} | {r['first_clip_s']} | {r['first_new_prompt_s']} | "
            f"{new or '-'} | {r.get('eight_new_prompts_s', '-')} | "
            f"{r['cached_s']} | {r.get('throughput_clips_per_s', '-')} | "
            f"{r['host_rss_anonymous_gib']} / {r['host_rss_file_gib']} | {r['gpu_peak_alloc_gib']} |"
        )
    return "\n".join(lines)


def _run_child(spec: str, args, work: Path) -> dict:
    """One plan in a fresh process, so the first clip includes start-up as the add-on's backend meets it."""
    out = Path(tempfile.mkdtemp(prefix="hymotion-bench-child-")) / "result.json"
    command = [sys.executable, "-m", "hymotion.cli", "bench", "--child", spec, "--work-dir", str(work),
               "--variant", args.variant, "--throughput-prompts", str(args.throughput_prompts),
               "--warm-repeats", str(args.warm_repeats), "--cold-prompts", str(args.cold_prompts),
               "--json-out", str(out)]
    environment = {**os.environ, "HYMOTION_BENCH_STARTED": repr(time.monotonic())}
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    (work / f"bench-{spec}.log").write_text(completed.stderr)
    if completed.returncode != 0 or not out.is_file():
        tail = " ".join(completed.stderr.strip().splitlines()[-3:])
        return {"plan": spec, "error": f"exit {completed.returncode}: {tail[-300:]} (log: {work}/bench-{spec}.log)"}
    return json.loads(out.read_text())


def bench_main(args) -> int:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="hymotion-bench-"))
    if args.child:
        started = float(os.environ.get("HYMOTION_BENCH_STARTED", time.monotonic()))
        result = measure_plan(args.child, work, args.variant, args.throughput_prompts, args.warm_repeats, started,
                              args.cold_prompts)
        Path(args.json_out).write_text(json.dumps(result))
        return 0
    print(f"writing random {args.variant} weights under {work} ...", file=sys.stderr)
    specs = [spec for spec in args.plans.split(",") if spec]
    for spec in specs:
        parse_spec(spec)  # a mistyped option fails before anything is written or measured
    int8 = args.int8_deviation_prompts > 0 or any("int8" in parse_spec(spec)[1] for spec in specs)
    write_random_weights(work, args.variant, int8=int8)
    report = {"environment": environment(), "variant": args.variant, "results": []}
    if args.int8_deviation_prompts:
        from .bench_small_cards import int8_deviation

        report["int8_deviation"] = int8_deviation(work, args.variant, BENCH_PROMPTS[:args.int8_deviation_prompts])
        print(json.dumps(report["int8_deviation"]), file=sys.stderr)
    for spec in specs:
        print(f"measuring plan {spec} ...", file=sys.stderr)
        report["results"].append(_run_child(spec, args, work))
        print(json.dumps(report["results"][-1]), file=sys.stderr)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2))
    if args.precision_prompts:
        report["precision"] = compare_precisions(work, args.variant, args.precision_prompts)
        print(json.dumps(report["precision"]), file=sys.stderr)
    if args.official_reference_prompts:
        report["official_reference"] = compare_with_official(work, args.variant, args.official_reference_prompts)
        print(json.dumps(report["official_reference"]), file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    print(f"{args.variant}, {report['environment']}\n\n{markdown_table(report['results'])}")
    return 0
