"""Registration of the add-on: one list of classes, registered in order and unregistered in reverse.

The backend process is one per Blender session (backend_manager.MANAGER): unregistering stops it, and so does
Blender's exit (the client registers an atexit shutdown, and the backend also leaves by itself when its parent process
is gone).
"""

import bpy

from .core import backend_manager
from .scene import generation
from .ui import operators, panels, preferences, properties, retarget_ui, sequence_ops, sparse_keys_ops, takes_ui

classes: tuple[type, ...] = (
    *properties.classes,
    *preferences.classes,
    *operators.classes,
    *panels.classes,
    *retarget_ui.classes,  # its panel is a child of HYMOTION_PT_main, so it comes after
    *sequence_ops.classes,
    *sparse_keys_ops.classes,
    *takes_ui.classes,  # its panel is a child of HYMOTION_PT_main too
)


@bpy.app.handlers.persistent
def _stop_run_before_load(*_args) -> None:
    """A file is about to replace this one: the run's armature and scene are going away with it."""
    generation.stop_active_run("The generation was stopped because another file was opened.")


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register_properties()
    retarget_ui.register_properties()
    takes_ui.register_properties()
    bpy.app.handlers.load_pre.append(_stop_run_before_load)


def unregister() -> None:
    if _stop_run_before_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_run_before_load)
    generation.stop_active_run("The add-on was disabled.")
    generation.active_run = None
    panels.cancel_early_start()
    backend_manager.MANAGER.shutdown()
    operators.stop_setup_tasks()
    takes_ui.unregister_properties()
    retarget_ui.unregister_properties()
    properties.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
