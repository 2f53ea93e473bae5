"""The extension as Blender itself sees it: its own `extension validate` and `extension build` tools."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy
import pytest

import hymotion

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_LICENCE = "GPL-3.0-or-later"
EXCLUDED_TOP_LEVEL = ("tests/", "backend/", "benchmarks/", "docs/", "scripts/", ".")


def _load_build_wheels():
    spec = importlib.util.spec_from_file_location("build_wheels", REPO_ROOT / "scripts" / "build_wheels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_wheels = _load_build_wheels()


def blender_ext_tool() -> Path:
    """Blender's extension command-line tool, found inside the installed bpy package (4.2 and 5.x layouts)."""
    scripts_dir = Path(bpy.__file__).resolve().parents[2]
    found = sorted(scripts_dir.glob("addons*/bl_pkg/cli/blender_ext.py"))
    assert found, f"blender_ext.py not found under {scripts_dir}"
    return found[0]


def run_blender_ext(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(blender_ext_tool()), *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def extension_source(tmp_path_factory) -> Path:
    """A copy of the repository (tests, backend and all) with a freshly built backend wheel in wheels/."""
    wheel_python = next(
        (python for python in (sys.executable, str(REPO_ROOT / ".venv" / "bin" / "python"))
         if Path(python).exists() and build_wheels.can_build_wheels(python)),
        None,
    )
    if wheel_python is None:
        pytest.skip("No Python here can build wheels offline (needs setuptools >= 70.1 or the `wheel` package).")
    source = tmp_path_factory.mktemp("extension") / "hymotion"
    shutil.copytree(
        REPO_ROOT, source,
        ignore=shutil.ignore_patterns(".venv*", ".git", "__pycache__", ".pytest_cache", "*.whl", "*.zip"),
    )
    build_wheels.build_backend_wheel(source / "wheels", backend_dir=source / "backend", python=wheel_python)
    return source


def test_manifest_version_and_wheel_follow_the_backend():
    manifest = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    assert manifest["id"] == "hymotion"
    assert manifest["version"] == hymotion.__version__
    assert manifest["wheels"] == [f"./wheels/{build_wheels.wheel_filename(hymotion.__version__)}"]
    assert manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"network", "files"}


def test_one_licence_everywhere():
    manifest = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    backend = tomllib.loads((REPO_ROOT / "backend" / "pyproject.toml").read_text(encoding="utf-8"))
    assert manifest["license"] == [f"SPDX:{PROJECT_LICENCE}"]
    assert backend["project"]["license"] == PROJECT_LICENCE
    assert f"This project: {PROJECT_LICENCE}." in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_blender_validates_the_manifest(extension_source):
    result = run_blender_ext("validate", str(extension_source))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


@pytest.fixture(scope="module")
def extension_zip(extension_source, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("built")
    result = run_blender_ext("build", "--source-dir", str(extension_source), "--output-dir", str(output_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    return output_dir / f"hymotion-{hymotion.__version__}.zip"


def test_blender_builds_a_zip_with_the_addon_and_the_wheel_only(extension_source, extension_zip):
    archive = extension_zip
    names = zipfile.ZipFile(archive).namelist()
    wheel = f"wheels/{build_wheels.wheel_filename(hymotion.__version__)}"
    for required in ("blender_manifest.toml", "__init__.py", "hymotion_addon/__init__.py",
                     "hymotion_addon/scene/bake.py", "hymotion_addon/scene/rig.py", "hymotion_addon/core/__init__.py",
                     "hymotion_addon/core/motion_math.py", wheel):
        assert required in names
    assert not [name for name in names if name.startswith(EXCLUDED_TOP_LEVEL)]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".md")]
    assert [name for name in names if name.endswith(".whl")] == [wheel]

    wheel_names = zipfile.ZipFile(extension_source / wheel).namelist()
    assert "hymotion/shared/skeleton.py" in wheel_names and "hymotion/shared/errors.py" in wheel_names
    metadata = zipfile.ZipFile(extension_source / wheel).read(f"hymotion-{hymotion.__version__}.dist-info/METADATA")
    assert f"License-Expression: {PROJECT_LICENCE}" in metadata.decode("utf-8").splitlines()

    revalidated = run_blender_ext("validate", str(archive))
    assert revalidated.returncode == 0, revalidated.stdout + revalidated.stderr


INSTALL_AND_USE = """
import json, sys
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
result = bpy.ops.extensions.package_install_files(filepath=sys.argv[-1], repo="user_default", enable_on_install=True)
import bl_ext.user_default.hymotion as extension
from bl_ext.user_default.hymotion.hymotion_addon.scene import bake, rig
armature = rig.build_armature(bpy.context)
action = bake.bake_motion(armature, [[0.0, 1.0, 0.0]] * 3, [[[1.0, 0.0, 0.0, 0.0]] * 22] * 3, prompt="a person stands")
print(json.dumps({
    "install": sorted(result),
    "enabled": "bl_ext.user_default.hymotion" in bpy.context.preferences.addons,
    "bones": len(armature.data.bones),
    "action": action.name,
}))
"""


def test_the_built_zip_installs_enables_and_unpacks_the_backend_wheel(extension_zip, tmp_path):
    """Installed the way a user installs it, into a throw-away Blender user folder (never the real one)."""
    environment = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-c", INSTALL_AND_USE, str(extension_zip)],
        capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"install": ["FINISHED"], "enabled": True, "bones": 55, "action": "HYM_stands_s0"}
    unpacked = list((tmp_path / "extensions").glob(".local/lib/python*/site-packages/hymotion/shared/skeleton.py"))
    assert unpacked, "Blender did not unpack the hymotion wheel listed in the manifest"
