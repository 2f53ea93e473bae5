"""`hymotion farm`'s command line: its arguments and the entry point that runs the driver."""

from __future__ import annotations

import argparse

from ..shared.jobs import (
    DEFAULT_CFG,
    DEFAULT_STEPS,
)
from ..shared.models import DEFAULT_MODEL, model_help
from .driver import farm
from .planning import DEFAULT_UNIT_SIZE
from .worker import CPU_CORES_PER_WORKER


def add_farm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompts", help="text file: one prompt per line, '4.5 | prompt' sets its duration, "
                        "'prompt | seeds 0-3' its own seeds")
    parser.add_argument("--out", required=True, help="output folder: clips/, libraries/, index.json, index.csv")
    parser.add_argument("--address", help="Ray cluster: auto (this machine's cluster) or ray://HEAD:10001 "
                        "(default: start Ray on this machine with every GPU)")
    parser.add_argument("--seeds", default="0", help="seeds of lines without their own, e.g. 0,1,2 or 0-3 (default: 0)")
    parser.add_argument("--duration", type=float, help="seconds for lines without one (default: estimated)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="sampling steps (default: 50)")
    parser.add_argument("--cfg", type=float, default=DEFAULT_CFG, help="guidance scale (default: 5.0)")
    parser.add_argument("--no-smoothing", action="store_true", help="skip the official temporal smoothing")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
    parser.add_argument("--model-dir", help="folder holding the weights, the same path on every machine")
    parser.add_argument("--plan", default="auto", help="memory plan per worker: auto, gpu, stream, cpu")
    parser.add_argument("--cache-dir", help="prompt-embedding cache (default: OUT/embeddings, shared by all workers)")
    parser.add_argument("--compile", action="store_true", dest="compile_dit",
                        help="torch.compile each GPU worker's DiT: about 1.6x the clips per second after a minute")
    parser.add_argument("--workers", type=int, help="pipeline workers (default: one per GPU; without GPUs, one per "
                        f"{CPU_CORES_PER_WORKER} cores)")
    parser.add_argument("--unit-size", type=int, default=DEFAULT_UNIT_SIZE,
                        help=f"clips per work unit (default: {DEFAULT_UNIT_SIZE})")
    parser.add_argument("--blend-every", type=int, help="bake each N clips into libraries/<name>_NNN.blend")
    parser.add_argument("--blender", help="Blender executable for the libraries (default: the bpy module)")
    parser.add_argument("--bpy-python", help="a Python with the bpy module for the libraries (default: this one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the summary is still printed)")


def farm_main(args: argparse.Namespace) -> int:
    summary = farm(
        args.prompts, args.out, address=args.address, seeds=args.seeds, duration=args.duration, model=args.model,
        model_dir=args.model_dir, plan=args.plan, cache_dir=args.cache_dir, steps=args.steps, cfg=args.cfg,
        smoothing=not args.no_smoothing, compile_dit=args.compile_dit, workers=args.workers, unit_size=args.unit_size,
        blend_every=args.blend_every, blender=args.blender, bpy_python=args.bpy_python,
        progress=not args.no_progress,
    )
    return summary.exit_code()
