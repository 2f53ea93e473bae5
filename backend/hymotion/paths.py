"""Where the backend keeps per-user state (no heavy imports: the service reads it before torch loads)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """Prompt-embedding cache, service logs and tokens: $HYMOTION_CACHE, else the XDG cache folder's hymotion/."""
    base = os.environ.get("HYMOTION_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hymotion"
    )
    return Path(base)
