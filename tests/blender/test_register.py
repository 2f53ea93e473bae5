"""The extension package (repository root) registers and unregisters cleanly, more than once."""

from __future__ import annotations

import importlib

from e2e_helpers import PACKAGE_NAME, load_extension_package


def test_register_and_unregister_twice(scene):
    package = load_extension_package()
    classes = importlib.import_module(f"{PACKAGE_NAME}.hymotion_addon.registration").classes
    for _ in range(2):
        package.register()
        assert all(cls.is_registered for cls in classes)
        package.unregister()
        assert not any(cls.is_registered for cls in classes)
