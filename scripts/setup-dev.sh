#!/usr/bin/env bash
# Development and CI set-up: two virtual environments beside the sources.
#   .venv            Python 3.11, CPU torch, the backend (editable, with its test and farm (Ray) extras), Blender 5.0.1
#   .venv-blender42  Python 3.11, Blender 4.2 LTS as the bpy module, the backend's light modules (no torch)
# Users install a CUDA build of torch instead (see README.md). Re-running is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

"$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e "backend[test,farm]" bpy==5.0.1 "setuptools>=77"

"$PYTHON" -m venv .venv-blender42
.venv-blender42/bin/python -m pip install -q --upgrade pip
.venv-blender42/bin/python -m pip install -q bpy==4.2.0 numpy pytest
.venv-blender42/bin/python -m pip install -q --no-deps -e backend

.venv/bin/python scripts/build_wheels.py
