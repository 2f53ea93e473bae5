#!/usr/bin/env bash
# The whole test suite: backend, service and Blender 5.0.1 tests in .venv, then the Blender tests again on 4.2 LTS.
# Exits non-zero if any test fails in either environment.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@" || status=1
.venv-blender42/bin/python -m pytest tests/blender -q -p no:cacheprovider "$@" || status=1
exit $status
