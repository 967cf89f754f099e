#!/usr/bin/env bash
# The one-command GPU benchmark (bench/run_gpu.py): every row of the performance table, fast and
# official-equivalent, in about 8 minutes on one GPU; writes bench/results/run_gpu_<gpu>.json and
# the table in bench/README.md. Extra arguments are passed on (e.g. --rows dps-ffhq,ddrm-ffhq).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m bench.run_gpu "$@"
