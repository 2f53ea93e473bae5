"""The add-on's logic that needs no Blender: motion and retarget math (numpy), bone mapping, the backend client and
its manager, and the backend set-up (pure Python).

Nothing here imports bpy, directly or through another module (tests/test_house_rules.py keeps it so), and the package
above imports nothing, so ``import hymotion_addon.core.x`` works in any Python with numpy and the backend's light
modules: tests/addon runs these modules there, without Blender. The Blender side (hymotion_addon/*.py) builds on them.
"""
