#!/usr/bin/env bash
# Runs on the GPU machine from the project root (see docs/gpu-recipe.md). STEPs, in order:
#   ray      unpack .whl/ray/part-* (carried over earlier calls) and install into /root/ray_site
#   shim     /root/trinity_shim/sitecustomize.py: lets `import rsdb.errors` work without the compiled
#            rsdb core (built for the CPU machine's Python); the rephrase path needs only rsdb.errors
#   bench    benchmarks/rephrase_bench.py gpu on /root/models/q05 (made by the shared recipe's m05 step)
# Each step logs to $OUT/rephrase-<step>.log; results go to $OUT/rephrase.jsonl.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
REPO=$(pwd)
RS=${RAY_SITE:-/root/ray_site}; VS=${VLLM_SITE:-/root/vllm_site}; SHIM=/root/trinity_shim
MODEL=${MODEL:-/root/models/q05}
export PYTHONPATH=$REPO:$SHIM:$VS:$RS PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 \
  TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_USE_FLASHINFER_SAMPLER=0 RAY_USAGE_STATS_ENABLED=0 \
  TRINITY_REPO=$REPO BENCH_DEVICE="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"

step() {  # name timeout cmd...
  local name=$1 to=$2; shift 2
  echo "=== $name (limit ${to}s) $(date +%T)"
  timeout "$to" bash -c "$*" > "$OUT/rephrase-$name.log" 2>&1
  local rc=$?
  echo "=== $name rc=$rc"
  grep -h '^{' "$OUT/rephrase-$name.log" | cut -c1-900
  if [ $rc -ne 0 ]; then tail -40 "$OUT/rephrase-$name.log" | cut -c1-400; exit $rc; fi
}

for s in "$@"; do case $s in
  ray) step ray 240 "[ -f $RS/.done ] && { echo already installed; exit 0; }; \
        T=\$(mktemp -d) && cat .whl/ray/part-* | tar -C \$T -xf - && \
        python3 -m pip install -q --no-index --no-deps --no-compile --target $RS \$T/wheels/*.whl && \
        touch $RS/.done && du -sh $RS" ;;
  shim) mkdir -p $SHIM && cat > $SHIM/sitecustomize.py <<'PY'
import os, sys, types
try:
    import rsdb  # noqa: F401  (works where the compiled core was built)
except ImportError:
    for k in [k for k in sys.modules if k == "rsdb" or k.startswith("rsdb.")]:
        del sys.modules[k]
    pkg = types.ModuleType("rsdb")
    pkg.__path__ = [os.path.join(os.environ["TRINITY_REPO"], "rsdb")]
    sys.modules["rsdb"] = pkg
PY
     echo "=== shim written" ;;
  bench) step bench 560 "python3 benchmarks/rephrase_bench.py gpu --model $MODEL --json $OUT/rephrase.jsonl ${BENCH_ARGS:-}" ;;
  *) echo "unknown step $s"; exit 2 ;;
esac; done
cat "$OUT/rephrase.jsonl" 2>/dev/null
