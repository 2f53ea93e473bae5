"""Build a :class:`~hymotion.pipeline.sampling.MotionPipeline`: find the model's files (or build the tiny model),
choose the memory plan before loading, and start Qwen3's upload to the GPU while diffusers and transformers import."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .. import weights
from ..model.text_encoder import (
    EarlyQwenUpload,
    EmbeddingCache,
    TextEncoder,
    load_qwen_base,
)
from ..paths import user_cache_dir
from ..shared.errors import HyMotionError
from . import memory
from .sampling import MotionPipeline

log = logging.getLogger(__name__)


def load_real_text_encoder(
    files: weights.ModelFiles, identity: str, official_layout: bool = False, int8: bool = False
) -> TextEncoder:
    """Qwen3 as the base model (no LM head) in bf16 and CLIP-L's text tower; ``official_layout`` loads the causal LM
    and keeps every hidden state, as the official pipeline does (benchmarks only); ``int8`` the 8-bit copy of Qwen3's
    layers (``model.quantized``, written beside its folder on first use)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPTextModel

    qwen_tokenizer = AutoTokenizer.from_pretrained(files.qwen_folder, padding_side="right")
    if official_layout:
        qwen = AutoModelForCausalLM.from_pretrained(files.qwen_folder, dtype=torch.bfloat16)
    elif int8:
        from ..model.quantized import load_qwen_int8, quantize_qwen_folder

        qwen = load_qwen_int8(quantize_qwen_folder(files.qwen_folder))
    else:
        qwen = load_qwen_base(files.qwen_folder)
    clip_tokenizer = AutoTokenizer.from_pretrained(files.clip_folder)
    clip = CLIPTextModel.from_pretrained(files.clip_folder)
    return TextEncoder(qwen_tokenizer, qwen, clip_tokenizer, clip, identity=identity, official_layout=official_layout)


def load_pipeline(
    model: str = "lite",
    model_dir: str | os.PathLike | None = None,
    plan: str = "auto",
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    official_padding: bool = False,
    precision: str | None = None,
    compile_dit: bool = False,
    text_encoder_int8: bool = False,
) -> MotionPipeline:
    """Build a pipeline for ``model`` (lite, standard, tiny-random, or a model folder) on a memory plan.

    ``device`` forces where plans run (tests pass "cpu" to exercise the GPU plans' placement code on the CPU).
    ``precision`` ("bf16" or "fp32") overrides the plan's DiT number format (bf16 on the GPU plans, fp32 on cpu).
    ``text_encoder_int8`` runs Qwen3's layers with 8-bit weights (opt-in: half the bytes to read and stream).
    ``compile_dit`` runs the DiT through ``torch.compile`` on the GPU plans (batch baking; see
    :func:`compile_dit_forward`).
    """
    started = time.perf_counter()
    memory.check_precision(precision)  # before any loading
    plan = memory.RETIRED_PLANS.get(plan, plan)
    qwen_uploaded = None
    loader: Callable[[], TextEncoder]
    if model == "tiny-random":
        from ..model.tiny import TINY_MODEL_ID, TINY_WARNING, build_tiny_model, build_tiny_text_encoder

        log.warning(TINY_WARNING)
        chosen, device = _resolve_plan(plan, "lite", device)
        loaded = build_tiny_model()
        loader, identity, model_id, variant = build_tiny_text_encoder, "tiny-random-0", TINY_MODEL_ID, "lite"
        if text_encoder_int8:
            from ..model.quantized import with_int8_qwen

            loader, identity = (lambda: with_int8_qwen(build_tiny_text_encoder())), identity + "|int8"  # noqa: E731
    elif model.startswith("known-"):  # the known-answer test flow (model/known_flow.py): the motion is its target
        from ..model.known_flow import build_known_flow_model
        from ..model.tiny import build_tiny_text_encoder

        chosen, device = _resolve_plan(plan, "lite", device)
        loaded = build_known_flow_model(model.removeprefix("known-"))
        loader, identity, model_id, variant = build_tiny_text_encoder, "tiny-random-0", model, "lite"
    else:
        named = model in weights.VARIANT_FOLDERS
        try:
            files = weights.locate(model, model_dir) if named else weights.locate_for_folder(Path(model), model_dir)
        except HyMotionError:
            if not named:  # a model folder's own damage is reported before text encoders it lacks
                from ..model.loading import load_model_folder

                load_model_folder(weights.checked_variant_folder(Path(model)))
            raise
        variant = model if named else weights.folder_variant(files.model_folder)
        chosen, device = _resolve_plan(plan, variant, device)
        on_gpu = chosen == "gpu" and torch.device(device).type == "cuda" and not text_encoder_int8
        early = EarlyQwenUpload(files.qwen_folder, torch.device(device)) if on_gpu else None
        try:
            from ..model.loading import load_model_folder  # diffusers: imported while Qwen3 is copied

            loaded = load_model_folder(files.model_folder)
        except BaseException:
            if early is not None:
                early.result()  # waited for and let go: a failed load keeps nothing on the GPU
            raise
        qwen_uploaded = early.result() if early is not None else None  # the copy ends before the GPU is used here
        identity = f"{files.qwen_folder.resolve()}|{files.clip_folder.resolve()}|{loaded.settings.max_text_tokens}"
        identity += "|int8" if text_encoder_int8 else ""
        loader = lambda: load_real_text_encoder(files, identity, official_padding, text_encoder_int8)  # noqa: E731
        model_id = f"HY-Motion-1.0-{variant}" if named else str(Path(model).resolve())
    cache = EmbeddingCache(Path(cache_dir) if cache_dir else user_cache_dir() / "embeddings")
    pipeline = MotionPipeline(
        loaded, loader, identity, model_id, variant, chosen, device, cache, official_padding, precision, compile_dit,
        qwen_uploaded,
    )
    pipeline.warm_up()
    log.info("loaded %s on plan %s (%s) in %.1f s", model_id, chosen, device, time.perf_counter() - started)
    return pipeline


def _resolve_plan(plan: str, variant: str, device: str | None) -> tuple[str, str]:
    """The plan to run and the device it runs on; ``device`` forces where (tests run the GPU plans' code on the CPU)."""
    if device is None:
        chosen = memory.choose_plan(plan, variant)
        return chosen, "cuda" if memory.PLANS[chosen].needs_cuda else "cpu"
    if plan == "auto":
        return ("cpu" if torch.device(device).type == "cpu" else memory.choose_plan(plan, variant)), device
    return (plan if plan in memory.PLANS else memory.choose_plan(plan, variant)), device
