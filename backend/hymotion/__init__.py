"""HY-Motion 1.0 text-to-motion backend.

Importing the package is cheap on purpose: the Blender add-on imports the torch-free modules (skeleton, protocol,
presets, prompt handling) from it, and only the pipeline pulls in torch.
"""

__version__ = "0.1.0"
