"""HY-Motion extension entry point: Blender loads the repository root as the extension package.

All of the add-on lives in hymotion_addon/; this file only hands registration over to it. The import happens inside
the functions so that tools which import this file without Blender (pytest collecting the repository) do not need bpy.
"""


def register() -> None:
    from . import hymotion_addon

    hymotion_addon.register()


def unregister() -> None:
    from . import hymotion_addon

    hymotion_addon.unregister()
