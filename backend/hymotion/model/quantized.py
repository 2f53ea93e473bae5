"""The opt-in 8-bit text encoder: Qwen3's decoder layers with weight-only int8 linear layers, per output channel.

Each linear weight W (out x in, bf16) becomes int8 values Q and one fp32 scale per output row, s = max|W_row| / 127,
Q = round(W / s): half the bytes of bf16 to read from disk and to stream (7.0 GB instead of 13.9 GB for Qwen3-8B's
36 layers). The layer computes (x @ Q^T) * s: Q in bf16 is exact (integers up to 256 are), the matmul accumulates in
fp32 like the bf16 layer's, and the scale applies to the output, so the only new error is Q's rounding, at most half a
step (s / 2) per weight. The token embedding table (looked up, never streamed) and the norms stay bf16.

The quantized copy is written once beside the bf16 folder (``<folder>-int8``) and memory-mapped like the original, so
every plan places and streams it as it does the bf16 weights. What this error does to trained weights and to the
motion cannot be told from random weights; docs/performance.md says what the bench's figure does and does not show.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from .text_encoder import qwen_base_name

log = logging.getLogger(__name__)

INT8_MAX = 127
INT8_SUFFIX = "-int8"
# Shards of the quantized copy: the bf16 files are 4 GB each, so this keeps the same count of memory maps per GB.
SHARD_BYTES = 2 << 30
# Rows quantized at a time: a fp32 copy of 1024 rows of Qwen3's widest matrix (12288 inputs) is 50 MB.
QUANTIZE_ROWS = 1024
COMPLETE_MARK = "int8-complete.json"


class Int8Linear(nn.Module):
    """A linear layer whose ``weight`` is int8 (out x in) with an fp32 ``scale`` per output row. Both are parameters
    (frozen), so the memory plans move and stream them like any weight."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=torch.int8), requires_grad=False)
        self.scale = nn.Parameter(torch.empty(out_features, dtype=torch.float32), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=torch.bfloat16), requires_grad=False) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        out = (nn.functional.linear(x, self.weight.to(x.dtype)) * self.scale).to(x.dtype)
        return out if self.bias is None else out + self.bias.to(x.dtype)


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(int8 values, fp32 scale per row) of a 2-D weight, a block of rows at a time. An all-zero row gets scale 1."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the same arithmetic; a GPU does Qwen3-8B in seconds
    values = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], QUANTIZE_ROWS):
        block = weight[start : start + QUANTIZE_ROWS].to(device).float()
        row_scale = block.abs().amax(dim=1) / INT8_MAX
        row_scale = torch.where(row_scale > 0, row_scale, torch.ones_like(row_scale))
        rounded = (block / row_scale[:, None]).round().clamp(-INT8_MAX, INT8_MAX)
        values[start : start + QUANTIZE_ROWS] = rounded.to(torch.int8).cpu()
        scale[start : start + QUANTIZE_ROWS] = row_scale.cpu()
    return values, scale


def is_quantized(name: str, tensor: Tensor) -> bool:
    """Which base-model weights become int8: the decoder layers' linear weights (2-D, in ``layers.``)."""
    return name.startswith("layers.") and name.endswith("_proj.weight") and tensor.dim() == 2


def int8_folder(qwen_folder: Path) -> Path:
    return Path(qwen_folder).parent / (Path(qwen_folder).name + INT8_SUFFIX)


def quantize_qwen_folder(qwen_folder: Path) -> Path:
    """The int8 copy of the Qwen3 folder, written beside it on first use (minutes for Qwen3-8B, read once) and reused;
    written under a temporary name and renamed, so an interrupted run leaves no half copy that looks complete."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    qwen_folder = Path(qwen_folder)
    target = int8_folder(qwen_folder)
    if (target / COMPLETE_MARK).is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as error:
        raise OSError(f"cannot write the 8-bit text encoder beside {qwen_folder} ({error}); make that folder writable "
                      "or run without the 8-bit text encoder") from error
    shard: dict[str, Tensor] = {}
    shards: list[str] = []

    def flush() -> None:
        if shard:
            name = f"model-int8-{len(shards):05d}.safetensors"
            save_file(shard, partial / name, metadata={"format": "pt"})
            shards.append(name)
            shard.clear()

    for file in sorted(qwen_folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                name = qwen_base_name(key)
                if name is None:
                    continue
                tensor = handle.get_tensor(key)
                if is_quantized(name, tensor):
                    shard[name], shard[name.removesuffix("weight") + "scale"] = quantize_weight(tensor)
                else:
                    shard[name] = tensor.to(torch.bfloat16).contiguous()
                if sum(t.nbytes for t in shard.values()) >= SHARD_BYTES:
                    flush()
    flush()
    for item in qwen_folder.iterdir():
        if item.is_file() and not item.name.endswith(".safetensors") and not item.name.endswith(".index.json"):
            shutil.copy2(item, partial / item.name)
    (partial / COMPLETE_MARK).write_text(json.dumps({"source": str(qwen_folder.resolve()), "shards": shards}))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log.info("wrote the 8-bit text encoder to %s", target)
    return target


def int8_layers(model: nn.Module) -> nn.Module:
    """Swap every linear layer inside ``model.layers`` for an :class:`Int8Linear` of the same shape (meta or empty)."""
    for layer in model.layers:
        for parent in list(layer.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    with torch.device(child.weight.device):
                        replacement = Int8Linear(child.in_features, child.out_features, bias=child.bias is not None)
                    setattr(parent, child_name, replacement)
    return model


def load_qwen_int8(folder: Path) -> nn.Module:
    """Qwen3's base model from an int8 copy (:func:`quantize_qwen_folder`), its weights the files' memory maps."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = int8_layers(AutoModel.from_config(config))
    state = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            state.update({key: handle.get_tensor(key) for key in handle.keys()})
    expected = {name for name in model.state_dict() if not name.startswith("rotary_emb.")}
    missing = sorted(expected - set(state))
    if missing:
        raise FileNotFoundError(f"the 8-bit Qwen3 copy in {folder} lacks {', '.join(missing[:4])}; delete the folder "
                                "and it is written again")
    model.load_state_dict(state, strict=False, assign=True)
    model.rotary_emb = type(model.rotary_emb)(config=config)
    return model.eval()


def quantize_model(model: nn.Module) -> nn.Module:
    """An in-memory int8 copy of a bf16 Qwen3 base model (tests and the bench's deviation check)."""
    import copy

    quantized = int8_layers(copy.deepcopy(model))
    state = {}
    for name, tensor in model.state_dict().items():
        if is_quantized(name, tensor):
            state[name], state[name.removesuffix("weight") + "scale"] = quantize_weight(tensor)
    quantized.load_state_dict(state, strict=False, assign=True)
    return quantized.eval()


def with_int8_qwen(encoder):
    """The same text encoder with its Qwen3 layers quantized in memory (the tiny test model has no folder to copy)."""
    from .text_encoder import TextEncoder

    return TextEncoder(encoder.qwen_tokenizer, quantize_model(encoder.qwen_model), encoder.clip_tokenizer,
                       encoder.clip_model, identity=f"{encoder.identity}|int8", official_layout=encoder.official_layout)
