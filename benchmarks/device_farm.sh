#!/usr/bin/env bash
# Issue 31 part 1 on the lent machine: the CUDA tests of the plans, then `hymotion farm` through farm_scaling.py on
# the GPUs there. Ray comes trimmed and xz-packed in .whl/ (its jars and rllib, serve, tune, train and llm removed:
# a farm of actors needs none of them), with jsonschema and its three requirements as wheels.
# Usage there: bash benchmarks/device_farm.sh [farm_scaling args...]; results under $OUT.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
[ -d /tmp/site/ray ] || tar xJf .whl/ray-*-trimmed.tar.xz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD/backend PYTHONPYCACHEPREFIX=/tmp/pycache
python3 -c "import ray; print('ray', ray.__version__)" || exit 1
if [ "${CUDA_TESTS:-1}" = 1 ]; then
  timeout 200 python3 -m pytest tests/backend/test_plans_cuda.py -q -p no:cacheprovider -x 2>&1 | tail -15 \
    | tee "$OUT/cuda-tests.txt"
fi
WORK=$PWD/benchmarks/out/farm; mkdir -p "$WORK"
[ -e "$WORK/weights" ] || ln -s "$PWD/benchmarks/out/work" "$WORK/weights"
timeout ${FARM_TIMEOUT:-300} python3 benchmarks/farm_scaling.py --work-dir "$WORK" --json-out "$OUT/farm.json" "$@" 2>&1 \
  | grep -v "^Writing\|it/s\]$" | tee "$OUT/farm.log"
echo "seconds: $SECONDS"
