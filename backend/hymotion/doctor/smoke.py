"""Smoke runs: a tiny random model proves torch, the device and the pipeline work together; the smallest real
generation tells environment problems (it fails) from parameter problems (it works).
"""

from __future__ import annotations

import tempfile
import time
from types import ModuleType
from typing import Any

from .. import weights
from ..shared.jobs import DEFAULT_STEPS, GenerationSettings
from . import environment
from .findings import FAIL, OK, WARN, Finding, State, gib, wanted_variant

SMOKE_PROMPT = "a person waves"
SMOKE_SECONDS = 2.0
TINY_SMOKE_STEPS = 4


def check_tiny_smoke(state: State) -> Finding:
    """A random tiny model on the chosen device: proves torch, the device and the pipeline code work together."""
    pipeline_module = environment.import_pipeline(state)
    if isinstance(pipeline_module, str) or state.torch is None:  # import_pipeline says why when torch is missing
        return Finding("smoke:tiny", WARN, f"smoke run skipped: the pipeline cannot be imported ({pipeline_module})",
                       "Install torch and the backend's dependencies (see the lines above).")
    try:
        result = _run_generation(pipeline_module, "tiny-random", None, state.device, TINY_SMOKE_STEPS, state.torch)
    except Exception as error:
        return Finding("smoke:tiny", FAIL, f"tiny-model generation on {state.device} failed: {_error_text(error)}",
                       _error_hint(error) or "Run with the same arguments to reproduce; the error above says where.",
                       {"device": state.device, "error": _error_text(error)})
    return Finding("smoke:tiny", OK, f"tiny random model generated {result['frames']} frames on {result['device']} "
                   f"in {result['load_seconds'] + result['generate_seconds']:.1f} s", data=result)


def check_real_smoke(state: State) -> Finding:
    """The smallest real generation: tells environment problems (this fails) from parameter problems (this works)."""
    variant = wanted_variant(state)
    if variant not in state.complete_variants or not state.encoders_complete:
        return Finding("smoke:real", FAIL, f"real-model smoke run not possible: the {variant} weights or text encoders "
                       "are missing or broken (see the weights lines)",
                       f"Run: {weights.download_command(variant, state.model_dir)}", {"variant": variant})
    pipeline_module = environment.import_pipeline(state)
    if isinstance(pipeline_module, str) or state.torch is None:  # import_pipeline says why when torch is missing
        return Finding("smoke:real", FAIL, f"the pipeline cannot be imported ({pipeline_module})",
                       "Install torch and the backend's dependencies (see the lines above).")
    try:
        result = _run_generation(pipeline_module, variant, state.model_dir, None, DEFAULT_STEPS, state.torch)
    except Exception as error:
        return Finding("smoke:real", FAIL, f"{variant}, \"{SMOKE_PROMPT}\", {SMOKE_SECONDS:g} s: "
                       f"{_error_text(error)}", _error_hint(error) or "The error above says where it failed.",
                       {"variant": variant, "error": _error_text(error)})
    peak = f", peak VRAM {gib(result['peak_vram_bytes'])}" if result["peak_vram_bytes"] is not None else ""
    return Finding("smoke:real", OK,
                   f"{variant}, \"{SMOKE_PROMPT}\", {SMOKE_SECONDS:g} s, 1 seed, {result['steps']} steps on plan "
                   f"{result['plan']}: loaded in {result['load_seconds']:.1f} s, generated in "
                   f"{result['generate_seconds']:.1f} s{peak}", data=dict(result, variant=variant))


def _run_generation(
    pipeline_module: ModuleType, model: str, model_dir: str | None, device: str | None, steps: int, torch: ModuleType
) -> dict[str, Any]:
    """Load, generate one clip of SMOKE_SECONDS and measure; raises what the pipeline raises."""
    on_cuda = bool(torch.cuda.is_available()) and device != "cpu"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="hymotion-doctor-") as cache_dir:
        started = time.perf_counter()
        pipeline = pipeline_module.load_pipeline(model, model_dir=model_dir, plan="auto", device=device,
                                                 cache_dir=cache_dir)
        loaded = time.perf_counter()
        settings = GenerationSettings(prompts=[SMOKE_PROMPT], durations=[SMOKE_SECONDS], seeds=[0], steps=steps)
        clips = list(pipeline.generate(settings, on_warning=lambda message: None))
        finished = time.perf_counter()
    if len(clips) != 1:
        raise RuntimeError(f"expected one clip, got {len(clips)}")
    frames = len(clips[0].rotations)
    return {
        "plan": pipeline.plan, "device": str(pipeline.device), "frames": frames, "steps": steps,
        "load_seconds": round(loaded - started, 3), "generate_seconds": round(finished - loaded, 3),
        "peak_vram_bytes": int(torch.cuda.max_memory_allocated()) if on_cuda else None,
    }


def _error_text(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return message.splitlines()[0]


def _error_hint(error: BaseException) -> str:
    return getattr(error, "hint", "") or ""
