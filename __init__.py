"""HY-Motion extension entry point: Blender loads the repository root as the extension package.

All of the add-on lives in hymotion_addon/; this file only hands registration over to hymotion_addon.registration.
The import happens inside the functions so that tools which import this file without Blender (pytest collecting the
repository) do not need bpy.
"""


def register() -> None:
    from .hymotion_addon import registration

    registration.register()


def unregister() -> None:
    from .hymotion_addon import registration

    registration.unregister()
