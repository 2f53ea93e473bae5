"""Start-up work that needs only torch, done on a thread while the backend imports diffusers and transformers.

Those imports are seconds of Python that hold the GIL (docs/performance.md, First click). Work that spends its time in
the CUDA driver, in copies or in a library's first-use set-up releases the GIL, so it fits beside them: creating the
CUDA context, loading cuBLAS and the attention kernels, pinning the staging buffers ``stream`` copies Qwen3's layers
through, and on ``gpu`` copying Qwen3's weights to the GPU straight from their files. None of it may fail the start: an
error is logged, and the work is then done where it would have been without this.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch

from .layer_streaming import LayerStreamer, PinnedCopier, safetensors_entries, upload_safetensors
from .memory import Plan
from .model.text_encoder import qwen_base_name

log = logging.getLogger(__name__)


class EarlyStart:
    """Begun by ``pipeline.load_pipeline`` before it imports the models' code; the pipeline takes what it made."""

    def __init__(self, plan: Plan, device: torch.device, qwen_folder: Path | None) -> None:
        self._uploaded: dict[str, torch.Tensor] | None = None
        self._thread = threading.Thread(
            target=self._run, args=(plan, torch.device(device), qwen_folder), name="hymotion-early-start", daemon=True
        )
        self._thread.start()

    def _run(self, plan: Plan, device: torch.device, qwen_folder: Path | None) -> None:
        try:
            warm_cuda(device)
            files = sorted(qwen_folder.glob("*.safetensors")) if qwen_folder is not None else []
            if files and plan.text_placement == "stream":
                pin_layer_staging(files, device)
            elif files and plan.name == "gpu":
                self._uploaded = upload_safetensors(files, device, qwen_base_name)
        except Exception as error:  # noqa: BLE001 - never fails the start; the usual path does the work later
            log.info("start-up work ahead of the imports skipped (%s: %s); it is done when needed", type(error).__name__,
                     error)

    def take_qwen_upload(self) -> dict[str, torch.Tensor] | None:
        """Qwen3's weights on the GPU (the ``gpu`` plan), handed over once: later calls, and other plans, get None.
        Waits for the thread."""
        self._thread.join()
        uploaded, self._uploaded = self._uploaded, None
        return uploaded


def warm_cuda(device: torch.device) -> None:
    """Create the CUDA context and load what a first prompt's kernels need (cuBLAS for bf16 GEMMs, fused attention at
    the text encoder's and the DiT's head sizes): library set-up that otherwise lands on the first prompt."""
    tokens = torch.randn(64, 1024, device=device, dtype=torch.bfloat16)
    torch.nn.functional.linear(tokens, tokens)
    for head_dim in (64, 128):
        heads = torch.randn(1, 8, 64, head_dim, device=device, dtype=torch.bfloat16)
        torch.nn.functional.scaled_dot_product_attention(heads, heads, heads, is_causal=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pin_layer_staging(files: list[Path], device: torch.device) -> None:
    """Pin staging buffers the size of the ``stream`` plan's and let them go: torch's pinned-memory cache keeps them,
    so the layer streamer's own buffers come without pinning (about 0.5 s for Qwen3-8B's 0.8 GB on an H100 host)."""
    PinnedCopier(streamed_layer_numel(files), torch.bfloat16, device, buffers=LayerStreamer.SLOTS)


def streamed_layer_numel(files: list[Path]) -> int:
    """The element count of Qwen3's largest decoder layer (what one streaming slot holds), from the files' headers."""
    sizes: dict[str, int] = {}
    for path in files:
        for key, entry in safetensors_entries(path)[1].items():
            name = qwen_base_name(key) or ""
            if name.startswith("layers."):
                layer = name.split(".")[1]
                sizes[layer] = sizes.get(layer, 0) + int(torch.Size(entry["shape"]).numel())
    return max(sizes.values(), default=0)
