"""HY-Motion add-on: Blender side (bpy + numpy only, never torch).

Registration is one list of classes, registered in order and unregistered in reverse. The rig and bake modules are
plain functions and register nothing.
"""

import bpy

classes: tuple[type, ...] = ()


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
