"""Every ``bpy.types`` subclass of the add-on: the scene settings (:mod:`.properties`), the add-on preferences
(:mod:`.preferences`), the operators and the sidebar panels. They stay thin: the work is done by
:mod:`hymotion_addon.scene` (Blender data) and :mod:`hymotion_addon.core` (no Blender);
:mod:`hymotion_addon.registration` registers the classes in order.
"""
