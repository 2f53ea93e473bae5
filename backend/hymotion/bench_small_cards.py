"""``hymotion bench``'s measurements for the cards and laptops animators own (issue 31).

- Page-cache-cold new prompts (``PLAN+cold``): before each prompt every weight file is dropped from the page cache,
  as on a laptop whose RAM cannot keep Qwen3's 16 GB of weights beside Blender, so the streamed layers are read from
  disk. The process's own mappings of the files are emptied first (``madvise(MADV_DONTNEED)``: the pages stay valid
  and are faulted in again from the file), since the kernel keeps a page in the cache while any page table maps it;
  then ``posix_fadvise(DONTNEED)`` drops the clean pages. The bytes the process read from disk (``/proc/self/io``)
  are reported beside each time, so a drop that did not happen shows.
- The 8-bit text encoder's deviation from bf16: the same prompts through both (``model.quantized``), relative error of
  the token features and their worst cosine similarity. Random weights: what that cannot tell is in docs/performance.md.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

MADV_DONTNEED = 4
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(Path(model_dir).rglob("*.safetensors"))


def unmap_from_this_process(files: list[Path]) -> int:
    """Empty this process's page-table entries for ``files`` (their mappings stay; access faults the pages in again).
    Returns the bytes of mapping so emptied."""
    names = {str(path.resolve()) for path in files}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    emptied = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] in names:
            start, end = (int(value, 16) for value in fields[0].split("-"))
            if libc.madvise(start, end - start, MADV_DONTNEED) != 0:
                raise OSError(ctypes.get_errno(), f"madvise(MADV_DONTNEED) failed on {fields[5]}")
            emptied += end - start
    return emptied


def drop_from_page_cache(files: list[Path]) -> None:
    for path in files:
        with open(path, "rb") as file:
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def disk_read_bytes() -> int:
    """Bytes this process has caused to be read from storage (page-cache hits do not count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "read_bytes":
            return int(value)
    return 0


def cold_new_prompts(pipe, prompts: list[str], model_dir: Path, timed) -> dict:
    """Each prompt new and timed with ``timed([prompt])`` after the weight files were dropped from the page cache."""
    files = weight_files(model_dir)
    seconds, read, drop = [], [], []
    for prompt in prompts:
        began = time.perf_counter()
        unmap_from_this_process(files)
        drop_from_page_cache(files)
        drop.append(round(time.perf_counter() - began, 2))
        before = disk_read_bytes()
        seconds.append(round(timed([prompt]), 3))
        read.append(round((disk_read_bytes() - before) / 1e9, 2))
    return {"cold_new_prompt_s": seconds, "cold_disk_read_gb": read, "cold_drop_s": drop,
            "weight_files_gb": round(sum(path.stat().st_size for path in files) / 1e9, 2)}


def int8_deviation(model_dir: Path, variant: str, prompts: list[str]) -> dict:
    """The 8-bit text encoder against bf16 on the same prompts, both resident on the GPU: relative error of each
    prompt's token features (Frobenius norm), and the lowest cosine similarity of any token's feature vector."""
    import torch

    from . import weights
    from .pipeline import memory
    from .pipeline.loading import load_real_text_encoder

    files = weights.locate(variant, model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    features = {}
    for int8 in (False, True):
        encoder = load_real_text_encoder(files, "bench", int8=int8)
        memory.place_text_encoder(encoder, memory.PLANS["gpu"], device)
        features[int8] = [embedding.ctxt.float() for embedding in encoder.encode(prompts)]
        del encoder
        if device == "cuda":
            torch.cuda.empty_cache()
    relative = [((q - b).norm() / b.norm()).item() for b, q in zip(features[False], features[True])]
    cosine = min(torch.nn.functional.cosine_similarity(q, b, dim=-1).min().item()
                 for b, q in zip(features[False], features[True]))
    bf16_bytes = sum(path.stat().st_size for path in files.qwen_folder.glob("*.safetensors"))
    from .model.quantized import int8_folder

    int8_bytes = sum(path.stat().st_size for path in int8_folder(files.qwen_folder).glob("*.safetensors"))
    return {"prompts": len(prompts), "relative_error_mean": sum(relative) / len(relative),
            "relative_error_max": max(relative), "min_token_cosine": cosine,
            "qwen_bf16_files_gb": round(bf16_bytes / 1e9, 2), "qwen_int8_files_gb": round(int8_bytes / 1e9, 2)}
