"""The values inside a model's files, checked before anything uses them: the pipeline settings (``pipeline.json`` or
the official ``config.yml``), the pipeline tensors (mean, std, the null embeddings) and the DiT's weights. A value
that would give a traceback, an absurd allocation or NaN motion is ``bad_checkpoint`` naming the key or the tensor
(issue 30, point 3); ``hymotion convert`` goes through the same checks, so it never writes such files."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ..pipeline.motion import LATENT_DIM
from ..shared.errors import BAD_CHECKPOINT, HyMotionError
from ..shared.jobs import MAX_CFG, MAX_STEPS, TRAIN_FRAMES

# The text encoder's token budget. The official setting is 128; 8x that is far past any use and keeps the text
# attention (it grows with the square of the tokens) and the encoder's padding small.
MAX_TEXT_TOKENS = 1024
STATISTICS = ("mean", "std")
FIX_HINT = "Download the model again with `hymotion download` (or convert the official folder again)."


def _bad(message: str) -> HyMotionError:
    return HyMotionError(BAD_CHECKPOINT, message, FIX_HINT)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _why_not(key: str, value: Any) -> str | None:
    """What is wrong with one pipeline setting, or None."""
    if key == "train_frames":
        # The noise draws, the RoPE positions of the text tokens and the 12 s clip limit all assume the official 360.
        return None if _whole(value, TRAIN_FRAMES, TRAIN_FRAMES) else f"must be the integer {TRAIN_FRAMES}"
    if key == "steps":
        return None if _whole(value, 1, MAX_STEPS) else f"must be an integer from 1 to {MAX_STEPS}"
    if key == "max_text_tokens":
        return None if _whole(value, 1, MAX_TEXT_TOKENS) else f"must be an integer from 1 to {MAX_TEXT_TOKENS}"
    if key == "cfg_scale":
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if number and math.isfinite(value) and 0 < value <= MAX_CFG else \
            f"must be a number above 0 and at most {MAX_CFG:g}"
    if key == "enable_ctxt_null_feat":
        return None if isinstance(value, bool) else "must be true or false"
    return "is not a setting this backend knows"


def check_pipeline_settings(values: Any, source: str) -> dict[str, Any]:
    """``values`` (a mapping of PipelineSettings' fields) checked key by key; returned as a plain dict."""
    if not isinstance(values, dict):
        raise _bad(f"{source} must hold a JSON object of pipeline settings, not {type(values).__name__}.")
    for key, value in values.items():
        reason = _why_not(str(key), value)
        if reason is not None:
            raise _bad(f"{source}: {key} = {_short(value)} {reason}.")
    return dict(values)


def check_pipeline_tensors(tensors: dict[str, torch.Tensor], source: str) -> None:
    """mean and std hold LATENT_DIM finite numbers (std none negative); every pipeline tensor is finite."""
    for key in STATISTICS:
        if key in tensors and tensors[key].numel() != LATENT_DIM:
            raise _bad(f"{source}: the tensor '{key}' holds {tensors[key].numel()} numbers (shape "
                       f"{list(tensors[key].shape)}); the model's statistics are {LATENT_DIM}.")
    check_finite(tensors.items(), source)
    if "std" in tensors and bool((tensors["std"] < 0).any()):
        raise _bad(f"{source}: the tensor 'std' holds negative numbers; a standard deviation is never negative.")


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], source: str, prefix: str = "") -> None:
    """Every floating-point tensor finite; the first that is not is named. One pass over the weights, which loading
    reads anyway (about a second per GB on one core)."""
    for name, tensor in tensors:
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise _bad(f"{source}: the tensor '{prefix}{name}' holds {count} NaN or infinite numbers.")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
