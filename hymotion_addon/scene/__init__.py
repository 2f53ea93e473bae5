"""The add-on's Blender code that is not a UI class: it reads and writes the scene, its objects and Actions.

:mod:`.actions` (the one way to reach an Action's F-curves on Blender 4.2 and on 4.4+ slotted Actions), :mod:`.rig`
(the SMPL-X armature), :mod:`.bake` (motion -> keyframed Actions and NLA strips), :mod:`.generation` (a run of
Generate: the backend job and its Actions), :mod:`.known_frames` and :mod:`.sequence` (continue, in-between, loop,
timeline, saved poses and imported clips), :mod:`.retarget` (onto the animator's own rig), :mod:`.export` (FBX,
glTF, BVH) and :mod:`.library_bake` (the Blender side of ``hymotion-bake``). The operators and panels that call
them live in :mod:`hymotion_addon.ui`; what needs no Blender at all lives in :mod:`hymotion_addon.core`.
"""
