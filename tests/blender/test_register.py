"""The extension package (repository root) registers and unregisters cleanly, more than once."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_NAME = "hymotion_extension_under_test"


def load_extension_package():
    """Import the repository root as a package, the way Blender imports an installed extension."""
    if PACKAGE_NAME in sys.modules:
        return sys.modules[PACKAGE_NAME]
    spec = importlib.util.spec_from_file_location(
        PACKAGE_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = package
    spec.loader.exec_module(package)
    return package


def test_register_and_unregister_twice(scene):
    package = load_extension_package()
    classes = importlib.import_module(f"{PACKAGE_NAME}.hymotion_addon").classes
    for _ in range(2):
        package.register()
        assert all(cls.is_registered for cls in classes)
        package.unregister()
        assert not any(cls.is_registered for cls in classes)
