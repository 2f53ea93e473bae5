"""The backend's cache folder (hymotion.paths): $HYMOTION_CACHE, else the folder earlier versions used where it
exists, else the platform's own user cache folder (platformdirs)."""

from __future__ import annotations

import platformdirs
import pytest

from hymotion import paths


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HYMOTION_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    # A system whose own cache folder is not ~/.cache (macOS: ~/Library/Caches, Windows: %LOCALAPPDATA%).
    monkeypatch.setattr(paths, "platform_cache_dir", lambda: tmp_path / "home" / "Library" / "Caches" / "hymotion")
    return tmp_path / "home"


def test_a_new_user_gets_the_platforms_cache_folder(home):
    assert paths.user_cache_dir() == home / "Library" / "Caches" / "hymotion"


def test_what_is_already_in_the_old_folder_is_still_found(home):
    (home / ".cache" / "hymotion" / "embeddings").mkdir(parents=True)
    assert paths.user_cache_dir() == home / ".cache" / "hymotion"


def test_the_old_folder_under_xdg_cache_home_is_still_found(home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    (home / "xdg" / "hymotion").mkdir(parents=True)
    assert paths.user_cache_dir() == home / "xdg" / "hymotion"


def test_hymotion_cache_wins(home, monkeypatch, tmp_path):
    (home / ".cache" / "hymotion").mkdir(parents=True)
    monkeypatch.setenv("HYMOTION_CACHE", str(tmp_path / "mine"))
    assert paths.user_cache_dir() == tmp_path / "mine"


def test_the_platform_folder_is_platformdirs_own(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = platformdirs.user_cache_dir("hymotion", appauthor=False)
    assert str(paths.platform_cache_dir()) == expected
