#!/usr/bin/env bash
# `make test-asan`: the RSDB core under AddressSanitizer + UBSan.
#
# Builds rsdb/_core with -DTRINITY_SANITIZE=ON into build/asan (never touching the
# regular editable build), lays out an overlay package build/asan/overlay/rsdb that
# links to the Python sources next to the sanitized module, and runs the rsdb tests
# with libasan preloaded. Any ASan or UBSan report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BUILD=build/asan
OVERLAY=$BUILD/overlay

NB_DIR=$("$PY" -m nanobind --cmake_dir)
cmake -S . -B "$BUILD/cmake" -G Ninja \
  -DSKBUILD=ON -DSKBUILD_PROJECT_NAME=trinity_data \
  -DTRINITY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
  -DPython_EXECUTABLE="$("$PY" -c 'import sys; print(sys.executable)')" \
  -Dnanobind_DIR="$NB_DIR" >/dev/null
cmake --build "$BUILD/cmake" --target _core

# Overlay package: every rsdb source entry, linked, plus the sanitized extension.
rm -rf "$OVERLAY"
mkdir -p "$OVERLAY/rsdb"
for entry in rsdb/*; do
  case "$(basename "$entry")" in _core*.so|__pycache__) continue ;; esac
  ln -s "$PWD/$entry" "$OVERLAY/rsdb/"
done
cp "$BUILD"/cmake/_core*.so "$OVERLAY/rsdb/"
# The editable install's import hook would map rsdb._core back to the regular build:
# drop it in this interpreter only, so the overlay (first on PYTHONPATH) wins.
cat > "$OVERLAY/sitecustomize.py" <<'PYEOF'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_")]
PYEOF

LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
export PYTHONPATH="$PWD/$OVERLAY${PYTHONPATH:+:$PYTHONPATH}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
REPO=$PWD
case "$PY" in /*) ;; *) PY="$REPO/$PY" ;; esac
# Run from the overlay: the working directory comes first on sys.path, ahead of the
# repository root that the editable install adds.
cd "$OVERLAY"
# Confirm the sanitized module is the one imported before spending time on tests.
LD_PRELOAD="$LIBASAN" "$PY" -c "import rsdb._core as c; assert '$OVERLAY' in c.__file__, c.__file__; print('sanitized core:', c.__file__)"
LD_PRELOAD="$LIBASAN" "$PY" -m pytest -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
  "$REPO/tests/rsdb" --ignore="$REPO/tests/rsdb/diagnostics" --ignore="$REPO/tests/rsdb/test_megatron.py" "$@"
