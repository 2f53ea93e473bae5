"""The light part of the backend, shared with the Blender add-on through the wheel in wheels/.

Everything here needs only the standard library and numpy, since Blender's Python has nothing more: the error type
and its codes, the skeleton, rotation helpers, generation settings and the prompt-file grammar (jobs), the model
options (models), presets, the protocol, prompt advice, the body mesh reader, the one motion-file reader and writer
(motion_files), the typed bake job (bake_job), the one atomic write (files) and the process-group helper (processes).
The add-on imports hymotion from this package alone (tests/test_house_rules.py keeps that rule).
"""
