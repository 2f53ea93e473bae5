"""Python, the backend's packages and torch; the guarded imports of the backend's torch modules.

Each import is guarded: a doctor that crashes on the problem it should diagnose is useless.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from types import ModuleType

from .findings import FAIL, OK, Finding, State, version_tuple

MIN_PYTHON = (3, 11)
MIN_TRANSFORMERS = (4, 51)  # first release with Qwen3
REQUIRED_PACKAGES = ("transformers", "diffusers", "accelerate", "safetensors", "huggingface_hub", "numpy")
TORCH_CUDA_INSTALL = "pip install torch"
TORCH_CPU_INSTALL = "pip install torch==2.13.0"


def check_python() -> Finding:
    version = platform.python_version()
    where = f"{platform.system()} {platform.release()} {platform.machine()}, {sys.executable}"
    data = {"version": version, "executable": sys.executable, "platform": platform.platform()}
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        return Finding("python", FAIL, f"Python {version} ({where})",
                       f"The backend needs Python {wanted} or newer: create its environment with python{wanted}.", data)
    return Finding("python", OK, f"Python {version} ({where})", data=data)


def check_packages() -> Finding:
    versions: dict[str, str | None] = {}
    for package in REQUIRED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    missing = [name for name, version in versions.items() if version is None]
    listed = ", ".join(f"{name} {version or 'missing'}" for name, version in versions.items())
    if missing:
        return Finding("packages", FAIL, listed,
                       f"Install the backend's dependencies: pip install {' '.join(missing)} "
                       "(or reinstall the backend package).", {"versions": versions})
    if version_tuple(versions["transformers"] or "") < MIN_TRANSFORMERS:
        wanted = ".".join(map(str, MIN_TRANSFORMERS))
        return Finding("packages", FAIL, listed,
                       f"transformers {versions['transformers']} cannot load Qwen3: "
                       f"pip install 'transformers>={wanted}'",
                       {"versions": versions})
    return Finding("packages", OK, listed, data={"versions": versions})


def import_torch() -> ModuleType | str:
    """torch, or why it cannot be imported (missing, or a broken install such as a DLL load failure)."""
    try:
        return importlib.import_module("torch")
    except Exception as error:  # ImportError, OSError from a broken CUDA library, anything torch's init raises
        return f"{type(error).__name__}: {error}"


def check_torch(state: State) -> Finding:
    torch = import_torch()
    if isinstance(torch, str):
        return Finding("torch", FAIL, f"torch cannot be imported ({torch})",
                       f"Install torch in this environment: {TORCH_CUDA_INSTALL} (NVIDIA GPU, CUDA build) or "
                       f"{TORCH_CPU_INSTALL} (CPU only).", {"version": None, "cuda_build": None})
    state.torch = torch
    cuda_build = torch.version.cuda
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU-only build"
    return Finding("torch", OK, f"torch {torch.__version__} ({build})",
                   data={"version": torch.__version__, "cuda_build": cuda_build})


def import_memory(state: State) -> ModuleType | None:
    if state.torch is None:
        return None
    try:
        return importlib.import_module("hymotion.pipeline.memory")
    except ImportError:
        return None


def import_pipeline(state: State) -> ModuleType | str:
    if state.torch is None:
        return "torch is not installed"
    try:
        return importlib.import_module("hymotion.pipeline.loading")
    except Exception as error:
        return f"{type(error).__name__}: {error}"
