#!/usr/bin/env bash
# Development and CI set-up: two virtual environments beside the sources.
#   .venv            Python 3.11, CPU torch, the backend (editable, with its test and farm (Ray) extras), Blender 5.0.1
#   .venv-blender42  Python 3.11, Blender 4.2 LTS as the bpy module, the backend's light modules (no torch)
# Users install a CUDA build of torch instead (see README.md). Re-running is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# The wheels are large (bpy ~0.5 GB, torch ~0.2 GB) and a dropped connection once failed CI: pip resumes a broken
# download more often than its default, and a download that still fails is started again from scratch.
export PIP_RESUME_RETRIES=${PIP_RESUME_RETRIES:-20}
pip_install() {
    local venv=$1; shift
    local attempt
    for attempt in 1 2 3; do
        "$venv/bin/python" -m pip install -q "$@" && return 0
        [ "$attempt" -lt 3 ] && { echo "pip install $* failed (attempt $attempt of 3); retrying" >&2; sleep $((attempt * 15)); }
    done
    echo "pip install $* failed three times: check the network or the package index, then run this script again" >&2
    return 1
}

"$PYTHON" -m venv .venv
pip_install .venv --upgrade pip
pip_install .venv torch==2.13.0
pip_install .venv -e "backend[test,farm]" bpy==5.0.1 "setuptools>=77"

"$PYTHON" -m venv .venv-blender42
pip_install .venv-blender42 --upgrade pip
pip_install .venv-blender42 bpy==4.2.0 numpy pytest
pip_install .venv-blender42 --no-deps -e backend

.venv/bin/python scripts/build_wheels.py
