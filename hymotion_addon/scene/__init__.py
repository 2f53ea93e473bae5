"""The add-on's Blender code that is not a UI class: it reads and writes the scene, its objects and Actions.

:mod:`.actions` (the one way to reach an Action's F-curves on Blender 4.2 and on 4.4+ slotted Actions), :mod:`.rig`
and :mod:`.rig_placement` (the SMPL-X armature, named and placed), :mod:`.bake` (motion -> keyframed Actions and NLA
strips), :mod:`.generation` (a run of Generate: the backend job and its Actions) with :mod:`.scene_range`,
:mod:`.known_frames`, :mod:`.sequence` and :mod:`.regenerate` (continue, in-between, loop, timeline, a segment made
anew, saved poses and imported clips), :mod:`.retarget` with :mod:`.target_rig`, :mod:`.retarget_refine` and
:mod:`.rig_pose` (onto the animator's own rig, and its pose read back), :mod:`.sparse_action` (sparse keys on any
Action), :mod:`.takes` and :mod:`.take_runs` (takes of one prompt on one rig), :mod:`.export` (FBX, glTF, BVH) and
:mod:`.library_bake` (the Blender side of ``hymotion-bake``). The operators and panels that call them live in
:mod:`hymotion_addon.ui`; what needs no Blender at all lives in :mod:`hymotion_addon.core`.
"""
