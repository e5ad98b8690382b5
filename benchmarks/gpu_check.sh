#!/usr/bin/env bash
# GPU readiness in one command (see analysis/studies/gpu_check.py and docs/results/gpu.md):
#   benchmarks/gpu_check.sh OUTDIR [--minutes N] [--device cuda|cpu] [--quick]
# Runs with the machine's own python3 (or $PYTHON) from a copy of the repository; installs nothing.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$(dirname "$here")/analysis/studies/gpu_check.py" "$@"
