#!/bin/bash
# One seed of the preregistered equal-time test (README, "Multi-fidelity vs full training";
# benchmarks/PREREGISTRATION.md): full training and screen-15-min + promote-16, side by side
# on one core each, then the top-1 of each retrained on fresh seeds 11-13.
#   bash benchmarks/equal_time_seed.sh SEED [OUT_DIR]      (about 28 min on 2 cores)
set -euo pipefail
seed=${1:?usage: equal_time_seed.sh SEED [OUT_DIR]}
out=${2:-runs}
nasdun=${NASDUN:-.venv/bin/nasdun}
mkdir -p "$out"
export OMP_NUM_THREADS=1
"$nasdun" search --config benchmarks/eqtime_full_warm.yaml --seed "$seed" --num-cpus 1 \
  --out "$out/eq-full-warm-s$seed" > "$out/eq-full-warm-s$seed.log" 2>&1 &
full=$!
"$nasdun" search --config benchmarks/eqtime_screen15_warm.yaml --seed "$seed" --num-cpus 1 \
  --out "$out/eq-screen15-s$seed" > "$out/eq-screen15-s$seed.log" 2>&1 &
screen=$!
wait "$full" "$screen"
unset OMP_NUM_THREADS
"$nasdun" confirm "$out/eq-full-warm-s$seed" "$out/eq-screen15-s$seed/promoted" --top-k 1 \
  --seeds 11,12,13 --protocol ref1000 --against 2no --out "$out/eqretrain-s$seed"
