"""HY-Motion add-on: Blender side (bpy + numpy only, never torch).

Two layers, as Blender's glTF add-on keeps its ``io/`` apart from ``blender/``:

* :mod:`.core` needs no Blender: the motion and retarget math, bone mapping, the backend client and its manager, the
  backend set-up. It imports neither bpy nor any module that does, so plain Python tests it (tests/addon).
* the modules here talk to Blender (rig, bake, operators, panels, ...); :mod:`.registration` registers them.

This file imports nothing, so that importing ``hymotion_addon.core`` never loads bpy.
"""
