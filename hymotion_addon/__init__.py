"""HY-Motion add-on: Blender side (bpy + numpy only, never torch).

Three rooms, as Blender's glTF add-on keeps its ``io/`` apart from ``blender/``:

* :mod:`.core` needs no Blender: the backend client and its manager, the backend set-up, the motion and retarget
  math, bone mapping, sparse keys. It imports neither bpy nor any module that does, so plain Python tests it
  (tests/addon).
* :mod:`.scene` talks to Blender's data (rig, bake, generation, retarget, takes, ...) but defines no UI class.
* :mod:`.ui` holds every ``bpy.types`` subclass (properties, preferences, operators, panels).

:mod:`.registration` registers the UI's classes in order, :mod:`.api` is what a script in Blender's console calls.
This file imports nothing, so that importing ``hymotion_addon.core`` never loads bpy.
"""
