#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a bare CUDA machine that has torch, timm, transformers, numpy, pandas,
# pyarrow and safetensors but not the rest of vivid_med's imports: they come as wheels from benchmarks/wheels
# (git-ignored). From a fresh clone:
#
#   bash benchmarks/gpu_check.sh --download   # on a machine with PyPI: fill benchmarks/wheels (CPython 3.12, x86-64)
#   bash benchmarks/gpu_check.sh [ARGS]       # on the GPU machine: install them to /tmp, run gpu_check.py ARGS
#
# With this workplace's device tool: run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/wheels"],
# timeout_s=540); gpu_check.json and gpu_check.log land in $OUT (else in the current folder).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-benchmarks/wheels}
PY=${PYTHON:-python3}
# What vivid_med imports and the device tool's H200 image lacks, at this repository's versions:
# pydantic and its needs (typing-extensions: pydantic needs a recent one), pydicom, nibabel, and what `import dvclive`
# loads (the training loop logs with DVCLive; installed without dependencies, nothing of dvc runs).
PACKAGES=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
          typing-extensions==4.16.0 pydicom==3.0.2 nibabel==5.4.2 dvclive==3.49.1 dvc==3.67.1 dvc-render==1.0.2
          dvc-studio-client==0.23.0 funcy==2.1 flatten-dict==0.5.0 ruamel.yaml==0.19.1 voluptuous==0.16.0
          wcwidth==0.9.4)

if [[ "${1:-}" == --download ]]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${PACKAGES[@]}"
  ls "$WHEELS"
  exit 0
fi

if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu_check_site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" benchmarks/gpu_check.py --help >/dev/null || {  # imports everything the check needs, before any GPU work
  echo "gpu_check.py cannot import what it needs (above): run 'bash $0 --download' where PyPI is reachable" >&2
  exit 2
}
OUT_DIR=${OUT:-.}
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
