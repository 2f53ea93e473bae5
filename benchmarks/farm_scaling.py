"""How `hymotion farm` scales from one GPU to all of them: clips/s, scaling efficiency, time to the first clip.

Real-size random Lite weights (``hymotion.bench.write_random_weights``: the DiT, a Qwen3-8B-shaped encoder, CLIP-L),
512 distinct prompts x 1 seed x 5 s. Each worker count runs ``hymotion farm`` as a user would, in its own process
with its own local Ray, a fresh output folder and a fresh embedding cache, so every run starts Ray, loads the model
on every GPU and encodes every prompt. Per run, from the farm's summary.json:
- end to end: clips / wall time of the whole command (Ray start, model loading and encoding included);
- steady: the rate between the 10th and the 90th percentile of the clip files' write times, i.e. once every worker
  is producing and before the last units trail off (clips are written a sampling batch at a time, so the span from
  the very first clip would leave that batch out of the time but not out of the count);
- time to the first clip, from the start of the command.
Scaling efficiency = rate on N workers / (N x rate on 1 worker); the target on 2 GPUs is >= 0.9 (1.8x).

    python benchmarks/farm_scaling.py --json-out benchmarks/results/farm-scaling.json     # GPU machine
    python benchmarks/farm_scaling.py --model tiny-random --prompts 16 --seconds 1 --steps 1   # CPU smoke check
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_name  # noqa: E402

TARGET_TWO_GPU_SPEEDUP = 1.8
VERBS = ("walks forward", "jumps", "waves the right hand", "squats", "turns around", "kicks", "bows", "dances",
         "runs", "sits down", "stretches", "claps", "crouches", "spins", "punches", "climbs stairs")
MANNERS = ("slowly", "quickly", "twice", "then stops", "happily", "carefully", "in a circle", "and claps",
           "while looking left", "with long steps", "like a robot", "nervously", "proudly", "three times",
           "after a pause", "and waves")
PLACES = ("", " on a bridge", " in the rain", " at the door")


def prompt_lines(count: int, seconds: float) -> list[str]:
    """``count`` distinct prompts (each is encoded once per run, as in a real list)."""
    prompts = [f"a person {verb} {manner}{place}" for place in PLACES for verb in VERBS for manner in MANNERS]
    if count > len(prompts):
        raise SystemExit(f"--prompts {count}: at most {len(prompts)} distinct prompts are built in")
    return [f"{seconds:g} | {prompt}" for prompt in prompts[:count]]


def gpu_names() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]


def run_farm(args: argparse.Namespace, work: Path, prompts: Path, workers: int, model_dir: Path | None) -> dict:
    out = work / f"out-{workers}"
    command = [
        sys.executable, "-m", "hymotion.cli", "farm", str(prompts), "--out", str(out), "--model", args.model,
        "--workers", str(workers), "--steps", str(args.steps), "--unit-size", str(args.unit_size),
        "--cache-dir", str(work / f"embeddings-{workers}"), "--no-progress",
    ]
    if model_dir is not None:
        command += ["--model-dir", str(model_dir)]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"hymotion farm with {workers} worker(s) failed (exit {completed.returncode}):\n"
                         f"{completed.stderr[-4000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "workers": workers,
        "clips": summary["made"],
        "wall_s": round(wall, 2),
        "first_clip_s": round(summary["first_clip_s"], 2),
        "last_clip_s": round(summary["last_clip_s"], 2),
        "clips_per_s_end_to_end": round(summary["made"] / wall, 3),
        "clips_per_s_steady": steady_rate(sorted(path.stat().st_mtime for path in (out / "clips").glob("*.npz"))),
        "farm_workers": summary["workers"],
        "worker_notes": [note for note in summary["notes"] if note.startswith("worker ")],
    }


def steady_rate(times: list[float]) -> float | None:
    """Clips per second between the 10th and 90th percentile of the sorted write times."""
    low, high = int(0.1 * (len(times) - 1)), int(0.9 * (len(times) - 1))
    span = times[high] - times[low]
    return round((high - low) / span, 3) if span > 0 else None


def scaling(runs: list[dict]) -> list[dict]:
    base = runs[0]
    rows = []
    for run in runs[1:]:
        row = {"workers": run["workers"]}
        for kind in ("end_to_end", "steady"):
            measure = f"clips_per_s_{kind}"
            if run[measure] and base[measure]:
                speedup = run[measure] / base[measure]
                row[f"speedup_{kind}"] = round(speedup, 3)
                row[f"efficiency_{kind}"] = round(speedup * base["workers"] / run["workers"], 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite", help="lite (random real-size weights) or tiny-random (smoke check)")
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--unit-size", type=int, default=64)
    parser.add_argument("--workers", help="worker counts to compare, e.g. 1,2 (default: 1 and every GPU; 1,2 on CPU)")
    parser.add_argument("--work-dir", help="weights, prompts and outputs (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per farm run")
    parser.add_argument("--json-out", help="write the results here")
    args = parser.parse_args(argv)

    gpus = gpu_names()
    counts = [int(part) for part in args.workers.split(",")] if args.workers else (
        [1, len(gpus)] if len(gpus) > 1 else [1] if gpus else [1, 2])
    with tempfile.TemporaryDirectory(prefix="farm-scaling-") as scratch:
        work = Path(args.work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = None
        if args.model != "tiny-random":
            from hymotion.bench import write_random_weights

            print(f"writing random real-size {args.model} weights into {work / 'weights'} (once)", file=sys.stderr)
            model_dir = write_random_weights(work / "weights", args.model)
        prompts = work / "prompts.txt"
        prompts.write_text("\n".join(prompt_lines(args.prompts, args.seconds)) + "\n", encoding="utf-8")
        runs = []
        for workers in counts:
            print(f"farm: {args.prompts} prompts x {args.seconds:g} s on {workers} worker(s)...", file=sys.stderr)
            runs.append(run_farm(args, work, prompts, workers, model_dir))
            print(json.dumps(runs[-1]), file=sys.stderr)

    results = {
        "date": datetime.date.today().isoformat(),
        "gpus": gpus,
        "cpu": cpu_name(),
        "model": args.model,
        "prompts": args.prompts,
        "seconds": args.seconds,
        "steps": args.steps,
        "unit_size": args.unit_size,
        "runs": runs,
        "scaling": scaling(runs),
    }
    print(f"\n{results['date']}, {', '.join(gpus) or cpu_name()}, {args.model}, {args.prompts} prompts x "
          f"{args.seconds:g} s, {args.steps} steps")
    print("| workers | clips/s end to end | clips/s steady | first clip (s) | wall (s) |\n|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['workers']} | {run['clips_per_s_end_to_end']:.2f} | {run['clips_per_s_steady'] or 0:.2f} | "
              f"{run['first_clip_s']:.1f} | {run['wall_s']:.1f} |")
    for row in results["scaling"]:
        verdict = ""
        if gpus and row["workers"] == 2 and "speedup_steady" in row:
            verdict = (f" (target >= {TARGET_TWO_GPU_SPEEDUP}x: "
                       f"{'met' if row['speedup_steady'] >= TARGET_TWO_GPU_SPEEDUP else 'NOT met'})")
        print(f"{row['workers']} workers: {json.dumps(row)}{verdict}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
