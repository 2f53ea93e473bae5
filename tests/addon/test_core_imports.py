"""Every module of hymotion_addon.core imports in a Python where bpy and torch cannot be imported: the core is the
add-on's Blender-free layer, and this checks it at run time as tests/test_house_rules.py checks it in the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CORE_MODULES = sorted(path.stem for path in (REPO_ROOT / "hymotion_addon" / "core").glob("*.py")
                      if path.stem != "__init__")
IMPORT_WITHOUT_BLENDER = """
import importlib, importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bpy", "mathutils", "bpy_extras", "torch"):
            raise ImportError("refused: " + name)
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module("hymotion_addon.core." + name)
print(sorted(name for name in sys.modules if name.startswith("hymotion_addon")))
"""


def test_the_core_modules_are_found():
    assert {"client", "motion_math", "retarget_math", "bone_mapping"} <= set(CORE_MODULES)


@pytest.mark.parametrize("name", CORE_MODULES)
def test_a_core_module_imports_without_blender_or_torch(name):
    finished = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT_BLENDER, str(REPO_ROOT), name],
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    loaded = ast.literal_eval(finished.stdout.strip().splitlines()[-1])  # the list the child printed
    assert f"hymotion_addon.core.{name}" in loaded
    assert all(module.startswith("hymotion_addon.core") or module == "hymotion_addon" for module in loaded), loaded
