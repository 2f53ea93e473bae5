#!/usr/bin/env bash
# Issue 31's one-run bench on the lent GPU machine (see docs/performance.md): the wheels the machine lacks come in
# .whl/ (named in the run's carry), the weights go to benchmarks/out/work (ignored, kept while the machine stays warm).
# Usage there: bash benchmarks/device_small_cards.sh PLANS [bench args...]; results under $OUT.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/backend
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv \
  | tee "$OUT/machine.txt"
nproc >> "$OUT/machine.txt"; free -g >> "$OUT/machine.txt"; df -h /tmp "$PWD" >> "$OUT/machine.txt"
PY=python3
if [ ! -x /tmp/benv/bin/python ]; then python3 benchmarks/backend_env.py /tmp/benv > "$OUT/backend_env.log" 2>&1; fi
if /tmp/benv/bin/python -c "import diffusers, transformers, hymotion.pipeline" 2>> "$OUT/backend_env.log"; then
  PY=/tmp/benv/bin/python
fi
echo "python: $PY" | tee -a "$OUT/machine.txt"
export PYTHONPYCACHEPREFIX=/tmp/pycache
$PY -c "import hymotion.pipeline, hymotion.model.loading, hymotion.model.quantized, hymotion.bench_small_cards
import transformers.models.qwen3.modeling_qwen3, transformers.models.clip.modeling_clip" || exit 1
PLANS=$1; shift
WORK=$PWD/benchmarks/out/work; mkdir -p "$WORK"
set -o pipefail
timeout ${BENCH_TIMEOUT:-520} $PY benchmarks/bench.py --variant lite --work-dir "$WORK" --plans "$PLANS" \
  --json-out "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.log" | grep -v "^Writing\|it/s\]$"
cp "$WORK"/bench-*.log "$OUT"/ 2>/dev/null; (cd "$OUT" && tar czf child-logs.tgz bench-*.log && rm -f bench-*.log)
if [ -n "${CUDA_TESTS:-}" ]; then
  timeout 120 python3 -m pytest tests/backend/test_plans_cuda.py -q -p no:cacheprovider -k "$CUDA_TESTS" 2>&1 | tail -8 \
    | tee "$OUT/cuda-tests.txt"
fi
echo "seconds: $SECONDS"
