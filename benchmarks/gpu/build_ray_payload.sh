#!/usr/bin/env bash
# Build, on a machine with pip and a package index, the Ray side of the GPU rephrase benchmark for an
# offline GPU machine (Python 3.12, x86_64) that has no Ray: Ray 2.60 + pyarrow + pandas + the small
# wheels Ray and the rephrase stage import, as tar parts of at most 60 MiB, one part per device call
# (a call carries at most 64 MiB). Run from the repo root; see docs/gpu-recipe.md.
#   .whl/ray/part-00, part-01, part-02
set -euo pipefail
R=${R:-.whl/ray}
rm -rf "$R"; mkdir -p "$R/wheels"
PLAT="--only-binary=:all: --python-version 3.12 --implementation cp \
 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64"
# pinned to the versions the CPU test suite runs with
python3 -m pip download -q --no-deps $PLAT -d "$R/wheels" \
  ray==2.60.0 pyarrow==26.0.1 pandas==3.1.1 python-dateutil==2.9.0.post0 six==1.17.0 tzdata \
  msgpack==1.2.4 protobuf==7.36.2 click==8.5.1 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
  referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 xxhash==4.1.0
tar -C "$R" -cf - wheels | split -b 60M -d - "$R/part-"
rm -rf "$R/wheels"
ls -la "$R"; du -sh "$R"
