"""Where the backend keeps per-user state (no heavy imports: the service reads it before torch loads)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "hymotion"
CACHE_ENV = "HYMOTION_CACHE"
CACHE_DIR_HELP = (
    f"where prompt embeddings are cached (default: ${CACHE_ENV}, else the user cache folder: ~/.cache/{APP_NAME} on "
    f"Linux, ~/Library/Caches/{APP_NAME} on macOS, %LOCALAPPDATA%\\{APP_NAME}\\Cache on Windows)"
)


def user_cache_dir() -> Path:
    """Prompt-embedding cache, service logs and tokens: $HYMOTION_CACHE; else the folder every earlier version used
    on every system ($XDG_CACHE_HOME/hymotion or ~/.cache/hymotion) where it already exists, so what is cached
    there is still found; else the platform's own user cache folder (platformdirs: the XDG folder on Linux,
    ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    earlier = legacy_cache_dir()
    return earlier if earlier.is_dir() else platform_cache_dir()


def legacy_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / APP_NAME


def platform_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
