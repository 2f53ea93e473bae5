"""The Hugging Face hub: its cache folder, whether it may be asked, and its file listing (sizes and checksums)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HUB_TIMEOUT_S = 5.0
# What a first download needs on disk when the hub cannot be asked (bytes, rounded up from the published files).
DOWNLOAD_SIZE_ESTIMATES = {
    "HY-Motion-1.0-Lite": 1_900_000_000,
    "HY-Motion-1.0": 4_300_000_000,
    "Qwen3-8B": 16_500_000_000,
    "clip-vit-large-patch14": 1_750_000_000,
}


def offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids asking the hub (as huggingface_hub itself reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """Where huggingface_hub keeps its downloads (its own default when it is not installed)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def listing(repo_id: str) -> dict[str, dict[str, Any]] | str:
    """{path: {"size", "sha256"}} as the hub lists the repository, or why it could not be asked."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, files_metadata=True, timeout=HUB_TIMEOUT_S)
    except Exception as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    files = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        files[sibling.rfilename] = {
            "size": sibling.size if sibling.size is not None else (lfs.size if lfs else None),
            "sha256": lfs.sha256 if lfs else None,
        }
    return files
