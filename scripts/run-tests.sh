#!/usr/bin/env bash
# The whole check: ruff and mypy on the whole tree (settings in pyproject.toml), then the test suite: backend, service
# and Blender 5.0.1 tests in .venv, then the Blender tests again on 4.2 LTS. Exits non-zero if anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/mypy || status=1
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@" || status=1
.venv-blender42/bin/python -m pytest tests/blender -q -p no:cacheprovider "$@" || status=1
exit $status
