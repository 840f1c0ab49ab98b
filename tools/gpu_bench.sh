#!/usr/bin/env bash
# The accelerator benchmark in one run of under 10 minutes (see tools/bench_gpu.py):
# installs this checkout with a CUDA build of JAX and torch where they are missing,
# then runs `tools/bench.py --gpu`. Writes gpu-bench.md and gpu-bench.json to $OUT
# (default: the current directory).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
python -m pip install -q -e .
if ! python -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    python -m pip install -q -U "jax[cuda12]"
fi
python -c "import torch" 2>/dev/null || python -m pip install -q torch
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -c "import jax; print('jax', jax.__version__, jax.devices())"
python tools/bench.py --gpu --json "$out/gpu-bench.json" "$@" | tee "$out/gpu-bench.md"
