"""HY-Motion extension entry point: Blender loads the repository root as the extension package.

All of the add-on lives in hymotion_addon/; this file only hands registration over to it.
"""

from . import hymotion_addon


def register() -> None:
    hymotion_addon.register()


def unregister() -> None:
    hymotion_addon.unregister()
