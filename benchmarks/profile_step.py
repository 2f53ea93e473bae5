"""Where the DiT step's GPU time goes: real-size random DiT, eager vs CUDA graph, and the top kernels.

Usage (on a CUDA machine): python benchmarks/profile_step.py --variant lite --batch 2 128 [--compile MODE]
``--compile`` times the same step with ``torch.compile`` (MODE as torch.compile takes it), compile time included.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from hymotion.bench import DIT_SHAPES  # noqa: E402
from hymotion.model.tiny import randomize_parameters  # noqa: E402
from hymotion.model.transformer import HunyuanMotionMMDiT  # noqa: E402


def timed(function, repeats: int) -> float:
    torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(repeats):
        function()
    torch.cuda.synchronize()
    return (time.perf_counter() - begin) / repeats


def captured(function) -> torch.cuda.CUDAGraph:
    """``function`` run once on a side stream (kernels chosen, compiled code built), then captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        function()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        function()
    return graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="lite", choices=DIT_SHAPES)
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 128])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--text", type=int, default=24)
    parser.add_argument("--compile",
                        help="also time torch.compile(model, mode=COMPILE), e.g. max-autotune-no-cudagraphs")
    args = parser.parse_args()
    model = HunyuanMotionMMDiT(**DIT_SHAPES[args.variant])
    randomize_parameters(model, torch.Generator().manual_seed(0))
    model = model.to("cuda", torch.bfloat16).eval()
    for batch in args.batch:
        x = torch.randn(batch, args.frames, 201, device="cuda")
        ctxt = torch.randn(batch, args.text, 4096, device="cuda", dtype=torch.bfloat16)
        vtxt = torch.randn(batch, 1, 768, device="cuda", dtype=torch.bfloat16)
        t = torch.full((batch,), 0.5, device="cuda")
        layout = model.build_layout(
            torch.ones(batch, args.frames, dtype=torch.bool, device="cuda"),
            torch.ones(batch, args.text, dtype=torch.bool, device="cuda"),
        )
        with torch.inference_mode():
            eager = timed(lambda: model(x, ctxt, vtxt, t, layout), 10)
            replay = timed(captured(lambda: model(x, ctxt, vtxt, t, layout)).replay, 20)
            tokens = batch * (args.frames + args.text)
            flops = 2 * sum(p.numel() for p in model.parameters()) * tokens
            print(f"batch {batch}: eager {eager * 1e3:.2f} ms, graph {replay * 1e3:.2f} ms per step, "
                  f"{flops / replay / 1e12:.0f} TFLOP/s (linear layers only)")
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
                model(x, ctxt, vtxt, t, layout)
                torch.cuda.synchronize()
            print(profile.key_averages().table(sort_by="cuda_time_total", row_limit=15))
            if args.compile:
                compiled = torch.compile(model, mode=args.compile, dynamic=False)
                begin = time.perf_counter()
                compiled(x, ctxt, vtxt, t, layout)
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - begin
                compiled_replay = timed(captured(lambda: compiled(x, ctxt, vtxt, t, layout)).replay, 20)
                difference = (
                    compiled(x, ctxt, vtxt, t, layout).float() - model(x, ctxt, vtxt, t, layout).float()
                ).abs()
                print(f"batch {batch}: compiled ({args.compile}) graph {compiled_replay * 1e3:.2f} ms per step, "
                      f"{flops / compiled_replay / 1e12:.0f} TFLOP/s; compile {compile_s:.1f} s; "
                      f"max |compiled - eager| {difference.max().item():.3g}")


if __name__ == "__main__":
    main()
