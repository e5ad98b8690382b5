#!/bin/bash
# Batched-vs-single ratio as a function of problem size (benchmarks/NOTES.md, "Size sweep").
# Each line is one `nasdun bench` run (single, packing and batched side by side); run it twice
# to see this VM's run-to-run spread. Uses the project's .venv (after `make install`), or
# NASDUN=path/to/nasdun.
#   bash benchmarks/size_sweep.sh [rounds]
set -euo pipefail
nasdun=${NASDUN:-.venv/bin/nasdun}
rounds=${1:-1}
for r in $(seq "$rounds"); do
  for size in "25 50 32" "25 50 128" "50 100 32" "50 100 128"; do
    set -- $size
    echo "round $r: m=$1 n=$2 batch=$3"
    "$nasdun" bench --m "$1" --n "$2" --batch "$3" --P 16,64 --procs 2 --seconds 4 --json
  done
done
